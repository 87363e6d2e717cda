"""MMoE: multi-gate mixture of TCN experts (Ma et al. 2018).

All experts read the same input and are evaluated together as one grouped
TCN. A smaller "compressor" TCN summarises the input for the gates: task
``t`` mixes the expert features with ``softmax(compressed @ W_t + b_t)``
and feeds the mixture to its own tower.

One of the published voltage-feedback architectures (MH, MMoE, MMoEEx): the input window
holds the last ``window`` ms of synaptic events **and of every segment's own past
voltage** (``voltage_input: false`` drops the voltages; see ``rescaled_init``).
Teacher-forced (true voltage history) such models are accurate; run free on
their own predictions, as ``SurrogateCell`` does, their errors feed back and they drift.
The shipped default uses the SRM family instead (:mod:`surrogate_cell.models.srm`), which
reads no voltages. See ``docs/experiments.md`` for what was measured.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
from torch import Tensor, nn

from .base import SurrogateConfig, as_int_tuple, finish_outputs
from .registry import register_family
from .tcn import TCN
from .towers import StackedTowers


@dataclass
class MMoEConfig(SurrogateConfig):
    """MMoE sizes and options.

    ``expert_bias`` adds a learnt bias to each expert's features;
    ``gate_bias`` adds a learnt per-task bias to the gate logits.
    """

    n_experts: int = 5
    expert_channels: tuple[int, ...] = (32, 16, 8)
    compressor_channels: tuple[int, ...] = (16, 8, 4)
    tower_hidden: tuple[int, ...] = (10, 10)
    expert_bias: bool = True
    gate_bias: bool = True

    def __post_init__(self) -> None:
        """Normalise sequences and validate the expert count."""
        super().__post_init__()
        self.expert_channels = as_int_tuple(self.expert_channels)
        self.compressor_channels = as_int_tuple(self.compressor_channels)
        self.tower_hidden = as_int_tuple(self.tower_hidden)
        if self.n_experts < 1:
            raise ValueError("n_experts must be >= 1")


@register_family("mmoe", MMoEConfig, stepper="surrogate_cell.engine.incremental:MMoEStepper", has_experts=True)
class MMoE(nn.Module):
    """Experts (grouped TCN) + compressor TCN + per-task softmax gates + towers."""

    def __init__(self, config: MMoEConfig):
        """Build experts, compressor, gates and towers."""
        super().__init__()
        self.config = config
        self.experts = TCN(config.tcn_config(config.expert_channels, config.n_experts))
        self.compressor = TCN(config.tcn_config(config.compressor_channels))
        n_features = self.experts.n_features
        n_compressed = self.compressor.n_features
        self.expert_bias = (nn.Parameter(torch.zeros(config.n_experts, n_features))
                            if config.expert_bias else None)
        bound = 1.0 / math.sqrt(n_compressed)
        self.gate_weight = nn.Parameter(
            torch.empty(config.n_tasks, n_compressed, config.n_experts).uniform_(-bound, bound))
        self.gate_bias = (nn.Parameter(torch.zeros(config.n_tasks, config.n_experts))
                          if config.gate_bias else None)
        self.towers = StackedTowers(config.n_tasks, n_features, config.tower_hidden, nn.ELU)

    def input_stacks(self) -> list[TCN]:
        """The TCN stacks that read the model input (for the incremental stepper)."""
        return [self.experts, self.compressor]

    def gate_logits(self, compressed: Tensor) -> Tensor:
        """Gate logits (batch, n_tasks, n_experts) from compressor features (batch, features)."""
        logits = torch.einsum("bf,tfe->bte", compressed, self.gate_weight)
        return logits if self.gate_bias is None else logits + self.gate_bias

    def gates_and_experts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Gate weights (batch, n_tasks, n_experts) and expert features (batch, n_experts, features).

        Gate weights are a softmax over experts (each row sums to 1).
        """
        x = self.config.tcn_input(x)
        split = self.experts.prepare(x)  # shared by both TCNs
        experts = self.experts(x, split)
        if self.expert_bias is not None:
            experts = experts + self.expert_bias
        compressed = self.compressor(x, split).squeeze(1)
        return torch.softmax(self.gate_logits(compressed), dim=-1), experts

    def mixtures(self, x: Tensor) -> Tensor:
        """Per-task mixtures of expert features (batch, n_tasks, features), as fed to the towers."""
        gates, experts = self.gates_and_experts(x)
        return torch.einsum("bte,bef->btf", gates, experts)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Voltage predictions (batch, n_tasks - 1) and spike logit (batch,)."""
        gates, experts = self.gates_and_experts(x)
        return finish_outputs(self.towers.from_first_layer(self._first_tower_layer(gates, experts)), x,
                              self.config)

    def _first_tower_layer(self, gates: Tensor, experts: Tensor) -> Tensor:
        """``towers.first_layer(mixtures)`` without building the mixtures.

        The first tower layer is linear, so ``W_t^T sum_e g_te f_e`` equals
        ``sum_e g_te (W_t^T f_e)``: one large matrix product of all expert
        features with all towers' weights replaces n_tasks thin products
        over a (batch, n_tasks, features) tensor, about 2.5 times faster here.
        """
        per_expert = self.towers.shared_product(experts)  # (batch, expert, task, out)
        mixed = torch.einsum("bte,beto->tbo", gates, per_expert)
        return mixed + self.towers.biases[0].unsqueeze(1)
