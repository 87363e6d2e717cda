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
import types
import typing
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch

from surrogate_cell.allocation import AllocationLimit, AllocationLimitExceeded
from surrogate_cell.models import FAMILIES, ModelFamily, build_model, get_family
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
    """Load and validate a checkpoint file without executing code; ``meta`` is decoded.

    Parameters
    ----------
    path : str or Path
        The checkpoint file.
    map_location
        Where the tensors are loaded (as for ``torch.load``).

    Returns
    -------
    dict
        The checkpoint's entries, ``meta`` decoded from JSON.

    Raises
    ------
    CheckpointError
        If the file is missing or unreadable, holds anything but tensors and plain values, or
        its entries or metadata are missing or malformed (the message names the file and what
        to do).
    """
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"Checkpoint {path} does not exist.")
    payload = _load_plain(path, map_location)
    _check_entries(payload, path)
    payload["meta"] = _decode_meta(payload["meta"], path)
    return payload


def _load_plain(path: Path, map_location) -> dict:
    """``torch.load(weights_only=True)``, its errors told in our own words (never torch's advice)."""
    try:
        return torch.load(path, map_location=map_location, weights_only=True)
    except OSError as error:
        raise CheckpointError(f"Checkpoint {path} cannot be read ({error.strerror or type(error).__name__}); "
                              "make it readable for this user or copy it again.") from None
    except Exception as error:  # pickle/zip errors of every kind; torch's text is not repeated
        if "Unsupported global" in str(error):
            raise CheckpointError(
                f"{path} is not a plain surrogate_cell checkpoint: it holds Python objects other than "
                "tensors, numbers and strings, and surrogate_cell never runs code from a file. "
                "Use a checkpoint written by surrogate_cell (training's best.pt) or retrain."
            ) from None
        raise CheckpointError(
            f"{path} is not a readable surrogate_cell checkpoint: it is not a complete torch.save file. "
            "It may be truncated or from another program; retrain or copy it again."
        ) from None


def _malformed(path: Path, what: str) -> CheckpointError:
    """The error for a checkpoint entry of the wrong kind."""
    return CheckpointError(f"Checkpoint {path}: {what}; it is corrupt or was written by something "
                           "else. Retrain or re-export it.")


def _check_entries(payload, path: Path) -> None:
    """Refuse a payload whose top-level entries are missing or of the wrong kind."""
    if not isinstance(payload, dict):
        raise _malformed(path, f"it holds a {type(payload).__name__}, not a checkpoint dictionary")
    _require(payload, REQUIRED_KEYS, path, "entries")
    version = payload["format_version"]
    if payload["format"] != FORMAT or not _is_int(version):
        raise _malformed(path, f"its format is {payload['format']!r} version {version!r}, not {FORMAT!r} "
                               "with a whole version number")
    if version > FORMAT_VERSION:
        raise CheckpointError(
            f"{path} has format {payload['format']!r} v{version}; this version of "
            f"surrogate_cell reads {FORMAT!r} up to v{FORMAT_VERSION}. Upgrade surrogate_cell."
        )
    weights = payload["model"]
    if not isinstance(weights, dict) or not all(isinstance(key, str) and isinstance(value, torch.Tensor)
                                                for key, value in weights.items()):
        raise _malformed(path, "'model' is not a dictionary of named tensors")
    _check_normalisation(payload, path)
    if not isinstance(payload["meta"], str):
        raise _malformed(path, f"'meta' is of type {type(payload['meta']).__name__}, not a JSON string")


def _check_normalisation(payload: dict, path: Path) -> None:
    """``norm_mean``/``norm_std`` (and optional ``norm_low``/``norm_high``): one float per segment."""
    names = [name for name in ("norm_mean", "norm_std", "norm_low", "norm_high") if name in payload]
    for name in names:
        value = payload[name]
        if not isinstance(value, torch.Tensor) or value.ndim != 1 or not value.is_floating_point():
            raise _malformed(path, f"{name!r} is not a one-dimensional float tensor")
    if len({payload[name].shape for name in names}) > 1:
        raise _malformed(path, f"the normalisation entries {names} differ in length")


