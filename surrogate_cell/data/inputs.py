"""Synaptic input spike trains for the training-data simulations.

Each synapse-carrying (dendritic) segment holds one excitatory and one inhibitory
synapse. This module draws, for every segment, binary event trains on a 1 ms grid:
``exc[i, t]`` is True when the excitatory synapse of segment ``i`` receives an event
in the bin ``[t, t + 1)`` ms. Events are delivered at the bin start (integer ms, no
sub-ms jitter), so that re-binning spike times at 1 ms recovers the matrix exactly.

Two regimes are available:

``published`` (default)
    The input statistics of the published training data set (Hay et al. 2011 cell,
    NeuronIO data), see :class:`PublishedInputConfig` for the interpretation.
``poisson``
    Stationary Bernoulli/Poisson trains with fixed per-synapse rates, used to test
    how a surrogate generalises to input statistics it was not trained on; see
    :class:`PoissonInputConfig`.

Everything here is pure numpy/scipy; the simulator only consumes the result.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.ndimage import gaussian_filter1d

from surrogate_cell.config import dataclass_from_mapping

TREES: tuple[str, ...] = ("basal", "apical")
"""Dendritic trees, in the order used for the per-tree rows of diagnostics arrays."""


# --------------------------------------------------------------------------- configs


def _as_float(value, name: str) -> float:
    """Convert a scalar config value to float, naming the field on failure."""
    try:
        return float(value)
    except (TypeError, ValueError) as err:
        raise ValueError(f"{name} must be a number, got {value!r}") from err


def _as_float_tuple(value, name: str, length: int | None = None) -> tuple[float, ...]:
    """Convert a list-like config value to a tuple of floats, checking its length."""
    if isinstance(value, (str, bytes)) or not isinstance(value, Sequence | np.ndarray):
        raise ValueError(f"{name} must be a list of numbers, got {value!r}")
    result = tuple(_as_float(v, name) for v in value)
    if length is not None and len(result) != length:
        raise ValueError(f"{name} must have {length} values, got {len(result)}")
    if not result:
        raise ValueError(f"{name} must not be empty")
    return result


def _check_range(value: tuple[float, float], name: str, low_min: float, strict: bool) -> None:
    """Check that ``value`` is an ordered (low, high) pair with low >= (or >) low_min."""
    low, high = value
    if (low <= low_min) if strict else (low < low_min):
        raise ValueError(f"{name} lower bound must be {'>' if strict else '>='} {low_min}, got {low}")
    if high < low:
        raise ValueError(f"{name} must be (low, high) with low <= high, got {value}")


@dataclass(frozen=True)
class PublishedInputConfig:
    """Input statistics of the published data set (the default regime).

    Interpretation of the published description, per simulation:

    1. **Intervals.** One interval length is drawn per simulation: a uniform choice
       from ``interval_choices_ms`` plus uniform jitter in
       ``[-interval_jitter_ms, +interval_jitter_ms]``, floored at ``min_interval_ms``.
       The duration is cut into consecutive intervals of that (real-valued) length;
       the 1 ms bin starting at ``t`` belongs to interval ``floor(t / length)``.
    2. **Tree totals.** Per interval and per tree (basal, apical, independently) the
       excitatory total, in spikes per 100 ms summed over the tree, is uniform in
       ``exc_per_100ms_range``; the inhibitory total is uniform in
       ``[max(0, exc - inh_offset_below), exc + inh_offset_above]``.
    3. **Spatial spread.** A tree's total is shared among its segments in proportion to
       ``(length_um + segment_length_offset_um) * factor``, where ``factor`` is uniform
       in ``segment_factor_range``, drawn once per simulation, per segment and per
       kind (excitatory, inhibitory). Dividing by 100 gives each segment's expected
       events per 1 ms bin, piecewise constant in time.
    4. **Smoothing.** The rates are smoothed in time by a Gaussian whose sigma is one
       choice from ``smoothing_sigma_choices_ms`` plus uniform jitter of
       ``+-smoothing_jitter_ms`` (floored at ``min_smoothing_sigma_ms``), one sigma per
       simulation; the edges are extended with the nearest value.
    5. **Events.** For every bin a probability ``p`` is drawn from an exponential
       distribution whose mean is the smoothed rate, clipped to [0, 1], and the bin
       holds an event with probability ``p``. Since the rates are far below one event
       per ms, the expected event count per bin equals the smoothed rate.
    """

    regime: ClassVar[str] = "published"

    interval_choices_ms: tuple[float, ...] = (
        25, 30, 35, 40, 45, 55, 60, 65, 70, 75, 80, 85, 90, 100, 150, 200, 300, 450,
    )
    interval_jitter_ms: float = 20.0
    min_interval_ms: float = 1.0
    exc_per_100ms_range: tuple[float, float] = (0.0, 800.0)
    inh_offset_below: float = 600.0
    inh_offset_above: float = 200.0
    segment_length_offset_um: float = 10.0
    segment_factor_range: tuple[float, float] = (0.5, 1.5)
    smoothing_sigma_choices_ms: tuple[float, ...] = (
        25, 30, 35, 40, 50, 60, 80, 100, 150, 200, 300, 400, 500, 600,
    )
    smoothing_jitter_ms: float = 20.0
    min_smoothing_sigma_ms: float = 1.0

    def __post_init__(self) -> None:
        _coerce_fields(self)
        for name in ("interval_choices_ms", "smoothing_sigma_choices_ms"):
            if min(getattr(self, name)) <= 0:
                raise ValueError(f"{name} must all be > 0, got {getattr(self, name)}")
        for name in ("interval_jitter_ms", "smoothing_jitter_ms", "inh_offset_below",
                     "inh_offset_above", "segment_length_offset_um"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")
        for name in ("min_interval_ms", "min_smoothing_sigma_ms"):
            if getattr(self, name) <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")
        _check_range(self.exc_per_100ms_range, "exc_per_100ms_range", 0.0, strict=False)
        _check_range(self.segment_factor_range, "segment_factor_range", 0.0, strict=True)


@dataclass(frozen=True)
class PoissonInputConfig:
    """Stationary Poisson input (for testing generalisation).

    Every excitatory synapse receives events at ``exc_rate_hz`` and every inhibitory
    synapse at ``inh_rate_hz``, independently per 1 ms bin with probability
    ``rate_hz * 1e-3`` (Bernoulli approximation of a Poisson process).

    The defaults match the published regime's mean input to the whole cell: there, each
    tree receives on average 400 excitatory and 312.5 inhibitory spikes per 100 ms,
    i.e. 8000 Hz and 6250 Hz over both trees; spread over the 639 dendritic segments
    of the reference cell this is about 12.5 Hz and 9.8 Hz per synapse.
    """

    regime: ClassVar[str] = "poisson"

    exc_rate_hz: float = 12.5
    inh_rate_hz: float = 10.0

    def __post_init__(self) -> None:
        _coerce_fields(self)
        for name in ("exc_rate_hz", "inh_rate_hz"):
            rate = getattr(self, name)
            if not 0.0 <= rate <= 1000.0:
                raise ValueError(f"{name} must be in [0, 1000] Hz (at most one event per ms), got {rate}")


InputConfig = PublishedInputConfig | PoissonInputConfig
"""Any synaptic input configuration."""

_REGIMES: dict[str, type] = {cls.regime: cls for cls in (PublishedInputConfig, PoissonInputConfig)}

_RANGE_FIELDS = ("exc_per_100ms_range", "segment_factor_range")


def _coerce_fields(config) -> None:
    """Convert YAML-style values (ints, lists) of a frozen config to floats/tuples."""
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        if isinstance(field.default, tuple):
            length = 2 if field.name in _RANGE_FIELDS else None
            value = _as_float_tuple(value, field.name, length)
        else:
            value = _as_float(value, field.name)
        object.__setattr__(config, field.name, value)


def input_config_from_dict(d: Mapping) -> InputConfig:
    """Build an input config from ``{"regime": "published" | "poisson", **fields}``.

    A missing ``regime`` means ``"published"``; missing fields take their defaults.
    Raises ValueError naming an unknown regime or unknown fields and the valid ones.
    """
    if not isinstance(d, Mapping):
        raise ValueError(f"input config must be a mapping, got {type(d).__name__}")
    fields = dict(d)
    regime = fields.pop("regime", PublishedInputConfig.regime)
    cls = _REGIMES.get(regime)
    if cls is None:
        raise ValueError(f"unknown input regime {regime!r}; valid regimes: {sorted(_REGIMES)}")
    return dataclass_from_mapping(cls, fields, f"input regime {regime!r}", ValueError, "field")


def input_config_to_dict(config: InputConfig) -> dict:
    """Plain-data form of a config (with ``regime``), the inverse of
    :func:`input_config_from_dict`; suitable for YAML or HDF5 attributes."""
    d = {"regime": config.regime}
    for field in dataclasses.fields(config):
        value = getattr(config, field.name)
        d[field.name] = list(value) if isinstance(value, tuple) else value
    return d


# --------------------------------------------------------------------------- drawing


@dataclass
class SynapticInput:
    """Drawn input of one simulation on a 1 ms grid.

    ``exc`` and ``inh`` are bool arrays of shape (n_segments, n_ms); entry ``[i, t]``
    is an event on segment ``i``'s synapse at time ``t`` ms. ``exc_rate`` and
    ``inh_rate`` (float32, same shape) are the expected events per bin that the events
    were drawn from. The remaining fields are diagnostics of the published regime
    (None for the Poisson regime): the interval length and smoothing sigma in ms and
    the per-interval tree totals in spikes per 100 ms, shape (len(TREES), n_intervals).
    """

    exc: np.ndarray
    inh: np.ndarray
    exc_rate: np.ndarray
    inh_rate: np.ndarray
    interval_ms: float | None = None
    smoothing_sigma_ms: float | None = None
    exc_totals: np.ndarray | None = None
    inh_totals: np.ndarray | None = None

    @property
    def n_segments(self) -> int:
        """Number of synapse-carrying segments."""
        return self.exc.shape[0]

    @property
    def n_ms(self) -> int:
        """Number of 1 ms bins."""
        return self.exc.shape[1]


def draw_inputs(
    config: InputConfig,
    trees: Sequence[str],
    lengths_um: Sequence[float] | np.ndarray,
    duration_ms: float,
    rng: np.random.Generator,
) -> SynapticInput:
    """Draw the synaptic input of one simulation.

    ``trees[i]`` ("basal" or "apical") and ``lengths_um[i]`` describe synapse-carrying
    segment ``i``; ``duration_ms`` must be a whole number of ms; all randomness comes
    from ``rng``, so the same seed gives the same input.
    """
    tree_idx = _tree_indices(trees)
    lengths = _check_lengths(lengths_um, len(tree_idx))
    n_ms = _check_duration(duration_ms)
    if isinstance(config, PublishedInputConfig):
        return _draw_published(config, tree_idx, lengths, n_ms, rng)
    if isinstance(config, PoissonInputConfig):
        return _draw_poisson(config, len(tree_idx), n_ms, rng)
    raise TypeError(f"unsupported input config type {type(config).__name__}")


def _tree_indices(trees: Sequence[str]) -> np.ndarray:
    """Map tree names to row indices into TREES, rejecting unknown names."""
    names = np.asarray(trees, dtype=str).reshape(-1)
    unknown = sorted(set(names.tolist()) - set(TREES))
    if unknown:
        raise ValueError(f"unknown tree name(s) {unknown}; valid trees: {list(TREES)}")
    idx = np.zeros(names.shape, dtype=np.intp)
    for i, name in enumerate(TREES):
        idx[names == name] = i
    return idx


def _check_lengths(lengths_um, n_segments: int) -> np.ndarray:
    """Validate segment lengths: one finite, positive value per segment."""
    lengths = np.asarray(lengths_um, dtype=float).reshape(-1)
    if lengths.shape != (n_segments,):
        raise ValueError(f"got {lengths.size} lengths for {n_segments} segments")
    if not np.all(np.isfinite(lengths) & (lengths > 0)):
        raise ValueError("segment lengths must be finite and > 0 um")
    return lengths


def _check_duration(duration_ms: float) -> int:
    """Number of 1 ms bins; the duration must be a positive whole number of ms."""
    n_ms = int(round(float(duration_ms)))
    if n_ms < 1 or abs(n_ms - float(duration_ms)) > 1e-9:
        raise ValueError(f"duration_ms must be a positive whole number of ms, got {duration_ms}")
    return n_ms


def _draw_published(
    config: PublishedInputConfig,
    tree_idx: np.ndarray,
    lengths: np.ndarray,
    n_ms: int,
    rng: np.random.Generator,
) -> SynapticInput:
    """Published regime; see :class:`PublishedInputConfig`."""
    interval_ms = _draw_jittered_choice(
        config.interval_choices_ms, config.interval_jitter_ms, config.min_interval_ms, rng)
    sigma_ms = _draw_jittered_choice(
        config.smoothing_sigma_choices_ms, config.smoothing_jitter_ms,
        config.min_smoothing_sigma_ms, rng)
    interval_of_bin = (np.arange(n_ms) // interval_ms).astype(np.intp)
    exc_totals, inh_totals = _draw_tree_totals(config, interval_of_bin[-1] + 1, rng)
    exc_share = _segment_shares(config, tree_idx, lengths, rng)
    inh_share = _segment_shares(config, tree_idx, lengths, rng)
    # Smoothing is linear and a segment's share is constant in time, so smoothing the
    # per-tree totals and then scaling equals smoothing every segment's rate, at a
    # fraction of the cost.
    tree_rates = np.stack([exc_totals, inh_totals])[:, :, interval_of_bin] / 100.0
    tree_rates = gaussian_filter1d(tree_rates, sigma_ms, axis=-1, mode="nearest")
    exc_rate = _segment_rates(tree_rates[0], tree_idx, exc_share)
    inh_rate = _segment_rates(tree_rates[1], tree_idx, inh_share)
    return SynapticInput(
        exc=_exponential_bernoulli(exc_rate, rng),
        inh=_exponential_bernoulli(inh_rate, rng),
        exc_rate=exc_rate,
        inh_rate=inh_rate,
        interval_ms=interval_ms,
        smoothing_sigma_ms=sigma_ms,
        exc_totals=exc_totals,
        inh_totals=inh_totals,
    )


def _draw_jittered_choice(
    choices: tuple[float, ...], jitter: float, minimum: float, rng: np.random.Generator
) -> float:
    """A uniform choice from ``choices`` plus uniform jitter in [-jitter, jitter]."""
    value = rng.choice(np.asarray(choices)) + rng.uniform(-jitter, jitter)
    return float(max(value, minimum))


def _draw_tree_totals(
    config: PublishedInputConfig, n_intervals: int, rng: np.random.Generator
) -> tuple[np.ndarray, np.ndarray]:
    """Excitatory and inhibitory totals (spikes per 100 ms per tree), each of shape
    (len(TREES), n_intervals)."""
    low, high = config.exc_per_100ms_range
    exc = rng.uniform(low, high, size=(len(TREES), n_intervals))
    inh_low = np.maximum(0.0, exc - config.inh_offset_below)
    inh = rng.uniform(inh_low, exc + config.inh_offset_above)
    return exc, inh


def _segment_shares(
    config: PublishedInputConfig,
    tree_idx: np.ndarray,
    lengths: np.ndarray,
    rng: np.random.Generator,
) -> np.ndarray:
    """Fraction of its tree's total that each segment receives (sums to 1 per tree)."""
    factor = rng.uniform(*config.segment_factor_range, size=lengths.shape)
    weight = (lengths + config.segment_length_offset_um) * factor
    tree_sum = np.bincount(tree_idx, weights=weight, minlength=len(TREES))
    return weight / tree_sum[tree_idx]


