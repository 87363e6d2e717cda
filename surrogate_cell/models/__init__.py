"""Neural-network surrogate models: registry, builders and config loading.

Every model maps an input window ``x`` (batch, in_channels, window) to
``(voltage_pred (batch, n_tasks - 1), spike_logit (batch,))`` and keeps its
configuration dataclass in ``model.config``.

Typical use::

    family, fields = load_model_config("training/models/mmoe.yaml")
    model = build_model(family, {**fields, "in_channels": 1920, "n_tasks": 643,
                                 "event_channels": 1278})
"""

from __future__ import annotations

import dataclasses
from pathlib import Path
from typing import Any

import yaml
from torch import nn

from .base import SurrogateConfig, split_outputs
from .events import EventIndex
from .mh import MH, MHConfig
from .mmoe import MMoE, MMoEConfig
from .mmoeex import MMoEEx, MMoEExConfig, make_gate_mask
from .srm import SRM, SRMConfig
from .tcn import TCN, BlockWeights, TCNConfig, TemporalBlock
from .towers import StackedTowers

#: family name -> (model class, config dataclass)
MODEL_FAMILIES: dict[str, tuple[type[nn.Module], type[SurrogateConfig]]] = {
    "mh": (MH, MHConfig),
    "mmoe": (MMoE, MMoEConfig),
    "mmoeex": (MMoEEx, MMoEExConfig),
    "srm": (SRM, SRMConfig),
}

#: config fields supplied by the data rather than by a model config file
DATA_FIELDS = ("in_channels", "n_tasks", "event_channels")
#: further data-supplied fields, for the families whose config has them
CELL_FIELDS = ("soma_segment", "spike_threshold_z", "input_pools", "input_sections", "section_distances")


def _family(family: str) -> tuple[type[nn.Module], type[SurrogateConfig]]:
    try:
        return MODEL_FAMILIES[family.lower()]
    except KeyError:
        raise ValueError(f"unknown model family {family!r}; "
                         f"choose from {sorted(MODEL_FAMILIES)}") from None


def build_model(family: str, config: dict[str, Any] | SurrogateConfig) -> nn.Module:
    """Instantiate the model of ``family`` ("mh", "mmoe", "mmoeex", "srm") from config fields."""
    model_cls, config_cls = _family(family)
    if not isinstance(config, config_cls):
        config = config_cls(**config)
    return model_cls(config)


def family_fields(family: str) -> set[str]:
    """Names of the config fields of ``family``."""
    return {f.name for f in dataclasses.fields(_family(family)[1])}


def load_model_config(path: str | Path) -> tuple[str, dict[str, Any]]:
    """Read a YAML model config: returns ``(family, fields)``.

    The file holds ``family:`` plus fields of that family's config
    dataclass; unknown fields are rejected here rather than at build time.
    """
    raw = yaml.safe_load(Path(path).read_text()) or {}
    if "family" not in raw:
        raise ValueError(f"{path}: missing 'family'")
    fields = dict(raw)
    family = str(fields.pop("family"))
    _, config_cls = _family(family)
    known = {f.name for f in dataclasses.fields(config_cls)}
    unknown = sorted(set(fields) - known)
    if unknown:
        raise ValueError(f"{path}: unknown fields for {family}: {unknown}")
    return family, fields


def build_model_from_file(path: str | Path, **data_fields: Any) -> nn.Module:
    """Build the model described by a YAML config, completed by ``data_fields``.

    ``data_fields`` are typically ``in_channels``, ``n_tasks`` and
    ``event_channels``; they override values in the file.
    """
    family, fields = load_model_config(path)
    return build_model(family, {**fields, **data_fields})


__all__ = [
    "BlockWeights", "CELL_FIELDS", "DATA_FIELDS", "EventIndex", "MH", "MHConfig", "MMoE", "MMoEConfig",
    "MMoEEx", "MMoEExConfig", "MODEL_FAMILIES", "SRM", "SRMConfig", "StackedTowers", "SurrogateConfig", "TCN",
    "TCNConfig", "TemporalBlock", "build_model", "build_model_from_file", "family_fields",
    "load_model_config", "make_gate_mask", "split_outputs",
]
