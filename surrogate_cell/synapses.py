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
    """A synapse's reversal potential ``e`` (mV), its conductances and its Mg2+ concentration (mM)."""

    e_mv: float
    parts: tuple[DualExponential, ...]
    mg_mm: float = 1.0


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
                               p["mg"])
    if syntype == "GABAA":
        return SynapseKinetics(p["e"], (DualExponential(p["gmax"], p["tau_r"], p["tau_d"]),))
    if syntype == "ExpSyn":
        return SynapseKinetics(p["e"], (DualExponential(1.0, 0.0, p["tau"]),))
    if syntype == "Exp2Syn":
        return SynapseKinetics(p["e"], (DualExponential(1.0, p["tau1"], p["tau2"]),))
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