def _decode_meta(text: str, path: Path) -> dict:
    """The JSON metadata, checked for its required fields and their kinds."""
    try:
        meta = json.loads(text)
    except json.JSONDecodeError as error:
        raise _malformed(path, f"its metadata ('meta') is not valid JSON ({error.msg} at line "
                               f"{error.lineno}, column {error.colno})") from None
    if not isinstance(meta, dict):
        raise _malformed(path, f"its metadata ('meta') is a JSON {type(meta).__name__}, not an object")
    _require(meta, REQUIRED_META, path, "metadata fields")
    _check_kinds(meta, {"family": str, "model_config": dict, "cell": dict}, path, "metadata field")
    _require(meta["cell"], REQUIRED_CELL, path, "cell fields")
    _check_kinds(meta["cell"], {"segment_hash": str, "section_types": list, "soma_segment": int,
                                "input_segments": list, "n_segments": int, "recipe": dict}, path, "cell field")
    if not all(_is_int(segment) for segment in meta["cell"]["input_segments"]):
        raise _malformed(path, "the cell field 'input_segments' is not a list of segment indices")
    return meta


def _check_kinds(mapping: dict, kinds: dict, path: Path, what: str) -> None:
    """Refuse entries of ``mapping`` that are not of the JSON kind given in ``kinds``."""
    for name, kind in kinds.items():
        value = mapping[name]
        if not isinstance(value, kind) or (kind is int and isinstance(value, bool)):
            raise _malformed(path, f"the {what} {name!r} is of type {type(value).__name__}, not {kind.__name__}")


def _is_int(value) -> bool:
    """A whole number (not a bool)."""
    return isinstance(value, int) and not isinstance(value, bool)


def _require(mapping: dict, keys, path: Path, what: str) -> None:
    missing = [key for key in keys if key not in mapping]
    if missing:
        raise CheckpointError(f"Checkpoint {path} lacks the {what} {missing}; it is incomplete or "
                              "was written by something else. Retrain or re-export it.")


BUILD_MEMORY_FLOOR_BYTES = 256 * 2 ** 20
"""Building a checkpoint's model may always take this much memory (buffers, temporaries)."""


def model_from_checkpoint(payload: dict, path: str | Path = "checkpoint") -> torch.nn.Module:
    """Build the model described by a checkpoint and load its weights (shapes checked).

    The ``model_config`` is checked before anything is built: its fields must be those of its
    family, of the right kinds; the model is then built under an :class:`AllocationLimit` of
    twice the stored weights (at least :data:`BUILD_MEMORY_FLOOR_BYTES`), so a config that
    does not fit its weights is refused before it can allocate more.

    Parameters
    ----------
    payload : dict
        A checkpoint from :func:`read_checkpoint`.
    path : str or Path
        The file it came from, named in errors.

    Returns
    -------
    torch.nn.Module
        The model, with the checkpoint's weights.

    Raises
    ------
    CheckpointError
        For an unknown family, unknown or mistyped config fields, a config that describes a
        larger model than the stored weights, or weights of other names or shapes.
    """
    meta = payload["meta"]
    family = _family(meta["family"], path)
    fields = _model_fields(family, meta["model_config"], path)
    model = _build_within(family, fields, _weight_budget(payload["model"]), path)
    _check_weight_shapes(model, payload["model"], family.name, path)
    try:
        model.load_state_dict(payload["model"], strict=True)
    except RuntimeError as error:
        raise CheckpointError(f"Weights in {path} do not fit its {family.name} architecture: "
                              f"{str(error).splitlines()[0]} ...") from None
    return model


def _family(name: str, path: str | Path) -> ModelFamily:
    """The registered family ``name``; :class:`CheckpointError` names the known ones."""
    try:
        return get_family(name)
    except ValueError:
        raise CheckpointError(f"{path} holds a model of family {name!r}, which this version of surrogate_cell "
                              f"does not know (it knows {sorted(FAMILIES)}); upgrade surrogate_cell.") from None


def _model_fields(family: ModelFamily, config: dict, path: str | Path) -> dict:
    """``config`` checked against the family's config dataclass: known fields of the right kinds."""
    unknown = sorted(set(config) - family.config_fields)
    if unknown:
        raise CheckpointError(f"{path}: model_config has fields {unknown} that the {family.name} family "
                              f"does not have (it has {sorted(family.config_fields)}); the checkpoint is "
                              "corrupt or from another version of surrogate_cell. Retrain or re-export it.")
    hints = typing.get_type_hints(family.config_class)
    for name, value in config.items():
        if not _fits_hint(value, hints[name]):
            raise CheckpointError(f"{path}: model_config field {name!r} is {value!r}, not of type "
                                  f"{getattr(hints[name], '__name__', hints[name])}; the checkpoint is corrupt. "
                                  "Retrain or re-export it.")
    return dict(config)


