"""Per-task MLP towers evaluated together as batched matrix products."""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn


class StackedTowers(nn.Module):
    """``n_tasks`` independent MLPs ``in_features -> hidden... -> 1``.

    Each layer of all towers is one stacked weight tensor and one bias
    (n_tasks, fan_out), evaluated with a single batched product per layer.
    The activation follows every hidden layer; the output layer is linear.

    Layout: ``input_weight`` (the first layer) is stored input-major,
    (in_features, n_tasks, fan_out), so that an input shared by all towers
    (or MMoE's expert features) multiplies every tower in one plain matrix
    product without a transposing copy of this, by far the largest, weight.
    Later layers are stored in ``weights`` as (n_tasks, fan_in, fan_out).
    :meth:`layer_weights` returns every layer as (n_tasks, fan_in, fan_out).

    Input is either (batch, in_features), shared by every task, or
    (batch, n_tasks, in_features), one vector per task. Output: (batch, n_tasks).
    """

    def __init__(self, n_tasks: int, in_features: int, hidden: Sequence[int] = (25, 25),
                 activation: Callable[[], nn.Module] = nn.ELU):
        """Allocate the stacked parameters and initialise them like ``nn.Linear``."""
        super().__init__()
        self.n_tasks = n_tasks
        self.in_features = in_features
        sizes = (in_features, *hidden, 1)
        self.input_weight = nn.Parameter(torch.empty(in_features, n_tasks, sizes[1]))
        self.weights = nn.ParameterList(
            nn.Parameter(torch.empty(n_tasks, fan_in, fan_out))
            for fan_in, fan_out in zip(sizes[1:-1], sizes[2:])
        )
        self.biases = nn.ParameterList(
            nn.Parameter(torch.empty(n_tasks, fan_out)) for fan_out in sizes[1:]
        )
        self.activation = activation()
        self.reset_parameters()

    def layer_weights(self) -> list[Tensor]:
        """Weights of every layer as (n_tasks, fan_in, fan_out) (the first one a view)."""
        return [self.input_weight.permute(1, 0, 2), *self.weights]

    def reset_parameters(self) -> None:
        """Per tower, uniform in +-1/sqrt(fan_in), as ``nn.Linear`` does by default."""
        with torch.no_grad():
            for weight, bias in zip(self.layer_weights(), self.biases):
                bound = 1.0 / math.sqrt(weight.shape[1])
                weight.uniform_(-bound, bound)
                bias.uniform_(-bound, bound)

    def forward(self, x: Tensor) -> Tensor:
        """Tower outputs (batch, n_tasks)."""
        return self.from_first_layer(self.first_layer(x))

    def first_layer(self, x: Tensor) -> Tensor:
        """First-layer pre-activation of every tower, (n_tasks, batch, fan_out)."""
        if x.dim() == 2 and x.shape[1] == self.in_features:
            h = self.shared_product(x).transpose(0, 1)
        elif x.dim() == 3 and x.shape[1:] == (self.n_tasks, self.in_features):
            h = torch.einsum("bti,tio->tbo", x, self.layer_weights()[0])
        else:
            raise ValueError(f"expected (batch, {self.in_features}) or "
                             f"(batch, {self.n_tasks}, {self.in_features}), got {tuple(x.shape)}")
        return h + self.biases[0].unsqueeze(1)

    def shared_product(self, x: Tensor) -> Tensor:
        """``x @ W_t`` for every tower t, without bias: (..., in_features) -> (..., n_tasks, fan_out)."""
        flat = self.input_weight.reshape(self.in_features, -1)
        return (x @ flat).unflatten(-1, self.input_weight.shape[1:])

    def from_first_layer(self, h: Tensor) -> Tensor:
        """Tower outputs (batch, n_tasks) from :meth:`first_layer`'s result."""
        for weight, bias in zip(self.weights, self.biases[1:]):
            h = torch.baddbmm(bias.unsqueeze(1), self.activation(h), weight)
        return h.squeeze(2).t()
