"""Stepping engines: advance many cells that share one surrogate model, 1 ms per step.

Every stepper has ``reset(history_mv, event_history)`` and ``step(events) -> voltages``;
:func:`make_stepper` picks the fast one of the model's family (from the family registry), and
:func:`~surrogate_cell.engine.free_run.free_run` is the one loop that drives any stepper
through an input.
"""

import torch

from surrogate_cell.engine.free_run import FreeRun, free_run
from surrogate_cell.engine.incremental import IncrementalStepper, MHStepper, MMoEStepper
from surrogate_cell.engine.srm_moe_stepper import SRMMoEStepper
from surrogate_cell.engine.srm_stepper import SRMStepper
from surrogate_cell.engine.stepper import FullWindowStepper, SurrogateDivergedError
from surrogate_cell.models import family_of


def make_stepper(model: torch.nn.Module, normalisation, n_cells: int,
                 device: torch.device | str = "cpu", dtype: torch.dtype = torch.float32, **options):
    """The fast stepper of ``model``'s family (its registered ``stepper``), for ``n_cells`` cells.

    Parameters
    ----------
    model : torch.nn.Module
        A model of a registered family.
    normalisation : Normalisation
        The voltage normalisation it was trained with.
    n_cells : int
        Number of cells stepped together.
    device, dtype
        Where and in which precision the cells are stepped.
    **options
        Passed to the stepper (e.g. ``mix_first`` of :class:`MMoEStepper`).
    """
    return family_of(model).stepper_factory()(model, normalisation, n_cells, device, dtype, **options)


__all__ = ["FreeRun", "FullWindowStepper", "IncrementalStepper", "MHStepper", "MMoEStepper", "SRMMoEStepper",
           "SRMStepper", "SurrogateDivergedError", "free_run", "make_stepper"]
