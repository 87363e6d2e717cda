"""Training windows from stored simulations: 100 ms of inputs and voltages -> the next millisecond.

Time convention (see ``docs/data_format.md``): ``vmem[:, k]`` is the voltage at ``k`` ms and
``exc[:, k]`` the events delivered at ``k`` ms (bin ``[k, k+1)``). The target at time ``t`` is
``vmem[:, t]`` and whether a somatic spike peaked in ``(t-1, t]`` — or, for data prepared
with :func:`with_spike_onsets`, whether the soma voltage crossed the spike threshold between
``t-1`` and ``t``; its input window holds the events of bins ``t-W .. t-1`` and the voltages at
``t-W .. t-1``. Everything is stacked in memory as ``(n_sims, T, channels)`` tensors so that a
batch of windows is one indexing op.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch
from tqdm import tqdm

from surrogate_cell.data.store import DataSet
from surrogate_cell.models.normalisation import Normalisation


def spike_flags(spike_times: np.ndarray, n_ms: int) -> np.ndarray:
    """Bool per ms ``t``: a somatic spike peaked in ``(t-1, t]``."""
    flags = np.zeros(n_ms, dtype=bool)
    bins = np.ceil(np.asarray(spike_times) - 1e-9).astype(int)
    flags[bins[(bins >= 0) & (bins < n_ms)]] = True
    return flags


def spike_onset_flags(soma_mv: np.ndarray, threshold_mv: float) -> np.ndarray:
    """Bool (n_sims, T): the 1 ms soma samples where the voltage first exceeds ``threshold_mv``."""
    above = soma_mv > threshold_mv
    flags = np.zeros_like(above)
    flags[:, 1:] = above[:, 1:] & ~above[:, :-1]
    return flags


def with_spike_onsets(raw, soma_segment: int, threshold_mv: float) -> tuple:
    """:func:`load_raw` arrays with the spike flags replaced by soma threshold crossings.

    A spike peak often falls after the 1 ms sample where the soma voltage has already crossed
    the threshold, so a model reading its somatic spike history (threshold crossings) would
    see the spike it is asked to predict in about half the cases when the target is the peak.
    The crossing is what a free run detects; as the target it cannot leak.
    """
    events, voltages, _, spike_times = raw
    return events, voltages, spike_onset_flags(voltages[:, soma_segment], threshold_mv), spike_times


#: ``cell_meta["spike_targets"]`` of checkpoints trained on :func:`with_spike_onsets` targets
SOMA_ONSET_TARGETS = "soma_onset"


def spike_targets_of(raw, cell_meta: dict) -> tuple:
    """``raw`` with the spike targets a checkpoint was trained on (peaks unless it says onsets)."""
    if cell_meta.get("spike_targets") != SOMA_ONSET_TARGETS:
        return raw
    return with_spike_onsets(raw, int(cell_meta["soma_segment"]), float(cell_meta["spike_threshold_mv"]))


@dataclass
class WindowData:
    """The simulations of one split, stacked: events, z-scored voltages and spike flags.

    ``events`` (n_sims, T, 2 * n_inputs) uint8, excitatory rows then inhibitory rows;
    ``voltages`` (n_sims, T, n_segments) float32 z-scores; ``spikes`` (n_sims, T) bool.
    """

    events: torch.Tensor
    voltages: torch.Tensor
    spikes: torch.Tensor
    window: int
    sim_indices: list

    @property
    def n_event_channels(self) -> int:
        """Number of binary input channels (leading channels of a model input)."""
        return self.events.shape[-1]

    @property
    def n_segments(self) -> int:
        """Number of voltage channels / voltage tasks."""
        return self.voltages.shape[-1]

    @property
    def n_ms(self) -> int:
        """Length of every simulation (ms)."""
        return self.voltages.shape[1]

    def target_positions(self) -> tuple[np.ndarray, np.ndarray]:
        """All (sim, t) pairs with a full history before ``t``."""
        sims, times = np.meshgrid(np.arange(len(self.sim_indices)),
                                  np.arange(self.window, self.n_ms), indexing="ij")
        return sims.ravel(), times.ravel()

    def gather(self, sims, times, horizon: int = 1):
        """Inputs and targets for windows ending before ``times``.

        Returns ``events`` (B, W + horizon - 1, E) float, ``history`` (B, W, S) z-scores,
        ``targets`` (B, horizon, S) and ``spike_targets`` (B, horizon) float: enough to
        unroll ``horizon`` steps from a true history.
        """
        sims = torch.as_tensor(sims, dtype=torch.long)[:, None]
        times = torch.as_tensor(times, dtype=torch.long)[:, None]
        event_steps = times + torch.arange(-self.window, horizon - 1)
        history_steps = times + torch.arange(-self.window, 0)
        target_steps = times + torch.arange(horizon)
        return (
            self.events[sims, event_steps].float(),
            self.voltages[sims, history_steps],
            self.voltages[sims, target_steps],
            self.spikes[sims, target_steps].float(),
        )


def _event_matrix(record) -> np.ndarray:
    return np.concatenate([record.exc, record.inh], axis=0).T.astype(np.uint8)


def load_raw(data_set: DataSet, sim_indices, progress: bool = True):
    """Load simulations: events (n, T, E), voltages mV (n, S, T), spike flags (n, T), spike times (list)."""
    events, voltages, spikes, spike_times = [], [], [], []
    for index in tqdm(sim_indices, desc=f"loading {data_set.path.name}", disable=not progress,
                      leave=False):
        record = data_set.load_simulation(index)
        events.append(_event_matrix(record))
        voltages.append(record.vmem.astype(np.float32))
        spikes.append(spike_flags(record.spike_times, record.vmem.shape[1]))
        spike_times.append(record.spike_times)
    return np.stack(events), np.stack(voltages), np.stack(spikes), spike_times


def concatenate_raw(parts: list[tuple]) -> tuple:
    """Join :func:`load_raw` results (e.g. of several data sets) along the simulation axis."""
    if len(parts) == 1:
        return parts[0]
    return (*(np.concatenate([part[k] for part in parts]) for k in range(3)),
            [times for part in parts for times in part[3]])


def load_labelled(data_sets: list, sim_lists: list, progress: bool = True) -> tuple[tuple, list]:
    """:func:`load_raw` of ``sim_lists[k]`` of every ``data_sets[k]``, joined, and per-simulation
    labels: the index for the first (primary) data set, ``"<file stem>/<index>"`` for the others."""
    raw = concatenate_raw([load_raw(each, sims, progress) for each, sims in zip(data_sets, sim_lists)])
    labels = [i if number == 0 else f"{each.path.stem}/{i}"
              for number, (each, sims) in enumerate(zip(data_sets, sim_lists)) for i in sims]
    return raw, labels


def build_window_data(raw, normalisation: Normalisation, window: int, sim_indices) -> WindowData:
    """Stack raw arrays (from :func:`load_raw`) into a :class:`WindowData` with z-scored voltages."""
    events, voltages, spikes = raw[:3]
    z = normalisation.to_z(voltages).transpose(0, 2, 1)
    return WindowData(
        events=torch.from_numpy(events),
        voltages=torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)),
        spikes=torch.from_numpy(spikes),
        window=window,
        sim_indices=list(sim_indices),
    )


def split_simulations(indices, validation_fraction: float, test_fraction: float, seed: int):
    """Split simulation indices (never windows) into train/validation/test lists."""
    indices = np.array(sorted(indices))
    if len(indices) < 3:
        raise ValueError(
            f"Need at least 3 simulations to split into train/validation/test, the data set has "
            f"{len(indices)}. Generate more with 'python -m surrogate_cell.training simulate'."
        )
    shuffled = np.random.default_rng(seed).permutation(indices)
    n_val = max(1, int(round(validation_fraction * len(indices))))
    n_test = max(1, int(round(test_fraction * len(indices))))
    n_train = len(indices) - n_val - n_test
    if n_train < 1:
        raise ValueError("validation and test fractions leave no training simulations")
    return (sorted(shuffled[:n_train].tolist()), sorted(shuffled[n_train:n_train + n_val].tolist()),
            sorted(shuffled[n_train + n_val:].tolist()))


class BalancedSampler:
    """Draws training (sim, t) positions, a fixed fraction of which are somatic-spike targets.

    Positions leave ``horizon`` targets from ``t`` on and, before ``t``, the window plus ``lead``
    milliseconds (room for a free-running lead-in). ``spike_fraction=None`` samples at the
    data's own spike rate (uniformly over positions): oversampling spike windows teaches the
    voltage tasks that spikes are common, which makes free runs fire spuriously.
    """

    def __init__(self, data: WindowData, spike_fraction: float | None, horizon: int,
                 rng: np.random.Generator, lead: int = 0):
        sims, times = data.target_positions()
        keep = (times >= data.window + lead) & (times <= data.n_ms - horizon)
        sims, times = sims[keep], times[keep]
        is_spike = data.spikes[torch.from_numpy(sims), torch.from_numpy(times)].numpy()
        self.positives = (sims[is_spike], times[is_spike])
        self.negatives = (sims[~is_spike], times[~is_spike])
        self.natural_fraction = self.positives[0].size / max(1, sims.size)
        self.spike_fraction = spike_fraction if self.positives[0].size else 0.0
        self.rng = rng

    @property
    def n_positions(self) -> int:
        """Number of distinct training windows."""
        return self.positives[0].size + self.negatives[0].size

    def _draw(self, pool, count: int):
        picks = self.rng.integers(0, pool[0].size, count)
        return pool[0][picks], pool[1][picks]

    def sample(self, batch_size: int) -> tuple[np.ndarray, np.ndarray]:
        """A batch of (sims, times); ``round(spike_fraction * batch_size)`` of them spike targets
        (a binomial draw at the natural rate when ``spike_fraction`` is None)."""
        if self.spike_fraction is None:
            n_pos = int(self.rng.binomial(batch_size, self.natural_fraction))
        else:
            n_pos = int(round(self.spike_fraction * batch_size))
        pos, neg = self._draw(self.positives, n_pos), self._draw(self.negatives, batch_size - n_pos)
        return np.concatenate([pos[0], neg[0]]), np.concatenate([pos[1], neg[1]])
