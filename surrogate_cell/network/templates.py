"""One surrogate cell per population kind: its model, input channels, targets and probe matrices.

A :class:`CellTemplate` is a single ``SurrogateCell`` (so the geometry is LFPy's own, built by
the model's cell recipe and checked against the model's segment hash) plus what a network
needs of it. Every NEURON-dependent quantity (vmem -> imem matrix, path distances) is taken
when the template is built, because building the next LFPy cell deletes all NEURON sections;
afterwards the template needs only its numpy geometry, which LFPy's ``set_pos`` /
``set_rotation`` move for each cell of a population in turn.
"""

from __future__ import annotations

import json
import os
from collections.abc import Sequence

import numpy as np
import torch

from surrogate_cell.cell import SurrogateCell, UnsupportedFeatureError
from surrogate_cell.cells import segment_path_distances
from surrogate_cell.checkpoint import CheckpointError, load_checkpoint
from surrogate_cell.network.config import (
    Population,
    PopulationMismatchError,
    Probe,
    TargetError,
    Targets,
)
from surrogate_cell.pretrained import resolve_model

TEMPLATE_TSTOP_MS = 1.0
"""The template is never simulated; LFPy only needs some tstop."""


class CellTemplate:
    """The trained cell of one model (with one set of cell arguments), shared by populations.

    Attributes: ``cell`` (the ``SurrogateCell``), ``cell_kwargs``, ``model`` and
    ``normalisation`` (for the stepper), ``model_path``, ``vmem_to_imem`` (S, S),
    ``path_distances_um``, ``areas_um2`` and ``section_types`` (S,); properties give the
    model's channel layout (``input_segments``, ``soma_segment``, ``window_ms``, ``v_init``, ...).
    """

    def __init__(self, model: str | os.PathLike, cell_kwargs: dict, label: str):
        self.model_path = resolve_model(model)
        self.cell_kwargs = dict(cell_kwargs)
        # read first: an unreadable or foreign file is reported as such (CheckpointError), not
        # as cells that do not match it
        self.model, self.normalisation, meta, _ = load_checkpoint(self.model_path)
        if meta.get("cell", {}).get("input_kind", "events") != "events":
            raise UnsupportedFeatureError(
                f"{label}: its model {self.model_path} is a drive model (input_kind "
                f"{meta['cell']['input_kind']!r}: synaptic conductances and somatic current); drive models are not "
                "supported in SurrogateNetwork yet. Give the population an event model (e.g. 'l5pc-default'), "
                "or simulate the cell on its own with SurrogateCell, which runs drive models."
            )
        try:
            self.cell = SurrogateCell(model=self.model_path, device="cpu",
                                      **{"tstop": TEMPLATE_TSTOP_MS, **cell_kwargs})
        except CheckpointError as error:
            raise PopulationMismatchError(
                f"{label}: its cells (cell_kwargs={cell_kwargs}) do not match the model "
                f"{self.model_path}: {error} Give the population the model trained on this cell, "
                "or the cell_kwargs of the model's recipe."
            ) from None
        if self.cell.pt3d:
            raise PopulationMismatchError(f"{label}: cells built with pt3d=True are not supported; "
                                          "leave pt3d at its default (False).")
        self.vmem_to_imem = self.cell.get_vmem_to_imem_matrix()
        self.path_distances_um = segment_path_distances(self.cell)
        self.areas_um2 = np.asarray(self.cell.area, dtype=float)
        self.section_types = np.asarray(self.cell.section_types).astype(str)
        self._home = [np.copy(getattr(self.cell, axis)) for axis in ("x", "y", "z", "somapos")]

    # ------------------------------------------------------------------ model layout

    @property
    def n_segments(self) -> int:
        """Number of segments (model voltage outputs)."""
        return int(self.cell.totnsegs)

    @property
    def n_event_channels(self) -> int:
        """Number of model input channels (excitatory ones, then inhibitory ones)."""
        return int(self.cell.n_event_channels)

    @property
    def input_segments(self) -> np.ndarray:
        """Segment of every input row (one excitatory and one inhibitory channel each)."""
        return self.cell.input_segments

    @property
    def soma_segment(self) -> int:
        """Index of the soma segment."""
        return int(self.cell.soma_segment)

    @property
    def window_ms(self) -> int:
        """The model's history window (ms)."""
        return int(self.cell.window_ms)

    @property
    def v_init(self) -> float:
        """Initial membrane voltage (mV) of the resting start."""
        return float(self.cell.v_init)

    @property
    def spike_threshold_mv(self) -> float:
        """The checkpoint's soma spike threshold (mV)."""
        return float(self.cell.spike_threshold)

    @property
    def recipe(self) -> dict:
        """The cell builder recipe the model was trained with."""
        return self.cell.model_meta["cell"]["recipe"]

    def event_channels(self, segments: np.ndarray, kind: str) -> np.ndarray:
        """Input channel of every segment for synapses of ``kind``; -1 where there is none."""
        return self.cell.event_channel(segments, kind)

    def resting_history(self) -> tuple[np.ndarray, np.ndarray]:
        """(voltages (S, W) mV, events (E, W)): every segment at v_init, no events."""
        return self.cell.resting_history()

    # ------------------------------------------------------------------ targets

    def target_segments(self, targets: Targets, label: str) -> tuple[np.ndarray, np.ndarray]:
        """(segments, probabilities ∝ area) allowed by ``targets``; raises :class:`TargetError`."""
        input_types = sorted(set(self.section_types[self.input_segments].tolist()))
        allowed_types = input_types if targets.section_types is None else list(targets.section_types)
        without_input = sorted(set(allowed_types) - set(input_types))
        if without_input:
            raise TargetError(
                f"{label}: targets section types {without_input}, which have no model input "
                f"channels (the model was trained with synapses on {input_types} only). Choose "
                f"Targets(section_types=...) among {input_types}."
            )
        distances = self.path_distances_um[self.input_segments]
        allowed = (np.isin(self.section_types[self.input_segments], allowed_types)
                   & (distances >= targets.min_distance_um) & (distances <= targets.max_distance_um))
        segments = self.input_segments[allowed]
        if segments.size == 0:
            raise TargetError(
                f"{label}: no input segment of types {allowed_types} lies between "
                f"{targets.min_distance_um:g} and {targets.max_distance_um:g} um path distance from "
                f"the soma (input segments span {distances.min():.0f}-{distances.max():.0f} um). "
                "Widen the distance range."
            )
        weights = self.areas_um2[segments]
        return segments, weights / weights.sum()

    # ------------------------------------------------------------------ placement and probes

    def place(self, position: Sequence[float], rotation: Sequence[float]) -> None:
        """Move the template to one cell's place exactly as LFPy.Network does (set_pos, set_rotation)."""
        self.go_home()
        self.cell.set_pos(x=position[0], y=position[1], z=position[2])
        self.cell.set_rotation(x=rotation[0], y=rotation[1], z=rotation[2])

    def go_home(self) -> None:
        """Put the template back where its builder made it."""
        for axis, home in zip(("x", "y", "z", "somapos"), self._home):
            getattr(self.cell, axis)[...] = home

    def probe_matrices(self, positions: np.ndarray, rotations: np.ndarray,
                       probes: Sequence[Probe]) -> np.ndarray:
        """(n_cells, C, S) float64: every probe's ``get_transformation_matrix()`` stacked, per cell.

        ``C`` is the total number of probe rows (contacts, dipole components) over ``probes``.
        """
        matrices = np.zeros((len(positions), sum(self.probe_rows(probes)), self.n_segments))
        for index, (position, rotation) in enumerate(zip(positions, rotations)):  # setup only
            self.place(position, rotation)
            if probes:
                matrices[index] = np.concatenate([self._probe_matrix(probe) for probe in probes])
        self.go_home()
        return matrices

    def probe_rows(self, probes: Sequence[Probe]) -> list[int]:
        """Number of output rows of every probe."""
        return [self._probe_matrix(probe).shape[0] for probe in probes]

    def _probe_matrix(self, probe: Probe) -> np.ndarray:
        matrix = np.asarray(probe.probe_class(self.cell, **probe.kwargs).get_transformation_matrix())
        if matrix.ndim != 2 or matrix.shape[1] != self.n_segments:
            raise ValueError(f"Probe {probe.name!r}: {probe.probe_class.__name__}'s transformation "
                             f"matrix has shape {matrix.shape}; expected (rows, {self.n_segments}).")
        return matrix

    def lfp_matrices(self, positions: np.ndarray, rotations: np.ndarray, probes: Sequence[Probe],
                     dtype: torch.dtype, device: torch.device) -> torch.Tensor:
        """(C, n_cells * S): probe matrix @ vmem -> imem matrix of every cell, side by side.

        ``lfp = matrices @ (vmem - c).ravel()`` for cells' voltages (n_cells, S): one product
        for a whole population. Any constant ``c`` may be subtracted first (imem of a uniform
        voltage is zero), which keeps the sums accurate.
        """
        per_cell = self.probe_matrices(positions, rotations, probes) @ self.vmem_to_imem
        n_cells, n_rows, n_segments = per_cell.shape
        flat = np.ascontiguousarray(per_cell.transpose(1, 0, 2).reshape(n_rows, n_cells * n_segments))
        return torch.as_tensor(flat, dtype=dtype, device=device)


class TemplateCache:
    """Templates by (model, cell arguments): populations of one cell share one template."""

    def __init__(self):
        self._templates: dict[tuple, CellTemplate] = {}

    def get(self, population: Population) -> CellTemplate:
        """The template of ``population``'s cells (built on first use)."""
        key = (str(resolve_model(population.model)), json.dumps(population.cell_kwargs, sort_keys=True,
                                                                default=str))
        if key not in self._templates:
            self._templates[key] = CellTemplate(population.model, dict(population.cell_kwargs),
                                                f"Population {population.name!r}")
        return self._templates[key]

    def values(self) -> list[CellTemplate]:
        """All templates built so far."""
        return list(self._templates.values())
