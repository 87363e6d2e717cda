"""Stepping engine of the stable MMoE/MMoEEx (``srm_mmoe``, ``srm_mmoeex``): the SRM's, with their trunk.

These families share the SRM's input side (filter bank and projection), so
:class:`~surrogate_cell.engine.srm_stepper.SRMStepper` keeps their recursive, projected filter
state unchanged (one step = O(projection), a sparse gather of the rows of the events entering
and leaving the window). Each step then runs the model's own trunk on the (n_cells, hidden)
features through ``model.heads``: all experts as one product per layer, the compressor, every
task's gate in one product and all towers as one product with a gate-weighted sum over the
experts. Only the FLOP count differs from the SRM's stepper.
"""

from __future__ import annotations

import torch
from torch import Tensor

from surrogate_cell.engine.srm_stepper import SRMStepper
from surrogate_cell.models.normalisation import Normalisation
from surrogate_cell.models.srm_moe import SRMMoE


class SRMMoEStepper(SRMStepper):
    """Steps ``n_cells`` cells sharing a stable MMoE or MMoEEx (:mod:`surrogate_cell.models.srm_moe`), 1 ms at a time.

    Same API, time convention and options (``logit_thresholds``) as :class:`SRMStepper`.
    """

    def __init__(self, model: SRMMoE, normalisation: Normalisation, n_cells: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 logit_thresholds: Tensor | None = None):
        if not isinstance(model, SRMMoE):
            raise TypeError(f"SRMMoEStepper steps the srm_mmoe/srm_mmoeex families, not {type(model).__name__}")
        super().__init__(model, normalisation, n_cells, device, dtype, logit_thresholds)

    def flop_breakdown(self, event_density: float = 0.01) -> dict[str, int]:
        """FLOPs one cell needs per step, by part (multiply-adds count 2), events at ``event_density``.

        The filter update and subunits as in :meth:`SRMStepper.flop_breakdown`; then the
        experts, the compressor and gates, the towers (projection part, every expert times
        every tower, the gate-weighted sum) and the spike head with its mixture. Not counted:
        softmax and ELU, and the "one step earlier" logit of the few cells above threshold.
        """
        config = self.model.config
        inputs = super().flop_breakdown(event_density)
        hidden, experts, width = config.hidden, config.n_experts, config.expert_hidden
        towers = self.model.towers.out_features
        spike_head = 0
        if config.spike_hidden:
            spike_head = 2 * experts * width + 2 * ((hidden + width) * config.spike_hidden + config.spike_hidden)
        return {
            "filter update": inputs["filter update"],
            "subunits": inputs["subunits"],
            "experts": 2 * (hidden * experts * width + (config.mlp_layers - 1) * experts * width ** 2),
            "compressor and gates": 2 * (hidden * config.compressor_hidden
                                         + config.compressor_hidden * experts * config.n_tasks),
            "towers": 2 * (hidden * towers + experts * width * towers + experts * towers),
            "spike head": spike_head,
        }
