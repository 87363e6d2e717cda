"""Temporal convolutional network (Bai, Kolter & Koltun 2018) with causal dilated convolutions.

Each :class:`TemporalBlock` holds two weight-normalised causal convolutions
with sigmoid activations and dropout, plus a 1x1 residual projection when the
channel count changes; its output is ``sigmoid(conv_path + residual)``.
Convolutions pad on the left only, so position ``t`` of every layer depends
on inputs at ``<= t`` and the output keeps the input length.

A :class:`TCN` can hold ``n_members`` independent networks evaluated together
(the MMoE experts): the first convolution of the first block is one ordinary
convolution with ``n_members * channels[0]`` outputs over the shared input,
and every later convolution is grouped with ``groups = n_members``. This is
exactly ``n_members`` separate TCNs, computed in one pass per layer.

The TCN is the trunk of the published voltage-feedback architectures (:mod:`.mh`,
:mod:`.mmoe`, :mod:`.mmoeex`), which read their own past voltages: accurate teacher-forced,
they drift when run free. The SRM family of the shipped default has no TCN.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.nn.utils.parametrizations import weight_norm

from .events import EventIndex


@dataclass
class TCNConfig:
    """Configuration of a :class:`TCN`.

    ``event_channels`` leading input channels hold sparse events (binary
    synaptic inputs); the first block convolves them with an exact sparse
    gather instead of a dense convolution. 0 disables that path.
    ``rescaled_init``: see :func:`rescale_initialisation`.
    """

    in_channels: int
    channels: tuple[int, ...] = (32, 16, 8)
    kernel_size: int = 10
    dilations: tuple[int, ...] = (1, 2, 4)
    dropout: float = 0.2
    window: int = 100
    n_members: int = 1
    event_channels: int = 0
    rescaled_init: bool = False

    def __post_init__(self) -> None:
        """Normalise sequences to tuples and validate sizes."""
        self.channels = tuple(int(c) for c in self.channels)
        self.dilations = tuple(int(d) for d in self.dilations)
        if len(self.channels) != len(self.dilations) or not self.channels:
            raise ValueError("channels and dilations need the same, non-zero length")
        if not 0 <= self.event_channels <= self.in_channels:
            raise ValueError("event_channels must lie in [0, in_channels]")
        if min(self.in_channels, self.kernel_size, self.window, self.n_members) < 1:
            raise ValueError("in_channels, kernel_size, window and n_members must be >= 1")

    @property
    def n_features(self) -> int:
        """Flattened output features per member: last channel count x window."""
        return self.channels[-1] * self.window

    @property
    def receptive_field(self) -> int:
        """Number of input steps that can influence one output step."""
        return 1 + 2 * (self.kernel_size - 1) * sum(self.dilations)


@dataclass
class BlockWeights:
    """Plain-tensor (weight-normalised, detached) parameters of one :class:`TemporalBlock`.

    ``residual_weight``/``residual_bias`` are ``None`` for an identity shortcut.
    Convolutions are causal: left-pad by ``pad`` then convolve with
    ``dilation`` and ``groups`` (``conv1_groups`` for the first convolution).
    """

    conv1_weight: Tensor
    conv1_bias: Tensor
    conv2_weight: Tensor
    conv2_bias: Tensor
    residual_weight: Tensor | None
    residual_bias: Tensor | None
    dilation: int
    pad: int
    conv1_groups: int
    groups: int


class SplitInput:
    """An input window split into indexed sparse events and dense channels.

    Several TCNs reading the same ``x`` can share one instance, so the
    events are indexed and the dense part is copied and padded only once.
    """

    def __init__(self, x: Tensor, event_channels: int):
        """Index ``x[:, :event_channels]``; keep the remaining channels dense."""
        self.x = x
        self.events = EventIndex(x[:, :event_channels])
        self.dense = x[:, event_channels:].contiguous() if event_channels < x.shape[1] else None
        self._padded: dict[int, Tensor] = {}

    def padded_dense(self, pad: int) -> Tensor:
        """The dense channels left-padded with ``pad`` zeros (cached)."""
        if pad not in self._padded:
            self._padded[pad] = F.pad(self.dense, (pad, 0))
        return self._padded[pad]


def causal_conv(conv: nn.Conv1d, x: Tensor, pad: int) -> Tensor:
    """Apply ``conv`` (built with ``padding=0``) after left-padding ``x`` by ``pad`` steps."""
    return conv(F.pad(x, (pad, 0)))


def causal_conv_nwc(conv: nn.Conv1d, x: Tensor, pad: int) -> Tensor:
    """:func:`causal_conv` computed as a channels-last 2-D convolution.

    ``x`` (batch, channels, time) is viewed as (batch, channels, 1, time);
    the result has time-major ("NWC") strides, which the next call reuses
    without copying. For the thin, grouped layers after the input layer
    the channels-last kernels are about twice as fast, mostly in backward.
    """
    x4 = F.pad(x.unsqueeze(2), (pad, 0)).contiguous(memory_format=torch.channels_last)
    y = F.conv2d(x4, conv.weight.unsqueeze(2), conv.bias, dilation=(1, conv.dilation[0]),
                 groups=conv.groups)
    return y.squeeze(2)


def project_nwc(conv: nn.Conv1d, x: Tensor) -> Tensor:
    """A 1x1 convolution computed like :func:`causal_conv_nwc`."""
    return causal_conv_nwc(conv, x, 0)


class MaskDropout(nn.Module):
    """Inverted dropout like ``nn.Dropout``, with the mask drawn by ``rand_like(x) >= p``.

    ``nn.Dropout`` draws its mask with a Bernoulli sampler that took ~11 % of a paper-size
    MMoE training step on this CPU; a uniform draw and one multiply make the whole
    activation + dropout + backward about a third faster. Same distribution, same scaling.
    """

    def __init__(self, p: float):
        """Zero each element with probability ``p`` in training mode."""
        super().__init__()
        if not 0.0 <= p < 1.0:
            raise ValueError(f"dropout must lie in [0, 1), got {p}")
        self.p = p

    def forward(self, x: Tensor) -> Tensor:
        """``x`` with dropped elements zeroed and the rest scaled by ``1 / (1 - p)``."""
        if not self.training or self.p == 0.0:
            return x
        keep = (torch.rand_like(x) >= self.p).to(x.dtype).mul_(1.0 / (1.0 - self.p))
        return x * keep


class TemporalBlock(nn.Module):
    """Residual block: two causal dilated convolutions with sigmoid and dropout.

    ``in_channels``/``out_channels`` are per member. With ``shared_input`` the
    block reads one input shared by all members (the first block); otherwise
    the input holds ``n_members`` groups of ``in_channels`` channels.
    """

    def __init__(self, in_channels: int, out_channels: int, kernel_size: int, dilation: int,
                 dropout: float, n_members: int = 1, shared_input: bool = False):
        """Build the two convolutions and the residual projection (if needed)."""
        super().__init__()
        self.dilation = dilation
        self.pad = (kernel_size - 1) * dilation
        self.n_members = n_members
        self.shared_input = shared_input
        groups_in = 1 if shared_input else n_members
        total_in = in_channels if shared_input else in_channels * n_members
        total_out = out_channels * n_members
        self.conv1 = weight_norm(nn.Conv1d(total_in, total_out, kernel_size,
                                           dilation=dilation, groups=groups_in))
        self.conv2 = weight_norm(nn.Conv1d(total_out, total_out, kernel_size,
                                           dilation=dilation, groups=n_members))
        self.residual: nn.Conv1d | None = None
        if in_channels != out_channels or (shared_input and n_members > 1):
            self.residual = nn.Conv1d(total_in, total_out, 1, groups=groups_in)
            nn.init.normal_(self.residual.weight, 0.0, 0.01)  # as in Bai et al.
        self.activation = nn.Sigmoid()
        self.dropout = MaskDropout(dropout)

    def input_terms(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """The parts of the block that are linear in its input.

        Returns the first convolution's pre-activation and the residual term
        (projection or ``x`` itself), both (batch, channels, time).
        """
        if self.shared_input:  # the wide raw input: plain conv1d is fastest here
            res = x if self.residual is None else self.residual(x)
            return causal_conv(self.conv1, x, self.pad), res
        res = x if self.residual is None else project_nwc(self.residual, x)
        return causal_conv_nwc(self.conv1, x, self.pad), res

    def from_input_terms(self, conv1_out: Tensor, residual: Tensor) -> Tensor:
        """Finish the block from the output of :meth:`input_terms`."""
        h = self.dropout(self.activation(conv1_out))
        h = self.dropout(self.activation(causal_conv_nwc(self.conv2, h, self.pad)))
        return self.activation(h + residual)

    def forward(self, x: Tensor) -> Tensor:
        """Block output (batch, n_members * out_channels, time)."""
        return self.from_input_terms(*self.input_terms(x))

    def effective_weights(self) -> BlockWeights:
        """Detached, weight-normalised parameters of this block."""
        res = self.residual
        return BlockWeights(
            conv1_weight=self.conv1.weight.detach().clone(),
            conv1_bias=self.conv1.bias.detach().clone(),
            conv2_weight=self.conv2.weight.detach().clone(),
            conv2_bias=self.conv2.bias.detach().clone(),
            residual_weight=None if res is None else res.weight.detach().clone(),
            residual_bias=None if res is None else res.bias.detach().clone(),
            dilation=self.dilation,
            pad=self.pad,
            conv1_groups=self.conv1.groups,
            groups=self.conv2.groups,
        )


# Gains of rescale_initialisation, found by measuring how much two different sparse event
# inputs (1 % density, 1284 channels) change the features of an untrained network.
FIRST_BLOCK_GAIN = 30.0
CONV_GAIN = 3.0
RESIDUAL_GAIN = 4.0


@torch.no_grad()
def rescale_initialisation(blocks) -> None:
    """Initialise so that input differences reach the output of the sigmoid blocks.

    With the published initialisation (default convolution init, residual projections
    N(0, 0.01)), each block scales input differences by about 0.02, and sparse binary events
    barely move the first pre-activations: an events-only network starts blind to its input
    (features change ~1e-5), and plain training struggles to recover. Here every
    convolution's weight-norm magnitude is multiplied by ``CONV_GAIN`` (the first by
    ``FIRST_BLOCK_GAIN``) and residual projections get std ``RESIDUAL_GAIN / sqrt(fan_in)``
    (times ``FIRST_BLOCK_GAIN`` in the first block), which makes feature changes ~0.1.
    """
    for index, block in enumerate(blocks):
        input_gain = FIRST_BLOCK_GAIN if index == 0 else 1.0  # the sparse raw input needs more
        block.conv1.parametrizations.weight.original0.mul_(FIRST_BLOCK_GAIN if index == 0 else CONV_GAIN)
        block.conv2.parametrizations.weight.original0.mul_(CONV_GAIN)
        if block.residual is not None:
            fan_in = block.residual.weight.shape[1]
            block.residual.weight.normal_(0.0, RESIDUAL_GAIN * input_gain / fan_in ** 0.5)


class TCN(nn.Module):
    """Stack of :class:`TemporalBlock` s; output flattened per member.

    ``forward(x)`` maps (batch, in_channels, window) to
    (batch, n_members, channels[-1] * window), flattened channel-major.
    """

    def __init__(self, config: TCNConfig):
        """Build the blocks described by ``config``."""
        super().__init__()
        self.config = config
        widths = (config.in_channels, *config.channels)
        self.blocks = nn.ModuleList(
            TemporalBlock(widths[i], widths[i + 1], config.kernel_size, dilation,
                          config.dropout, config.n_members, shared_input=i == 0)
            for i, dilation in enumerate(config.dilations)
        )
        if config.rescaled_init:
            rescale_initialisation(self.blocks)

    @property
    def n_features(self) -> int:
        """Flattened output features per member."""
        return self.config.n_features

    def prepare(self, x: Tensor) -> SplitInput | None:
        """Split ``x`` for the sparse-event path if it applies, else ``None``.

        The sparse path is skipped when the input needs a gradient (it only
        provides weight gradients) or the events are not sparse enough.
        """
        n_events = self.config.event_channels
        if n_events == 0 or (x.requires_grad and torch.is_grad_enabled()):
            return None
        split = SplitInput(x, n_events)
        return split if split.events.is_sparse else None

    def forward(self, x: Tensor, split: SplitInput | None = None) -> Tensor:
        """Features (batch, n_members, n_features).

        ``split``: a :meth:`prepare` of the same ``x`` to reuse (e.g. shared
        between several TCNs reading one input); computed here if ``None``.
        """
        self._check_input(x)
        if split is None:
            split = self.prepare(x)
        terms = self.blocks[0].input_terms(x) if split is None else self.split_input_terms(split)
        h = self.blocks[0].from_input_terms(*terms)
        for block in self.blocks[1:]:
            h = block(h)
        return h.reshape(x.shape[0], self.config.n_members, -1)

    def split_input_terms(self, split: SplitInput) -> tuple[Tensor, Tensor]:
        """:meth:`TemporalBlock.input_terms` of the first block, from a split input."""
        block = self.blocks[0]
        n_events = self.config.event_channels
        weight = block.conv1.weight  # recomputes the weight norm, so read it once
        conv1 = split.events.conv(weight[:, :n_events], block.dilation)
        if split.dense is None:
            conv1 = conv1 + block.conv1.bias[:, None]
        else:
            conv1 = conv1 + F.conv1d(split.padded_dense(block.pad), weight[:, n_events:],
                                     block.conv1.bias, dilation=block.dilation)
        if block.residual is None:
            return conv1, split.x
        res_weight = block.residual.weight
        residual = split.events.conv(res_weight[:, :n_events]) + block.residual.bias[:, None]
        if split.dense is not None:
            residual = residual + F.conv1d(split.dense, res_weight[:, n_events:])
        return conv1, residual

    def effective_weights(self) -> list[BlockWeights]:
        """Detached, weight-normalised parameters of every block, in order."""
        return [block.effective_weights() for block in self.blocks]

    def _check_input(self, x: Tensor) -> None:
        expected = (self.config.in_channels, self.config.window)
        if x.dim() != 3 or tuple(x.shape[1:]) != expected:
            raise ValueError(f"expected input (batch, {expected[0]}, {expected[1]}), "
                             f"got {tuple(x.shape)}")
