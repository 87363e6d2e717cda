"""Synaptic conductances and currents from spike times, as NEURON's point processes compute them.

A surrogate predicts segment voltages, not synaptic states; a synapse's current
``i = g (v - e)`` follows from its spike times, its kinetics and the voltage of its segment.
Every supported synapse is a sum of dual-exponential conductances: an event of weight ``w``
adds ``w f`` to a rise state ``A`` (time constant ``tau_rise``) and a decay state ``B``
(``tau_decay``), and ``g = gmax (B - A)`` (``f`` normalises the peak of ``B - A`` to 1; a
single exponential has no rise state and ``f = 1``). The NMDA part of ``AMPANMDA`` is scaled
by its Mg2+ block at the segment's voltage.

Mechanisms: the project's ``AMPANMDA`` and ``GABAA`` (``surrogate_cell/cells/nmodl``), and
NEURON's built-in ``ExpSyn`` and ``Exp2Syn``, with their parameters as the synapse sets them.

The *conductance drive* is an input representation for surrogate models: every segment's
synaptic conductance per receptor class (:data:`RECEPTORS`; NMDA unblocked) as its exact mean
over each 1 ms bin ``[k, k + 1)`` ms, for any weights, event times and synapses per segment
(:class:`DriveSynapses`, :class:`ConductanceDrive` block by block, :func:`bin_mean_conductance`
in one go); :func:`bin_mean_current` gives the same bin means of ``IClamp`` pulses.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

import numpy as np
from scipy.signal import lfilter


@dataclass(frozen=True)
class DualExponential:
    """One conductance: ``gmax`` (uS per unit weight; 1 when the weight is the conductance),
    ``tau_rise``/``tau_decay`` (ms; ``tau_rise = 0``: a single exponential), ``mg_block``."""

    gmax_us: float
    tau_rise_ms: float
    tau_decay_ms: float
    mg_block: bool = False

    @property
    def peak_factor(self) -> float:
        """``f``: 1 / peak of ``exp(-t/tau_decay) - exp(-t/tau_rise)`` (1 for a single exponential)."""
        if self.tau_rise_ms <= 0:
            return 1.0
        rise, decay = self.tau_rise_ms, self.tau_decay_ms
        peak_time = rise * decay / (decay - rise) * math.log(decay / rise)
        return 1.0 / (math.exp(-peak_time / decay) - math.exp(-peak_time / rise))


@dataclass(frozen=True)
class SynapseKinetics:
    """A synapse's reversal potential ``e`` (mV), its conductances, its Mg2+ concentration (mM) and
    its mechanism's name (``syntype``; empty when built by hand), which decides its drive receptors
    (:func:`drive_receptors`)."""

    e_mv: float
    parts: tuple[DualExponential, ...]
    mg_mm: float = 1.0
    syntype: str = ""


def synapse_kinetics(syntype: str, parameters: Mapping[str, float]) -> SynapseKinetics:
    """The kinetics of a ``syntype`` point process with ``parameters`` (its NEURON parameter values).

    Raises
    ------
    KeyError
        For a mechanism whose kinetics are not known here.
    """
    p = dict(parameters)
    if syntype == "AMPANMDA":
        return SynapseKinetics(p["e"], (DualExponential(p["gmax_ampa"], p["tau_r_ampa"], p["tau_d_ampa"]),
                                        DualExponential(p["gmax_nmda"], p["tau_r_nmda"], p["tau_d_nmda"], True)),
                               p["mg"], syntype)
    if syntype == "GABAA":
        return SynapseKinetics(p["e"], (DualExponential(p["gmax"], p["tau_r"], p["tau_d"]),), syntype=syntype)
    if syntype == "ExpSyn":
        return SynapseKinetics(p["e"], (DualExponential(1.0, 0.0, p["tau"]),), syntype=syntype)
    if syntype == "Exp2Syn":
        return SynapseKinetics(p["e"], (DualExponential(1.0, p["tau1"], p["tau2"]),), syntype=syntype)
    raise KeyError(syntype)


def mg_block(v_mv: np.ndarray, mg_mm: float) -> np.ndarray:
    """The NMDA Mg2+ block ``1 / (1 + exp(-0.08 v) mg / 3.57)`` of the project's AMPANMDA synapse."""
    return 1.0 / (1.0 + np.exp(-0.08 * v_mv) * (mg_mm / 3.57))


