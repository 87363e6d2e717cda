"""Checkpoints shipped with the package, found by name (``SurrogateCell(model="l5pc-default")``)."""

from __future__ import annotations

import os
from pathlib import Path

from surrogate_cell.checkpoint import CheckpointError

PRETRAINED_DIR = Path(__file__).resolve().parent
"""Where checkpoints shipped with the package live, as ``<name>.pt``."""


def available_models() -> list[str]:
    """Names of the checkpoints shipped with the package (``model=<name>``)."""
    return sorted(path.stem for path in PRETRAINED_DIR.glob("*.pt"))


def resolve_model(model: str | os.PathLike) -> Path:
    """The checkpoint file of ``model``: an existing path, or the name of a shipped checkpoint."""
    path = Path(model).expanduser()
    if path.is_file():
        return path
    shipped = PRETRAINED_DIR / f"{model}.pt"
    if isinstance(model, str) and Path(model).name == model and shipped.is_file():
        return shipped
    names = ", ".join(available_models()) or "none are shipped with this version"
    raise CheckpointError(
        f"Unknown model {str(model)!r}: no such checkpoint file and no shipped model of that name. "
        f"Shipped model names: {names}. Pass the path of a checkpoint (e.g. training's best.pt)."
    )
