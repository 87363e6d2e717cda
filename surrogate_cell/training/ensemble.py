"""Average independently trained SRMs into one model: ``python -m surrogate_cell.training ensemble``.

SRMs trained with the same settings but different seeds or data make partly independent
errors (the LFP near the soma, which depends on the small voltage differences between
neighbouring segments, varies from run to run), and the average of their voltages is more
accurate than any one of them. This command writes one SRM checkpoint with
``members = len(checkpoints)`` (see :mod:`surrogate_cell.models.srm`) whose voltages are the
members' mean in mV and whose spike logit is the mean of the members' logits minus their
calibrated thresholds. Calibrate it afterwards (``calibrate``), as any SRM: the ensemble's
spike threshold and jump are its own.

The ensemble keeps the first member's normalisation and metadata; its validation and test
splits are the first member's minus every simulation another member trained on, so that
``calibrate`` and ``evaluate`` never see a member's training data.
"""

from __future__ import annotations

import copy
from dataclasses import replace
from pathlib import Path

import numpy as np
import torch

from surrogate_cell.checkpoint import (
    CheckpointError,
    load_checkpoint,
    model_meta,
    save_checkpoint,
)
from surrogate_cell.models import family_of
from surrogate_cell.models.normalisation import Normalisation
from surrogate_cell.models.srm import SRM, SRMConfig
from surrogate_cell.outputs import writable_file_folder

SAME_ARCHITECTURE = ("in_channels", "n_tasks", "window", "event_channels", "taus", "hidden", "mlp_layers",
                     "spike_hidden", "soma_segment", "pooled_taus", "input_pools", "subunit_hidden",
                     "subunit_out", "input_sections", "section_distances", "section_projection")
"""SRMConfig fields every member must share."""

THRESHOLD_TOLERANCE_MV = 1e-3


def check_members(models: list[SRM], metas: list[dict], paths: list[Path]) -> None:
    """Refuse members that cannot be averaged: other families, cells, architectures or spike thresholds."""
    if len(models) < 2:
        raise CheckpointError("an ensemble needs at least two --checkpoint files")
    for model, meta, path in zip(models, metas, paths):
        if not family_of(model).ensembles:
            raise CheckpointError(f"{path} holds a {meta['family']} model, whose family cannot be stacked into "
                                  "an ensemble; ensembles are built from SRM checkpoints.")
        if model.config.members != 1:
            raise CheckpointError(f"{path} is already an ensemble ({model.config.members} members); "
                                  "give its members' checkpoints instead.")
        if not model.config.spike_hidden:
            raise CheckpointError(f"{path} has no spike head (spike_hidden: 0); ensemble members need one.")
        if meta["cell"]["segment_hash"] != metas[0]["cell"]["segment_hash"]:
            raise CheckpointError(f"{path} was trained on another cell than {paths[0]}; members must "
                                  "share the cell.")
        differing = [name for name in SAME_ARCHITECTURE
                     if getattr(model.config, name) != getattr(models[0].config, name)]
        if differing:
            raise CheckpointError(f"{path} differs from {paths[0]} in {differing}; members must share "
                                  "the architecture (train them from one config).")


def spike_threshold_mv(config: SRMConfig, normalisation: Normalisation) -> float | None:
    """The soma-voltage spike threshold (mV) a model reads its spike history with."""
    if config.spike_threshold_z is None:
        return None
    soma = config.soma_segment
    return float(config.spike_threshold_z * normalisation.std[soma] + normalisation.mean[soma])


def ensemble_model(models: list[SRM], normalisations: list[Normalisation], target: Normalisation) -> SRM:
    """One SRM whose voltages (in ``target``'s z units) are the members' mean in mV and whose
    spike logit is the mean of ``logit - spike_logit_threshold`` over members (threshold 0)."""
    first = models[0].config
    thresholds = [spike_threshold_mv(model.config, norm) for model, norm in zip(models, normalisations)]
    known = [t for t in thresholds if t is not None]
    if known and (len(known) < len(thresholds) or np.ptp(known) > THRESHOLD_TOLERANCE_MV):
        raise CheckpointError(f"the members read their spike history at different thresholds {thresholds} mV")
    soma = first.soma_segment
    threshold_z = None if thresholds[0] is None else float(
        (thresholds[0] - target.mean[soma]) / target.std[soma])
    config = replace(copy.deepcopy(first), members=len(models), spike_threshold_z=threshold_z,
                     spike_logit_threshold=0.0)
    ensemble = SRM(config)
    with torch.no_grad():
        _stack_trunks(ensemble, models)
        _average_towers(ensemble, models, normalisations, target)
    return ensemble


def _stack_trunks(ensemble: SRM, models: list[SRM]) -> None:
    """Projection rows, MLP layers, subunits and spike heads of every member, side by side."""
    ensemble.projection.weight.copy_(torch.cat([m.projection.weight for m in models]))
    ensemble.projection.bias.copy_(torch.cat([m.projection.bias for m in models]))
    linear_layers = [i for i, layer in enumerate(models[0].mlp) if isinstance(layer, torch.nn.Linear)]
    for index in linear_layers:
        ensemble.mlp[index].weight.copy_(torch.stack([m.mlp[index].weight for m in models]))
        ensemble.mlp[index].bias.copy_(torch.stack([m.mlp[index].bias for m in models]))
    if ensemble.subunits is not None:  # every subunit parameter has the members first
        for name, parameter in ensemble.subunits.named_parameters():
            parameter.copy_(torch.cat([m.subunits.get_parameter(name) for m in models]))
    hidden_layer, logit_layer = ensemble.spike_head.layers[0], ensemble.spike_head.layers[2]
    hidden_layer.weight.copy_(torch.stack([m.spike_head[0].weight for m in models]))
    hidden_layer.bias.copy_(torch.stack([m.spike_head[0].bias for m in models]))
    logit_layer.weight.copy_(torch.stack([m.spike_head[2].weight for m in models]))
    logit_layer.bias.copy_(torch.stack([m.spike_head[2].bias - m.config.spike_logit_threshold for m in models]))


