"""Somatic spikes: the one detector of surrogate spikes, the data's spike peaks, and spike scores.

A surrogate's spike is the upward crossing of a soma-voltage threshold, at the time linearly
interpolated between two samples, at most one per refractory period. :class:`SpikeDetector` is
the one implementation: ``SurrogateCell``, ``evaluate``/``calibrate`` (through
:func:`upward_crossing_times`) and networks (step by step) all detect spikes with it, so the same
trace gives the same spike times everywhere.
"""

from __future__ import annotations

import numpy as np
import torch

SPIKE_THRESHOLD_MV = -25.0
"""The soma-voltage spike threshold (mV) wherever none is given: the peak threshold of the
training data's somatic spikes, and the crossing threshold of models whose checkpoint stores none."""

SPIKE_TOLERANCE_MS = 3.0
"""Spike times within this many ms of each other match (spike F1)."""

REFRACTORY_MS = 2.0
"""At most one detected spike per this many ms."""

THRESHOLD_CANDIDATES_MV = tuple(range(-60, 1, 2))


class SpikeDetector:
    """Upward threshold crossings of soma voltages, interpolated, at most one per refractory period.

    Parameters
    ----------
    thresholds_mv : float or array_like
        Threshold (mV), one for all cells or one per cell.
    refractory_ms : float or array_like
        Refractory period (ms), one for all cells or one per cell.
    device : torch.device or str
        Where the streaming state lives.

    Streaming use (one sample per call, as a network steps): :meth:`reset` with the voltages
    at ``t = 0``, then :meth:`detect` with those at ``t + 1``. Whole traces: :meth:`trace_times`.
    """

    def __init__(self, thresholds_mv, refractory_ms=REFRACTORY_MS, device: torch.device | str = "cpu"):
        self.thresholds = torch.as_tensor(thresholds_mv, dtype=torch.float64, device=device)
        self.refractory = torch.as_tensor(refractory_ms, dtype=torch.float64, device=device)
        self.previous = torch.zeros_like(self.thresholds)
        self.last_spike = torch.full_like(self.thresholds, -np.inf)

    def reset(self, soma_mv: torch.Tensor) -> None:
        """Start from the soma voltages at t = 0, with no spike before."""
        self.previous = soma_mv.to(torch.float64).clone()
        self.last_spike = torch.full_like(self.previous, -np.inf)

    def detect(self, soma_mv: torch.Tensor, t: float, dt: float = 1.0) -> torch.Tensor:
        """Spike times (ms) in ``(t, t + dt]`` given the soma voltages at ``t + dt``; NaN where none."""
        now = soma_mv.to(torch.float64)
        crossed, times = self._crossings(self.previous, now, t, dt)
        fired = crossed & (times - self.last_spike >= self.refractory)
        self.last_spike = torch.where(fired, times, self.last_spike)
        self.previous = now
        return torch.where(fired, times, torch.full_like(times, float("nan")))

    def trace_times(self, voltage, dt: float, t0: float = 0.0) -> list[np.ndarray]:
        """Spike times (ms) of whole traces: (n_cells, T) or (T,) voltages sampled every ``dt`` from ``t0``.

        Returns one array per trace. Equal to streaming the trace through :meth:`detect`.
        """
        v = torch.as_tensor(np.asarray(voltage, dtype=np.float64)).to(self.thresholds.device)
        v = v.reshape(-1, v.shape[-1])
        previous_t = t0 + dt * torch.arange(v.shape[1] - 1, dtype=torch.float64, device=v.device)
        thresholds = self.thresholds.expand(v.shape[0])[:, None]
        crossed, times = self._crossings(v[:, :-1], v[:, 1:], previous_t, dt, thresholds)
        refractory = self.refractory.expand(v.shape[0]).tolist()
        return [_outside_refractory(times[row][crossed[row]].cpu().numpy(), refractory[row])
                for row in range(v.shape[0])]

    def _crossings(self, previous, now, t, dt, thresholds=None):
        thresholds = self.thresholds if thresholds is None else thresholds
        crossed = (previous < thresholds) & (now >= thresholds)
        fraction = (thresholds - previous) / torch.where(crossed, now - previous, torch.ones_like(now))
        return crossed, t + dt * fraction


def _outside_refractory(times: np.ndarray, refractory_ms: float) -> np.ndarray:
    """``times`` without those within ``refractory_ms`` of the last kept one (greedy, in order)."""
    if refractory_ms <= 0 or times.size < 2:
        return times
    kept = [times[0]]
    for time in times[1:]:  # crossings are few; a loop over them is cheap
        if time - kept[-1] >= refractory_ms:
            kept.append(time)
    return np.array(kept)


def spike_peak_times(voltage: np.ndarray, dt: float, threshold: float = SPIKE_THRESHOLD_MV,
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
    """Spike times (ms) of one trace sampled every ``dt`` ms from ``t0``: :class:`SpikeDetector`'s."""
    return SpikeDetector(threshold, refractory_ms).trace_times(voltage, dt, t0)[0]


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
