"""Somatic spike detection from voltage traces."""

from __future__ import annotations

import numpy as np

SPIKE_PEAK_THRESHOLD_MV = -25.0


def spike_peak_times(voltage: np.ndarray, dt: float, threshold: float = SPIKE_PEAK_THRESHOLD_MV,
                     t0: float = 0.0) -> np.ndarray:
    """Times (ms) of local maxima of ``voltage`` above ``threshold`` (the published spike definition).

    ``voltage`` is sampled every ``dt`` ms starting at ``t0``. A plateau maximum counts once,
    at its first sample.
    """
    v = np.asarray(voltage, dtype=float)
    if v.size < 3:
        return np.empty(0)
    rising = v[1:-1] > v[:-2]
    not_falling_after = v[1:-1] >= v[2:]
    peaks = np.flatnonzero(rising & not_falling_after & (v[1:-1] > threshold)) + 1
    return t0 + peaks * dt


def upward_crossing_times(voltage: np.ndarray, dt: float, threshold: float,
                          refractory_ms: float = 0.0, t0: float = 0.0) -> np.ndarray:
    """Times (ms) where ``voltage`` crosses ``threshold`` from below, at most one per refractory period."""
    v = np.asarray(voltage, dtype=float)
    crossings = np.flatnonzero((v[1:] >= threshold) & (v[:-1] < threshold)) + 1
    times = t0 + crossings * dt
    if refractory_ms <= 0 or times.size < 2:
        return times
    kept = [times[0]]
    for time in times[1:]:  # crossings are few; a loop over them is cheap
        if time - kept[-1] >= refractory_ms:
            kept.append(time)
    return np.array(kept)
