"""TCN layers kept over the model window and updated only where a window shift changes them.

When the window moves by one step, a causal layer's value at window position ``t`` stays
the value it had at position ``t + 1`` -- except where its receptive field reached past
the window start, into the causal zero padding: that part now misses the dropped step. A
convolution with padding ``P`` therefore changes at positions ``[0, P)`` (plus those
reached from changed inputs) and at the new, newest position. Each layer keeps its values
in a :class:`SlidingWindow` and recomputes only these positions, exactly: always from its
inputs, never by subtracting contributions, so round-off cannot accumulate.

The first convolution of every stack reads the wide raw input (synaptic events and segment
voltages). :class:`InputLayer` computes its contribution column by column: the newest input
column times every tap's weight, ``Z[t, k] = W_k x[t]``, cached for the whole window, so
that the convolution at any position is a sum of cached taps. Events are sparse and
binary, so their share is a sum of weight rows.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor

from surrogate_cell.engine.dense import DenseProduct
from surrogate_cell.engine.sliding import SlidingWindow
from surrogate_cell.models.events import MAX_SPARSE_DENSITY
from surrogate_cell.models.tcn import BlockWeights

Spans = tuple[tuple[int, int], ...]


def dirty_spans(prefix: int, length: int, full: bool = False) -> Spans:
    """Window positions to recompute: ``[0, prefix)`` and the newest position, or all.

    ``full`` (a fresh window) or a prefix reaching the newest position gives ``((0, length),)``.
    """
    if full or prefix >= length - 1:
        return ((0, length),)
    if prefix == 0:
        return ((length - 1, length),)
    return ((0, prefix), (length - 1, length))


def span_positions(spans: Spans) -> list[int]:
    """The positions covered by ``spans``, in order."""
    return [t for start, stop in spans for t in range(start, stop)]


def write_spans(target: Tensor, values: Tensor, spans: Spans) -> None:
    """Copy consecutive chunks of ``values`` (..., n) into the time positions ``spans`` of ``target``."""
    offset = 0
    for start, stop in spans:
        target[..., start:stop] = values[..., offset:offset + stop - start]
        offset += stop - start


@dataclass
class CausalConv:
    """A (grouped) causal convolution: left padding ``pad`` then ``conv1d``."""

    weight: Tensor
    bias: Tensor | None
    dilation: int = 1
    groups: int = 1

    @property
    def pad(self) -> int:
        """Zero steps the convolution reads before the window start."""
        return (self.weight.shape[-1] - 1) * self.dilation

    def at(self, padded: Tensor, start: int, stop: int) -> Tensor:
        """Outputs (batch, out, stop - start) at window positions ``[start, stop)``.

        ``padded`` is the input window preceded by exactly ``pad`` zero steps.
        """
        return F.conv1d(padded[..., start:stop + self.pad], self.weight, self.bias,
                        dilation=self.dilation, groups=self.groups)

    def flops(self, positions: int) -> int:
        """Multiply-adds (two FLOPs each) for ``positions`` output positions."""
        out_channels, in_per_group, kernel = self.weight.shape
        return 2 * out_channels * in_per_group * kernel * positions


class InputLayer:
    """First convolution and residual projection of all stacks, fed one input column per step.

    ``first_blocks`` are the first blocks of every stack (all reading the raw input of
    ``n_events`` event channels then dense voltage channels). Their convolutions share kernel
    size and dilation; their output channels are concatenated. Keeps, over the window, the
    per-tap contributions ``taps`` (batch, time, kernel, channels) and the residual
    projections ``residual`` (batch, channels, time).
    """

    def __init__(self, first_blocks: list[BlockWeights], n_events: int, window: int, batch: int,
                 device: torch.device, dtype: torch.dtype):
        convs = [block.conv1_weight for block in first_blocks]
        if len({(w.shape[-1], b.dilation) for w, b in zip(convs, first_blocks)}) != 1:
            raise ValueError("the stacks' first convolutions need one kernel size and dilation")
        self.kernel, self.dilation = convs[0].shape[-1], first_blocks[0].dilation
        self.pad = (self.kernel - 1) * self.dilation
        self.widths = [w.shape[0] for w in convs]
        self.channels, self.n_events, self.window = sum(self.widths), n_events, window
        self.conv_bias = torch.cat([block.conv1_bias for block in first_blocks])
        self.residual_bias = torch.cat([_residual_bias(block) for block in first_blocks])
        weight = _column_weight(first_blocks)  # (in, (kernel + 1) * channels)
        self.column_weight = weight
        self.event_product = DenseProduct(weight[:n_events], batch)
        self.voltage_product = DenseProduct(weight[n_events:], batch)
        self.taps = SlidingWindow((batch, window, self.kernel, self.channels), 1, self.pad, window,
                                  device, dtype)
        self.residual = SlidingWindow((batch, self.channels, window), -1, 0, window, device, dtype)
        self._tap_index = torch.arange(self.kernel, device=device)

    def advance(self) -> None:
        """Move the window by one step; :meth:`push` must then fill the newest column."""
        self.taps.advance()
        self.residual.advance()

    def fill(self, columns: Tensor) -> None:
        """Set the whole window from input columns (batch, time, in)."""
        contributions = columns @ self.column_weight
        self._store(contributions, self.taps.window(), self.residual.window())

    def push(self, events: Tensor, voltages: Tensor) -> None:
        """Add the newest column from ``events`` (batch, n_events) and z-voltages (batch, S)."""
        contributions = self.voltage_product(voltages)
        if self.n_events:
            contributions += self.event_contributions(events)
        self._store(contributions.unsqueeze(1), self.taps.newest(), self.residual.newest())

    def event_contributions(self, events: Tensor) -> Tensor:
        """``events @ event rows of the weight``: a sum of weight rows when events are sparse."""
        cells, channels = torch.nonzero(events, as_tuple=True)
        if cells.numel() > MAX_SPARSE_DENSITY * events.numel():
            return self.event_product(events)
        counts = torch.bincount(cells, minlength=events.shape[0])
        offsets = torch.cumsum(counts, 0) - counts
        weight = self.column_weight[:self.n_events]
        return F.embedding_bag(channels, weight, offsets, mode="sum",
                               per_sample_weights=events[cells, channels])

    def conv_at(self, spans: Spans) -> Tensor:
        """First-convolution pre-activations (batch, channels, n) at the positions of ``spans``."""
        positions = torch.tensor(span_positions(spans), device=self._tap_index.device)
        rows = positions[:, None] + self._tap_index * self.dilation  # padded coordinates
        summed = self.taps.padded()[:, rows, self._tap_index].sum(2)
        return (summed + self.conv_bias).transpose(1, 2)

    def flops(self, event_density: float, spans: Spans) -> int:
        """FLOPs per cell of one step: the newest column, then the tap sums at ``spans``."""
        per_row = 2 * (self.kernel + 1) * self.channels
        events = event_density * self.n_events * per_row
        voltages = self.voltage_product.flops_per_row()
        return int(events + voltages + len(span_positions(spans)) * self.kernel * self.channels)

    def _store(self, contributions: Tensor, taps: Tensor, residual: Tensor) -> None:
        """Split (batch, time, (kernel + 1) * channels) into the tap and residual windows."""
        batch, time, _ = contributions.shape
        split = self.kernel * self.channels
        taps.copy_(contributions[..., :split].view(batch, time, self.kernel, self.channels))
        residual.copy_((contributions[..., split:] + self.residual_bias).transpose(1, 2))


def _column_weight(first_blocks: list[BlockWeights]) -> Tensor:
    """(in, (kernel + 1) * channels): every tap's weight, then the residual projection."""
    conv = torch.cat([block.conv1_weight for block in first_blocks])  # (channels, in, kernel)
    residual = torch.cat([_residual_weight(block, conv.shape[1]) for block in first_blocks])
    taps = conv.permute(1, 2, 0).reshape(conv.shape[1], -1)  # column k * channels + c
    return torch.cat([taps, residual.t()], dim=1).contiguous()


