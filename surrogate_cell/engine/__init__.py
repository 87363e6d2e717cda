"""Stepping engines: advance many cells that share one surrogate model, 1 ms per step."""

from surrogate_cell.engine.incremental import IncrementalStepper
from surrogate_cell.engine.stepper import FullWindowStepper, SurrogateDivergedError

__all__ = ["FullWindowStepper", "IncrementalStepper", "SurrogateDivergedError"]
