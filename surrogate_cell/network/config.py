"""What a network is made of: populations, connection rules, external drive, probes; and its errors.

Every piece is a small frozen dataclass that only describes; :class:`SurrogateNetwork`
(:mod:`surrogate_cell.network.network`) checks them against the models and draws what is random.
"""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from dataclasses import dataclass, field

import LFPy
import numpy as np

from surrogate_cell.cell import TRAINED_WEIGHT
from surrogate_cell.cells.layout import EVENT_KINDS
from surrogate_cell.spikes import REFRACTORY_MS

MIN_DELAY_MS = 1.0
"""Shortest synaptic delay: one model step, so a spike acts no earlier than the next step."""


class NetworkConfigError(ValueError):
    """A network description cannot be simulated as given (the message names the fix)."""


class DelayError(NetworkConfigError):
    """A connection delay is shorter than the model's 1 ms step."""


class TargetError(NetworkConfigError):
    """A connection or drive targets segments that have no model input channels."""


class PopulationMismatchError(NetworkConfigError):
    """A population's cells are not the cell its model was trained on."""


@dataclass(frozen=True, eq=False)
class Population:
    """``n_cells`` surrogate cells of one model.

    Parameters
    ----------
    name : str
        Population name, used by connections, drives and results.
    model : str or os.PathLike
        Checkpoint path or shipped model name (as for ``SurrogateCell``), e.g.
        ``"l5pc-default"``.
    n_cells : int
        Number of cells (>= 1).
    synapse_kind : {"exc", "inh"}, default "exc"
        Kind of every synapse this population's spikes activate.
    positions : array_like, shape (n_cells, 3), optional
        Soma positions (um); default zeros. Applied with LFPy's ``set_pos``.
    rotations : array_like, shape (n_cells, 3), optional
        Rotation angles about x, y, z (radians); default zeros. Applied with LFPy's
        ``set_rotation`` after ``set_pos`` (as ``LFPy.Network`` does).
    cell_kwargs : dict, optional
        Passed to the model's cell builder (e.g. ``v_init`` in mV); must give the trained cell.
    spike_threshold_mv : float, optional
        Output spikes are upward crossings of this soma voltage (mV); default: the
        checkpoint's threshold.
    spike_refractory_ms : float, default 2.0
        Minimum interval between two output spikes of a cell (ms).

    Raises
    ------
    NetworkConfigError
        For a non-positive ``n_cells``, an unknown ``synapse_kind`` or misshapen positions
        or rotations.
    """

    name: str
    model: str | os.PathLike
    n_cells: int
    synapse_kind: str = "exc"
    positions: np.ndarray | None = None
    rotations: np.ndarray | None = None
    cell_kwargs: dict = field(default_factory=dict)
    spike_threshold_mv: float | None = None
    spike_refractory_ms: float = REFRACTORY_MS

    def __post_init__(self) -> None:
        if not isinstance(self.n_cells, (int, np.integer)) or self.n_cells < 1:
            raise NetworkConfigError(f"Population {self.name!r}: n_cells must be a positive whole "
                                     f"number, got {self.n_cells!r}.")
        if self.synapse_kind not in EVENT_KINDS:
            raise NetworkConfigError(f"Population {self.name!r}: synapse_kind must be one of "
                                     f"{EVENT_KINDS}, got {self.synapse_kind!r}.")
        object.__setattr__(self, "positions", self._per_cell("positions", self.positions))
        object.__setattr__(self, "rotations", self._per_cell("rotations", self.rotations))

    def _per_cell(self, name: str, values) -> np.ndarray:
        if values is None:
            return np.zeros((self.n_cells, 3))
        array = np.asarray(values, dtype=float)
        if array.shape != (self.n_cells, 3) or not np.isfinite(array).all():
            raise NetworkConfigError(f"Population {self.name!r}: {name} must be finite numbers of "
                                     f"shape ({self.n_cells}, 3) (x, y, z per cell), got {array.shape}.")
        return array


