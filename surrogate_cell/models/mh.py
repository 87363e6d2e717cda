"""MH: hard parameter sharing, one TCN bottom feeding per-task towers.

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

from torch import Tensor, nn

from .base import SurrogateConfig, as_int_tuple, finish_outputs
from .registry import register_family
from .tcn import TCN
from .towers import StackedTowers


@dataclass
class MHConfig(SurrogateConfig):
    """MH sizes: TCN ``channels`` and per-task ``tower_hidden`` widths."""

    channels: tuple[int, ...] = (32, 16, 8)
    tower_hidden: tuple[int, ...] = (25, 25)

    def __post_init__(self) -> None:
        """Normalise sequences."""
        super().__post_init__()
        self.channels = as_int_tuple(self.channels)
        self.tower_hidden = as_int_tuple(self.tower_hidden)


@register_family("mh", MHConfig, stepper="surrogate_cell.engine.incremental:MHStepper")
class MH(nn.Module):
    """Shared TCN -> flattened features -> one ELU tower per task."""

    def __init__(self, config: MHConfig):
        """Build the shared TCN and the stacked towers."""
        super().__init__()
        self.config = config
        self.tcn = TCN(config.tcn_config(config.channels))
        self.towers = StackedTowers(config.n_tasks, self.tcn.n_features,
                                    config.tower_hidden, nn.ELU)

    def input_stacks(self) -> list[TCN]:
        """The TCN stacks that read the model input (for the incremental stepper)."""
        return [self.tcn]

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        """Voltage predictions (batch, n_tasks - 1) and spike logit (batch,)."""
        return finish_outputs(self.towers(self.tcn(self.config.tcn_input(x)).squeeze(1)), x, self.config)