def decaying_sum(spike_times: np.ndarray, weight: float, tau_ms: float, times: np.ndarray) -> np.ndarray:
    """``sum_s weight exp(-(t - s) / tau)`` over the spikes ``s <= t``, at every (regularly spaced) ``t``.

    Each spike enters at the first sample at or after it, already decayed from its own time, and
    the sum then decays sample by sample (one recursive filter, no loop over spikes or samples).
    """
    dt = times[1] - times[0] if times.size > 1 else 1.0
    first = np.searchsorted(times, spike_times - 1e-9 * dt)
    inside = first < times.size
    kicks = np.zeros(times.size)
    np.add.at(kicks, first[inside], weight * np.exp(-(times[first[inside]] - spike_times[inside]) / tau_ms))
    return lfilter([1.0], [1.0, -math.exp(-dt / tau_ms)], kicks)


def conductance_us(kinetics: SynapseKinetics, spike_times: np.ndarray, weight: float, times: np.ndarray,
                   v_mv: np.ndarray) -> np.ndarray:
    """The synapse's total conductance (uS) at ``times`` (ms, regular), given its segment voltage ``v_mv``."""
    total = np.zeros(times.size)
    spike_times = np.sort(np.asarray(spike_times, dtype=float))
    for part in kinetics.parts:  # one or two parts per synapse
        scaled = weight * part.peak_factor
        g = decaying_sum(spike_times, scaled, part.tau_decay_ms, times)
        if part.tau_rise_ms > 0:
            g = g - decaying_sum(spike_times, scaled, part.tau_rise_ms, times)
        g = part.gmax_us * g
        total = total + (g * mg_block(v_mv, kinetics.mg_mm) if part.mg_block else g)
    return total


def synaptic_current_na(kinetics: SynapseKinetics, spike_times: np.ndarray, weight: float, times: np.ndarray,
                        v_mv: np.ndarray) -> np.ndarray:
    """``i = g (v - e)`` (nA, positive outward as in NEURON) at ``times`` (ms)."""
    return conductance_us(kinetics, spike_times, weight, times, v_mv) * (v_mv - kinetics.e_mv)


def as_recorded_by_neuron(values: np.ndarray) -> np.ndarray:
    """``values`` on a time grid as NEURON's ``Vector.record`` of a point-process current holds them:
    the sample at ``t`` is the current of the step that ends at ``t``, i.e. the value one sample
    earlier (the first sample stays)."""
    return np.concatenate([values[..., :1], values[..., :-1]], axis=-1)


# ---------------------------------------------------------------------------------------------
# Conductance drive: every segment's synaptic conductance per receptor class, as 1 ms bin means.
# ---------------------------------------------------------------------------------------------

DRIVE_MECHANISMS = ("AMPANMDA", "GABAA", "ExpSyn", "Exp2Syn")
"""The synapse mechanisms whose kinetics are known here: what drive models are trained on and take."""

RECEPTORS = ("ampa", "nmda", "gaba")
"""The drive's receptor channels, in the order of the first axis of a drive block."""
EXCITATORY_REVERSAL_MV = (-10.0, 10.0)
"""Reversal potentials (mV, both ends included) of an ``ExpSyn``/``Exp2Syn`` driven as ``"ampa"``."""
INHIBITORY_REVERSAL_MV = (-90.0, -65.0)
"""Reversal potentials (mV, both ends included) of an ``ExpSyn``/``Exp2Syn`` driven as ``"gaba"``."""

_AMPA, _NMDA, _GABA = (RECEPTORS.index(name) for name in ("ampa", "nmda", "gaba"))


