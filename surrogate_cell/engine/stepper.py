"""Step any number of cells that share one surrogate model, 1 ms at a time.

Time convention (as in the training windows): ``step(events)`` takes the synaptic events
delivered during ``[t, t+1)`` ms and returns every segment's voltage at ``t+1``, from the last
``W`` ms of events and voltages (``W`` = the model's window, 100 ms).
"""

from __future__ import annotations

import torch

from surrogate_cell.models.base import model_input
from surrogate_cell.models.normalisation import Normalisation

RUNAWAY_LIMIT_MV = 250.0


class SurrogateDivergedError(RuntimeError):
    """A predicted voltage became NaN/inf or left the physiological range."""


def adopt_model(stepper, model: torch.nn.Module, normalisation: Normalisation, n_cells: int,
                device: torch.device | str, dtype: torch.dtype) -> None:
    """Set the attributes every stepper shares: model on its device, sizes, normalisation."""
    stepper.model = model.to(device=device, dtype=dtype).eval()
    stepper.device, stepper.dtype = torch.device(device), dtype
    config = model.config
    stepper.window, stepper.n_events = config.window, config.event_channels
    stepper.n_segments = config.n_tasks - 1
    stepper.n_cells = n_cells
    stepper.mean = torch.as_tensor(normalisation.mean, device=device, dtype=dtype)
    stepper.std = torch.as_tensor(normalisation.std, device=device, dtype=dtype)
    stepper.z_bounds = normalisation.z_bounds(device, dtype)


def expanded_history(stepper, voltage_history_mv, event_history) -> tuple[torch.Tensor, torch.Tensor]:
    """A ``reset`` history for every cell: z-voltages (n_cells, W, S) and events (n_cells, W, E).

    Either history may have one row for all cells; no events means none.
    """
    shape = (stepper.n_cells, stepper.window)
    history = torch.as_tensor(voltage_history_mv, device=stepper.device, dtype=stepper.dtype)
    z = ((history - stepper.mean) / stepper.std).expand(*shape, stepper.n_segments)
    events = torch.zeros(*shape, stepper.n_events, device=stepper.device, dtype=stepper.dtype)
    if event_history is not None:
        events[:] = torch.as_tensor(event_history, device=stepper.device, dtype=stepper.dtype)
    return z, events


def within_training_range(z: torch.Tensor, z_bounds) -> torch.Tensor:
    """``z`` clipped to the voltage range of the training data (unchanged if none is known).

    NaN stays NaN, so :func:`check_finite` still stops a broken run.
    """
    if z_bounds is None:
        return z
    return torch.minimum(torch.maximum(z, z_bounds[0]), z_bounds[1])


class FullWindowStepper:
    """Reference stepper: recomputes the whole model on the rolling window at every step.

    ``model`` maps (n_cells, E + S, W) inputs to (z-voltages (n_cells, S), spike logits); the
    buffers hold events (n_cells, W, E) and z-scored voltages (n_cells, W, S).
    """

    def __init__(self, model: torch.nn.Module, normalisation: Normalisation, n_cells: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
        adopt_model(self, model, normalisation, n_cells, device, dtype)
        self.events = torch.zeros(n_cells, self.window, self.n_events, device=device, dtype=dtype)
        self.voltages = torch.zeros(n_cells, self.window, self.n_segments, device=device, dtype=dtype)
        self.steps_taken = 0

    def reset(self, voltage_history_mv: torch.Tensor, event_history: torch.Tensor | None = None) -> None:
        """Start from a history: voltages (n_cells or 1, W, S) mV, events (n_cells or 1, W, E)."""
        history = torch.as_tensor(voltage_history_mv, device=self.device, dtype=self.dtype)
        self.voltages[:] = (history - self.mean) / self.std
        self.events.zero_()
        if event_history is not None:
            self.events[:] = torch.as_tensor(event_history, device=self.device, dtype=self.dtype)
        self.steps_taken = 0

    @torch.no_grad()
    def _predict(self) -> tuple[torch.Tensor, torch.Tensor]:
        return self.model(model_input(self.events, self.voltages))

    @torch.no_grad()
    def step(self, events: torch.Tensor) -> torch.Tensor:
        """Advance one ms: ``events`` (n_cells, E) of ``[t, t+1)`` -> voltages (n_cells, S) mV at ``t+1``."""
        self.events = torch.roll(self.events, -1, dims=1)
        self.events[:, -1] = torch.as_tensor(events, device=self.device, dtype=self.dtype)
        z, _ = self._predict()
        z = within_training_range(z, self.z_bounds)
        self.voltages = torch.roll(self.voltages, -1, dims=1)
        self.voltages[:, -1] = z
        self.steps_taken += 1
        voltage = z * self.std + self.mean
        check_finite(voltage, self.steps_taken)
        return voltage


def check_finite(voltage: torch.Tensor, step: int) -> None:
    """Raise :class:`SurrogateDivergedError` naming the step and cell of a NaN/runaway voltage."""
    bad = ~torch.isfinite(voltage) | (voltage.abs() > RUNAWAY_LIMIT_MV)
    if bool(bad.any()):
        cell, segment = (int(i) for i in torch.nonzero(bad)[0])
        raise SurrogateDivergedError(
            f"Surrogate diverged at step {step} (t = {step} ms): cell {cell}, segment {segment} has "
            f"voltage {float(voltage[cell, segment]):.4g} mV. The input is probably far outside the "
            "training regime; use a model trained on such input, or shorter free-running stretches."
        )
