"""Somatic spike detection from voltage traces."""

from __future__ import annotations

import numpy as np

SPIKE_PEAK_THRESHOLD_MV = -25.0
SPIKE_TOLERANCE_MS = 3.0
REFRACTORY_MS = 2.0
THRESHOLD_CANDIDATES_MV = tuple(range(-60, 1, 2))


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


def match_spikes(true_times: np.ndarray, predicted_times: np.ndarray, tolerance: float) -> int:
    """Number of one-to-one matches within ``tolerance`` ms (greedy in time order)."""
    matched, used = 0, np.zeros(len(predicted_times), dtype=bool)
    for time in true_times:  # spikes are sparse: a few per second
        candidates = np.flatnonzero(~used & (np.abs(predicted_times - time) <= tolerance))
        if candidates.size:
            used[candidates[np.argmin(np.abs(predicted_times[candidates] - time))]] = True
            matched += 1
    return matched


def spike_scores(true_trains, predicted_trains, tolerance: float = SPIKE_TOLERANCE_MS) -> dict:
    """Precision, recall and F1 pooled over simulations."""
    matched = sum(match_spikes(t, p, tolerance) for t, p in zip(true_trains, predicted_trains))
    n_true = sum(len(t) for t in true_trains)
    n_pred = sum(len(p) for p in predicted_trains)
    precision = matched / n_pred if n_pred else float(n_true == 0)
    recall = matched / n_true if n_true else float(n_pred == 0)
    f1 = 2 * precision * recall / (precision + recall) if precision + recall else 0.0
    return {"precision": precision, "recall": recall, "f1": f1, "n_true": n_true, "n_predicted": n_pred}


def best_crossing_threshold(soma_traces_mv: np.ndarray, true_spike_times, t0: float = 0.0,
                            candidates=THRESHOLD_CANDIDATES_MV) -> tuple[float, float]:
    """The soma threshold whose upward crossings of 1 ms-sampled traces best recover true spikes.

    ``soma_traces_mv`` is (n_traces, n_ms), sampled at whole ms from ``t0``; ``true_spike_times``
    one array per trace (ms, same time axis). Returns (threshold mV, F1 at that threshold).
    This is how a surrogate that only sees whole milliseconds should detect spikes.
    """
    scores = []
    for threshold in candidates:  # a few dozen candidates, each vectorised over time
        predicted = [upward_crossing_times(trace, 1.0, threshold, REFRACTORY_MS, t0) for trace in soma_traces_mv]
        scores.append(spike_scores(true_spike_times, predicted)["f1"])
    best = int(np.argmax(scores))
    return float(candidates[best]), float(scores[best])
