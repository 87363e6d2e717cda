"""One entry point for every cell the project builds: the Hay cell (built-in or on a morphology
file) or a user's cell recipe, from a source path or from the ``recipe`` dict a data set or
checkpoint stores."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

import LFPy

from surrogate_cell.cells.l5pc import l5pc
from surrogate_cell.cells.recipe import (
    RECIPE_BUILDER,
    CellRecipeError,
    build_recipe_cell,
    embedded_geometry_cell,
    is_recipe_path,
)
from surrogate_cell.config import PACKAGED_CONFIGS

CELL_BUILDERS: dict[str, Callable[..., LFPy.Cell]] = {"l5pc": l5pc}
"""Builders of a stored recipe's ``builder`` name that take ``(morphology, **cell_kwargs)``;
recipe cells (``builder: recipe``) are rebuilt by :func:`build_stored_cell`."""


def build_source_cell(source: str | Path | None, **cell_kwargs) -> LFPy.Cell:
    """The cell a user names: None for the built-in L5PC, a morphology file for the Hay
    biophysics on it, or a cell recipe (``.yaml``) for the user's own cell."""
    if is_recipe_path(source):
        return build_recipe_cell(source, **cell_kwargs)
    return l5pc(source, **cell_kwargs)


def build_stored_cell(recipe: dict, cell_kwargs: dict, biophysical: bool = False) -> LFPy.Cell:
    """The cell a data set's or checkpoint's ``recipe`` describes, ``cell_kwargs`` taking precedence.

    A recipe cell is rebuilt from its embedded geometry (no user file needed), or, with
    ``biophysical=True`` (NEURON references), from its recipe file, which must then exist.
    """
    kwargs = {**recipe.get("cell_kwargs", {}), **cell_kwargs}
    if recipe.get("builder") == RECIPE_BUILDER:
        if not biophysical:
            return embedded_geometry_cell(recipe, **cell_kwargs)
        source = recipe.get("source")
        if not source or not (Path(source).is_file() or (PACKAGED_CONFIGS / source).is_file()):
            raise CellRecipeError(f"The biophysical cell {recipe.get('name')!r} needs its recipe file {source}, "
                                  "which is not on this machine; a surrogate runs without it, a NEURON "
                                  "reference cannot.")
        return build_recipe_cell(source, **kwargs)
    builder = CELL_BUILDERS.get(recipe.get("builder"))
    if builder is None:
        raise CellRecipeError(f"The stored cell recipe names the builder {recipe.get('builder')!r}; "
                              f"this version knows {sorted([*CELL_BUILDERS, RECIPE_BUILDER])}.")
    morphology = kwargs.pop("morphology", recipe.get("morphology"))
    return builder(morphology, **kwargs)
