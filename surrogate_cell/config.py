"""Configuration files: where they are found and how they are read.

Every option that takes a YAML config (``train --config`` and ``--model``, ``simulate
--config``, the examples' ``--config``) and every ``load_*_config`` function accepts either
the path of an existing file or the name of a config that ships with the package, relative
to :data:`PACKAGED_CONFIGS`: ``train_small.yaml``, ``models/srm.yaml``, ``data/poisson.yaml``.
The source tree's former spelling, ``training/train_small.yaml``,
still finds the packaged file. :func:`resolve_config` is that one rule.

A config file names other configs relative to its own folder (``model: models/srm.yaml`` in
a training config), falling back to the packaged configs; see :func:`resolve_reference`.

:func:`read_mapping`, :func:`check_keys` and :func:`dataclass_from_mapping` are the one
reader behind the model, simulation, input and training configs: a YAML mapping whose
unknown keys are rejected with one error naming them, the valid keys and the file.

This module belongs to the runtime: it imports nothing of training or data generation.
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any, TypeVar

import yaml

PACKAGED_CONFIGS = Path(__file__).resolve().parent / "training" / "configs"
"""The YAML configs shipped with the package (training runs, models, data, inputs)."""

LEGACY_PREFIX = "training/"
"""Former location of the configs in the source tree, still accepted in config names."""

T = TypeVar("T")


class ConfigFileError(ValueError):
    """A config file cannot be found or read, or holds unknown keys."""


def packaged_config_names() -> list[str]:
    """Names of the packaged configs, relative to :data:`PACKAGED_CONFIGS` (e.g. ``models/srm.yaml``)."""
    return sorted(path.relative_to(PACKAGED_CONFIGS).as_posix() for path in PACKAGED_CONFIGS.rglob("*.yaml"))


def _packaged_candidates(name: str) -> list[Path]:
    """Where ``name`` may lie among the packaged configs: as given, then without ``training/``."""
    candidates = [PACKAGED_CONFIGS / name]
    if name.startswith(LEGACY_PREFIX):
        candidates.append(PACKAGED_CONFIGS / name[len(LEGACY_PREFIX):])
    return candidates


def _first_file(candidates: Iterable[Path], name: str | Path, error: type[Exception]) -> Path:
    """The first existing file of ``candidates``; else ``error`` listing what was tried."""
    candidates = list(dict.fromkeys(candidates))
    for candidate in candidates:
        if candidate.is_file():
            return candidate
    tried = ", ".join(str(candidate) for candidate in candidates)
    raise error(
        f"config {str(name)!r} not found (tried {tried}); give the path of a YAML file or the "
        f"name of a packaged config: {', '.join(packaged_config_names())}"
    )


def resolve_config(name: str | Path, error: type[Exception] = ConfigFileError) -> Path:
    """Find the config file a command-line option or a caller names.

    Parameters
    ----------
    name : str or Path
        The path of an existing file (absolute, or relative to the working directory), else a
        name relative to :data:`PACKAGED_CONFIGS`; a leading ``training/`` is dropped when
        neither exists (the source tree's former spelling).
    error : type of Exception
        Raised (with the candidates tried and the packaged names) when no file is found.

    Returns
    -------
    Path
        The config file.
    """
    return _first_file([Path(name), *_packaged_candidates(str(name))], name, error)


def resolve_reference(name: str | Path, config_file: str | Path,
                      error: type[Exception] = ConfigFileError) -> Path:
    """Find the config that ``config_file`` names as ``name`` (e.g. its ``model:``).

    ``name`` is relative to the folder of ``config_file`` (absolute paths stay as they are),
    else to :data:`PACKAGED_CONFIGS` as in :func:`resolve_config`; never to the working
    directory, so that a config means the same wherever a command runs.
    """
    folder = Path(config_file).parent
    return _first_file([folder / name, *_packaged_candidates(str(name))], name, error)


def read_mapping(path: str | Path, error: type[Exception] = ConfigFileError) -> dict[str, Any]:
    """Read a YAML file holding one mapping (an empty file is an empty mapping).

    Raises ``error`` naming the file when it cannot be read, is not valid YAML or holds
    something other than a mapping.
    """
    try:
        text = Path(path).read_text()
    except OSError as failure:
        raise error(f"cannot read config {path}: {failure.strerror or failure}") from None
    try:
        values = yaml.safe_load(text)
    except yaml.YAMLError as failure:
        raise error(f"{path} is not valid YAML: {failure}") from None
    if values is None:
        return {}
    if not isinstance(values, Mapping):
        raise error(f"{path} must hold a mapping of keys to values, got {type(values).__name__}")
    return dict(values)


def check_keys(values: Mapping, valid: Iterable[str], source: str,
               error: type[Exception] = ConfigFileError, noun: str = "key") -> None:
    """Raise ``error`` when ``values`` has keys outside ``valid``.

    The message names the unknown keys, ``source`` (a file or a description such as
    ``input regime 'published'``), every valid key and close matches of misspelt ones.
    """
    valid = list(valid)
    unknown = sorted(set(values) - set(valid))
    if not unknown:
        return
    guesses = [f"{match[0]!r} for {key!r}" for key in unknown
               if (match := difflib.get_close_matches(key, valid, n=1))]
    hint = f" (did you mean {', '.join(guesses)}?)" if guesses else ""
    raise error(f"unknown {noun}(s) {unknown} in {source}; valid {noun}s: {valid}{hint}")


def dataclass_fields(cls: type) -> list[str]:
    """Names of the fields of the dataclass ``cls``, in declaration order."""
    return [field.name for field in dataclasses.fields(cls)]


def dataclass_from_mapping(cls: type[T], values: Mapping, source: str,
                           error: type[Exception] = ConfigFileError, noun: str = "key") -> T:
    """Build the dataclass ``cls`` from ``values`` after :func:`check_keys` on its fields.

    Missing keys take the dataclass defaults; validation in ``cls`` itself (``__post_init__``)
    raises its own errors.
    """
    if not isinstance(values, Mapping):
        raise error(f"{source} must be a mapping of keys to values, got {type(values).__name__}")
    check_keys(values, dataclass_fields(cls), source, error, noun)
    return cls(**values)
