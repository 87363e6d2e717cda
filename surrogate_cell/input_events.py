"""Synaptic input events of one cell as a sparse, sorted list, made dense one block of time at a time.

A surrogate's input is binary: channel ``c`` (a segment and synapse kind) has an event in the
1 ms step ``k`` or not. Held densely that is channels x steps values (1284 x 10^6 bytes for a
1000 s run of the default cell, even without a single synapse); held as the list of events it
grows only with the number of events. :class:`InputEvents` keeps that list, sorted by step and
channel, and hands out dense blocks of consecutive steps (:meth:`InputEvents.block`), which
is what the free-run loop reads chunk by chunk.
"""

from __future__ import annotations

import warnings
from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np

MODEL_STEP_MS = 1.0
"""Time step of every surrogate model (ms)."""


class SynapseMappingWarning(UserWarning):
    """Synaptic input was adapted to what the model was trained on (e.g. several events in one
    step of one channel count as one); also ``surrogate_cell.cell.SynapseMappingWarning``."""


@dataclass(frozen=True)
class InputEvents:
    """Binary input events: channel ``channels[i]`` has an event in step ``steps[i]``.

    Events are unique and sorted by step, then channel. Step ``k`` covers ``[t0 + k, t0 + k + 1)``
    ms, ``t0`` being the time of the first model step.

    Parameters
    ----------
    steps : ndarray of int64
        Step of every event, ``0 <= step < n_steps``.
    channels : ndarray of int64
        Channel of every event, ``0 <= channel < n_channels``.
    n_channels : int
        Number of input channels.
    n_steps : int
        Number of model steps.

    Examples
    --------
    >>> events = InputEvents.from_spike_times([np.array([2.5, 7.0])], np.array([1]), 3, 10)
    >>> events.block(0, 4)[:, 1].tolist()
    [0, 0, 1, 0]
    """

    steps: np.ndarray
    channels: np.ndarray
    n_channels: int
    n_steps: int

    @classmethod
    def from_spike_times(cls, spike_times: Sequence[np.ndarray], channels: np.ndarray, n_channels: int,
                         n_steps: int, t_begin: float = 0.0) -> InputEvents:
        """Bin spike trains: spike ``t`` of train ``i`` is an event of ``channels[i]`` in step ``floor(t - t_begin)``.

        Spikes in or after step ``n_steps`` are dropped (they act after the end of the
        simulation); several in one step of one channel count as one, with a
        :class:`SynapseMappingWarning`.

        Parameters
        ----------
        spike_times : sequence of ndarray
            Finite spike times (ms) of every train, none before ``t_begin``.
        channels : ndarray of int
            Input channel of every train.
        n_channels, n_steps : int
            Number of channels and of 1 ms model steps.
        t_begin : float
            Time (ms) of the first model step, a whole ms.

        Returns
        -------
        InputEvents
            The events, in memory proportional to their number.
        """
        counts_per_train = np.fromiter(map(np.size, spike_times), dtype=np.int64, count=len(spike_times))
        times = np.concatenate([np.ravel(t) for t in spike_times]) if len(spike_times) else np.empty(0)
        channel_of_spike = np.repeat(np.asarray(channels, dtype=np.int64), counts_per_train)
        steps = np.floor((np.asarray(times, dtype=float) - t_begin) / MODEL_STEP_MS).astype(np.int64)
        inside = (steps >= 0) & (steps < n_steps)
        return cls._from_keys(steps[inside] * n_channels + channel_of_spike[inside], n_channels, n_steps)

    @classmethod
    def from_dense(cls, events: np.ndarray) -> InputEvents:
        """The events of a dense (n_channels, n_steps) array (non-zero = event).

        Parameters
        ----------
        events : ndarray, shape (n_channels, n_steps)
            Dense binary events.

        Returns
        -------
        InputEvents
            The same events, sparse.
        """
        events = np.asarray(events)
        channels, steps = np.nonzero(events)
        order = np.lexsort((channels, steps))
        return cls(steps[order].astype(np.int64), channels[order].astype(np.int64), *events.shape)

    @classmethod
    def _from_keys(cls, keys: np.ndarray, n_channels: int, n_steps: int) -> InputEvents:
        """Events from ``step * n_channels + channel`` keys; repeated keys count once (with a warning)."""
        unique, counts = np.unique(keys, return_counts=True)
        crowded = counts > 1
        if crowded.any():
            warnings.warn(
                f"{int(crowded.sum())} (channel, ms) bins received more than one synaptic event "
                f"({int(counts[crowded].sum() - crowded.sum())} extra events); the model was trained on "
                "at most one event per segment, kind and ms, so each such bin counts as one event.",
                SynapseMappingWarning, stacklevel=4,
            )
        steps, channels = np.divmod(unique, n_channels)
        return cls(steps, channels, int(n_channels), int(n_steps))

    @property
    def shape(self) -> tuple[int, int]:
        """(n_channels, n_steps), the shape of :meth:`toarray`."""
        return self.n_channels, self.n_steps

    @property
    def n_events(self) -> int:
        """Number of events."""
        return int(self.steps.size)

    @property
    def nbytes(self) -> int:
        """Bytes held (the event lists; nothing grows with ``n_steps``)."""
        return int(self.steps.nbytes + self.channels.nbytes)

    def block(self, start: int, stop: int) -> np.ndarray:
        """Dense events of steps ``start .. stop - 1``, time first: uint8 (stop - start, n_channels).

        Parameters
        ----------
        start, stop : int
            First and one-past-last step.

        Returns
        -------
        ndarray of uint8, shape (stop - start, n_channels)
            1 where a channel has an event in a step.
        """
        first, last = np.searchsorted(self.steps, [start, stop])
        dense = np.zeros((stop - start, self.n_channels), dtype=np.uint8)
        dense[self.steps[first:last] - start, self.channels[first:last]] = 1
        return dense

    def toarray(self) -> np.ndarray:
        """All events dense, uint8 (n_channels, n_steps); memory grows with ``n_steps``, for short runs.

        Returns
        -------
        ndarray of uint8, shape (n_channels, n_steps)
            Column ``k`` holds the events of step ``k``.
        """
        return self.block(0, self.n_steps).T