def _average_towers(ensemble: SRM, models: list[SRM], normalisations: list[Normalisation],
                    target: Normalisation) -> None:
    """Towers and spike jump giving the members' mean voltage in mV, in ``target``'s z units."""
    hidden, n_members = models[0].config.hidden, len(models)
    target_std = torch.as_tensor(target.std, dtype=torch.float64)
    weight = torch.zeros_like(ensemble.towers.weight, dtype=torch.float64)
    bias = (torch.as_tensor(np.mean([n.mean for n in normalisations], axis=0), dtype=torch.float64)
            - torch.as_tensor(target.mean, dtype=torch.float64)) / target_std
    jump = torch.zeros_like(bias)
    for index, (model, norm) in enumerate(zip(models, normalisations)):
        scale = torch.as_tensor(norm.std, dtype=torch.float64) / (n_members * target_std)
        member = model.towers.weight.double() * scale[:, None]
        # member tower inputs: [projection, MLP]; the ensemble's: [all projections, all MLPs]
        weight[:, index * hidden:(index + 1) * hidden] = member[:, :hidden]
        offset = n_members * hidden
        weight[:, offset + index * hidden:offset + (index + 1) * hidden] = member[:, hidden:]
        bias += model.towers.bias.double() * scale
        jump += model.spike_jump.double() * scale
    ensemble.towers.weight.copy_(weight)
    ensemble.towers.bias.copy_(bias)
    ensemble.spike_jump.copy_(jump)


def ensemble_normalisation(normalisations: list[Normalisation]) -> Normalisation:
    """The first member's z-scoring, with the widest training range of all members."""
    first = normalisations[0]
    if any(n.low is None for n in normalisations):
        return Normalisation(first.mean, first.std)
    return Normalisation(first.mean, first.std, np.min([n.low for n in normalisations], axis=0),
                         np.max([n.high for n in normalisations], axis=0))


def held_out_splits(metas: list[dict]) -> dict:
    """The first member's data record with every split cleared of other members' training simulations."""
    data = copy.deepcopy(metas[0]["data"])
    records = [data, *data.get("extra", [])]
    for record in records:
        name = Path(record["path"]).name
        trained = {index for meta in metas for other in (meta["data"], *meta["data"].get("extra", []))
                   if Path(other["path"]).name == name for index in other["train"]}
        for split in ("validation", "test"):
            record[split] = [index for index in record[split] if index not in trained]
    return data


def build_ensemble(checkpoints: list[str | Path], out: str | Path) -> dict:
    """Average trained SRM checkpoints into one ensemble checkpoint (``python -m surrogate_cell.training ensemble``).

    Calibrate the result afterwards (:func:`~surrogate_cell.training.calibrate.calibrate_checkpoint`).

    Parameters
    ----------
    checkpoints : list of str or Path
        At least two SRM checkpoints with spike heads, of the same cell and architecture
        (not ensembles themselves).
    out : str or Path
        Output checkpoint.

    Returns
    -------
    dict
        The ensemble's metadata: the first member's, with ``members`` in the model config,
        validation and test splits cleared of every member's training simulations, and an
        ``ensemble`` list describing each member (training, data, spike targets, calibration).

    Raises
    ------
    CheckpointError
        If the members cannot be averaged (see :func:`check_members`).
    """
    writable_file_folder(out, "--out")
    paths = [Path(p) for p in checkpoints]
    loaded = [load_checkpoint(path) for path in paths]
    models, normalisations, metas = ([item[i] for item in loaded] for i in range(3))
    check_members(models, metas, paths)
    target = ensemble_normalisation(normalisations)
    model = ensemble_model(models, normalisations, target)
    meta = {**copy.deepcopy(metas[0]), **model_meta(model, "srm"), "data": held_out_splits(metas),
            "ensemble": [{"checkpoint": f"{path.parent.name}/{path.name}", "training": meta.get("training", {}),
                          "model_config": meta["model_config"], "data": meta["data"],
                          "spike_targets": meta["cell"].get("spike_targets", "peak"),
                          "spike_calibration": meta.get("spike_calibration")}
                         for path, meta in zip(paths, metas)]}
    meta.pop("spike_calibration", None)
    save_checkpoint(out, model, meta, target)
    return meta


# --------------------------------------------------------------------------- command line

COMMAND_HELP = "average trained SRM checkpoints into one ensemble checkpoint"
COMMAND_DESCRIPTION = __doc__.split("\n\n")[1]


def add_arguments(parser) -> None:
    """Add the ``ensemble`` options to ``parser``."""
    parser.add_argument("--checkpoint", action="append", required=True, metavar="PT",
                        help="an SRM checkpoint (give two or more); the first sets normalisation and splits")
    parser.add_argument("--out", required=True, metavar="PT", help="where the ensemble checkpoint goes")


def run(args) -> int:
    """Build the ensemble and say what to do next; returns the exit status."""
    import sys

    try:
        meta = build_ensemble(args.checkpoint, args.out)
    except (CheckpointError, OSError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    config = meta["model_config"]
    print(f"{args.out}: ensemble of {config['members']} SRMs (hidden {config['hidden']} each). "
          f"Calibrate its spike output next: python -m surrogate_cell.training calibrate --checkpoint {args.out}")
    return 0
