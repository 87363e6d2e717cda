"""One-file checkpoints: weights, architecture, normalisation, cell identity and provenance.

A checkpoint is a ``torch.save`` dictionary of tensors and plain strings/numbers only, so it
loads with ``torch.load(weights_only=True)`` and never executes code. Metadata travels as one
JSON string (``meta``):

- ``family``, ``model_config``: the architecture (``surrogate_cell.models``);
- ``cell``: builder recipe, ``segment_hash``, ``section_types``, ``soma_segment``,
  ``input_segments`` (segment of each input event row), ``n_segments``;
- ``data``: data set path, simulation config, train/validation/test simulation indices;
- ``training``: the training config and progress counters.

The voltage normalisation is stored as tensors ``norm_mean`` / ``norm_std`` (mV per segment),
and the training voltage range as ``norm_low`` / ``norm_high`` (optional).
"""

from __future__ import annotations

import json
import os
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from surrogate_cell.models import build_model
from surrogate_cell.models.normalisation import Normalisation
from surrogate_cell.models.srm import sections_of_inputs

FORMAT = "surrogate_cell-checkpoint"
FORMAT_VERSION = 1
REQUIRED_KEYS = ("format", "format_version", "meta", "model", "norm_mean", "norm_std")
REQUIRED_META = ("family", "model_config", "cell", "data", "training")
REQUIRED_CELL = ("segment_hash", "section_types", "soma_segment", "input_segments", "n_segments",
                 "recipe")


class CheckpointError(ValueError):
    """A checkpoint is missing, malformed, or does not fit the model or cell it is used with."""


def save_checkpoint(path: str | Path, model: torch.nn.Module, meta: dict,
                    normalisation: Normalisation, extra: dict | None = None) -> None:
    """Write a checkpoint atomically (temporary file, then rename)."""
    payload = {
        "format": FORMAT,
        "format_version": FORMAT_VERSION,
        "meta": json.dumps(meta, sort_keys=True),
        "model": _unwrap(model).state_dict(),
        "norm_mean": torch.as_tensor(normalisation.mean),
        "norm_std": torch.as_tensor(normalisation.std),
        **({} if normalisation.low is None else {"norm_low": torch.as_tensor(normalisation.low),
                                                 "norm_high": torch.as_tensor(normalisation.high)}),
        **(extra or {}),
    }
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    remove_stale_temporaries(path.parent, path.name)
    temporary = path.with_name(f".{path.name}.tmp{os.getpid()}")
    try:
        torch.save(payload, temporary)
        os.replace(temporary, path)
    except BaseException:
        temporary.unlink(missing_ok=True)
        raise


def _process_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's process
        return True
    return True


def remove_stale_temporaries(folder: str | Path, name: str | None = None) -> list[Path]:
    """Delete temporary files that a killed save left in ``folder``.

    Atomic saves write ``.<name>.tmp<pid>`` and rename it over ``<name>``; a kill in between
    leaves the temporary file behind (the previous ``<name>`` stays intact). Files of processes
    still running (other than this one) are left alone: they may be saving right now.

    Parameters
    ----------
    folder : str or Path
        Where to look (nothing happens if it does not exist).
    name : str, optional
        Only the temporaries of this file name (e.g. ``"last.pt"``); default: all of them.

    Returns
    -------
    list of Path
        The files removed.
    """
    folder, removed = Path(folder), []
    if not folder.is_dir():
        return removed
    for candidate in folder.glob(f".{name or '*'}.tmp*"):
        pid = candidate.name.rpartition(".tmp")[2]
        if pid.isdigit() and (int(pid) == os.getpid() or not _process_alive(int(pid))):
            candidate.unlink(missing_ok=True)
            removed.append(candidate)
    return removed


def _unwrap(model: torch.nn.Module) -> torch.nn.Module:
    return model.module if hasattr(model, "module") else model


def model_meta(model: torch.nn.Module, family: str) -> dict:
    """The architecture part of the metadata."""
    return {"family": family, "model_config": asdict(_unwrap(model).config)}


def segment_midpoints(layout) -> np.ndarray:
    """(n_segments, 3) midpoint coordinates (um) of a :class:`CellLayout`'s segments."""
    return np.stack([layout.x[:, 1], layout.y[:, 1], layout.z[:, 1]], axis=1)