def _segment_rates(tree_rates: np.ndarray, tree_idx: np.ndarray, share: np.ndarray) -> np.ndarray:
    """Per-segment expected events per ms (float32, (n_segments, n_ms)) from the
    per-tree rates (len(TREES), n_ms) and the segments' shares."""
    rates = tree_rates.astype(np.float32)[tree_idx]
    rates *= share.astype(np.float32)[:, None]
    return rates


def _exponential_bernoulli(rate: np.ndarray, rng: np.random.Generator) -> np.ndarray:
    """Events where a uniform draw falls below p ~ Exponential(mean=rate), p <= 1."""
    p = rng.standard_exponential(rate.shape, dtype=np.float32)
    p *= rate
    np.minimum(p, 1.0, out=p)
    return rng.random(rate.shape, dtype=np.float32) < p


def _draw_poisson(
    config: PoissonInputConfig, n_segments: int, n_ms: int, rng: np.random.Generator
) -> SynapticInput:
    """Poisson regime; see :class:`PoissonInputConfig`."""
    shape = (n_segments, n_ms)
    exc_rate = np.full(shape, config.exc_rate_hz * 1e-3, dtype=np.float32)
    inh_rate = np.full(shape, config.inh_rate_hz * 1e-3, dtype=np.float32)
    return SynapticInput(
        exc=rng.random(shape) < config.exc_rate_hz * 1e-3,
        inh=rng.random(shape) < config.inh_rate_hz * 1e-3,
        exc_rate=exc_rate,
        inh_rate=inh_rate,
    )