def drive_receptors(kinetics: SynapseKinetics) -> tuple[int, ...]:
    """The receptor channel (index into :data:`RECEPTORS`) of each of a synapse's conductance parts.

    ``AMPANMDA``: its first part is ``"ampa"``, its Mg2+-blocked part ``"nmda"``; ``GABAA``:
    ``"gaba"``; ``ExpSyn``/``Exp2Syn`` (and kinetics built by hand, ``syntype == ""``): a Mg2+-blocked
    part is ``"nmda"``, any other part is ``"ampa"`` when ``e`` lies in :data:`EXCITATORY_REVERSAL_MV`
    and ``"gaba"`` when it lies in :data:`INHIBITORY_REVERSAL_MV`.

    Parameters
    ----------
    kinetics : SynapseKinetics
        The synapse's kinetics, as :func:`synapse_kinetics` returns them.

    Returns
    -------
    tuple of int
        One receptor index per entry of ``kinetics.parts``.

    Raises
    ------
    ValueError
        For an ``ExpSyn``/``Exp2Syn`` whose reversal potential lies in neither range.
    """
    if kinetics.syntype == "AMPANMDA":
        return tuple(_NMDA if part.mg_block else _AMPA for part in kinetics.parts)
    if kinetics.syntype == "GABAA":
        return tuple(_GABA for _ in kinetics.parts)
    e = kinetics.e_mv
    if EXCITATORY_REVERSAL_MV[0] <= e <= EXCITATORY_REVERSAL_MV[1]:
        plain = _AMPA
    elif INHIBITORY_REVERSAL_MV[0] <= e <= INHIBITORY_REVERSAL_MV[1]:
        plain = _GABA
    else:
        name = kinetics.syntype or "synapse (kinetics without a syntype)"
        raise ValueError(
            f"{name} has reversal potential e = {e} mV, which is in neither receptor range of the conductance "
            f"drive: excitatory [{EXCITATORY_REVERSAL_MV[0]}, {EXCITATORY_REVERSAL_MV[1]}] mV ('ampa') or "
            f"inhibitory [{INHIBITORY_REVERSAL_MV[0]}, {INHIBITORY_REVERSAL_MV[1]}] mV ('gaba'). Set e to a value "
            f"in [{EXCITATORY_REVERSAL_MV[0]}, {EXCITATORY_REVERSAL_MV[1]}] mV or in "
            f"[{INHIBITORY_REVERSAL_MV[0]}, {INHIBITORY_REVERSAL_MV[1]}] mV."
        )
    return tuple(_NMDA if part.mg_block else plain for part in kinetics.parts)


def _frozen(values, dtype) -> np.ndarray:
    array = np.array(values, dtype=dtype)  # a copy: the caller's array stays writable and unshared
    array.setflags(write=False)
    return array


