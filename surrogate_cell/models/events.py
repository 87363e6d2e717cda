"""Exact causal convolution of sparse event channels by gather-sums.

Synaptic event channels are binary and mostly zero, so a dense convolution
spends nearly all of its time multiplying by zero. :class:`EventIndex` records
where the non-zero entries of a batch are and evaluates a causal convolution
over those channels as sums of weight rows (``torch.nn.functional.embedding_bag``).
The result, including the weight gradient, is mathematically identical to
``conv1d(pad(x, ((K - 1) * dilation, 0)), weight, dilation=dilation)``.
"""

from __future__ import annotations

from typing import NamedTuple

import numpy as np
import torch
import torch.nn.functional as F
from torch import Tensor
from torch.autograd.function import once_differentiable

#: Above this fraction of non-zero entries the dense convolution is faster.
MAX_SPARSE_DENSITY = 0.05


class GatherPlan(NamedTuple):
    """Index lists for one (kernel size, dilation) pair of an :class:`EventIndex`.

    The weight table has one row per (channel c, tap k), at ``c * K + k``;
    output rows are ``b * T + t``. ``fwd_*`` groups the table rows summed
    into each output row, ``bwd_*`` groups the output rows whose gradients
    sum into each table row.
    """

    fwd_index: Tensor
    fwd_offsets: Tensor
    fwd_weights: Tensor | None
    bwd_index: Tensor
    bwd_offsets: Tensor
    bwd_weights: Tensor | None


def _as(weights: Tensor | None, like: Tensor) -> Tensor | None:
    """Per-entry weights in the dtype of ``like`` (``None`` = all ones)."""
    return None if weights is None else weights.to(like.dtype)


class _GatherSum(torch.autograd.Function):
    """``out = S @ table`` for the sparse matrix ``S`` described by a plan."""

    @staticmethod
    def forward(ctx, table: Tensor, plan: GatherPlan) -> Tensor:
        """Sum the table rows listed for each output row."""
        ctx.plan = plan
        return F.embedding_bag(
            plan.fwd_index, table, plan.fwd_offsets, mode="sum",
            per_sample_weights=_as(plan.fwd_weights, table),
        )

    @staticmethod
    @once_differentiable
    def backward(ctx, grad: Tensor):
        """Sum the output-row gradients listed for each table row."""
        plan = ctx.plan
        grad_table = F.embedding_bag(
            plan.bwd_index, grad.contiguous(), plan.bwd_offsets, mode="sum",
            per_sample_weights=_as(plan.bwd_weights, grad),
        )
        return grad_table, None


def _exclusive_cumsum(counts: np.ndarray) -> np.ndarray:
    """Return ``[0, c0, c0 + c1, ...]`` (length ``len(counts) + 1``) as int32."""
    out = np.zeros(counts.size + 1, dtype=np.int32)
    np.cumsum(counts, out=out[1:])
    return out


