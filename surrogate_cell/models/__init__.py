"""Neural-network surrogate models: the families, their registry and config loading.

Every model maps an input window ``x`` (batch, in_channels, window) to
``(voltage_pred (batch, n_tasks - 1), spike_logit (batch,))`` and keeps its
configuration dataclass in ``model.config``. Each family registers itself once in its own
module (:mod:`surrogate_cell.models.registry`):

- ``srm`` (:mod:`.srm`): the spike-response network of the shipped default; it reads synaptic
  events and its own somatic spikes, never its own sub-threshold voltages, so it runs free;
- ``mh``, ``mmoe``, ``mmoeex`` (:mod:`.mh`, :mod:`.mmoe`, :mod:`.mmoeex`): the published
  multitask TCN architectures, which read their own past voltages (accurate teacher-forced,
  they drift when run free on their own predictions);
- ``srm_mmoe``, ``srm_mmoeex`` (:mod:`.srm_moe`): MMoE and MMoEEx trunks (experts, compressor,
  per-task gates, exclusivity/exclusion) on the SRM's filter bank, which run free like the SRM
  (the SRM itself is the stable MH: hard parameter sharing).

Typical use::

    family, fields = load_model_config("models/mmoe.yaml")
    model = build_model(family, {**fields, "in_channels": 1920, "n_tasks": 643,
                                 "event_channels": 1278})
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

from torch import nn

from surrogate_cell.config import check_keys, read_mapping, resolve_config

from .base import SurrogateConfig, split_outputs
from .events import EventIndex
from .mh import MH, MHConfig
from .mmoe import MMoE, MMoEConfig
from .mmoeex import MMoEEx, MMoEExConfig, make_gate_mask
from .registry import FAMILIES, ModelFamily, family_of, get_family, register_family
from .srm import SRM, SRMConfig
from .srm_moe import SRMMoE, SRMMoEConfig, SRMMoEEx, SRMMoEExConfig
from .tcn import TCN, BlockWeights, TCNConfig, TemporalBlock
from .towers import StackedTowers

#: config fields supplied by the data rather than by a model config file
DATA_FIELDS = ("in_channels", "n_tasks", "event_channels")


def build_model(family: str, config: dict[str, Any] | SurrogateConfig) -> nn.Module:
    """Instantiate the model of ``family`` (a registered name, e.g. "srm") from config fields."""
    return get_family(family).build(config)


def family_fields(family: str) -> set[str]:
    """Names of the config fields of ``family``."""
    return get_family(family).config_fields


def load_model_config(path: str | Path) -> tuple[str, dict[str, Any]]:
    """Read a YAML model config: returns ``(family, fields)``.

    ``path`` is a file or the name of a packaged config (``models/srm.yaml``, see
    :func:`surrogate_cell.config.resolve_config`). The file holds ``family:`` plus fields of
    that family's config dataclass; unknown fields are rejected here (a ValueError naming
    them and the valid ones) rather than at build time.
    """
    path = resolve_config(path)
    fields = read_mapping(path)
    if "family" not in fields:
        raise ValueError(f"{path}: missing 'family' (one of {sorted(FAMILIES)})")
    family = str(fields.pop("family"))
    try:
        valid = sorted(family_fields(family))
    except ValueError as error:
        raise ValueError(f"{path}: {error}") from None
    check_keys(fields, valid, f"{path} (family {family!r})", noun="field")
    return family, fields


def build_model_from_file(path: str | Path, **data_fields: Any) -> nn.Module:
    """Build the model described by a YAML config, completed by ``data_fields``.

    ``data_fields`` are typically ``in_channels``, ``n_tasks`` and
    ``event_channels``; they override values in the file.
    """
    family, fields = load_model_config(path)
    return build_model(family, {**fields, **data_fields})


__all__ = [
    "BlockWeights", "DATA_FIELDS", "EventIndex", "FAMILIES", "MH", "MHConfig", "MMoE", "MMoEConfig",
    "MMoEEx", "MMoEExConfig", "ModelFamily", "SRM", "SRMConfig", "SRMMoE", "SRMMoEConfig", "SRMMoEEx",
    "SRMMoEExConfig", "StackedTowers", "SurrogateConfig", "TCN",
    "TCNConfig", "TemporalBlock", "build_model", "build_model_from_file", "family_fields", "family_of",
    "get_family", "load_model_config", "make_gate_mask", "register_family", "split_outputs",
]
