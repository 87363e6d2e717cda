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

from dataclasses import dataclass, replace

import numpy as np
import torch
from tqdm import tqdm

from surrogate_cell.data.stimulus import MixtureInputConfig, stimulus_drive
from surrogate_cell.data.store import DataSet, DataSetError
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


@dataclass(frozen=True)
class RawSimulations:
    """Simulations loaded from data sets, before z-scoring and windowing.

    Attributes
    ----------
    events : numpy.ndarray
        The model input, (n_sims, T, channels): uint8 input events, excitatory rows then
        inhibitory rows (input kind ``events``), or float16 drive channels, every segment's
        conductance per receptor in nS and the somatic current in nA
        (:func:`surrogate_cell.synapses.drive_channels`; input kind ``drive``).
    voltages_mv : numpy.ndarray
        (n_sims, n_segments, T) float32 voltages (mV) at whole milliseconds.
    spike_flags : numpy.ndarray
        (n_sims, T) bool spike targets: peaks (:func:`spike_flags`) or, after
        :func:`with_spike_onsets`, soma threshold crossings.
    spike_times : list of numpy.ndarray
        Somatic spike peak times (ms) of every simulation.
    """

    events: np.ndarray
    voltages_mv: np.ndarray
    spike_flags: np.ndarray
    spike_times: list

    def __len__(self) -> int:
        return len(self.spike_times)

    @classmethod
    def concatenate(cls, parts: list[RawSimulations]) -> RawSimulations:
        """Join ``parts`` (e.g. of several data sets) along the simulation axis.

        Parameters
        ----------
        parts : list of RawSimulations
            At least one; all of the same recording length and cell.

        Returns
        -------
        RawSimulations
            ``parts[0]`` itself when there is only one part.
        """
        if len(parts) == 1:
            return parts[0]
        return cls(events=np.concatenate([part.events for part in parts]),
                   voltages_mv=np.concatenate([part.voltages_mv for part in parts]),
                   spike_flags=np.concatenate([part.spike_flags for part in parts]),
                   spike_times=[times for part in parts for times in part.spike_times])

    def with_spike_flags(self, flags: np.ndarray) -> RawSimulations:
        """The same simulations with ``flags`` (n_sims, T) as the spike targets."""
        return replace(self, spike_flags=flags)


def with_spike_onsets(raw: RawSimulations, soma_segment: int, threshold_mv: float) -> RawSimulations:
    """``raw`` with the spike flags replaced by soma threshold crossings.

    A spike peak often falls after the 1 ms sample where the soma voltage has already crossed
    the threshold, so a model reading its somatic spike history (threshold crossings) would
    see the spike it is asked to predict in about half the cases when the target is the peak.
    The crossing is what a free run detects; as the target it cannot leak.
    """
    return raw.with_spike_flags(spike_onset_flags(raw.voltages_mv[:, soma_segment], threshold_mv))


#: ``cell_meta["spike_targets"]`` of checkpoints trained on :func:`with_spike_onsets` targets
SOMA_ONSET_TARGETS = "soma_onset"


def spike_targets_of(raw: RawSimulations, cell_meta: dict) -> RawSimulations:
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


EVENTS, DRIVE = "events", "drive"
"""The two input kinds: binary events per synapse-carrying segment (the ``published`` and
``poisson`` regimes), or synaptic conductances and somatic current (the ``mixture`` regime)."""


def input_kind(data_set: DataSet) -> str:
    """The model input a data set provides: :data:`DRIVE` for ``mixture`` data, else :data:`EVENTS`."""
    return DRIVE if data_set.config.get("inputs", {}).get("regime") == MixtureInputConfig.regime else EVENTS


def _input_matrix(record, n_segments: int) -> np.ndarray:
    """(T, channels) model input of one stored simulation, aligned with its voltages."""
    if record.stimulus is None:
        return np.concatenate([record.exc, record.inh], axis=0).T.astype(np.uint8)
    warmup, n_ms = int(record.attrs["warmup_ms"]), record.vmem.shape[1]
    return stimulus_drive(record.stimulus, n_segments)[warmup:warmup + n_ms].astype(np.float16)