def _ragged_ranges(starts: np.ndarray, counts: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Concatenate the ranges ``[starts[i], starts[i] + counts[i])``.

    Returns the concatenated positions and, for each, the index ``i`` of
    the range it came from.
    """
    owner = np.repeat(np.arange(counts.size, dtype=np.int32), counts)
    delta = (starts - _exclusive_cumsum(counts)[:-1]).astype(np.int32)
    return np.arange(owner.size, dtype=np.int32) + delta[owner], owner


class _Events(NamedTuple):
    """Event coordinates (int32) and values, all in one sort order."""

    b: np.ndarray
    c: np.ndarray
    t: np.ndarray
    values: np.ndarray

    def sorted_by(self, key: np.ndarray) -> _Events:
        """The same events sorted by ``key`` (ties in any order)."""
        order = np.argsort(key)
        return _Events(*(a[order] for a in self))


class EventIndex:
    """Coordinates of the non-zero entries of a batch of event channels.

    Build it once per batch from ``events`` of shape (batch, channels, time)
    and call :meth:`conv` for every convolution that reads those channels;
    index plans are cached per (kernel size, dilation). The integer
    bookkeeping runs in numpy on int32: many cheap passes, for which torch's
    thread-pool dispatch costs more than the work when cores are busy.
    """

    def __init__(self, events: Tensor):
        """Index the non-zero entries of ``events`` (batch, channels, time)."""
        if events.dim() != 3:
            raise ValueError(f"events must be (batch, channels, time), got {tuple(events.shape)}")
        if events.numel() >= 2**31:
            raise ValueError("batch too large for int32 event indices; split it")
        self.shape = tuple(events.shape)
        self.device = events.device
        batch, channels, time = self.shape
        array = events.detach().cpu().numpy()  # a strided view: no copy of a channel slice
        nz = np.flatnonzero(array != 0).astype(np.int32)
        bc, t = np.divmod(nz, time)
        b, c = np.divmod(bc, channels)
        values = array[b, c, t]
        # Binary events need no per-entry weights, which saves a gather per plan.
        self.binary = bool(np.all(values == 1))
        self._by_time = _Events(b, c, t, values).sorted_by(b * time + t)
        self._by_channel = _Events(b, c, t, values).sorted_by(c * time + t)
        self.count = int(nz.size)
        self.density = nz.size / max(array.size, 1)
        self._plans: dict[tuple[int, int], GatherPlan] = {}

    @property
    def is_sparse(self) -> bool:
        """Whether the gather path is expected to beat a dense convolution."""
        return self.density <= MAX_SPARSE_DENSITY

    def conv(self, weight: Tensor, dilation: int = 1) -> Tensor:
        """Causal convolution of the indexed events with ``weight`` (out, channels, K).

        Returns (batch, out, time), equal to ``conv1d(pad(x, (pad, 0)), weight,
        dilation=dilation)`` with ``pad = (K - 1) * dilation``; no bias.
        """
        batch, channels, time = self.shape
        n_out, w_channels, kernel = weight.shape
        if w_channels != channels:
            raise ValueError(f"weight has {w_channels} input channels, events have {channels}")
        plan = self.plan(kernel, dilation)
        table = weight.reshape(n_out, channels * kernel).t().contiguous()
        out = _GatherSum.apply(table, plan)
        return out.view(batch, time, n_out).transpose(1, 2)

    def plan(self, kernel: int, dilation: int) -> GatherPlan:
        """The (cached) gather lists for a causal kernel of this size and dilation."""
        key = (kernel, dilation)
        if self.count * kernel >= 2**31:
            raise ValueError("too many events for int32 gather lists; split the batch")
        if key not in self._plans:
            # Tap k reads x[t - shift[k]] (the last tap is the current step).
            shifts = ((kernel - 1 - np.arange(kernel)) * dilation).astype(np.int32)
            lists = (*self._forward_lists(shifts), *self._backward_lists(shifts))
            self._plans[key] = GatherPlan(*(
                None if a is None else torch.from_numpy(a).to(self.device) for a in lists
            ))
        return self._plans[key]

    def _forward_lists(self, shifts: np.ndarray) -> tuple:
        """Bags per output row (b, t): events at (b, t - shift[k]) for every tap k."""
        batch, channels, time = self.shape
        ev = self._by_time
        per_row = np.bincount(ev.b * time + ev.t, minlength=batch * time).astype(np.int32)
        rows = np.arange(batch * time, dtype=np.int32)
        inside = (rows % time)[:, None] >= shifts[None, :]
        src = np.where(inside, rows[:, None] - shifts[None, :], 0)
        counts = np.where(inside, per_row[src], 0).astype(np.int32)
        starts = _exclusive_cumsum(per_row)[src]
        positions, pair = _ragged_ranges(starts.ravel(), counts.ravel())
        tap = np.tile(np.arange(shifts.size, dtype=np.int32), batch * time)
        index = ev.c[positions] * shifts.size + tap[pair]
        offsets = _exclusive_cumsum(counts.sum(1))[:-1]
        return index, offsets, None if self.binary else ev.values[positions]

    def _backward_lists(self, shifts: np.ndarray) -> tuple:
        """Bags per table row (c, k): output rows (b, t + shift[k]) inside the window."""
        batch, channels, time = self.shape
        ev = self._by_channel
        per_ct = np.bincount(ev.c * time + ev.t, minlength=channels * time).reshape(channels, time)
        starts = _exclusive_cumsum(per_ct.sum(1))[:-1]
        # Events of one channel are sorted by time, so those with t + shift < T are a prefix.
        upto = np.zeros((channels, time + 1), dtype=np.int32)
        np.cumsum(per_ct, axis=1, out=upto[:, 1:])
        counts = upto[:, np.clip(time - shifts, 0, None)].ravel()
        positions, pair = _ragged_ranges(np.repeat(starts, shifts.size), counts)
        row = ev.b * time + ev.t
        index = row[positions] + np.tile(shifts, channels)[pair]
        offsets = _exclusive_cumsum(counts)[:-1]
        return index, offsets, None if self.binary else ev.values[positions]