def _fits_hint(value, hint) -> bool:
    """Whether a JSON value fits a config field's annotation (int, float, bool, str, tuples, unions)."""
    origin, arguments = typing.get_origin(hint), typing.get_args(hint)
    if hint is bool:
        return isinstance(value, bool)
    if hint is int:
        return _is_int(value)
    if hint is float:
        return isinstance(value, (int, float)) and not isinstance(value, bool)
    if hint is str:
        return isinstance(value, str)
    if hint is type(None):
        return value is None
    if origin in (typing.Union, types.UnionType):
        return any(_fits_hint(value, argument) for argument in arguments)
    if origin in (tuple, list):
        if not isinstance(value, (list, tuple)):
            return False
        if origin is tuple and arguments and arguments[-1] is not Ellipsis:
            return len(value) == len(arguments) and all(map(_fits_hint, value, arguments))
        return all(_fits_hint(item, arguments[0]) for item in value) if arguments else True
    return True  # an annotation this check does not know: left to the config's own validation


def _weight_budget(weights: dict) -> int:
    """Bytes the model built from a config may allocate: twice its weights as float32 (or wider)."""
    stored = sum(tensor.numel() * max(tensor.element_size(), 4) for tensor in weights.values())
    return max(2 * stored, BUILD_MEMORY_FLOOR_BYTES)


def _build_within(family: ModelFamily, fields: dict, limit_bytes: int, path: str | Path) -> torch.nn.Module:
    """The model of ``fields``, refused before it would allocate more than ``limit_bytes``."""
    try:
        with AllocationLimit(limit_bytes):
            return family.build(fields)
    except AllocationLimitExceeded:
        raise CheckpointError(
            f"{path}: its model_config describes a {family.name} model larger than {limit_bytes / 2 ** 20:.0f} MiB, "
            "far more than its stored weights; the config does not fit the weights (the file is corrupt or "
            "was tampered with). Retrain or re-export it."
        ) from None
    except Exception as error:  # the config's own validation, or torch refusing the sizes
        first_line = str(error).splitlines()[0] if str(error) else type(error).__name__
        raise CheckpointError(f"{path}: its model_config does not describe a valid {family.name} model "
                              f"({first_line}); the checkpoint is corrupt or from another version of "
                              "surrogate_cell. Retrain or re-export it.") from None


def _check_weight_shapes(model: torch.nn.Module, weights: dict, family: str, path: str | Path) -> None:
    """Refuse stored weights whose names or shapes differ from those of the model built from the config."""
    expected = {name: tuple(value.shape) for name, value in model.state_dict().items()}
    stored = {name: tuple(value.shape) for name, value in weights.items()}
    missing, unexpected = sorted(set(expected) - set(stored)), sorted(set(stored) - set(expected))
    reshaped = [f"{name} {stored[name]} (config: {expected[name]})" for name in sorted(set(expected) & set(stored))
                if stored[name] != expected[name]]
    problems = [f"{what} {names[:3]}" for what, names in
                (("missing", missing), ("unexpected", unexpected), ("shapes", reshaped)) if names]
    if problems:
        raise CheckpointError(f"Weights in {path} do not fit its {family} architecture: {'; '.join(problems)}. "
                              "The checkpoint is corrupt or its model_config was changed; retrain or re-export it.")


def normalisation_from_checkpoint(payload: dict) -> Normalisation:
    """The voltage normalisation stored in a checkpoint."""
    bounds = [payload[key].numpy() if key in payload else None for key in ("norm_low", "norm_high")]
    return Normalisation(payload["norm_mean"].numpy(), payload["norm_std"].numpy(), *bounds)


def load_checkpoint(path: str | Path, map_location="cpu"):
    """(model, normalisation, meta, payload) from a checkpoint file.

    Parameters
    ----------
    path : str or Path
        The checkpoint file.
    map_location
        Where the tensors are loaded (as for ``torch.load``).

    Returns
    -------
    tuple
        ``(model, normalisation, meta, payload)``.

    Raises
    ------
    CheckpointError
        For anything :func:`read_checkpoint` or :func:`model_from_checkpoint` refuses.
    """
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
