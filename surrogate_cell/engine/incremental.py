"""Fast batched stepping: any number of cells sharing one model, advanced incrementally.

:class:`IncrementalStepper` has the API of :class:`FullWindowStepper` and gives the same
voltages (up to round-off) for MH, MMoE and MMoEEx models, at a fraction of the cost:

- **First layer, one column per step.** The first convolution and residual projection of
  every stack read the wide raw input linearly; each step only the newest input column is
  multiplied (sparse events as a sum of weight rows, voltages as one product), and the
  per-tap contributions are cached over the window (:class:`InputLayer`).
- **Later layers, changed positions only.** Every layer keeps its values over the window
  and recomputes only the positions a window shift changes: the first few (their
  receptive field lost the dropped step to the causal padding) and the newest
  (:class:`IncrementalTCN`).
- **Heads** evaluate all towers (and MMoE gates) for all cells in a few large products
  (:mod:`surrogate_cell.engine.heads`).

All cells form one batch; nothing in a step loops over cells, tasks, experts or synapses.
"""

from __future__ import annotations

import dataclasses

import torch
from torch import Tensor

from surrogate_cell.engine.heads import MHHead, MMoEHead
from surrogate_cell.engine.incremental_tcn import (
    BlockWeights,
    IncrementalTCN,
    InputLayer,
)
from surrogate_cell.engine.stepper import (
    adopt_model,
    check_finite,
    expanded_history,
    within_training_range,
)
from surrogate_cell.models.normalisation import Normalisation


def with_voltage_columns(block: BlockWeights, n_segments: int) -> BlockWeights:
    """A first block reading only events, widened with zero weights for ``n_segments`` voltages."""
    def widen(weight):
        return None if weight is None else torch.cat(
            [weight, weight.new_zeros(weight.shape[0], n_segments, weight.shape[2])], dim=1)
    return dataclasses.replace(block, conv1_weight=widen(block.conv1_weight),
                               residual_weight=widen(block.residual_weight))


