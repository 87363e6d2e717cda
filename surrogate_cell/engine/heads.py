"""Model heads for stepping: the per-task towers (MH) and gates, mixing and towers (MMoE).

Each head takes the stacks' features (see :meth:`IncrementalTCN.features`) and returns all
task outputs (batch, n_tasks). The towers' first layer, by far their largest, is one
:class:`DenseProduct` with a pre-packed weight; the narrow later layers reuse
:meth:`StackedTowers.from_first_layer`.
"""

from __future__ import annotations

import torch
from torch import Tensor

from surrogate_cell.engine.dense import DenseProduct
from surrogate_cell.models import MH, MMoE, StackedTowers


def tower_tail_flops(towers: StackedTowers) -> int:
    """FLOPs per cell of every tower's layers after the first."""
    return sum(2 * weight.numel() for weight in towers.weights)


class MHHead:
    """MH: one shared feature vector into every tower."""

    def __init__(self, model: MH, batch: int):
        towers = model.towers
        self.towers, self.n_tasks = towers, towers.n_tasks
        self.first_layer = DenseProduct(towers.input_weight.detach().reshape(towers.in_features, -1),
                                        batch, towers.biases[0].detach().reshape(-1))

    def __call__(self, features: list[Tensor]) -> Tensor:
        """Task outputs (batch, n_tasks) from the single stack's features (batch, 1, F)."""
        shared = features[0].flatten(1)
        first = self.first_layer(shared).view(shared.shape[0], self.n_tasks, -1)
        return self.towers.from_first_layer(first.transpose(0, 1))

    def flops(self) -> int:
        """FLOPs per cell of one evaluation."""
        return self.first_layer.flops_per_row() + tower_tail_flops(self.towers)


class MMoEHead:
    """MMoE/MMoEEx: softmax gates from the compressor, expert mixing, towers.

    Two evaluation orders of the first tower layer, equal up to round-off:

    - ``mix_first=False`` (default, faster here): every expert's features times every
      tower's weight as one large product, then the gate-weighted sum over experts
      (the training-time trick, ``n_experts`` times the tower FLOPs);
    - ``mix_first=True``: the per-task mixtures (batch, n_tasks, features) first, then
      each tower on its own mixture (fewest FLOPs, but many small products).
    """

    def __init__(self, model: MMoE, batch: int, mix_first: bool = False):
        towers = model.towers
        self.towers, self.mix_first = towers, mix_first
        self.n_tasks, self.n_experts = towers.n_tasks, model.config.n_experts
        self.expert_bias = None if model.expert_bias is None else model.expert_bias.detach()
        # Gates are laid out expert-major, (batch, experts, tasks): the softmax over experts
        # then runs along a long axis, ten times faster than over a last axis of 5.
        gate_weight = model.gate_weight.detach()  # (tasks, compressed, experts)
        gate_bias = None if model.gate_bias is None else model.gate_bias.detach().t().reshape(-1)
        self.gates = DenseProduct(gate_weight.permute(1, 2, 0).reshape(gate_weight.shape[1], -1),
                                  batch, gate_bias)
        mask = getattr(model, "gate_mask", None)  # MMoEEx: experts hidden from some tasks
        self.hidden_experts = None if mask is None else ~mask.bool().t()
        self.first_bias = towers.biases[0].detach()
        if mix_first:
            self.weight_by_task = towers.layer_weights()[0].detach().contiguous()
        else:
            self.per_expert = DenseProduct(towers.input_weight.detach().reshape(towers.in_features, -1),
                                           batch * self.n_experts)

    def __call__(self, features: list[Tensor]) -> Tensor:
        """Task outputs (batch, n_tasks) from expert (batch, E, F) and compressor (batch, 1, C) features."""
        experts, compressed = features
        if self.expert_bias is not None:
            experts = experts + self.expert_bias
        gates = self.gate_weights(compressed.flatten(1))
        first_layer = self.first_layer_mixed if self.mix_first else self.first_layer_per_expert
        return self.towers.from_first_layer(first_layer(gates, experts))

    def gate_weights(self, compressed: Tensor) -> Tensor:
        """Softmax gate weights (batch, n_experts, n_tasks), as ``MMoE.gates_and_experts``."""
        logits = self.gates(compressed).view(compressed.shape[0], self.n_experts, self.n_tasks)
        if self.hidden_experts is not None:
            logits = logits.masked_fill(self.hidden_experts, float("-inf"))
        return torch.softmax(logits, dim=1)

    def first_layer_per_expert(self, gates: Tensor, experts: Tensor) -> Tensor:
        """First tower layer (n_tasks, batch, hidden) via every expert times every tower."""
        batch = experts.shape[0]
        products = self.per_expert(experts.reshape(batch * self.n_experts, -1))
        products = products.view(batch, self.n_experts, self.n_tasks, -1)
        mixed = products.mul_(gates.unsqueeze(-1)).sum(1)  # (batch, task, hidden)
        return mixed.transpose(0, 1) + self.first_bias.unsqueeze(1)

    def first_layer_mixed(self, gates: Tensor, experts: Tensor) -> Tensor:
        """First tower layer (n_tasks, batch, hidden) via the mixtures (batch, n_tasks, F)."""
        mixtures = torch.bmm(gates.transpose(1, 2), experts)
        return torch.baddbmm(self.first_bias.unsqueeze(1), mixtures.transpose(0, 1),
                             self.weight_by_task)

    def flops(self) -> int:
        """FLOPs per cell of one evaluation in the chosen order."""
        tasks, experts, features = self.n_tasks, self.n_experts, self.towers.in_features
        hidden = self.first_bias.shape[1]
        gates = self.gates.flops_per_row()
        if self.mix_first:
            first = 2 * tasks * experts * features + 2 * tasks * features * hidden
        else:
            first = experts * self.per_expert.flops_per_row() + 2 * experts * tasks * hidden
        return gates + first + tower_tail_flops(self.towers)
