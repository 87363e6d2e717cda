"""External Poisson drive: events drawn in blocks of cells and chunks of time, handed out per step.

The events of block ``b`` (cells ``b * DRIVE_BLOCK_CELLS ...`` of a population) in chunk ``k``
(ms ``k * DRIVE_CHUNK_MS ...``) come from their own random stream (seed, drive, k, b). So any
rank draws only the blocks that hold its cells, any run length gives the same events for the
same times, and the number of processes changes nothing.

Within a block and chunk the Poisson processes of all cells of one channel are drawn as one:
their total count, then a uniform cell and ms for each event, which has the same distribution
as independent trains and costs time in proportion to the events, not to cells x channels.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import torch

from surrogate_cell.network.connectivity import DRIVE_STREAM, stream_rng

DRIVE_CHUNK_MS = 100
DRIVE_BLOCK_CELLS = 64


@dataclass
class DriveEvents:
    """Events as parallel arrays: bin (absolute ms), cell (index in its population), channel."""

    bins: np.ndarray
    cells: np.ndarray
    channels: np.ndarray

    @classmethod
    def concatenate(cls, parts: list[DriveEvents]) -> DriveEvents:
        """All events of ``parts``, sorted by bin (stable)."""
        if not parts:
            return cls(*(np.empty(0, dtype=np.int64) for _ in range(3)))
        merged = [np.concatenate([getattr(part, name) for part in parts]) for name in ("bins", "cells", "channels")]
        order = np.argsort(merged[0], kind="stable")
        return cls(*(values[order] for values in merged))


def draw_drive_chunk(seed: int, drive_index: int, channel_rates_hz: np.ndarray, n_cells: int,
                     cells: range, chunk: int) -> DriveEvents:
    """Drive events of chunk ``chunk`` for the population cells ``cells`` (binary per bin and channel)."""
    first_block = cells.start // DRIVE_BLOCK_CELLS
    last_block = (cells.stop - 1) // DRIVE_BLOCK_CELLS if len(cells) else first_block - 1
    parts = [_draw_block(seed, drive_index, channel_rates_hz, n_cells, block, chunk)
             for block in range(first_block, last_block + 1)]  # blocks of 64 cells, per chunk
    events = DriveEvents.concatenate(parts)
    inside = (events.cells >= cells.start) & (events.cells < cells.stop)
    return DriveEvents(events.bins[inside], events.cells[inside], events.channels[inside])


def _draw_block(seed: int, drive_index: int, rates_hz: np.ndarray, n_cells: int, block: int,
                chunk: int) -> DriveEvents:
    rng = stream_rng(seed, DRIVE_STREAM, drive_index, chunk, block)
    first_cell = block * DRIVE_BLOCK_CELLS
    n_block = min(DRIVE_BLOCK_CELLS, n_cells - first_cell)
    counts = rng.poisson(rates_hz * 1e-3 * n_block * DRIVE_CHUNK_MS)
    channels = np.repeat(np.arange(rates_hz.size, dtype=np.int64), counts)
    cell_offsets = rng.integers(0, n_block, channels.size)
    bin_offsets = rng.integers(0, DRIVE_CHUNK_MS, channels.size)
    # one event per (bin, cell, channel): the model was trained on binary events
    keys = np.unique((bin_offsets * n_block + cell_offsets) * rates_hz.size + channels)
    channels, rest = keys % rates_hz.size, keys // rates_hz.size
    return DriveEvents(chunk * DRIVE_CHUNK_MS + rest // n_block, first_cell + rest % n_block, channels)


@dataclass(frozen=True)
class DriveSource:
    """One drive onto the local cells of one population, as rows of a model group's batch."""

    drive_index: int
    channel_rates_hz: np.ndarray
    n_cells: int
    local_cells: range
    first_row: int


class DriveSchedule:
    """The drive events of one model group's local cells, generated a chunk ahead, handed out per ms."""

    def __init__(self, sources: list[DriveSource], seed: int, device: torch.device):
        self.sources, self.seed, self.device = sources, seed, device
        self._chunk = -1
        self._rows = self._channels = torch.empty(0, dtype=torch.int64)
        self._offsets = np.zeros(DRIVE_CHUNK_MS + 1, dtype=np.int64)

    def events_at(self, bin_ms: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(batch rows, channels) of the drive events in ``[bin_ms, bin_ms + 1)``."""
        chunk = bin_ms // DRIVE_CHUNK_MS
        if chunk != self._chunk:
            self._load(chunk)
        start, stop = self._offsets[bin_ms % DRIVE_CHUNK_MS], self._offsets[bin_ms % DRIVE_CHUNK_MS + 1]
        return self._rows[start:stop], self._channels[start:stop]

    def _load(self, chunk: int) -> None:
        parts = []
        for source in self.sources:  # a few drives per group, once per chunk
            events = draw_drive_chunk(self.seed, source.drive_index, source.channel_rates_hz,
                                      source.n_cells, source.local_cells, chunk)
            rows = source.first_row + events.cells - source.local_cells.start
            parts.append(DriveEvents(events.bins, rows, events.channels))
        events = DriveEvents.concatenate(parts)
        self._offsets = np.searchsorted(events.bins - chunk * DRIVE_CHUNK_MS, np.arange(DRIVE_CHUNK_MS + 1))
        self._rows = torch.as_tensor(events.cells, device=self.device)
        self._channels = torch.as_tensor(events.channels, device=self.device)
        self._chunk = chunk