# --------------------------------------------------------------------------- formats


def events_to_spike_times(matrix: np.ndarray) -> list[np.ndarray]:
    """Event times (ms, float64, ascending) per row of a bool (n_rows, n_ms) matrix.

    An event in bin ``t`` is placed at the bin start, ``t`` ms, with no sub-ms jitter,
    so that binning the times at 1 ms recovers the matrix exactly.
    """
    matrix = np.asarray(matrix, dtype=bool)
    if matrix.ndim != 2:
        raise ValueError(f"event matrix must be 2-D (n_rows, n_ms), got shape {matrix.shape}")
    if matrix.shape[0] == 0:
        return []
    rows, cols = np.nonzero(matrix)
    splits = np.cumsum(np.bincount(rows, minlength=matrix.shape[0]))[:-1]
    return np.split(cols.astype(np.float64), splits)


def spike_times_to_events(spike_times: Sequence[np.ndarray], n_ms: int) -> np.ndarray:
    """Bool (len(spike_times), n_ms) matrix with an event in bin ``floor(t)`` for every
    time ``t`` (ms); the inverse of :func:`events_to_spike_times`.

    Several times in one bin collapse into one event. Times outside [0, n_ms) raise
    ValueError.
    """
    matrix = np.zeros((len(spike_times), int(n_ms)), dtype=bool)
    for row, times in enumerate(spike_times):
        bins = np.floor(np.asarray(times, dtype=float)).astype(np.intp)
        if bins.size and (bins.min() < 0 or bins.max() >= n_ms):
            raise ValueError(f"spike times of row {row} fall outside [0, {n_ms}) ms")
        matrix[row, bins] = True
    return matrix


def pack_events(matrix: np.ndarray) -> np.ndarray:
    """Compact uint8 form of a bool (n_rows, n_ms) event matrix: 8 bins per byte along
    time (np.packbits), e.g. for HDF5 storage. Undo with :func:`unpack_events`."""
    matrix = np.asarray(matrix, dtype=bool)
    if matrix.ndim != 2:
        raise ValueError(f"event matrix must be 2-D (n_rows, n_ms), got shape {matrix.shape}")
    return np.packbits(matrix, axis=1)


def unpack_events(packed: np.ndarray, n_ms: int) -> np.ndarray:
    """Bool (n_rows, n_ms) event matrix from the output of :func:`pack_events`."""
    packed = np.asarray(packed, dtype=np.uint8)
    if packed.ndim != 2 or not 0 <= n_ms <= 8 * packed.shape[1]:
        raise ValueError(f"cannot unpack {n_ms} bins from packed shape {packed.shape}")
    return np.unpackbits(packed, axis=1, count=int(n_ms)).astype(bool)
