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


def span_length(spans: Spans) -> int:
    """Number of positions covered by ``spans``."""
    return sum(stop - start for start, stop in spans)


def gather_spans(source: Tensor, spans: Spans) -> Tensor:
    """The time positions ``spans`` of ``source`` (..., time), concatenated: (..., n)."""
    if len(spans) == 1:
        return source[..., spans[0][0]:spans[0][1]]
    return torch.cat([source[..., start:stop] for start, stop in spans], dim=-1)


def write_sigmoid_spans(target: Tensor, values: Tensor, spans: Spans) -> None:
    """Write ``sigmoid`` of consecutive chunks of ``values`` (..., n) to the positions ``spans`` of ``target``."""
    offset = 0
    for start, stop in spans:
        torch.sigmoid(values[..., offset:offset + stop - start], out=target[..., start:stop])
        offset += stop - start


MAX_UNFOLDED_MACS = 6_000_000
"""Convolutions with fewer multiply-adds per call run as one batched matrix product.

oneDNN's convolution (behind ``conv1d``) costs ~0.1 ms per call even for a single output
position; below about this size an explicit unfold-and-multiply is faster (measured on
the paper-size layers, 1 to 100 cells)."""


@dataclass
class CausalConv:
    """A (grouped) causal convolution (left padding ``pad``), evaluated at chosen window positions."""

    weight: Tensor
    bias: Tensor | None
    dilation: int = 1
    groups: int = 1

    def __post_init__(self) -> None:
        """Keep the per-group views of weight and bias that the unfolded product uses."""
        self.pad = (self.weight.shape[-1] - 1) * self.dilation
        self.group_weight = self.weight.reshape(self.groups, self.weight.shape[0] // self.groups, -1)
        self.group_bias = None if self.bias is None else self.bias.view(self.groups, -1, 1)

    def at(self, padded: Tensor, spans: Spans) -> Tensor:
        """Outputs (batch, out, n) at the window positions of ``spans``, concatenated.

        ``padded`` is the input window preceded by exactly ``pad`` zero steps.
        """
        if self.multiply_adds(padded.shape[0] * span_length(spans)) < MAX_UNFOLDED_MACS:
            return self._unfolded(padded, spans)
        outputs = [F.conv1d(padded[..., start:stop + self.pad], self.weight, self.bias,
                            dilation=self.dilation, groups=self.groups) for start, stop in spans]
        return outputs[0] if len(outputs) == 1 else torch.cat(outputs, dim=-1)

    def _unfolded(self, padded: Tensor, spans: Spans) -> Tensor:
        """The convolution as a product of per-group weights with the unfolded input.

        Columns are ordered (group, channel, tap) x (cell, position), so all cells and
        positions of all spans form the wide side of one product per group.
        """
        views = [self._unfold(padded, start, stop) for start, stop in spans]
        columns = views[0] if len(views) == 1 else torch.cat(views, dim=-1)
        groups, in_per_group, kernel, batch, positions = columns.shape
        columns = columns.reshape(groups, in_per_group * kernel, batch * positions)
        if self.group_bias is None:
            out = torch.bmm(self.group_weight, columns)
        else:
            out = torch.baddbmm(self.group_bias, self.group_weight, columns)
        return out.view(-1, batch, positions).transpose(0, 1)

    def _unfold(self, padded: Tensor, start: int, stop: int) -> Tensor:
        """View (groups, channels per group, taps, batch, positions) of the inputs of ``[start, stop)``."""
        _, in_per_group, kernel = self.weight.shape
        stride_b, stride_c, stride_t = padded.stride()
        return padded.as_strided(
            (self.groups, in_per_group, kernel, padded.shape[0], stop - start),
            (in_per_group * stride_c, stride_c, self.dilation * stride_t, stride_b, stride_t),
            padded.storage_offset() + start * stride_t,
        )

    def multiply_adds(self, positions: int) -> int:
        """Multiply-adds for ``positions`` output positions (cells times window positions)."""
        return self.weight.numel() * positions

    def flops(self, positions: int) -> int:
        """FLOPs (two per multiply-add) for ``positions`` output positions."""
        return 2 * self.multiply_adds(positions)


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
        self.column_weight = _column_weight(first_blocks)  # (in, (kernel + 1) * channels)
        self.voltage_product = DenseProduct(self.column_weight[n_events:], batch)
        self._dense_event_product: DenseProduct | None = None  # built if events are ever dense
        self.taps = SlidingWindow((batch, window, self.kernel, self.channels), 1, self.pad, window,
                                  device, dtype)
        self.residual = SlidingWindow((batch, self.channels, window), -1, 0, window, device, dtype)

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
        weight = self.column_weight[:self.n_events]
        cells, channels = torch.nonzero(events, as_tuple=True)
        if cells.numel() > MAX_SPARSE_DENSITY * events.numel():
            if self._dense_event_product is None:
                self._dense_event_product = DenseProduct(weight, events.shape[0])
            return self._dense_event_product(events)
        counts = torch.bincount(cells, minlength=events.shape[0])
        offsets = torch.cumsum(counts, 0) - counts
        return F.embedding_bag(channels, weight, offsets, mode="sum",
                               per_sample_weights=events[cells, channels])

    def conv_at(self, spans: Spans) -> Tensor:
        """First-convolution pre-activations (batch, channels, n) at the positions of ``spans``."""
        summed = torch.cat([self._tap_sum(start, stop) for start, stop in spans], dim=1)
        return (summed + self.conv_bias).transpose(1, 2)

    def _tap_sum(self, start: int, stop: int) -> Tensor:
        """``sum_k Z[t - (K-1-k) d, k]`` (batch, stop - start, channels) for ``t`` in ``[start, stop)``.

        In the padded window, tap ``k`` of position ``t`` sits at row ``t + k d``: a strided
        view steps one row per position and ``d`` rows plus one tap per tap.
        """
        padded = self.taps.padded()
        batch_stride, row_stride, tap_stride, channel_stride = padded.stride()
        diagonal = padded.as_strided(
            (padded.shape[0], stop - start, self.kernel, self.channels),
            (batch_stride, row_stride, self.dilation * row_stride + tap_stride, channel_stride),
            padded.storage_offset() + start * row_stride,
        )
        return diagonal.sum(2)

    def flops(self, event_density: float, spans: Spans) -> int:
        """FLOPs per cell of one step: the newest column, then the tap sums at ``spans``."""
        per_row = 2 * (self.kernel + 1) * self.channels
        events = event_density * self.n_events * per_row
        voltages = self.voltage_product.flops_per_row()
        return int(events + voltages + span_length(spans) * self.kernel * self.channels)

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
        write_sigmoid_spans(self.hidden[0].window(), first_conv, self.first_spans(full))
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
            n_out = span_length(dirty_spans(self.output_prefix[index], self.window))
            total += conv2.flops(n_out)
            if index:
                n_hidden = span_length(dirty_spans(self.hidden_prefix[index], self.window))
                total += self.conv1[index].flops(n_hidden)
                total += 0 if self.shortcut[index] is None else self.shortcut[index].flops(n_out)
        return total

    def _update_hidden(self, index: int, full: bool) -> None:
        """``sigmoid(conv1(previous output))`` of block ``index`` at its changed positions."""
        spans = dirty_spans(self.hidden_prefix[index], self.window, full)
        convolved = self.conv1[index].at(self.outputs[index - 1].padded(), spans)
        write_sigmoid_spans(self.hidden[index].window(), convolved, spans)

    def _update_output(self, index: int, first_residual: Tensor, full: bool) -> None:
        """Block output ``sigmoid(sigmoid(conv2(hidden)) + residual)`` at its changed positions."""
        spans = dirty_spans(self.output_prefix[index], self.window, full)
        activated = torch.sigmoid(self.conv2[index].at(self.hidden[index].padded(), spans))
        activated += self._residual(index, first_residual, spans)
        write_sigmoid_spans(self.outputs[index].window(), activated, spans)

    def _residual(self, index: int, first_residual: Tensor, spans: Spans) -> Tensor:
        """Residual term of block ``index`` at the positions of ``spans``."""
        if index == 0:
            return gather_spans(first_residual, spans)
        block_input, shortcut = self.outputs[index - 1].window(), self.shortcut[index]
        return gather_spans(block_input, spans) if shortcut is None else shortcut.at(block_input, spans)


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