def check_finite(data_set: DataSet, sim_indices, voltages: list) -> None:
    """Refuse simulations holding NaN or infinite voltages, naming them.

    Raises
    ------
    DataSetError
        If any of ``voltages`` (one array per index of ``sim_indices``) is not finite.
    """
    bad = [int(index) for index, trace in zip(sim_indices, voltages) if not np.isfinite(trace).all()]
    if bad:
        raise DataSetError(
            f"{data_set.path}: simulation(s) {bad} hold non-finite voltages (NaN or inf), on which "
            f"training and evaluation give meaningless numbers. They come from a NEURON run that "
            f"diverged or from a damaged file; simulate a data set without them (e.g. another --seed "
            f"or input config, to a new --out) and use that.")


def load_raw(data_set: DataSet, sim_indices, progress: bool = True) -> RawSimulations:
    """Load simulations ``sim_indices`` of ``data_set`` (spike targets: the peaks)."""
    events, voltages, spikes, spike_times = [], [], [], []
    for index in tqdm(sim_indices, desc=f"loading {data_set.path.name}", disable=not progress,
                      leave=False):
        record = data_set.load_simulation(index)
        events.append(_input_matrix(record, record.vmem.shape[0]))
        voltages.append(record.vmem.astype(np.float32))
        spikes.append(spike_flags(record.spike_times, record.vmem.shape[1]))
        spike_times.append(record.spike_times)
    check_finite(data_set, sim_indices, voltages)
    return RawSimulations(np.stack(events), np.stack(voltages), np.stack(spikes), spike_times)


def check_long_enough(data_set: DataSet, needed_ms: int, purpose: str) -> None:
    """Refuse a data set whose simulations are shorter than ``needed_ms``.

    Parameters
    ----------
    data_set : DataSet
        The data set to check.
    needed_ms : int
        The shortest usable recording (ms), e.g. the model window plus one target.
    purpose : str
        What needs that length, quoted in the message (e.g. "the model window (100 ms) + 1").

    Raises
    ------
    ValueError
        Naming the data set, its length, what is needed and how to get it.
    """
    if data_set.duration_ms < needed_ms:
        raise ValueError(
            f"{data_set.path} holds {data_set.duration_ms} ms simulations, too short for "
            f"{purpose}: at least {needed_ms} ms are needed. Simulate a data set with --duration-ms "
            f"{needed_ms} or more (to a new --out), or use a model with a shorter window.")


def load_labelled(data_sets: list, sim_lists: list, progress: bool = True) -> tuple[RawSimulations, list]:
    """:func:`load_raw` of ``sim_lists[k]`` of every ``data_sets[k]``, joined, and per-simulation
    labels: the index for the first (primary) data set, ``"<file stem>/<index>"`` for the others."""
    kinds = {input_kind(each) for each in data_sets}
    if len(kinds) > 1:
        raise ValueError(f"the data sets {[str(each.path) for each in data_sets]} mix input kinds "
                         f"({sorted(kinds)}: 'mixture' data drives the model with conductances, the other "
                         f"regimes with binary events); train on data sets of one kind")
    raw = RawSimulations.concatenate([load_raw(each, sims, progress) for each, sims in zip(data_sets, sim_lists)])
    labels = [i if number == 0 else f"{each.path.stem}/{i}"
              for number, (each, sims) in enumerate(zip(data_sets, sim_lists)) for i in sims]
    return raw, labels


def build_window_data(raw: RawSimulations, normalisation: Normalisation, window: int,
                      sim_indices) -> WindowData:
    """Stack :func:`load_raw` simulations into a :class:`WindowData` with z-scored voltages."""
    z = normalisation.to_z(raw.voltages_mv).transpose(0, 2, 1)
    return WindowData(
        events=torch.from_numpy(raw.events),
        voltages=torch.from_numpy(np.ascontiguousarray(z, dtype=np.float32)),
        spikes=torch.from_numpy(raw.spike_flags),
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
