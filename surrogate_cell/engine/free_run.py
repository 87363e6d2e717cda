"""The one free-run loop: drive any stepper through an input, 1 ms per step, on its own predictions.

``SurrogateCell.simulate``, ``evaluate``, ``calibrate`` and the free-running lead-ins of
training all run a model this way; only the stepper differs (the family's fast stepper, or the
:class:`~surrogate_cell.engine.FullWindowStepper` reference). The input is read in chunks, so
memory grows with the recorded outputs, never with a dense copy of the whole input.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm.auto import tqdm

from surrogate_cell.engine.stepper import SurrogateDivergedError

CHUNK_ELEMENTS = 1 << 24
"""Largest number of event values (cells x ms x channels) made dense at once."""

EventSource = Tensor | Callable[[int, int], Tensor]
"""Events (n_cells, n_steps, E) of bins ``[t, t+1)``, or ``events(start, stop)`` giving that slice."""


@dataclass
class FreeRun:
    """The outcome of :func:`free_run`.

    Attributes
    ----------
    voltages_mv : torch.Tensor
        (n_cells, n_done, R) voltages (mV) at ``t = 1 .. n_done`` of the recorded segments.
    diverged_at : int or None
        The step at which a voltage became NaN/infinite or left the physiological range (the
        run stopped before it), or None if it never did.
    """

    voltages_mv: Tensor
    diverged_at: int | None = None


@torch.no_grad()
def free_run(stepper, events: EventSource, history_mv: Tensor, history_events: Tensor | None = None, *,
             n_steps: int | None = None, record: Sequence[int] | None = None,
             stop_on_divergence: bool = False, progress: bool = False) -> FreeRun:
    """Step ``stepper`` through ``events`` from a history, feeding back its own predictions.

    Parameters
    ----------
    stepper
        Any stepper (``reset(history_mv, history_events)``, ``step(events) -> voltages_mv``).
    events : torch.Tensor or callable
        Events (n_cells, n_steps, E) of bins ``[t, t+1)`` ms, ``t = 0 .. n_steps - 1``; or a
        function ``events(start, stop)`` returning the (n_cells, stop - start, E) slice, with
        ``n_steps`` given.
    history_mv : torch.Tensor
        (n_cells or 1, W, S) voltages (mV) of the window before ``t = 0``; its last row is ``t = 0``.
    history_events : torch.Tensor, optional
        (n_cells or 1, W, E) events of the window before the first step (default: none).
    n_steps : int, optional
        Number of 1 ms steps (default: the length of ``events``).
    record : sequence of int, optional
        Segments whose voltages are kept (default: all).
    stop_on_divergence : bool
        Return the steps before a diverging one (with :attr:`FreeRun.diverged_at`) instead of
        raising :class:`SurrogateDivergedError`.
    progress : bool
        Show a progress bar.

    Returns
    -------
    FreeRun
        Voltages at ``t = 1 .. n_steps`` (fewer if the run diverged and stopped).
    """
    if n_steps is None:
        if callable(events):
            raise TypeError("free_run needs n_steps when events is a function")
        n_steps = events.shape[1]
    slice_of = events if callable(events) else (lambda start, stop: events[:, start:stop])
    stepper.reset(history_mv, history_events)
    n_cells, n_channels = stepper.n_cells, max(stepper.n_events, 1)
    columns = slice(None) if record is None else torch.as_tensor(list(record), dtype=torch.long)
    n_recorded = stepper.n_segments if record is None else len(record)
    dtype = torch.promote_types(stepper.dtype, torch.float32)
    voltages = torch.empty(n_cells, n_steps, n_recorded, dtype=dtype, device=stepper.device)
    chunk = max(1, min(n_steps, CHUNK_ELEMENTS // (n_cells * n_channels)))
    bar = tqdm(total=n_steps, desc="free run", disable=not progress, leave=False)
    for start in range(0, n_steps, chunk):
        block = slice_of(start, min(start + chunk, n_steps)).to(stepper.device, stepper.dtype)
        for offset in range(block.shape[1]):  # each step needs the previous one's output
            try:
                voltage = stepper.step(block[:, offset])
            except SurrogateDivergedError:
                if not stop_on_divergence:
                    raise
                bar.close()
                return FreeRun(voltages[:, :start + offset], start + offset)
            voltages[:, start + offset] = voltage[:, columns]
        bar.update(block.shape[1])
    bar.close()
    return FreeRun(voltages)