@dataclass(frozen=True, eq=False)
class DriveSynapses:
    """``n`` synapses as the conductance drive sees them: where they sit, their weights, and their
    kinetics expanded into *components*, one per (synapse, conductance part).

    A component's conductance after an event of its synapse at time ``s`` is
    ``scale (exp(-(t - s) / tau_decay) - exp(-(t - s) / tau_rise))`` (uS; no rise term when
    ``tau_rise = 0``), for ``t >= s``. Mg2+-blocked parts are carried *unblocked*.
    Build it with :meth:`from_kinetics`; the arrays are read-only.

    Parameters
    ----------
    segment : numpy.ndarray
        ``(n,)`` int, the index of the segment each synapse sits on.
    weight : numpy.ndarray
        ``(n,)`` float, each synapse's NetCon weight (uS for ``ExpSyn``/``Exp2Syn``, a multiple of
        ``gmax`` for ``AMPANMDA``/``GABAA``).
    component_synapse : numpy.ndarray
        ``(m,)`` int, the synapse of each component (non-decreasing).
    component_receptor : numpy.ndarray
        ``(m,)`` int, the receptor channel of each component (index into :data:`RECEPTORS`).
    component_tau_rise_ms : numpy.ndarray
        ``(m,)`` float, rise time constants (ms; 0 for a single exponential).
    component_tau_decay_ms : numpy.ndarray
        ``(m,)`` float, decay time constants (ms, > 0).
    component_scale_us : numpy.ndarray
        ``(m,)`` float, ``gmax_us * peak_factor * weight`` (uS).
    """

    segment: np.ndarray
    weight: np.ndarray
    component_synapse: np.ndarray
    component_receptor: np.ndarray
    component_tau_rise_ms: np.ndarray
    component_tau_decay_ms: np.ndarray
    component_scale_us: np.ndarray

    def __post_init__(self) -> None:
        for name, dtype in (("segment", np.int64), ("weight", float), ("component_synapse", np.int64),
                            ("component_receptor", np.int64), ("component_tau_rise_ms", float),
                            ("component_tau_decay_ms", float), ("component_scale_us", float)):
            array = _frozen(getattr(self, name), dtype)
            if array.ndim != 1:
                raise ValueError(f"DriveSynapses.{name} must be one-dimensional, got shape {array.shape}")
            object.__setattr__(self, name, array)
        n, m = self.segment.size, self.component_synapse.size
        if self.weight.size != n:
            raise ValueError(f"DriveSynapses: {n} segments but {self.weight.size} weights (one per synapse)")
        if any(getattr(self, name).size != m for name in ("component_receptor", "component_tau_rise_ms",
                                                         "component_tau_decay_ms", "component_scale_us")):
            raise ValueError("DriveSynapses: the component_* arrays must all have the same length")
        if n and self.segment.min() < 0:
            raise ValueError("DriveSynapses: segment indices must be >= 0")
        if m and (self.component_synapse.min() < 0 or self.component_synapse.max() >= n
                  or np.any(np.diff(self.component_synapse) < 0)):
            raise ValueError(f"DriveSynapses: component_synapse must be non-decreasing indices in [0, {n})")
        if m and (self.component_receptor.min() < 0 or self.component_receptor.max() >= len(RECEPTORS)):
            raise ValueError(f"DriveSynapses: component_receptor must index RECEPTORS = {RECEPTORS}")
        if not (np.all(np.isfinite(self.weight)) and np.all(np.isfinite(self.component_scale_us))):
            raise ValueError("DriveSynapses: weights and component scales must be finite")
        if not (np.all(self.component_tau_decay_ms > 0) and np.all(self.component_tau_rise_ms >= 0)
                and np.all(np.isfinite(self.component_tau_decay_ms))
                and np.all(np.isfinite(self.component_tau_rise_ms))):
            raise ValueError("DriveSynapses: time constants must be finite, tau_decay > 0 and tau_rise >= 0")

    @property
    def n_synapses(self) -> int:
        """The number of synapses ``n``."""
        return int(self.segment.size)

    @classmethod
    def from_kinetics(cls, segments, kinetics_list, weights) -> DriveSynapses:
        """The drive synapses of synapses with given segments, kinetics and weights.

        Parameters
        ----------
        segments : array_like of int
            ``(n,)`` the segment index of each synapse.
        kinetics_list : sequence of SynapseKinetics
            ``n`` kinetics, one per synapse (as :func:`synapse_kinetics` returns them; synapses
            that share kinetics may share the object).
        weights : array_like of float
            ``(n,)`` (or a scalar for all) NetCon weights.

        Returns
        -------
        DriveSynapses
            Components ordered by synapse, then by conductance part.

        Raises
        ------
        ValueError
            For mismatched lengths, or a synapse whose receptor cannot be decided
            (see :func:`drive_receptors`).
        """
        segments = np.asarray(segments)
        kinetics_list = list(kinetics_list)
        if segments.ndim != 1 or segments.size != len(kinetics_list):
            raise ValueError(f"DriveSynapses.from_kinetics: {segments.size} segments but {len(kinetics_list)} "
                             f"kinetics (one each per synapse)")
        if segments.size and not np.array_equal(segments, np.round(segments)):
            raise ValueError("DriveSynapses.from_kinetics: segment indices must be integers")
        n = segments.size
        weights = np.broadcast_to(np.asarray(weights, dtype=float), (n,))
        distinct: dict[SynapseKinetics, int] = {}
        which = np.array([distinct.setdefault(k, len(distinct)) for k in kinetics_list], dtype=np.int64)
        rows = []  # (synapse, part order, receptor, tau_rise, tau_decay, scale) blocks, one per kinetics part
        for kinetics, number in distinct.items():  # a loop over the few distinct kinetics
            synapses = np.flatnonzero(which == number)
            for order, (part, receptor) in enumerate(zip(kinetics.parts, drive_receptors(kinetics))):
                rows.append((synapses, np.full(synapses.size, order), np.full(synapses.size, receptor),
                             np.full(synapses.size, part.tau_rise_ms), np.full(synapses.size, part.tau_decay_ms),
                             part.gmax_us * part.peak_factor * weights[synapses]))
        if rows:
            synapse, order, receptor, tau_rise, tau_decay, scale = (np.concatenate(column) for column in zip(*rows))
            sort = np.lexsort((order, synapse))
        else:
            synapse = receptor = np.zeros(0, dtype=np.int64)
            tau_rise = tau_decay = scale = np.zeros(0)
            sort = np.zeros(0, dtype=np.int64)
        return cls(segments.astype(np.int64), weights, synapse[sort], receptor[sort], tau_rise[sort],
                   tau_decay[sort], scale[sort])


