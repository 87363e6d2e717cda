"""Stable MMoE and MMoEEx: mixtures of experts on the SRM's filter bank (``srm_mmoe``, ``srm_mmoeex``).

The published multitask architectures (MH, MMoE, MMoEEx; :mod:`.mh`, :mod:`.mmoe`,
:mod:`.mmoeex`) read their own past voltages through TCNs and drift when run free. Their
stable counterparts keep the SRM's input side (:mod:`.srm`): synaptic events and the cell's
own somatic spike train through the exponential filter bank (with pooled filters, section
projection and dendritic subunits as options), one linear projection — and so the SRM's
incremental stepping engine. The SRM itself is the stable **MH** (hard parameter sharing:
one ELU MLP trunk for all tasks). These families replace that shared trunk:

- **Experts.** ``n_experts`` ELU MLPs (``mlp_layers`` layers of ``expert_hidden`` units)
  read the projected features; all experts run as one product per layer (their first
  layers as one wide linear layer, the later ones as a grouped product).
- **Compressor and gates.** A small ELU layer (``compressor_hidden`` units) summarises the
  projected features for the gates (as the compressor TCN of the published MMoE); every task
  (each segment's voltage and the spike logit) has its own softmax gate over the experts,
  all tasks in one product: gate weights (batch, n_experts, n_tasks).
- **Towers.** Task ``t`` is linear in the projection (its linear response, as in the SRM)
  and in its gate-weighted mixture of the expert outputs: ``a_t . p + sum_e g_te (b_t . h_e)
  + c_t``, computed as one product of every expert's output with every tower's weights and
  a gate-weighted sum over experts (no loop over tasks or experts), in float32 also under
  bfloat16 autocast.
- **Spike head.** With ``spike_hidden > 0`` the spike logit is a small ELU MLP on the
  projection and the spike task's own mixture; otherwise it is one more tower. The spike
  jump and its calibration are the SRM's.
- **MMoEEx** (``srm_mmoeex``): a fixed, seeded gate mask
  (:func:`~surrogate_cell.models.mmoeex.make_gate_mask`) makes a fraction of the experts
  exclusive to one task (``exclusion: false``) or hidden from one task (``exclusion: true``);
  hidden experts get a gate logit of ``-inf``, so their gate weight is exactly 0.

The per-step cost in the stepping engine
(:class:`~surrogate_cell.engine.srm_moe_stepper.SRMMoEStepper`) is the SRM's filter update
(O(projection)) plus the experts, compressor, gates and towers on (n_cells, hidden).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from .base import split_outputs
from .mmoeex import GateMaskOptions, MaskedGates
from .registry import register_family
from .srm import SRM, SRM_FLOAT16_WEIGHTS, GroupedLinear, SRMConfig, srm_data_fields
from .tcn import MaskDropout

SRM_MOE_STEPPER = "surrogate_cell.engine.srm_moe_stepper:SRMMoEStepper"


@dataclass
class SRMMoEConfig(SRMConfig):
    """SRM input side (:class:`~surrogate_cell.models.srm.SRMConfig`) with a mixture-of-experts trunk.

    ``hidden`` is the width of the projection; ``mlp_layers`` the number of ELU layers of every
    expert; ``n_experts`` the number of experts; ``expert_hidden`` the width of each expert;
    ``compressor_hidden`` the width of the compressor in front of the gates; ``gate_bias``
    adds a learnt per-task bias to the gate logits. An ensemble of these (``members > 1``) is
    not supported.
    """

    n_experts: int = 5
    expert_hidden: int = 128
    compressor_hidden: int = 16
    gate_bias: bool = True

    def __post_init__(self) -> None:
        """Validate the SRM fields and the expert sizes."""
        super().__post_init__()
        if self.members != 1:
            raise ValueError("mixture-of-experts SRMs are single models: members must be 1")
        if min(self.n_experts, self.expert_hidden, self.compressor_hidden, self.mlp_layers) < 1:
            raise ValueError("n_experts, expert_hidden, compressor_hidden and mlp_layers must be >= 1")


@dataclass
class SRMMoEExConfig(GateMaskOptions, SRMMoEConfig):
    """:class:`SRMMoEConfig` plus the MMoEEx gate mask (:class:`~.mmoeex.GateMaskOptions`)."""


class GroupedExperts(nn.Module):
    """``n_experts`` ELU MLPs on the same input, one product per layer: (batch, n_in) -> (batch, n_experts, hidden).

    The first layers of all experts are one linear layer of ``n_experts x hidden`` outputs
    (initialised as each expert's own ``nn.Linear`` would be); later layers are grouped
    products (:class:`~surrogate_cell.models.srm.GroupedLinear`), expert ``e`` reading only
    its own features.
    """

    def __init__(self, n_in: int, n_experts: int, hidden: int, layers: int, dropout: float):
        """``layers`` ELU layers of ``hidden`` units per expert, each followed by dropout."""
        super().__init__()
        self.n_experts, self.hidden = n_experts, hidden
        modules = [nn.Linear(n_in, n_experts * hidden), nn.ELU(), MaskDropout(dropout)]
        for _ in range(layers - 1):
            modules += [GroupedLinear(n_experts, hidden, hidden), nn.ELU(), MaskDropout(dropout)]
        self.layers = nn.Sequential(*modules)

    def forward(self, x: Tensor) -> Tensor:
        """Every expert's output, (batch, n_experts, hidden)."""
        return self.layers(x).view(x.shape[0], self.n_experts, self.hidden)


@register_family("srm_mmoe", SRMMoEConfig, stepper=SRM_MOE_STEPPER, data_fields=srm_data_fields,
                 calibrates_spikes=True, has_experts=True, float16_weights=SRM_FLOAT16_WEIGHTS)
class SRMMoE(SRM):
    """Filter bank -> projection -> experts, compressor and per-task gates -> per-task linear towers."""

    def build_trunk(self, config: SRMMoEConfig) -> None:
        """Experts, compressor, gate weights (compressor, experts, tasks), towers and spike head."""
        hidden, n_experts, expert_hidden = config.hidden, config.n_experts, config.expert_hidden
        self.experts = GroupedExperts(hidden, n_experts, expert_hidden, config.mlp_layers, config.dropout)
        self.compressor = nn.Sequential(nn.Linear(hidden, config.compressor_hidden), nn.ELU())
        bound = 1.0 / math.sqrt(config.compressor_hidden)
        self.gate_weight = nn.Parameter(
            torch.empty(config.compressor_hidden, n_experts, config.n_tasks).uniform_(-bound, bound))
        self.gate_bias = nn.Parameter(torch.zeros(n_experts, config.n_tasks)) if config.gate_bias else None
        self.spike_head = (nn.Sequential(nn.Linear(hidden + expert_hidden, config.spike_hidden), nn.ELU(),
                                         nn.Linear(config.spike_hidden, 1))
                           if config.spike_hidden else None)
        self.towers = nn.Linear(hidden + expert_hidden,
                                config.n_voltage_tasks if self.spike_head else config.n_tasks)

    def gate_logits(self, compressed: Tensor, tasks: slice = slice(None)) -> Tensor:
        """Gate logits (batch, n_experts, n_tasks) of ``tasks`` from the compressor's output."""
        logits = torch.einsum("bc,cet->bet", compressed, self.gate_weight[:, :, tasks])
        return logits if self.gate_bias is None else logits + self.gate_bias[:, tasks]

    def gates(self, projected: Tensor, tasks: slice = slice(None)) -> Tensor:
        """Softmax gate weights (batch, n_experts, n_tasks) over the experts, from the projection."""
        return torch.softmax(self.gate_logits(self.compressor(projected), tasks), dim=1)

    def gates_and_experts(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Gate weights (batch, n_tasks, n_experts) and expert outputs (batch, n_experts, expert_hidden)
        for model inputs ``x`` (batch, in_channels, window), as :meth:`MMoE.gates_and_experts`."""
        projected = self.project(self.window_inputs(x))
        return self.gates(projected).transpose(1, 2), self.experts(projected)

    def task_outputs(self, projected: Tensor, experts: Tensor, gates: Tensor, rows: slice = slice(None)) -> Tensor:
        """Outputs (batch, towers) of the towers ``rows``, given their tasks' gates (batch, experts, towers).

        Each is linear in the projection and in its task's mixture: every expert's output times
        every tower's weights (one product), then the gate-weighted sum over experts; in at
        least float32, also under bfloat16 autocast.
        """
        dtype, hidden = torch.promote_types(projected.dtype, torch.float32), self.config.hidden
        with torch.autocast(projected.device.type, enabled=False):
            weight = self.towers.weight[rows].to(dtype)
            linear = F.linear(projected.to(dtype), weight[:, :hidden], self.towers.bias[rows].to(dtype))
            per_expert = experts.to(dtype) @ weight[:, hidden:].t()  # (batch, experts, towers)
            return linear + (gates.to(dtype) * per_expert).sum(dim=1)

    def spike_logit_from(self, projected: Tensor, experts: Tensor, spike_gates: Tensor) -> Tensor:
        """The spike logit (batch,) from the projection, the experts and the spike task's gates (batch, experts)."""
        if self.spike_head is None:
            return self.task_outputs(projected, experts, spike_gates[..., None], slice(-1, None))[:, 0]
        mixture = torch.einsum("be,beh->bh", spike_gates, experts)
        return self.spike_head(torch.cat([projected, mixture], dim=1))[:, 0]

    def heads(self, projected: Tensor) -> tuple[Tensor, Tensor]:
        """Sub-threshold voltages (batch, S) and spike logit (batch,) from the projected features."""
        experts, gates = self.experts(projected), self.gates(projected)
        outputs = self.task_outputs(projected, experts, gates[..., :self.towers.out_features])
        if self.spike_head is None:
            return split_outputs(outputs)
        return outputs, self.spike_logit_from(projected, experts, gates[..., -1])

    def spike_logit(self, projected: Tensor) -> Tensor:
        """Only the spike logit (batch,) of :meth:`heads`: the spike task's gate alone."""
        spike_gates = self.gates(projected, slice(-1, None))[..., 0]
        return self.spike_logit_from(projected, self.experts(projected), spike_gates)


@register_family("srm_mmoeex", SRMMoEExConfig, stepper=SRM_MOE_STEPPER, data_fields=srm_data_fields,
                 calibrates_spikes=True, has_experts=True, float16_weights=SRM_FLOAT16_WEIGHTS)
class SRMMoEEx(MaskedGates, SRMMoE):
    """:class:`SRMMoE` whose gates see only the experts a fixed mask allows (exclusivity or exclusion)."""

    def __init__(self, config: SRMMoEExConfig):
        """Build the stable MMoE and its gate mask."""
        super().__init__(config)
        self.add_gate_mask(config)

    def gate_logits(self, compressed: Tensor, tasks: slice = slice(None)) -> Tensor:
        """:meth:`SRMMoE.gate_logits` with the experts hidden from a task at ``-inf``."""
        hidden = ~self.gate_mask.t()[:, tasks]  # (experts, tasks)
        return super().gate_logits(compressed, tasks).masked_fill(hidden, float("-inf"))