def cell_meta_from_layout(layout) -> dict:
    """The ``cell`` metadata of a checkpoint from a data set's :class:`CellLayout`."""
    input_sections, section_distances = sections_of_inputs(
        layout.segment_names, segment_midpoints(layout), layout.input_segments, layout.soma_segment)
    return {
        "recipe": layout.recipe,
        "segment_hash": layout.segment_hash,
        "section_types": [str(t) for t in layout.section_types],
        "soma_segment": int(layout.soma_segment),
        "input_segments": [int(i) for i in layout.input_segments],
        "n_segments": int(layout.n_segments),
        "input_sections": list(input_sections),
        "section_distances": list(section_distances),
    }


UNTRAINED_MH = {"channels": (4, 2), "kernel_size": 3, "dilations": (1, 2), "dropout": 0.0,
                "window": 100, "tower_hidden": (4, 4)}


def save_untrained_checkpoint(path: str | Path, layout, seed: int = 0) -> None:
    """A tiny MH checkpoint at random initialisation for a cell layout, to try the plumbing.

    The last tower layer is zeroed, so every voltage is its bias (about -70 mV): bounded,
    never diverging, and meaningless.
    """
    import numpy as np

    n_segments, n_events = layout.n_segments, 2 * len(layout.input_segments)
    torch.manual_seed(seed)
    model = build_model("mh", {**UNTRAINED_MH, "in_channels": n_events + n_segments,
                               "n_tasks": n_segments + 1, "event_channels": n_events})
    with torch.no_grad():
        model.towers.weights[-1].zero_()
    meta = {**model_meta(model, "mh"), "cell": cell_meta_from_layout(layout), "data": {},
            "training": {"untrained": True}}
    normalisation = Normalisation(np.full(n_segments, -70.0, np.float32), np.full(n_segments, 5.0, np.float32))
    save_checkpoint(path, model, meta, normalisation)


def read_checkpoint(path: str | Path, map_location="cpu") -> dict:
    """Load and validate a checkpoint file without executing code; ``meta`` is decoded."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    try:
        payload = torch.load(path, map_location=map_location, weights_only=True)
    except Exception as error:  # pickle/zip errors of every kind mean the same to the user
        raise CheckpointError(
            f"{path} is not a readable surrogate_cell checkpoint ({error}). "
            "It may be truncated or from another program; retrain or copy it again."
        ) from None
    _require(payload, REQUIRED_KEYS, path, "entries")
    if payload["format"] != FORMAT or payload["format_version"] > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format {payload['format']!r} v{payload['format_version']}; this version of "
            f"surrogate_cell reads {FORMAT!r} up to v{FORMAT_VERSION}. Upgrade surrogate_cell."
        )
    payload["meta"] = json.loads(payload["meta"])
    _require(payload["meta"], REQUIRED_META, path, "metadata fields")
    _require(payload["meta"]["cell"], REQUIRED_CELL, path, "cell fields")
    return payload


def _require(mapping: dict, keys, path: Path, what: str) -> None:
    missing = [key for key in keys if key not in mapping]
    if missing:
        raise CheckpointError(f"Checkpoint {path} lacks the {what} {missing}; it is incomplete or "
                              "was written by something else. Retrain or re-export it.")


def model_from_checkpoint(payload: dict, path: str | Path = "checkpoint") -> torch.nn.Module:
    """Build the model described by a checkpoint and load its weights (shapes checked)."""
    meta = payload["meta"]
    model = build_model(meta["family"], dict(meta["model_config"]))
    try:
        model.load_state_dict(payload["model"], strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"Weights in {path} do not fit its {meta['family']} architecture: "
                              f"{str(error).splitlines()[0]} ...") from None
    return model


def normalisation_from_checkpoint(payload: dict) -> Normalisation:
    """The voltage normalisation stored in a checkpoint."""
    bounds = [payload[key].numpy() if key in payload else None for key in ("norm_low", "norm_high")]
    return Normalisation(payload["norm_mean"].numpy(), payload["norm_std"].numpy(), *bounds)


def load_checkpoint(path: str | Path, map_location="cpu"):
    """(model, normalisation, meta, payload) from a checkpoint file."""
    payload = read_checkpoint(path, map_location)
    return (model_from_checkpoint(payload, path), normalisation_from_checkpoint(payload),
            payload["meta"], payload)


def check_cell(meta: dict, segment_hash: str, path: str | Path = "checkpoint") -> None:
    """Refuse a cell whose segments differ from the ones the model was trained on."""
    expected = meta["cell"]["segment_hash"]
    if segment_hash != expected:
        recipe = meta["cell"].get("recipe", {})
        raise CheckpointError(
            f"The model {path} was trained on a different cell (segment hash {expected[:12]}…, built "
            f"with {recipe}); this cell has hash {segment_hash[:12]}…. Build the cell with that recipe "
            "or train a surrogate for this cell with 'python -m surrogate_cell.training'."
        )