@dataclass
class _DecayGroup:
    """The exponential terms of one time constant: their channels and their per-synapse layout."""

    tau_ms: float
    channels: np.ndarray  # (c,) the (receptor * n_segments + segment) rows this group adds to
    term_channel: np.ndarray  # (t,) local channel (index into channels) of each term, terms ordered by synapse
    term_amplitude: np.ndarray  # (t,) +scale (decay term) or -scale (rise term), uS
    synapse_start: np.ndarray  # (n + 1,) terms of synapse i: synapse_start[i]:synapse_start[i + 1]
    state: np.ndarray  # (c,) the sum of this group's exponentials at the start of the next block


class ConductanceDrive:
    """Streaming conductance drive: the mean conductance (uS) of every receptor channel of every
    segment over each 1 ms bin, block by block.

    Bin ``k`` is the time interval ``[k, k + 1)`` ms. The value is exact (up to float64 rounding,
    returned as float32) for the linear synapse kinetics of :class:`DriveSynapses`, for any event
    times, including several events of a synapse within one bin. The conductance of a receptor
    channel of a segment is the sum over the components of that receptor on that segment;
    Mg2+-blocked (NMDA) conductances are unblocked.

    Each exponential ``a exp(-(t - s) / tau)`` is a first-order recursive filter over bins: an event
    at ``s`` in bin ``b`` adds ``a tau (1 - exp(-(b + 1 - s) / tau))`` to bin ``b``'s integral and
    ``a exp(-(b + 1 - s) / tau)`` to the state at ``b + 1``; a state ``x`` at a bin's start adds
    ``x tau (1 - exp(-1 / tau))`` to that bin and decays by ``exp(-1 / tau)`` per bin. The state at
    the end of a block (including what the block's last events left) carries to the next block.

    Parameters
    ----------
    synapses : DriveSynapses
        The synapses and their kinetics.
    n_segments : int
        The number of segments of the cell (``> max(synapses.segment)``).
    """

    def __init__(self, synapses: DriveSynapses, n_segments: int) -> None:
        n_segments = int(n_segments)
        if synapses.n_synapses and synapses.segment.max() >= n_segments:
            raise ValueError(f"ConductanceDrive: a synapse sits on segment {int(synapses.segment.max())} but the "
                             f"cell has n_segments = {n_segments}")
        self.synapses = synapses
        self.n_segments = n_segments
        self._next_bin = 0
        channel = synapses.component_receptor * n_segments + synapses.segment[synapses.component_synapse]
        rise = synapses.component_tau_rise_ms > 0
        # terms: every component's decay exponential (+scale), and its rise exponential (-scale) if any
        term_synapse = np.concatenate([synapses.component_synapse, synapses.component_synapse[rise]])
        term_channel = np.concatenate([channel, channel[rise]])
        term_tau = np.concatenate([synapses.component_tau_decay_ms, synapses.component_tau_rise_ms[rise]])
        term_amplitude = np.concatenate([synapses.component_scale_us, -synapses.component_scale_us[rise]])
        taus, term_group = np.unique(term_tau, return_inverse=True)
        self._groups: list[_DecayGroup] = []
        for number, tau in enumerate(taus):  # a loop over the few distinct time constants
            terms = np.flatnonzero(term_group == number)
            terms = terms[np.argsort(term_synapse[terms], kind="stable")]
            channels, local = np.unique(term_channel[terms], return_inverse=True)
            start = np.searchsorted(term_synapse[terms], np.arange(synapses.n_synapses + 1))
            self._groups.append(_DecayGroup(float(tau), channels, local.astype(np.int64), term_amplitude[terms],
                                            start, np.zeros(channels.size)))

    @property
    def next_bin(self) -> int:
        """The ``start_bin`` the next :meth:`block` call must have."""
        return self._next_bin

    def block(self, event_times_ms, event_synapse, start_bin: int, stop_bin: int) -> np.ndarray:
        """The drive over bins ``start_bin .. stop_bin - 1``, given the events in that time span.

        Parameters
        ----------
        event_times_ms : array_like of float
            ``(e,)`` event (spike arrival) times, ms, all in ``[start_bin, stop_bin)``; any order.
        event_synapse : array_like of int
            ``(e,)`` the synapse (index into the :class:`DriveSynapses`) each event activates.
        start_bin : int
            The first bin; ``0`` on the first call, then the previous call's ``stop_bin``.
        stop_bin : int
            One past the last bin (``>= start_bin``).

        Returns
        -------
        numpy.ndarray
            ``(len(RECEPTORS), n_segments, stop_bin - start_bin)`` float32: the mean conductance (uS)
            of each receptor channel of each segment over each bin ``[k, k + 1)`` ms.

        Raises
        ------
        ValueError
            For a block that does not continue the previous one, an event time outside
            ``[start_bin, stop_bin)`` or not finite, or a synapse index out of range.
        """
        start_bin, stop_bin = int(start_bin), int(stop_bin)
        if start_bin != self._next_bin:
            raise ValueError(f"ConductanceDrive.block: blocks must be consecutive; expected start_bin = "
                             f"{self._next_bin}, got {start_bin}")
        if stop_bin < start_bin:
            raise ValueError(f"ConductanceDrive.block: stop_bin = {stop_bin} < start_bin = {start_bin}")
        times, which = _checked_events(event_times_ms, event_synapse, self.synapses.n_synapses, start_bin, stop_bin)
        n_bins = stop_bin - start_bin
        out = np.zeros((len(RECEPTORS) * self.n_segments, n_bins))
        if n_bins == 0:
            return out.reshape(len(RECEPTORS), self.n_segments, 0).astype(np.float32)
        event_bin = np.floor(times).astype(np.int64)
        to_bin_end = event_bin + 1 - times  # (0, 1] ms from each event to the end of its bin
        event_bin -= start_bin
        for group in self._groups:
            out[group.channels] += self._group_block(group, which, event_bin, to_bin_end, n_bins)
        self._next_bin = stop_bin
        return out.reshape(len(RECEPTORS), self.n_segments, n_bins).astype(np.float32)

    @staticmethod
    def _group_block(group: _DecayGroup, which: np.ndarray, event_bin: np.ndarray, to_bin_end: np.ndarray,
                     n_bins: int) -> np.ndarray:
        """One time constant's bin integrals ``(channels, n_bins)``; advances ``group.state``."""
        tau, n_channels = group.tau_ms, group.channels.size
        # every event expands into the terms of its synapse in this group (CSR layout, no loop)
        first = group.synapse_start[which]
        count = group.synapse_start[which + 1] - first
        event = np.repeat(np.arange(which.size), count)
        term = np.arange(event.size) - np.repeat(np.cumsum(count) - count, count) + first[event]
        amplitude = group.term_amplitude[term]
        flat = group.term_channel[term] * n_bins + event_bin[event]
        left = np.exp(-to_bin_end[event] / tau)  # what is left at the bin's end of a unit event
        size = n_channels * n_bins
        residual = np.bincount(flat, amplitude * left, minlength=size).reshape(n_channels, n_bins)
        within = np.bincount(flat, amplitude * (tau * -np.expm1(-to_bin_end[event] / tau)),
                             minlength=size).reshape(n_channels, n_bins)
        decay = math.exp(-1.0 / tau)
        # after[:, j]: the state at the end of bin j = decay * (state at its start) + residual injected in it
        after, _ = lfilter([1.0], [1.0, -decay], residual, axis=1, zi=(decay * group.state)[:, None])
        at_start = np.concatenate([group.state[:, None], after[:, :-1]], axis=1)
        group.state = after[:, -1].copy()
        return at_start * (tau * -math.expm1(-1.0 / tau)) + within


