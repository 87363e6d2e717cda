"""The one extension point of the model families.

A family registers once, in its own module, what it is::

    @register_family("srm", SRMConfig, stepper="surrogate_cell.engine.srm_stepper:SRMStepper",
                     data_fields=srm_data_fields, calibrates_spikes=True, ensembles=True,
                     float16_weights=("projection.weight",))
    class SRM(nn.Module): ...

Everything that differs between families — which stepping engine runs it, which fields of its
configuration come from the training data, whether its all-or-none spike output is calibrated,
whether members can be stacked into an ensemble, whether it has experts whose diversity is
measured, which weights may be stored in half precision — is read from its
:class:`ModelFamily`, never from ``isinstance``/``hasattr`` tests in the engine, training,
evaluation, shipping or checkpoint code. Adding a family touches its own file(s) and this one
decorator call.

The stepper is named as ``"module:attribute"`` and imported on first use, because the engine
imports the models (a model module cannot import its own stepper).
"""

from __future__ import annotations

import dataclasses
import importlib
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from torch import nn


def no_data_fields(cell_meta: dict, normalisation, fields: dict) -> dict:
    """The default :attr:`ModelFamily.data_fields`: the family takes nothing from the cell."""
    return {}


@dataclass(frozen=True)
class ModelFamily:
    """What one model family is.

    Parameters
    ----------
    name : str
        The family's name in configs and checkpoints (``family: srm``).
    model_class : type
        The ``torch.nn.Module`` built from a config: ``model_class(config)``.
    config_class : type
        Its configuration dataclass (a :class:`~surrogate_cell.models.base.SurrogateConfig`).
    stepper : str
        ``"module:attribute"`` of the fast stepper factory, called as
        ``factory(model, normalisation, n_cells, device, dtype)``.
    data_fields : callable
        ``data_fields(cell_meta, normalisation, fields) -> dict``: the config fields that come
        from the training data's cell (soma segment, spike threshold, input sections, ...) given
        the checkpoint-style ``cell`` metadata, the voltage normalisation and the model config
        file's own ``fields``.
    calibrates_spikes : bool
        The family has an all-or-none spike output whose threshold ``calibrate`` chooses.
    ensembles : bool
        Independently trained members can be stacked into one model (``ensemble``).
    has_experts : bool
        The family mixes experts through gates: its model has ``gates_and_experts(x)`` returning
        gate weights (batch, n_tasks, n_experts) and expert outputs (batch, n_experts, features)
        and its config ``n_experts``; ``train`` logs and ``evaluate`` reports their diversity
        (:mod:`surrogate_cell.training.diversity`).
    float16_weights : tuple of str
        State-dict entries that ``ship`` may store in float16 (loading casts them back).
    """

    name: str
    model_class: type
    config_class: type
    stepper: str
    data_fields: Callable[[dict, Any, dict], dict] = no_data_fields
    calibrates_spikes: bool = False
    ensembles: bool = False
    has_experts: bool = False
    float16_weights: tuple[str, ...] = ()

    @property
    def config_fields(self) -> set[str]:
        """Names of the fields of :attr:`config_class`."""
        return {field.name for field in dataclasses.fields(self.config_class)}

    def build(self, config: dict[str, Any] | Any) -> nn.Module:
        """The model of this family from a config dataclass or its fields."""
        if not isinstance(config, self.config_class):
            config = self.config_class(**config)
        return self.model_class(config)

    def stepper_factory(self) -> Callable:
        """The fast stepper factory named by :attr:`stepper` (imported on first use)."""
        module, attribute = self.stepper.split(":")
        return getattr(importlib.import_module(module), attribute)


FAMILIES: dict[str, ModelFamily] = {}
"""Every registered family by name."""


def register_family(name: str, config_class: type, **properties) -> Callable[[type], type]:
    """Class decorator registering the decorated model class as family ``name`` (see :class:`ModelFamily`)."""
    def register(model_class: type) -> type:
        if name in FAMILIES:
            raise ValueError(f"model family {name!r} is registered twice")
        FAMILIES[name] = ModelFamily(name, model_class, config_class, **properties)
        return model_class
    return register


def get_family(name: str) -> ModelFamily:
    """The registered family ``name`` (case-insensitive); a ValueError names the known ones."""
    try:
        return FAMILIES[str(name).lower()]
    except KeyError:
        raise ValueError(f"unknown model family {name!r}; choose from {sorted(FAMILIES)}") from None


def family_of(model: nn.Module) -> ModelFamily:
    """The family whose model class ``model`` is exactly (a subclass is its own family)."""
    model = getattr(model, "module", model)  # DistributedDataParallel wraps the model
    for family in FAMILIES.values():
        if type(model) is family.model_class:
            return family
    raise ValueError(f"{type(model).__name__} is not a registered model family; "
                     f"registered: {sorted(FAMILIES)}")
