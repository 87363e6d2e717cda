"""Training input that spans the cell's input space: a mixture of input families.

The ``published`` and ``poisson`` regimes (:mod:`surrogate_cell.data.inputs`) drive one
``AMPANMDA`` and one ``GABAA`` synapse per dendritic segment with binary events on a 1 ms grid.
The ``mixture`` regime defined here draws, per simulation, one *input family* and builds a
:class:`Stimulus`: any number of synapses of the four supported mechanisms on any segment
(soma included) with their own weights and kinetics, events at sub-ms times, and a current
injected into the soma. It is what a user's LFPy script gives a cell, and what a surrogate fed
with synaptic conductances (:mod:`surrogate_cell.synapses`) must learn from.

Families (:data:`FAMILIES`; the proportions are :class:`MixtureInputConfig` fields):

``rest``
    No input at all: the cell relaxes to and stays at rest.
``poisson``
    Stationary Poisson input from well below to well above the published mean rates
    (scale log-uniform in ``poisson_scale_range``), with an E/I ratio log-uniform in
    ``inhibition_ratio_range``.
``modulated``
    The same rates multiplied by a common time course: a sinusoid (``modulation_hz_range``,
    oscillations from slow waves to gamma), a ramp between two levels, or on/off periods
    (quiet stretches between bursts of input).
``published``
    The statistics of the published data set (:class:`~surrogate_cell.data.inputs.PublishedInputConfig`),
    each event moved to a uniform time within its ms.
``volleys``
    A weak background plus brief synchronous volleys on one dendritic domain (tuft,
    trunk/oblique, basal or perisomatic), excitatory or inhibitory, or a BAC pair: a
    perisomatic volley or a somatic current pulse followed within 0-15 ms by a tuft volley.
``current``
    Background input plus a somatic current: steps, noise (Ornstein-Uhlenbeck) or brief pulses.

In every family but ``rest``, with probability ``extra_probability``, an extra population of
``ExpSyn``/``Exp2Syn`` synapses (a handful to a few dozen, on random segments, soma included)
with their own kinetics and weights of 0.5-20 nS receives Poisson input or volleys, as the
synapses of LFPy's examples do. The base synapses' weights are scaled per simulation and jittered
per synapse.

Everything here is numpy; :class:`~surrogate_cell.data.simulation.CellSimulator` runs a
:class:`Stimulus` in NEURON.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping
from dataclasses import dataclass
from typing import ClassVar

import numpy as np
from scipy.signal import lfilter

from surrogate_cell.data.inputs import (
    PublishedInputConfig,
    _as_float,
    _as_float_tuple,
    draw_inputs,
)
from surrogate_cell.synapses import (
    DRIVE_MECHANISMS,
    DriveSynapses,
    bin_mean_conductance,
    drive_channels,
    synapse_kinetics,
)

MECHANISMS = DRIVE_MECHANISMS
"""Synapse mechanisms a :class:`Stimulus` may use, by their index in ``synapse_mechanism``."""

FAMILIES = ("rest", "poisson", "modulated", "published", "volleys", "current")
"""Input families of the ``mixture`` regime."""

DOMAINS = ("tuft", "trunk", "basal", "perisomatic")
"""Dendritic domains of volleys: apical beyond ``tuft_min_distance_um``, the rest of the apical
tree (trunk and obliques), basal dendrites, and the soma with everything within
``perisomatic_max_distance_um``."""

AMPANMDA, GABAA, EXPSYN, EXP2SYN = range(4)


# --------------------------------------------------------------------------- the stimulus


@dataclass
class Stimulus:
    """Everything that drives one simulation: synapses, their events and the somatic current.

    Synapse ``s`` is a ``MECHANISMS[synapse_mechanism[s]]`` point process on segment
    ``synapse_segment[s]`` fed by one NetCon of weight ``synapse_weight[s]``; ``ExpSyn`` uses
    ``synapse_tau_decay`` as ``tau``, ``Exp2Syn`` ``synapse_tau_rise``/``synapse_tau_decay`` as
    ``tau1``/``tau2``, both ``synapse_e`` as ``e``; ``AMPANMDA`` and ``GABAA`` keep their
    mechanism's parameters (their rows hold NaN there). Event ``k`` reaches synapse
    ``event_synapse[k]`` at ``event_time_ms[k]`` (sorted). ``soma_current_na[t]`` is the current
    (nA) injected into the soma during ``[t, t + 1)`` ms. ``family`` names the input family.
    """

    synapse_segment: np.ndarray
    synapse_mechanism: np.ndarray
    synapse_weight: np.ndarray
    synapse_tau_rise: np.ndarray
    synapse_tau_decay: np.ndarray
    synapse_e: np.ndarray
    event_time_ms: np.ndarray
    event_synapse: np.ndarray
    soma_current_na: np.ndarray
    family: str

    ARRAYS: ClassVar[tuple[str, ...]] = (
        "synapse_segment", "synapse_mechanism", "synapse_weight", "synapse_tau_rise",
        "synapse_tau_decay", "synapse_e", "event_time_ms", "event_synapse", "soma_current_na")
    DTYPES: ClassVar[dict[str, str]] = {
        "synapse_segment": "int32", "synapse_mechanism": "int8", "synapse_weight": "float64",
        "synapse_tau_rise": "float64", "synapse_tau_decay": "float64", "synapse_e": "float64",
        "event_time_ms": "float64", "event_synapse": "int32", "soma_current_na": "float32"}

    def __post_init__(self) -> None:
        for name in self.ARRAYS:
            setattr(self, name, np.asarray(getattr(self, name), dtype=self.DTYPES[name]))
        order = np.argsort(self.event_time_ms, kind="stable")
        self.event_time_ms, self.event_synapse = self.event_time_ms[order], self.event_synapse[order]

    @property
    def n_ms(self) -> int:
        """Duration (ms) the stimulus spans."""
        return self.soma_current_na.size

    @property
    def n_synapses(self) -> int:
        """Number of synapses."""
        return self.synapse_segment.size


# --------------------------------------------------------------------------- config


@dataclass(frozen=True)
class MixtureInputConfig:
    """The ``mixture`` regime: which families, in what proportions, over which ranges.

    ``proportions`` gives the probability of each family of :data:`FAMILIES` (normalised).
    Rates are multiples of the published mean rates per synapse (12.5 Hz excitatory, 9.7 Hz
    inhibitory on average, proportional to segment length + 10 um per tree).
    """

    regime: ClassVar[str] = "mixture"

    proportions: tuple[float, ...] = (0.05, 0.2, 0.15, 0.1, 0.3, 0.2)
    poisson_scale_range: tuple[float, float] = (0.02, 4.0)
    inhibition_ratio_range: tuple[float, float] = (0.25, 2.5)
    modulation_hz_range: tuple[float, float] = (0.5, 60.0)
    background_scale_range: tuple[float, float] = (0.02, 0.6)
    volley_interval_ms_range: tuple[float, float] = (60.0, 400.0)
    volley_size_range: tuple[float, float] = (10.0, 250.0)
    volley_spread_ms_range: tuple[float, float] = (0.5, 5.0)
    bac_delay_ms_range: tuple[float, float] = (0.0, 15.0)
    current_amp_na_range: tuple[float, float] = (-0.5, 2.0)
    pulse_amp_na_range: tuple[float, float] = (0.5, 3.0)
    weight_scale_range: tuple[float, float] = (0.5, 2.0)
    weight_jitter: float = 0.3
    extra_probability: float = 0.5
    extra_count_range: tuple[float, float] = (1.0, 40.0)
    extra_weight_us_range: tuple[float, float] = (0.0005, 0.02)
    extra_rate_hz_range: tuple[float, float] = (1.0, 40.0)
    tuft_min_distance_um: float = 700.0
    perisomatic_max_distance_um: float = 150.0

    def __post_init__(self) -> None:
        for field in dataclasses.fields(self):
            value = getattr(self, field.name)
            if isinstance(field.default, tuple):
                length = len(FAMILIES) if field.name == "proportions" else 2
                value = _as_float_tuple(value, field.name, length)
                if field.name != "proportions" and value[1] < value[0]:
                    raise ValueError(f"{field.name} must be (low, high) with low <= high, got {value}")
            else:
                value = _as_float(value, field.name)
            object.__setattr__(self, field.name, value)
        if min(self.proportions) < 0 or sum(self.proportions) <= 0:
            raise ValueError(f"proportions must be >= 0 and not all 0 (one per family {list(FAMILIES)}), "
                             f"got {self.proportions}")
        if not 0 <= self.extra_probability <= 1:
            raise ValueError(f"extra_probability must be in [0, 1], got {self.extra_probability}")
        for name in ("poisson_scale_range", "inhibition_ratio_range", "modulation_hz_range",
                     "volley_interval_ms_range", "volley_size_range", "volley_spread_ms_range",
                     "weight_scale_range", "extra_count_range", "extra_weight_us_range",
                     "extra_rate_hz_range"):
            if getattr(self, name)[0] <= 0:
                raise ValueError(f"{name} must be > 0, got {getattr(self, name)}")

    def family_probabilities(self) -> np.ndarray:
        """Probability of each of :data:`FAMILIES`."""
        p = np.asarray(self.proportions, dtype=float)
        return p / p.sum()


# --------------------------------------------------------------------------- the cell as the inputs see it


@dataclass(frozen=True)
class InputGeometry:
    """Where synapses can go: every segment's section type, length and path distance from the soma.

    ``synapse_segments`` are the segments that carry the base synapses (soma and dendrites).
    """

    section_types: np.ndarray
    length_um: np.ndarray
    path_distance_um: np.ndarray
    synapse_segments: np.ndarray

    def domain(self, name: str, config: MixtureInputConfig) -> np.ndarray:
        """Positions (into ``synapse_segments``) of the segments of one of :data:`DOMAINS`."""
        types = self.section_types[self.synapse_segments]
        distance = self.path_distance_um[self.synapse_segments]
        apical = np.isin(types, ("apical", "oblique"))
        if name == "tuft":
            return np.flatnonzero((types == "apical") & (distance >= config.tuft_min_distance_um))
        if name == "trunk":
            return np.flatnonzero(apical & ~((types == "apical") & (distance >= config.tuft_min_distance_um)))
        if name == "basal":
            return np.flatnonzero(types == "basal")
        if name == "perisomatic":
            return np.flatnonzero((types == "soma") | (distance <= config.perisomatic_max_distance_um))
        raise ValueError(f"unknown domain {name!r}; valid: {list(DOMAINS)}")

    def published_rates_hz(self) -> tuple[np.ndarray, np.ndarray]:
        """Mean published excitatory/inhibitory rate (Hz) of every base synapse: 400 and 312.5
        events per 100 ms per tree (apical with obliques; the soma counts as basal), shared in
        proportion to segment length + 10 um."""
        types = self.section_types[self.synapse_segments]
        tree = np.where(np.isin(types, ("apical", "oblique")), 1, 0)
        weight = self.length_um[self.synapse_segments] + 10.0
        share = weight / np.bincount(tree, weights=weight, minlength=2)[tree]
        return 4000.0 * share, 3125.0 * share


# --------------------------------------------------------------------------- drawing


def draw_stimulus(config: MixtureInputConfig, geometry: InputGeometry, n_ms: int,
                  rng: np.random.Generator, family: str | None = None) -> Stimulus:
    """Draw the stimulus of one simulation of ``n_ms`` ms (``family`` forces one of :data:`FAMILIES`)."""
    if family is None:
        family = FAMILIES[int(rng.choice(len(FAMILIES), p=config.family_probabilities()))]
    if family not in FAMILIES:
        raise ValueError(f"unknown input family {family!r}; valid: {list(FAMILIES)}")
    builder = _Builder(config, geometry, n_ms, rng)
    if family != "rest":
        _FAMILY_DRAWS[family](builder)
        if rng.random() < config.extra_probability:
            builder.add_extra_population()
    return builder.stimulus(family)


def _log_uniform(rng: np.random.Generator, bounds: tuple[float, float], size=None):
    low, high = np.log(bounds[0]), np.log(bounds[1])
    return np.exp(rng.uniform(low, high, size))


class _Builder:
    """Collects the synapses, events and somatic current of one stimulus."""

    def __init__(self, config: MixtureInputConfig, geometry: InputGeometry, n_ms: int,
                 rng: np.random.Generator):
        self.config, self.geometry, self.n_ms, self.rng = config, geometry, int(n_ms), rng
        n_base = geometry.synapse_segments.size
        scale = _log_uniform(rng, config.weight_scale_range)
        jitter = np.exp(config.weight_jitter * rng.standard_normal(2 * n_base) - config.weight_jitter ** 2 / 2)
        nan = np.full(2 * n_base, np.nan)
        self.synapses = {
            "segment": [np.tile(geometry.synapse_segments, 2)],
            "mechanism": [np.repeat([AMPANMDA, GABAA], n_base)],
            "weight": [scale * jitter],
            "tau_rise": [nan], "tau_decay": [nan], "e": [nan],
        }
        self.n_base = n_base
        self.times: list[np.ndarray] = []
        self.targets: list[np.ndarray] = []
        self.current = np.zeros(self.n_ms, dtype=np.float32)

    # ---- events
    def exc_rows(self, positions: np.ndarray) -> np.ndarray:
        """Synapse indices of the excitatory base synapses at ``positions`` (into synapse_segments)."""
        return np.asarray(positions, dtype=np.int64)

    def inh_rows(self, positions: np.ndarray) -> np.ndarray:
        """Synapse indices of the inhibitory base synapses at ``positions``."""
        return self.n_base + np.asarray(positions, dtype=np.int64)

    def add_rate_events(self, synapses: np.ndarray, rates_hz: np.ndarray, gain: np.ndarray | None = None) -> None:
        """Poisson events of ``synapses`` at ``rates_hz`` (per synapse) times ``gain`` (per ms bin)."""
        expected = np.asarray(rates_hz, dtype=float)[:, None] * 1e-3
        expected = expected * (np.ones(self.n_ms) if gain is None else gain)[None, :]
        counts = self.rng.poisson(expected)
        rows, bins = np.nonzero(counts)
        repeat = counts[rows, bins]
        bins = np.repeat(bins, repeat)
        self.times.append(bins + self.rng.random(bins.size))
        self.targets.append(np.repeat(np.asarray(synapses)[rows], repeat))

    def add_volley(self, synapses: np.ndarray, onset_ms: float, spread_ms: float) -> None:
        """Each of ``synapses`` fires once within ``spread_ms`` of ``onset_ms``."""
        times = onset_ms + self.rng.uniform(0.0, spread_ms, np.size(synapses))
        keep = times < self.n_ms
        self.times.append(times[keep])
        self.targets.append(np.asarray(synapses)[keep])

    def background(self, scale: float) -> None:
        """Stationary Poisson input on the base synapses at ``scale`` times the published rates."""
        exc_hz, inh_hz = self.geometry.published_rates_hz()
        ratio = _log_uniform(self.rng, self.config.inhibition_ratio_range)
        positions = np.arange(self.n_base)
        self.add_rate_events(self.exc_rows(positions), scale * exc_hz)
        self.add_rate_events(self.inh_rows(positions), scale * ratio * inh_hz)

    def add_extra_population(self) -> None:
        """ExpSyn/Exp2Syn synapses on random segments with their own kinetics and weights."""
        config, rng = self.config, self.rng
        count = int(round(_log_uniform(rng, config.extra_count_range)))
        segments = rng.choice(self.geometry.synapse_segments, size=count)
        exp2 = rng.random(count) < 0.6
        inhibitory = rng.random(count) < 0.3
        tau_rise = np.where(exp2, rng.uniform(0.1, 2.0, count), 0.0)
        tau_decay = np.where(inhibitory, rng.uniform(3.0, 20.0, count), rng.uniform(1.0, 10.0, count))
        tau_decay = np.maximum(tau_decay, tau_rise + 0.5)
        e = np.where(inhibitory, rng.uniform(-85.0, -70.0, count), rng.uniform(-5.0, 5.0, count))
        first = sum(block.size for block in self.synapses["segment"])
        self._append_synapses(segments, np.where(exp2, EXP2SYN, EXPSYN),
                              _log_uniform(rng, config.extra_weight_us_range, count), tau_rise, tau_decay, e)
        rows = first + np.arange(count)
        if rng.random() < 0.5:
            self.add_rate_events(rows, _log_uniform(rng, config.extra_rate_hz_range, count))
        else:
            for onset in self.volley_onsets():
                self.add_volley(rows, onset, _log_uniform(rng, config.volley_spread_ms_range))

    def _append_synapses(self, segments, mechanisms, weights, tau_rise, tau_decay, e) -> None:
        for key, values in (("segment", segments), ("mechanism", mechanisms), ("weight", weights),
                            ("tau_rise", tau_rise), ("tau_decay", tau_decay), ("e", e)):
            self.synapses[key].append(np.asarray(values))

    def volley_onsets(self) -> np.ndarray:
        """Volley times: intervals uniform in ``volley_interval_ms_range`` from a random start."""
        low, high = self.config.volley_interval_ms_range
        onsets, t = [], self.rng.uniform(0.0, high)
        while t < self.n_ms - 5.0:
            onsets.append(t)
            t += self.rng.uniform(low, high)
        return np.asarray(onsets)

    # ---- somatic current
    def add_current(self, start_ms: float, stop_ms: float, amp_na: float) -> None:
        """A rectangular current on whole ms [start, stop)."""
        start, stop = int(max(0, np.floor(start_ms))), int(min(self.n_ms, np.ceil(stop_ms)))
        self.current[start:stop] += amp_na

    def stimulus(self, family: str) -> Stimulus:
        """The collected :class:`Stimulus`."""
        columns = {key: np.concatenate(blocks) for key, blocks in self.synapses.items()}
        times = np.concatenate(self.times) if self.times else np.empty(0)
        targets = np.concatenate(self.targets) if self.targets else np.empty(0, dtype=np.int64)
        keep = (times >= 0) & (times < self.n_ms)
        return Stimulus(
            synapse_segment=columns["segment"], synapse_mechanism=columns["mechanism"],
            synapse_weight=columns["weight"], synapse_tau_rise=columns["tau_rise"],
            synapse_tau_decay=columns["tau_decay"], synapse_e=columns["e"],
            event_time_ms=times[keep], event_synapse=targets[keep],
            soma_current_na=self.current, family=family)


def _poisson(builder: _Builder) -> None:
    builder.background(_log_uniform(builder.rng, builder.config.poisson_scale_range))


def _modulation_gain(builder: _Builder) -> np.ndarray:
    """A time course with mean about 1: sinusoid, ramp or on/off periods."""
    rng, t = builder.rng, np.arange(builder.n_ms) + 0.5
    kind = rng.integers(3)
    if kind == 0:
        frequency = _log_uniform(rng, builder.config.modulation_hz_range)
        depth = rng.uniform(0.3, 1.0)
        return 1.0 + depth * np.sin(2 * np.pi * frequency * t / 1000.0 + rng.uniform(0, 2 * np.pi))
    if kind == 1:
        start, stop = rng.uniform(0.0, 2.0, 2)
        return start + (stop - start) * t / builder.n_ms
    period = rng.uniform(100.0, 1000.0)
    duty = rng.uniform(0.2, 0.8)
    return np.where(((t / period + rng.random()) % 1.0) < duty, 1.0 / duty, 0.0)


def _modulated(builder: _Builder) -> None:
    rng = builder.rng
    exc_hz, inh_hz = builder.geometry.published_rates_hz()
    scale = _log_uniform(rng, builder.config.poisson_scale_range)
    ratio = _log_uniform(rng, builder.config.inhibition_ratio_range)
    gain = _modulation_gain(builder)
    # inhibition follows excitation, with a lag of up to a few ms (as feedback inhibition does)
    lag = int(rng.integers(0, 6))
    positions = np.arange(builder.n_base)
    builder.add_rate_events(builder.exc_rows(positions), scale * exc_hz, gain)
    builder.add_rate_events(builder.inh_rows(positions), scale * ratio * inh_hz,
                            np.concatenate([np.full(lag, gain[0]), gain[:builder.n_ms - lag]]))


def _published(builder: _Builder) -> None:
    geometry = builder.geometry
    types = geometry.section_types[geometry.synapse_segments]
    trees = np.where(np.isin(types, ("apical", "oblique")), "apical", "basal")
    drawn = draw_inputs(PublishedInputConfig(), trees, geometry.length_um[geometry.synapse_segments],
                        builder.n_ms, builder.rng)
    for events, rows in ((drawn.exc, builder.exc_rows), (drawn.inh, builder.inh_rows)):
        positions, bins = np.nonzero(events)
        builder.times.append(bins + builder.rng.random(bins.size))
        builder.targets.append(rows(positions))


def _volleys(builder: _Builder) -> None:
    config, rng = builder.config, builder.rng
    builder.background(_log_uniform(rng, config.background_scale_range))
    domains = {name: builder.geometry.domain(name, config) for name in DOMAINS}
    bac = rng.random() < 0.35
    for onset in builder.volley_onsets():
        spread = _log_uniform(rng, config.volley_spread_ms_range)
        if bac:
            _bac_pair(builder, domains, onset, spread)
            continue
        domain = domains[DOMAINS[rng.integers(len(DOMAINS))]]
        size = min(domain.size, int(round(_log_uniform(rng, config.volley_size_range))))
        chosen = rng.choice(domain, size=size, replace=False)
        rows = builder.inh_rows(chosen) if rng.random() < 0.2 else builder.exc_rows(chosen)
        builder.add_volley(rows, onset, spread)


def _bac_pair(builder: _Builder, domains: Mapping[str, np.ndarray], onset: float, spread: float) -> None:
    """A perisomatic volley or a somatic current pulse, then a tuft volley 0-15 ms later."""
    config, rng = builder.config, builder.rng
    if rng.random() < 0.5:
        builder.add_current(onset, onset + rng.uniform(2.0, 6.0), rng.uniform(*config.pulse_amp_na_range))
    else:
        peri = domains["perisomatic"]
        size = min(peri.size, int(rng.integers(40, 200)))
        builder.add_volley(builder.exc_rows(rng.choice(peri, size=size, replace=False)), onset, spread)
    tuft = domains["tuft"]
    size = min(tuft.size, int(rng.integers(10, 120)))
    builder.add_volley(builder.exc_rows(rng.choice(tuft, size=size, replace=False)),
                       onset + rng.uniform(*config.bac_delay_ms_range), spread)


def _current(builder: _Builder) -> None:
    config, rng = builder.config, builder.rng
    builder.background(_log_uniform(rng, config.background_scale_range) * rng.integers(0, 2))
    kind = rng.integers(3)
    if kind == 0:  # steps
        t = rng.uniform(0.0, 300.0)
        while t < builder.n_ms:
            duration = rng.uniform(50.0, 1000.0)
            builder.add_current(t, t + duration, rng.uniform(*config.current_amp_na_range))
            t += duration + rng.uniform(0.0, 500.0)
    elif kind == 1:  # Ornstein-Uhlenbeck noise, one value per ms
        tau = rng.uniform(2.0, 50.0)
        mean, std = rng.uniform(-0.2, 1.0), rng.uniform(0.05, 0.6)
        decay = np.exp(-1.0 / tau)
        noise = rng.standard_normal(builder.n_ms) * std * np.sqrt(1 - decay ** 2)
        builder.current += (mean + lfilter([1.0], [1.0, -decay], noise)).astype(np.float32)
    else:  # brief pulses
        for onset in builder.volley_onsets():
            builder.add_current(onset, onset + rng.uniform(1.0, 10.0), rng.uniform(*config.pulse_amp_na_range))


_FAMILY_DRAWS = {"poisson": _poisson, "modulated": _modulated, "published": _published,
                 "volleys": _volleys, "current": _current}


# --------------------------------------------------------------------------- model input


TRAINED_PARAMETERS = {
    "AMPANMDA": {"e": 0.0, "gmax_ampa": 0.0004, "gmax_nmda": 0.0004, "tau_r_ampa": 0.3, "tau_d_ampa": 3.0,
                 "tau_r_nmda": 2.0, "tau_d_nmda": 70.0, "mg": 1.0},
    "GABAA": {"e": -80.0, "gmax": 0.001, "tau_r": 0.2, "tau_d": 8.0},
}
"""Parameters of the project's AMPANMDA and GABAA synapses as their NMODL files set them (a
:class:`Stimulus` keeps them; ``tests/test_stimulus.py`` checks them against NEURON)."""


def stimulus_synapses(stimulus: Stimulus) -> DriveSynapses:
    """The :class:`~surrogate_cell.synapses.DriveSynapses` of a stimulus's synapses."""
    kinetics = {
        AMPANMDA: synapse_kinetics("AMPANMDA", TRAINED_PARAMETERS["AMPANMDA"]),
        GABAA: synapse_kinetics("GABAA", TRAINED_PARAMETERS["GABAA"]),
    }
    per_synapse = []
    for mechanism, rise, decay, e in zip(stimulus.synapse_mechanism.tolist(), stimulus.synapse_tau_rise.tolist(),
                                         stimulus.synapse_tau_decay.tolist(), stimulus.synapse_e.tolist()):
        if mechanism == EXPSYN:
            per_synapse.append(synapse_kinetics("ExpSyn", {"tau": decay, "e": e}))
        elif mechanism == EXP2SYN:
            per_synapse.append(synapse_kinetics("Exp2Syn", {"tau1": rise, "tau2": decay, "e": e}))
        else:
            per_synapse.append(kinetics[mechanism])
    return DriveSynapses.from_kinetics(stimulus.synapse_segment, per_synapse, stimulus.synapse_weight)


def stimulus_drive(stimulus: Stimulus, n_segments: int) -> np.ndarray:
    """The drive-model input of a whole stimulus, (n_ms, channels) float32
    (:func:`surrogate_cell.synapses.drive_channels`)."""
    conductance = bin_mean_conductance(stimulus_synapses(stimulus), stimulus.event_time_ms,
                                       stimulus.event_synapse, stimulus.n_ms, n_segments)
    return drive_channels(conductance, stimulus.soma_current_na)