def _checked_events(event_times_ms, event_synapse, n_synapses: int, start_bin: int,
                    stop_bin: int) -> tuple[np.ndarray, np.ndarray]:
    """The events as float64 times and int64 synapse indices, validated for a block."""
    times = np.asarray(event_times_ms, dtype=float)
    raw_synapse = np.asarray(event_synapse)
    if times.ndim != 1 or raw_synapse.ndim != 1 or times.size != raw_synapse.size:
        raise ValueError(f"event_times_ms and event_synapse must be 1-D of equal length, got shapes "
                         f"{times.shape} and {raw_synapse.shape}")
    if times.size == 0:
        return times, np.zeros(0, dtype=np.int64)
    if not np.all(np.isfinite(times)):
        raise ValueError(f"event times must be finite; got {times[~np.isfinite(times)][:5]}")
    if raw_synapse.dtype.kind not in "iu":
        if raw_synapse.dtype.kind != "f" or not np.array_equal(raw_synapse, np.round(raw_synapse)):
            raise ValueError("event_synapse must hold integer synapse indices")
    which = raw_synapse.astype(np.int64)
    if which.min() < 0 or which.max() >= n_synapses:
        raise ValueError(f"event_synapse must index the {n_synapses} synapses (0 .. {n_synapses - 1}); got "
                         f"indices from {which.min()} to {which.max()}")
    outside = (times < start_bin) | (times >= stop_bin)
    if np.any(outside):
        raise ValueError(f"{int(outside.sum())} event time(s) outside this block's span [{start_bin}, {stop_bin}) "
                         f"ms, e.g. {times[outside][0]} ms; give each block only the events in its bins")
    return times, which


