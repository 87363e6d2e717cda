"""Stepping engines: advance many cells that share one surrogate model, 1 ms per step."""

import torch

from surrogate_cell.engine.incremental import IncrementalStepper
from surrogate_cell.engine.srm_stepper import SRMStepper
from surrogate_cell.engine.stepper import FullWindowStepper, SurrogateDivergedError
from surrogate_cell.models import SRM


def make_stepper(model: torch.nn.Module, normalisation, n_cells: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32):
    """The fast stepper for ``model``: :class:`SRMStepper` for SRM models, else :class:`IncrementalStepper`."""
    stepper = SRMStepper if isinstance(model, SRM) else IncrementalStepper
    return stepper(model, normalisation, n_cells, device, dtype)


__all__ = ["FullWindowStepper", "IncrementalStepper", "SRMStepper", "SurrogateDivergedError",
           "make_stepper"]