class IncrementalStepper:
    """Steps ``n_cells`` cells sharing ``model``, 1 ms at a time, reusing the previous window.

    Same API and time convention as :class:`~surrogate_cell.engine.FullWindowStepper`:
    :meth:`reset` sets the history, :meth:`step` takes the events of ``[t, t+1)`` and returns
    the voltages (n_cells, S) mV at ``t+1``. After each step :attr:`spike_logits` (n_cells,)
    holds the spike-task output. ``mix_first`` selects the MMoE tower evaluation order
    (see :class:`MMoEHead`); it does not change the results beyond round-off.
    """

    def __init__(self, model: torch.nn.Module, normalisation: Normalisation, n_cells: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32,
                 mix_first: bool = False):
        adopt_model(self, model, normalisation, n_cells, device, dtype)
        config = model.config
        if config.in_channels != self.n_events + self.n_segments:
            raise ValueError(f"the model reads {config.in_channels} channels, not events + voltages "
                             f"({self.n_events} + {self.n_segments})")
        self.residual_voltage = config.residual_voltage
        with torch.no_grad():
            self._build(model, mix_first)
        self.latest_z = torch.zeros(n_cells, self.n_segments, device=device, dtype=dtype)
        self.spike_logits = torch.zeros(n_cells, device=device, dtype=dtype)
        self.steps_taken = 0

    def _build(self, model: torch.nn.Module, mix_first: bool) -> None:
        stack_weights = [stack.effective_weights() for stack in model.input_stacks()]
        if not model.config.voltage_input:  # events-only: zero weights on the voltage columns
            stack_weights = [[with_voltage_columns(weights[0], self.n_segments), *weights[1:]]
                             for weights in stack_weights]
        args = (self.window, self.n_cells, self.device, self.dtype)
        self.input_layer = InputLayer([weights[0] for weights in stack_weights], self.n_events, *args)
        self.stacks = [IncrementalTCN(weights, *args) for weights in stack_weights]
        self.head = self.make_head(model, mix_first)

    def make_head(self, model: torch.nn.Module, mix_first: bool):
        """The head turning the stacks' features into task outputs (set by the family's subclass)."""
        raise NotImplementedError(f"{type(self).__name__} has no head; use MHStepper or MMoEStepper")

    @torch.no_grad()
    def reset(self, voltage_history_mv: Tensor, event_history: Tensor | None = None) -> None:
        """Start from a history: voltages (n_cells or 1, W, S) mV, events (n_cells or 1, W, E)."""
        z, events = expanded_history(self, voltage_history_mv, event_history)
        # The state always describes the window of the previous step, which step() moves
        # on by one column: here the events of the history's bins with the voltages one
        # step earlier. Its oldest column drops out before any output reads it.
        earlier_z = torch.cat([torch.zeros_like(z[:, :1]), z[:, :-1]], dim=1)
        self.input_layer.fill(torch.cat([events, earlier_z], dim=-1))
        self._update_stacks(full=True)
        self.latest_z = z[:, -1].clone()
        self.steps_taken = 0

    @torch.no_grad()
    def step(self, events: Tensor) -> Tensor:
        """Advance one ms: ``events`` (n_cells, E) of ``[t, t+1)`` -> voltages (n_cells, S) mV at ``t+1``."""
        events = torch.as_tensor(events, device=self.device, dtype=self.dtype)
        self.input_layer.advance()
        for stack in self.stacks:
            stack.advance()
        self.input_layer.push(events, self.latest_z)
        self._update_stacks(full=False)
        outputs = self.head([stack.features() for stack in self.stacks])
        self.spike_logits = outputs[:, -1]
        z = outputs[:, :-1] + self.latest_z if self.residual_voltage else outputs[:, :-1]
        self.latest_z = within_training_range(z, self.z_bounds)
        self.steps_taken += 1
        voltage = self.latest_z * self.std + self.mean
        check_finite(voltage, self.steps_taken)
        return voltage

    def _update_stacks(self, full: bool) -> None:
        """Recompute every stack's changed positions from the input layer's window."""
        spans = self.stacks[0].first_spans(full)
        first_conv = self.input_layer.conv_at(spans).split(self.input_layer.widths, dim=1)
        first_residual = self.input_layer.residual.window().split(self.input_layer.widths, dim=1)
        for stack, conv, residual in zip(self.stacks, first_conv, first_residual):
            stack.update(conv, residual, full)

    def flop_breakdown(self, event_density: float = 0.01) -> dict[str, int]:
        """FLOPs one cell needs per step on this incremental path, by part (multiply-adds count 2).

        Counted analytically: the newest input column (events at ``event_density``) and the
        first convolution's tap sums; every later convolution at its recomputed positions;
        the head (gates, mixing, towers). Element-wise activations are not counted.
        """
        spans = self.stacks[0].first_spans(full=False)
        return {"input layer": self.input_layer.flops(event_density, spans),
                "later layers": sum(stack.flops() for stack in self.stacks),
                "head": self.head.flops()}

    def flops_per_cell_step(self, event_density: float = 0.01) -> int:
        """Total of :meth:`flop_breakdown`."""
        return sum(self.flop_breakdown(event_density).values())

    def state_bytes(self) -> int:
        """Bytes held by the per-cell window state (all sliding windows)."""
        windows = [self.input_layer.taps, self.input_layer.residual]
        for stack in self.stacks:
            windows += [*stack.hidden, *stack.outputs]
        return sum(w.storage.numel() * w.storage.element_size() for w in windows)


class MHStepper(IncrementalStepper):
    """:class:`IncrementalStepper` of the MH family (one TCN, per-task towers)."""

    def make_head(self, model: torch.nn.Module, mix_first: bool) -> MHHead:
        """Towers on the shared TCN's features."""
        return MHHead(model, self.n_cells)


class MMoEStepper(IncrementalStepper):
    """:class:`IncrementalStepper` of the MMoE and MMoEEx families (experts, gates, towers)."""

    def make_head(self, model: torch.nn.Module, mix_first: bool) -> MMoEHead:
        """Gated mixture of the experts' features, then towers."""
        return MMoEHead(model, self.n_cells, mix_first)