def bin_mean_conductance(synapses: DriveSynapses, event_times_ms, event_synapse, n_bins: int,
                         n_segments: int) -> np.ndarray:
    """The conductance drive over bins ``0 .. n_bins - 1`` in one go (one :meth:`ConductanceDrive.block`).

    Parameters
    ----------
    synapses : DriveSynapses
        The synapses and their kinetics.
    event_times_ms : array_like of float
        ``(e,)`` event times (ms), all in ``[0, n_bins)``.
    event_synapse : array_like of int
        ``(e,)`` the synapse of each event.
    n_bins : int
        The number of 1 ms bins.
    n_segments : int
        The number of segments of the cell.

    Returns
    -------
    numpy.ndarray
        ``(len(RECEPTORS), n_segments, n_bins)`` float32 mean conductances (uS) over ``[k, k + 1)`` ms.
    """
    return ConductanceDrive(synapses, n_segments).block(event_times_ms, event_synapse, 0, n_bins)


def bin_mean_current(delay_ms, dur_ms, amp_na, n_bins: int) -> np.ndarray:
    """The exact mean over each 1 ms bin ``[k, k + 1)`` of the sum of ``IClamp`` pulses.

    A pulse is ``amp`` on ``[delay, delay + dur)`` ms and 0 elsewhere (NEURON's ``IClamp``).

    Parameters
    ----------
    delay_ms, dur_ms, amp_na : float or array_like of float
        Start (ms), duration (ms, >= 0) and amplitude (nA) of each pulse; broadcast together.
    n_bins : int
        The number of bins (>= 0).

    Returns
    -------
    numpy.ndarray
        ``(n_bins,)`` float32, the mean injected current (nA) in each bin.

    Raises
    ------
    ValueError
        For a negative duration, a NaN or infinite delay, duration or amplitude, or a negative ``n_bins``.
    """
    delay, dur, amp = (np.ravel(a).astype(float) for a in np.broadcast_arrays(delay_ms, dur_ms, amp_na))
    if int(n_bins) != n_bins or n_bins < 0:
        raise ValueError(f"bin_mean_current: n_bins must be a non-negative integer, got {n_bins}")
    for name, values in (("delay_ms", delay), ("dur_ms", dur), ("amp_na", amp)):
        if not np.all(np.isfinite(values)):
            raise ValueError(f"bin_mean_current: {name} must be finite, got {values}")
    if np.any(dur < 0):
        raise ValueError(f"bin_mean_current: dur_ms must be >= 0, got {dur}")
    edges = np.arange(int(n_bins) + 1, dtype=float)
    # the charge delivered up to each bin edge, (pulses, n_bins + 1); bin means are its differences
    charge = amp[:, None] * np.clip(edges[None, :] - delay[:, None], 0.0, dur[:, None])
    return np.diff(charge.sum(axis=0)).astype(np.float32)