def _residual_weight(block: BlockWeights, n_inputs: int) -> Tensor:
    """(out, in) residual projection; the identity for an identity shortcut."""
    if block.residual_weight is None:
        return torch.eye(n_inputs, dtype=block.conv1_weight.dtype, device=block.conv1_weight.device)
    return block.residual_weight[..., 0]


def _residual_bias(block: BlockWeights) -> Tensor:
    """Residual bias (out,); zeros for an identity shortcut."""
    if block.residual_bias is None:
        return torch.zeros_like(block.conv1_bias)
    return block.residual_bias


class IncrementalTCN:
    """One TCN stack after its first convolution, with every layer's values over the window.

    ``blocks`` are the stack's :class:`BlockWeights`. Each step, :meth:`update` receives the
    first convolution's pre-activations at ``first_spans`` (from :class:`InputLayer`) and a
    view of the first block's residual over the window, and recomputes the changed positions
    of every later layer. :meth:`features` is the last block's output flattened like
    :class:`~surrogate_cell.models.tcn.TCN` does, (batch, members, channels * window).
    """

    def __init__(self, blocks: list[BlockWeights], window: int, batch: int, device: torch.device,
                 dtype: torch.dtype):
        self.window, self.batch = window, batch
        self.n_members = blocks[0].groups
        self.conv1 = [None] + [_conv1(block) for block in blocks[1:]]  # first: InputLayer's
        self.conv2 = [_conv2(block) for block in blocks]
        self.shortcut = [None] + [_shortcut(block) for block in blocks[1:]]
        pads = [block.pad for block in blocks]
        widths = [block.conv2_weight.shape[0] for block in blocks]

        def sliding(width: int, pad: int) -> SlidingWindow:
            return SlidingWindow((batch, width, window), -1, pad, window, device, dtype)

        self.hidden = [sliding(width, pad) for width, pad in zip(widths, pads)]
        self.outputs = [sliding(width, pad) for width, pad in zip(widths, [*pads[1:], 0])]
        self.hidden_prefix, self.output_prefix = _changed_prefixes(pads)

    def advance(self) -> None:
        """Move every layer's window by one step."""
        for sliding in (*self.hidden, *self.outputs):
            sliding.advance()

    def first_spans(self, full: bool) -> Spans:
        """Positions of the first convolution to recompute (see :func:`dirty_spans`)."""
        return dirty_spans(self.hidden_prefix[0], self.window, full)

    def update(self, first_conv: Tensor, first_residual: Tensor, full: bool) -> None:
        """Recompute the changed positions of every layer (all of them if ``full``)."""
        write_spans(self.hidden[0].window(), torch.sigmoid(first_conv), self.first_spans(full))
        for index in range(len(self.conv2)):
            if index:
                self._update_hidden(index, full)
            self._update_output(index, first_residual, full)

    def features(self) -> Tensor:
        """Last block's output (batch, members, channels * window), channel-major per member."""
        return self.outputs[-1].window().reshape(self.batch, self.n_members, -1)

    def flops(self) -> int:
        """FLOPs per cell of one step (convolutions at the recomputed positions)."""
        total = 0
        for index, conv2 in enumerate(self.conv2):
            n_out = len(span_positions(dirty_spans(self.output_prefix[index], self.window)))
            total += conv2.flops(n_out)
            if index:
                n_hidden = len(span_positions(dirty_spans(self.hidden_prefix[index], self.window)))
                total += self.conv1[index].flops(n_hidden)
                total += 0 if self.shortcut[index] is None else self.shortcut[index].flops(n_out)
        return total

    def _update_hidden(self, index: int, full: bool) -> None:
        """``sigmoid(conv1(previous output))`` of block ``index`` at its changed positions."""
        source, target = self.outputs[index - 1].padded(), self.hidden[index].window()
        for start, stop in dirty_spans(self.hidden_prefix[index], self.window, full):
            target[..., start:stop] = torch.sigmoid(self.conv1[index].at(source, start, stop))

    def _update_output(self, index: int, first_residual: Tensor, full: bool) -> None:
        """Block output ``sigmoid(sigmoid(conv2(hidden)) + residual)`` at its changed positions."""
        hidden, target = self.hidden[index].padded(), self.outputs[index].window()
        for start, stop in dirty_spans(self.output_prefix[index], self.window, full):
            activated = torch.sigmoid(self.conv2[index].at(hidden, start, stop))
            activated += self._residual(index, first_residual, start, stop)
            target[..., start:stop] = torch.sigmoid(activated)

    def _residual(self, index: int, first_residual: Tensor, start: int, stop: int) -> Tensor:
        """Residual term of block ``index`` at positions ``[start, stop)``."""
        if index == 0:
            return first_residual[..., start:stop]
        block_input = self.outputs[index - 1].window()[..., start:stop]
        shortcut = self.shortcut[index]
        return block_input if shortcut is None else shortcut.at(block_input, 0, stop - start)


def _changed_prefixes(pads: list[int]) -> tuple[list[int], list[int]]:
    """Per block, how many leading window positions of its hidden layer and output change per step.

    A convolution with padding ``P`` reading an input whose first ``L`` positions changed
    changes its first ``L + P`` positions; the residual adds nothing beyond ``L``.
    """
    hidden, output, changed_input = [], [], 0
    for pad in pads:
        hidden.append(changed_input + pad)
        output.append(changed_input + 2 * pad)
        changed_input = output[-1]
    return hidden, output


def _conv1(block: BlockWeights) -> CausalConv:
    return CausalConv(block.conv1_weight, block.conv1_bias, block.dilation, block.conv1_groups)


def _conv2(block: BlockWeights) -> CausalConv:
    return CausalConv(block.conv2_weight, block.conv2_bias, block.dilation, block.groups)


def _shortcut(block: BlockWeights) -> CausalConv | None:
    if block.residual_weight is None:
        return None
    return CausalConv(block.residual_weight, block.residual_bias, 1, block.groups)
