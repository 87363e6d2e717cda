"""MMoEEx: MMoE with exclusive or excluded experts (Aoki, Tung & Oliveira 2021).

A fraction ``exclusivity_fraction`` of the experts is singled out at
construction, with a seeded generator. With exclusivity (default) each such
expert is reserved for one randomly chosen task and hidden from all others;
with exclusion it is hidden from one randomly chosen task only. Hidden
experts get a gate logit of ``-inf``, so their softmax gate weight is exactly 0.

One of the published voltage-feedback architectures (MH, MMoE, MMoEEx): the input window
holds the last ``window`` ms of synaptic events **and of every segment's own past
voltage** (``voltage_input: false`` drops the voltages; see ``rescaled_init``).
Teacher-forced (true voltage history) such models are accurate; run free on
their own predictions, as ``SurrogateCell`` does, their errors feed back and they drift.
The shipped default uses the SRM family instead (:mod:`surrogate_cell.models.srm`), which
reads no voltages. See ``docs/experiments.md`` for what was measured.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .mmoe import MMoE, MMoEConfig
from .registry import register_family


@dataclass
class GateMaskOptions:
    """The MMoEEx gate-mask options, added to an MMoE configuration (published or stable).

    ``exclusivity_fraction``: the fraction of experts singled out (at least one if > 0);
    ``exclusion=False``: each is exclusive to one random task; ``exclusion=True``: each is
    hidden from one random task; ``mask_seed`` seeds the choice.
    """

    exclusivity_fraction: float = 0.1
    exclusion: bool = False
    mask_seed: int = 0

    def __post_init__(self) -> None:
        """Validate the fraction (after the configuration's own checks)."""
        super().__post_init__()
        if not 0.0 <= self.exclusivity_fraction <= 1.0:
            raise ValueError("exclusivity_fraction must lie in [0, 1]")


@dataclass
class MMoEExConfig(GateMaskOptions, MMoEConfig):
    """MMoE configuration plus the gate-mask options (:class:`GateMaskOptions`)."""


def n_special_experts(n_experts: int, fraction: float) -> int:
    """Number of exclusive/excluded experts: ``round(fraction * n_experts)``, at least 1 if ``fraction > 0``."""
    if fraction <= 0:
        return 0
    return max(1, round(fraction * n_experts))


def make_gate_mask(n_tasks: int, n_experts: int, fraction: float, exclusion: bool = False,
                   seed: int = 0) -> Tensor:
    """Boolean (n_tasks, n_experts) mask of the experts each task may use.

    Raises ``ValueError`` when every expert would be special, which could
    leave a task without any expert.
    """
    n_special = n_special_experts(n_experts, fraction)
    if n_special >= n_experts:
        raise ValueError(f"{n_special} special experts out of {n_experts} would leave "
                         "some task without an expert; lower exclusivity_fraction")
    generator = torch.Generator().manual_seed(seed)
    experts = torch.randperm(n_experts, generator=generator)[:n_special]
    tasks = torch.randint(n_tasks, (n_special,), generator=generator)
    mask = torch.ones(n_tasks, n_experts, dtype=torch.bool)
    for expert, task in zip(experts.tolist(), tasks.tolist()):
        if exclusion:
            mask[task, expert] = False
        else:
            mask[:, expert] = False
            mask[task, expert] = True
    return mask


class MaskedGates:
    """What MMoEEx adds to an MMoE (the published one or the stable one): a fixed gate mask
    (n_tasks, n_experts), a buffer saved in the state dict, from the config's exclusivity or
    exclusion settings (:func:`make_gate_mask`). The model's ``gate_logits`` applies it."""

    def add_gate_mask(self, config) -> None:
        """Register ``gate_mask`` for ``config`` (n_tasks, n_experts, exclusivity_fraction, exclusion, mask_seed)."""
        self.register_buffer("gate_mask", make_gate_mask(config.n_tasks, config.n_experts,
                                                         config.exclusivity_fraction, config.exclusion,
                                                         config.mask_seed))

    @property
    def special_experts(self) -> list[int]:
        """Indices of the exclusive (or excluded-from-one-task) experts."""
        return (~self.gate_mask).any(0).nonzero().flatten().tolist()


@register_family("mmoeex", MMoEExConfig, stepper="surrogate_cell.engine.incremental:MMoEStepper",
                 has_experts=True)
class MMoEEx(MaskedGates, MMoE):
    """:class:`MMoE` whose gates see only the experts allowed by a fixed mask."""

    def __init__(self, config: MMoEExConfig):
        """Build the MMoE and its gate mask."""
        super().__init__(config)
        self.add_gate_mask(config)

    def gate_logits(self, compressed: Tensor) -> Tensor:
        """MMoE gate logits with hidden experts set to ``-inf``."""
        return super().gate_logits(compressed).masked_fill(~self.gate_mask, float("-inf"))