# --------------------------------------------------------------------------- model input channels


DRIVE_NS_PER_US = 1000.0
"""Drive channels carry conductances in nS (values of order 0.1-10), not uS."""


def drive_channel_count(n_segments: int) -> int:
    """Number of model input channels of a drive model: one per receptor and segment, plus the
    somatic current."""
    return len(RECEPTORS) * int(n_segments) + 1


def drive_channels(conductance_us: np.ndarray, soma_current_na: np.ndarray) -> np.ndarray:
    """The model input of a drive model, (T, channels) float32, from bin-mean conductances.

    Channel ``r * n_segments + s`` is receptor ``RECEPTORS[r]`` of segment ``s`` in nS; the
    last channel is the current injected into the soma (nA). Every value is the mean over one
    1 ms model step.

    Parameters
    ----------
    conductance_us : numpy.ndarray
        (len(RECEPTORS), n_segments, T) bin-mean conductances (uS), as
        :meth:`ConductanceDrive.block` returns them.
    soma_current_na : numpy.ndarray
        (T,) bin-mean somatic current (nA), e.g. :func:`bin_mean_current`.

    Returns
    -------
    numpy.ndarray
        (T, drive_channel_count(n_segments)) float32.
    """
    conductance_us = np.asarray(conductance_us)
    n_receptors, n_segments, n_bins = conductance_us.shape
    current = np.asarray(soma_current_na, dtype=np.float32).reshape(-1)
    if n_receptors != len(RECEPTORS) or current.size != n_bins:
        raise ValueError(f"expected conductances ({len(RECEPTORS)}, n_segments, T) and a current of T "
                         f"values, got {conductance_us.shape} and {current.size}")
    out = np.empty((n_bins, drive_channel_count(n_segments)), dtype=np.float32)
    out[:, :-1] = conductance_us.reshape(-1, n_bins).T * DRIVE_NS_PER_US
    out[:, -1] = current
    return out