@dataclass(frozen=True)
class Targets:
    """Where on the postsynaptic cell synapses go: section types and a path-distance range (um).

    Each synapse picks one segment among those allowed, with probability proportional to the
    segment's membrane area (as ``LFPy.Cell.get_rand_idx_area_norm``). Only segments with
    model input channels can receive synapses.

    Parameters
    ----------
    section_types : tuple of str or str, optional
        Allowed section types; default: every type on which the postsynaptic model has input
        channels (basal, apical and oblique for the L5PC; soma and basal for the basket cell).
    min_distance_um, max_distance_um : float, default 0 and inf
        Allowed range of the segment's path distance from the soma centre (um).

    Raises
    ------
    TargetError
        If ``min_distance_um > max_distance_um``.
    """

    section_types: tuple[str, ...] | None = None
    min_distance_um: float = 0.0
    max_distance_um: float = math.inf

    def __post_init__(self) -> None:
        if isinstance(self.section_types, str):
            object.__setattr__(self, "section_types", (self.section_types,))
        if not self.min_distance_um <= self.max_distance_um:
            raise TargetError(f"Targets: min_distance_um ({self.min_distance_um}) must not exceed "
                              f"max_distance_um ({self.max_distance_um}).")


@dataclass(frozen=True)
class Connection:
    """Random connections from population ``pre`` to ``post``.

    A connection is ``synapses_per_connection`` synapses of the presynaptic population's
    ``synapse_kind``, each on a segment drawn from ``targets``.

    Parameters
    ----------
    pre, post : str
        Names of the presynaptic and postsynaptic populations.
    probability : float
        Connection probability of every (pre, post) cell pair, in [0, 1].
    delay_ms : float, default 1.0
        Mean synaptic delay (ms), >= 1 ms (the model's step).
    delay_std_ms : float, default 0.0
        Standard deviation (ms) of the per-synapse normal delays; every delay is rounded to
        the 1 ms step and kept >= 1 ms.
    weight : float, default 1.0
        Must be the trained 1.0 (one activation of the trained synapse); for stronger
        connections use more synapses per connection.
    synapses_per_connection : int, default 1
        Synapses per connected pair (>= 1).
    targets : Targets, optional
        Where on the postsynaptic cell the synapses go; default every input segment.
    allow_autapses : bool, default False
        Whether a cell may connect to itself (when ``pre == post``).

    Raises
    ------
    DelayError
        For ``delay_ms < 1`` or a negative ``delay_std_ms``.
    NetworkConfigError
        For a probability outside [0, 1], another weight or a bad synapse count.
    """

    pre: str
    post: str
    probability: float
    delay_ms: float = 1.0
    delay_std_ms: float = 0.0
    weight: float = TRAINED_WEIGHT
    synapses_per_connection: int = 1
    targets: Targets = field(default_factory=Targets)
    allow_autapses: bool = False

    def __post_init__(self) -> None:
        label = f"Connection {self.pre!r} -> {self.post!r}"
        if not 0.0 <= self.probability <= 1.0:
            raise NetworkConfigError(f"{label}: probability must be in [0, 1], got {self.probability}.")
        if not self.delay_ms >= MIN_DELAY_MS:
            raise DelayError(
                f"{label}: delay_ms = {self.delay_ms} is below the model's {MIN_DELAY_MS:g} ms step; "
                f"a surrogate cannot deliver a spike within the step it was fired in. Use "
                f"delay_ms >= {MIN_DELAY_MS:g} (delays are rounded to whole ms)."
            )
        if not self.delay_std_ms >= 0.0:
            raise DelayError(f"{label}: delay_std_ms must be >= 0, got {self.delay_std_ms}.")
        if abs(float(self.weight) - TRAINED_WEIGHT) > 1e-9:
            raise NetworkConfigError(
                f"{label}: weight {self.weight} differs from the trained weight {TRAINED_WEIGHT:g}; "
                "the model knows only one activation of the trained synapse. For a stronger "
                "connection set synapses_per_connection > 1."
            )
        if int(self.synapses_per_connection) != self.synapses_per_connection or self.synapses_per_connection < 1:
            raise NetworkConfigError(f"{label}: synapses_per_connection must be a whole number >= 1, "
                                     f"got {self.synapses_per_connection}.")


