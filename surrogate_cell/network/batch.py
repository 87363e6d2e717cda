"""One batch: this process's cells of all populations that share one model.

A :class:`ModelBatch` owns the batch's stepper (from :func:`~surrogate_cell.engine.make_stepper`,
all cells in one batch), its spike detector, its ring buffer of delayed events, its drive schedule and, per
population, the matrix that maps all cells' voltages to the population's probe signals.
Rows of the batch are the populations' local cells one population after the other.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from surrogate_cell.engine import make_stepper
from surrogate_cell.network.config import Population, Probe
from surrogate_cell.network.connectivity import ConnectionTable, PopulationSpan
from surrogate_cell.network.delivery import SpikeDelivery
from surrogate_cell.network.drive import DriveSchedule, DriveSource
from surrogate_cell.network.templates import CellTemplate
from surrogate_cell.spikes import SpikeDetector


@dataclass
class BatchMember:
    """One population inside a batch: its local cells (population indices) are rows ``rows``."""

    population: Population
    template: CellTemplate
    span: PopulationSpan
    local_cells: range
    rows: slice

    @property
    def local_gids(self) -> np.ndarray:
        """Global ids of the local cells."""
        return self.span.first_gid + np.arange(self.local_cells.start, self.local_cells.stop)

    @property
    def spike_threshold_mv(self) -> float:
        """The population's threshold, else the checkpoint's."""
        threshold = self.population.spike_threshold_mv
        return self.template.spike_threshold_mv if threshold is None else float(threshold)


class ModelBatch:
    """Steps, detects spikes of, and delivers events to the local cells of one model's populations."""

    def __init__(self, members: list[BatchMember], synapses: ConnectionTable, n_gids: int,
                 drive_sources: list[DriveSource], probes: list[Probe], seed: int,
                 device: torch.device, dtype: torch.dtype):
        self.members, self.device, self.dtype = members, device, dtype
        self.template = members[0].template
        self.n_rows = sum(len(member.local_cells) for member in members)
        self.local_gids = np.concatenate([member.local_gids for member in members])
        self.stepper = (make_stepper(self.template.model, self.template.normalisation, self.n_rows,
                                     device, dtype) if self.n_rows else None)
        self.detector = SpikeDetector(self._per_row(lambda m: m.spike_threshold_mv),
                                      self._per_row(lambda m: m.population.spike_refractory_ms), device)
        row_of_gid = np.full(n_gids, -1, dtype=np.int64)
        row_of_gid[self.local_gids] = np.arange(self.n_rows)
        self.delivery = SpikeDelivery(synapses, row_of_gid, n_gids, self.n_rows,
                                      self.template.n_event_channels, device)
        self.drive = DriveSchedule(drive_sources, seed, device)
        self.lfp_matrices = [self._lfp_matrix(member, probes) for member in members]
        self.voltages = torch.zeros(self.n_rows, self.template.n_segments, device=device)

    def _per_row(self, value_of) -> np.ndarray:
        return np.concatenate([np.full(len(member.local_cells), value_of(member), dtype=float)
                               for member in self.members])

    def _lfp_matrix(self, member: BatchMember, probes: list[Probe]) -> torch.Tensor:
        cells = slice(member.local_cells.start, member.local_cells.stop)
        return member.template.lfp_matrices(member.population.positions[cells],
                                            member.population.rotations[cells], probes,
                                            torch.float64, self.device)

    def reset(self, history_mv: np.ndarray, history_events: np.ndarray) -> None:
        """Start from histories (1 or n_rows, W, S) mV and (1 or n_rows, W, E) events."""
        self.delivery.reset()
        if not self.n_rows:
            return
        self.stepper.reset(torch.as_tensor(history_mv, dtype=self.dtype, device=self.device),
                           torch.as_tensor(history_events, dtype=self.dtype, device=self.device))
        start = torch.as_tensor(history_mv[:, -1, :], dtype=torch.float32, device=self.device)
        self.voltages = start.expand(self.n_rows, -1).clone()
        self.detector.reset(self.voltages[:, self.template.soma_segment])

    def step(self, t: int) -> torch.Tensor:
        """Events of bin ``t`` (delivered spikes and drive) in, voltages (n_rows, S) at ``t+1`` out."""
        rows, channels = self.drive.events_at(t)
        self.last_events = self.delivery.take(t, rows, channels, self.dtype)
        if self.n_rows:
            self.voltages = self.stepper.step(self.last_events).float()
        return self.voltages

    def detect(self, t: int) -> torch.Tensor:
        """Spike times (n_rows,) in ``(t, t+1]``, NaN where none, from the latest voltages."""
        return self.detector.detect(self.voltages[:, self.template.soma_segment], t)

    def member_lfp(self, index: int) -> torch.Tensor:
        """Population ``index``'s probe signals (C,) summed over its local cells, at the latest step."""
        member = self.members[index]
        # float64: the sum over cells and segments cancels heavily (imem sums to zero per cell)
        voltages = self.voltages[member.rows].double() - member.template.v_init
        return self.lfp_matrices[index] @ voltages.reshape(-1)

    def member_events(self, index: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(rows within the population's local cells, channels) of the events of the latest step."""
        rows, channels = torch.nonzero(self.last_events[self.members[index].rows], as_tuple=True)
        return rows, channels


def member_history(member: BatchMember, history_mv: np.ndarray | None,
                   history_events: np.ndarray | None) -> tuple[np.ndarray, np.ndarray]:
    """A population's start: ((1 or n_local, W, S) mV, (1 or n_local, W, E)); rest where not given.

    ``history_mv`` is (S, >= W) for all cells or (n_cells, S, >= W) per cell (last column at
    t = 0); ``history_events`` likewise with E rows.
    """
    template = member.template
    rest_mv, rest_events = template.resting_history()
    mv = _window(member, history_mv, template.n_segments, "history_mv", rest_mv)
    events = _window(member, history_events, template.n_event_channels, "history_events", rest_events)
    return mv.transpose(0, 2, 1), events.transpose(0, 2, 1)


def _window(member: BatchMember, given: np.ndarray | None, n_rows: int, name: str,
            rest: np.ndarray) -> np.ndarray:
    if given is None:
        return rest[None]
    array = np.asarray(given, dtype=float)
    window = member.template.window_ms
    n_cells = member.population.n_cells
    label = f"{name} of population {member.population.name!r}"
    if array.ndim == 2:
        array = array[None]
    elif array.ndim != 3 or array.shape[0] != n_cells:
        raise ValueError(f"{label} must be ({n_rows}, >= {window}) or ({n_cells}, {n_rows}, >= {window}), "
                         f"got {np.shape(given)}.")
    else:
        array = array[member.local_cells.start:member.local_cells.stop]
    if array.shape[1] != n_rows or array.shape[2] < window or not np.isfinite(array).all():
        raise ValueError(f"{label} must have {n_rows} rows and >= {window} finite columns (ms, the "
                         f"last at t = 0), got {np.shape(given)}.")
    return array[:, :, -window:]


def batch_history(members: list[BatchMember], histories: list[tuple[np.ndarray, np.ndarray]]):
    """Join the members' histories into the batch's: shared (1, ...) when all are one and the same."""
    first_mv, first_events = histories[0]
    if all(mv.shape[0] == 1 and np.array_equal(mv, first_mv) and np.array_equal(ev, first_events)
           for mv, ev in histories):
        return first_mv, first_events
    sizes = [len(member.local_cells) for member in members]
    return tuple(np.concatenate([np.broadcast_to(h[k], (size, *h[k].shape[1:]))
                                 for h, size in zip(histories, sizes)]) for k in range(2))
