"""Configuration and output conventions shared by all surrogate model families.

Task layout: tasks ``0 .. n_tasks - 2`` predict the z-scored voltage of each
segment at the next step; the last task is the somatic-spike logit.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from .tcn import TCNConfig


def as_int_tuple(values) -> tuple[int, ...]:
    """Tuple of ints from any sequence (YAML gives lists)."""
    return tuple(int(v) for v in values)


@dataclass
class SurrogateConfig:
    """Fields common to every family.

    ``in_channels``, ``n_tasks`` (voltage tasks + 1 spike task) and
    ``event_channels`` (number of leading binary event channels, e.g.
    2 x synapse-carrying segments; 0 = treat all channels as dense) come
    from the data; the rest are architecture choices. ``voltage_input=False`` makes an
    events-only model: it is given the same input but reads only the synaptic events, so a
    free run never feeds its own predictions back (open loop: it cannot drift or diverge).
    """

    in_channels: int
    n_tasks: int
    kernel_size: int = 10
    dilations: tuple[int, ...] = (1, 2, 4)
    dropout: float = 0.2
    window: int = 100
    event_channels: int = 0
    residual_voltage: bool = False
    voltage_input: bool = True
    rescaled_init: bool = False

    def __post_init__(self) -> None:
        """Normalise sequences and validate the task count."""
        self.dilations = as_int_tuple(self.dilations)
        if self.n_tasks < 2:
            raise ValueError("n_tasks counts the voltage tasks plus one spike task; need >= 2")
        if not self.voltage_input and (self.residual_voltage or self.event_channels == 0):
            raise ValueError("voltage_input: false needs event_channels > 0 and residual_voltage: false")
        if self.residual_voltage and self.in_channels - self.event_channels != self.n_voltage_tasks:
            raise ValueError("residual_voltage needs one voltage input channel per voltage task "
                             f"({self.in_channels - self.event_channels} inputs, {self.n_voltage_tasks} tasks)")

    @property
    def n_voltage_tasks(self) -> int:
        """Number of voltage-regression tasks (all tasks but the spike logit)."""
        return self.n_tasks - 1

    def tcn_input(self, x: Tensor) -> Tensor:
        """What the TCNs read of the (batch, in_channels, window) input: all, or only the events."""
        return x if self.voltage_input else x[:, :self.event_channels]

    def tcn_config(self, channels: tuple[int, ...], n_members: int = 1) -> TCNConfig:
        """A :class:`TCNConfig` reading this model's input (see :meth:`tcn_input`) with the given widths."""
        return TCNConfig(
            in_channels=self.in_channels if self.voltage_input else self.event_channels,
            channels=channels, kernel_size=self.kernel_size,
            dilations=self.dilations, dropout=self.dropout, window=self.window,
            n_members=n_members, event_channels=self.event_channels, rescaled_init=self.rescaled_init,
        )


def finish_outputs(out: Tensor, x: Tensor, config: SurrogateConfig) -> tuple[Tensor, Tensor]:
    """Split task outputs; with ``residual_voltage`` the voltage outputs are changes from the
    last input millisecond (so doing nothing predicts persistence, the towers learn updates)."""
    voltage, spike = split_outputs(out)
    if config.residual_voltage:
        voltage = voltage + x[:, config.event_channels:, -1]
    return voltage, spike


def split_outputs(out: Tensor) -> tuple[Tensor, Tensor]:
    """Split (batch, n_tasks) task outputs into voltages (batch, n_tasks - 1) and spike logit (batch,)."""
    return out[:, :-1], out[:, -1]


def model_input(events: torch.Tensor, history: torch.Tensor) -> torch.Tensor:
    """(B, W, E) events and (B, W, S) voltages -> the model's (B, E + S, W) input."""
    return torch.cat([events, history], dim=-1).transpose(1, 2)