@dataclass(frozen=True, eq=False)
class PoissonDrive:
    """External Poisson input to every cell of ``population``, one train per input channel.

    Events fall on a 1 ms grid; several in one bin of one channel count as one (the model was
    trained on binary events), so the effective probability per bin is
    ``1 - exp(-rate * 1 ms)``.

    Parameters
    ----------
    population : str
        Name of the driven population.
    exc_rate_hz, inh_rate_hz : float or sequence of float, default 0
        Rate (Hz, 0-1000) of the excitatory / inhibitory synapse of each input segment: one
        number for all, or one per input segment (the model's ``input_segments`` order).
    section_types : tuple of str, optional
        Restrict the drive to these section types; default all input segments.
    """

    population: str
    exc_rate_hz: float | Sequence[float] = 0.0
    inh_rate_hz: float | Sequence[float] = 0.0
    section_types: tuple[str, ...] | None = None

    def channel_rates_hz(self, n_input_segments: int, input_section_types: np.ndarray) -> np.ndarray:
        """Rate (Hz) of every model input channel: excitatory ones, then inhibitory ones.

        Parameters
        ----------
        n_input_segments : int
            Number of input segments of the population's model.
        input_section_types : ndarray of str, shape (n_input_segments,)
            Section type of every input segment.

        Returns
        -------
        ndarray, shape (2 * n_input_segments,)
            Rates (Hz); 0 outside ``section_types``.

        Raises
        ------
        TargetError
            If ``section_types`` names a type without input channels.
        NetworkConfigError
            For rates outside [0, 1000] Hz or of the wrong length.
        """
        rates = [self._per_segment(name, getattr(self, name), n_input_segments)
                 for name in ("exc_rate_hz", "inh_rate_hz")]
        if self.section_types is not None:
            unknown = sorted(set(self.section_types) - set(input_section_types.tolist()))
            if unknown:
                raise TargetError(
                    f"PoissonDrive to {self.population!r}: section types {unknown} have no model "
                    f"input channels; the model takes input on {sorted(set(input_section_types))}."
                )
            keep = np.isin(input_section_types, list(self.section_types))
            rates = [np.where(keep, rate, 0.0) for rate in rates]
        return np.concatenate(rates)

    def _per_segment(self, name: str, value, n_input_segments: int) -> np.ndarray:
        rate = np.broadcast_to(np.asarray(value, dtype=float), (n_input_segments,)) \
            if np.ndim(value) == 0 else np.asarray(value, dtype=float)
        if rate.shape != (n_input_segments,) or not np.all((rate >= 0) & (rate <= 1000.0)):
            raise NetworkConfigError(
                f"PoissonDrive to {self.population!r}: {name} must be a rate in [0, 1000] Hz or "
                f"one per input segment ({n_input_segments}), got shape {np.shape(value)}."
            )
        return rate


@dataclass(frozen=True, eq=False)
class Probe:
    """An LFPy probe, placed on every cell: ``probe_class(cell, **kwargs)``.

    Its data are the sum over cells of ``probe.get_transformation_matrix() @ imem``, per
    population and in total (mV for ``RecExtElectrode``, nA um for
    ``CurrentDipoleMoment``), sampled every 1 ms.

    Parameters
    ----------
    name : str
        Key of the probe's data in the results.
    probe_class : type, default LFPy.RecExtElectrode
        An LFPy probe class.
    kwargs : dict, optional
        Keyword arguments of ``probe_class`` (e.g. ``x``, ``y``, ``z`` in um and ``sigma``
        in S/m for ``RecExtElectrode``).

    Examples
    --------
    >>> Probe("lfp", LFPy.RecExtElectrode, dict(x=[0, 0], y=[0, 0], z=[0, 500], sigma=0.3))  # doctest: +SKIP
    >>> Probe("dipole", LFPy.CurrentDipoleMoment)  # doctest: +SKIP
    """

    name: str
    probe_class: type = LFPy.RecExtElectrode
    kwargs: dict = field(default_factory=dict)
