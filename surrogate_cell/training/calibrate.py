"""Calibrate the all-or-none spike output of an SRM (or of a stable MMoE/MMoEEx) on validation simulations.

A spike task trained with cross-entropy at the data's own rate (~1 spike/s, one target in a
thousand) rarely reaches probability 0.5, so the default logit threshold 0 predicts almost no
spikes. After training, ``calibrate`` sets the spike jump added to every segment's voltage to
the mean difference between the true voltages and the sub-threshold prediction at the spike
targets, then picks the logit threshold whose spikes best match the true somatic spikes (F1
within ±3 ms) on the validation splits of the data sets it was trained on (``--data`` and any
``--extra-data``): among candidate thresholds (logit quantiles), the best of free runs from a
true 100 ms history — what ``SurrogateCell`` does, spikes detected by the soma-voltage
threshold — or, if no free run finds a spike, the best teacher-forced one. Both
are written into the checkpoint (``spike_logit_threshold`` in the model config, ``spike_jump``
in the weights). With ``--match count`` the threshold is instead the one whose number of
spikes comes closest to the true number (ties by F1): the firing rate, which a recurrent
network of surrogates amplifies, matters more there than the timing of single spikes.

    python -m surrogate_cell.training calibrate --checkpoint runs/srm/best.pt [--match count]
"""

from __future__ import annotations

import sys
from functools import partial
from pathlib import Path

import numpy as np
import torch

from surrogate_cell.checkpoint import (
    CheckpointError,
    check_cell,
    load_checkpoint,
    model_meta,
    save_checkpoint,
)
from surrogate_cell.data.store import DataSetError, open_data_set
from surrogate_cell.datasets.windows import (
    RawSimulations,
    WindowData,
    build_window_data,
    load_labelled,
    spike_targets_of,
)
from surrogate_cell.engine import make_stepper
from surrogate_cell.models import FAMILIES, family_of
from surrogate_cell.spikes import SPIKE_TOLERANCE_MS, spike_scores
from surrogate_cell.training.evaluate import (
    free_run_from_data,
    soma_spike_trains,
    teacher_forced,
)

#: candidate thresholds: logit quantiles leaving these fractions of milliseconds above
EXCEEDANCE_FRACTIONS = np.logspace(-5.0, -1.5, 36)
#: the candidates also tried in free runs
FREE_RUN_FRACTIONS = np.logspace(-4.5, -2.0, 16)


def logit_crossing_times(logits: np.ndarray, threshold: float, t0: int) -> list[np.ndarray]:
    """Per simulation, the times (ms) at which ``logits`` (n_sims, T) rise above ``threshold``."""
    above = logits > threshold
    onsets = above & ~np.pad(above[:, :-1], ((0, 0), (1, 0)))
    return [t0 + np.flatnonzero(row).astype(float) for row in onsets]


#: what a calibrated threshold matches: the spike times (F1) or the number of spikes (then F1)
MATCH_OBJECTIVES = ("f1", "count")


def match_quality(scores: dict, match: str) -> tuple:
    """Sort key of a candidate threshold's ``scores``: higher is better."""
    if match == "count":
        return -abs(scores["n_predicted"] - scores["n_true"]), scores["f1"]
    return (scores["f1"],)


def best_threshold(logits: np.ndarray, fractions, predicted_spikes, spike_times,
                   match: str = "f1") -> tuple[float, dict]:
    """Among logit quantiles leaving ``fractions`` of milliseconds above, the threshold whose
    predicted spikes best match ``spike_times``, and its scores.

    ``predicted_spikes(thresholds)`` gives the spike trains of every threshold.
    ``match="f1"``: the best F1 within ±3 ms; ``"count"``: the number of spikes closest to the
    true number (the firing rate, what a network of surrogates inherits), ties by F1.
    """
    if match not in MATCH_OBJECTIVES:
        raise ValueError(f"unknown match {match!r}: use one of {', '.join(MATCH_OBJECTIVES)}")

    def scored(thresholds: list[float]) -> list[tuple[float, dict]]:
        return [(threshold, spike_scores(spike_times, trains, SPIKE_TOLERANCE_MS))
                for threshold, trains in zip(thresholds, predicted_spikes(thresholds))] if thresholds else []

    candidates = scored([float(np.quantile(logits, 1.0 - fraction)) for fraction in fractions])
    if match == "count":
        candidates += scored(thresholds_between_counts(candidates))
    return max(candidates, key=lambda candidate: match_quality(candidate[1], match), default=(np.inf, {"f1": -1.0}))


def thresholds_between_counts(candidates: list[tuple[float, dict]], n_between: int = 8) -> list[float]:
    """``n_between`` thresholds evenly between the two neighbouring candidates whose spike
    counts enclose the true count (none if no pair does): the spike count falls in steps as the
    threshold rises, and the candidate quantiles are too coarse to hit the true count."""
    ordered = sorted(candidates, key=lambda candidate: candidate[0])
    for (low, low_scores), (high, high_scores) in zip(ordered, ordered[1:]):
        if low_scores["n_predicted"] > low_scores["n_true"] > high_scores["n_predicted"]:
            return np.linspace(low, high, n_between + 2)[1:-1].tolist()
    return []


def teacher_forced_spikes(logits: np.ndarray, t0: int):
    """``thresholds -> spike trains``: the upward crossings of teacher-forced ``logits``."""
    return lambda thresholds: [logit_crossing_times(logits, threshold, t0) for threshold in thresholds]


@torch.no_grad()
def free_run_spike_times(model, normalisation, data: WindowData, threshold_mv: float,
                         logit_thresholds) -> list[list[np.ndarray]]:
    """Somatic spike times of free runs of every simulation in ``data`` from its first 100 ms,
    once per spike-logit threshold: all in one batch of ``n_thresholds x n_sims`` cells."""
    n_sims, n_runs = len(data.sim_indices), len(logit_thresholds)
    per_cell = torch.as_tensor(logit_thresholds, dtype=torch.float32).repeat_interleave(n_sims)
    stepper = make_stepper(model, normalisation, n_runs * n_sims, logit_thresholds=per_cell)
    soma = model.config.soma_segment
    run = free_run_from_data(stepper, data, normalisation, data.n_ms - data.window, record=[soma], repeats=n_runs)
    trains = soma_spike_trains(run.voltages_mv[:, :, 0].double().numpy(), threshold_mv, data.window)
    return [trains[run * n_sims:(run + 1) * n_sims] for run in range(n_runs)]


@torch.no_grad()
def calibrate_model(model, data: WindowData, spike_times, normalisation=None, threshold_mv=None,
                    batch_size: int = 512, match: str = "f1") -> dict:
    """Set ``model``'s spike jump and threshold from ``data``; returns a summary.

    Without ``normalisation`` and ``threshold_mv`` (the soma spike threshold) only the
    teacher-forced threshold is tried. ``match``: see :func:`best_threshold`.
    """
    model.eval()
    jump = model.spike_jump.detach().clone()
    model.spike_jump.zero_()  # sub-threshold predictions only
    voltages, logits = teacher_forced(model, data, batch_size)
    targets = data.voltages[:, data.window:]
    flags = data.spikes[:, data.window:]
    if bool(flags.any()):
        jump = (targets - voltages)[flags].mean(dim=0)
    model.spike_jump.copy_(jump)
    true_in_range, logits = [t[t > data.window] for t in spike_times], logits.numpy()
    threshold, scores = best_threshold(logits, EXCEEDANCE_FRACTIONS, teacher_forced_spikes(logits, data.window),
                                       true_in_range, match)
    summary = {"teacher_forced": {"spike_logit_threshold": threshold, "spike_scores": scores},
               "n_spike_targets": int(flags.sum()), "match": match}
    if normalisation is not None and threshold_mv is not None:
        free_threshold, free_scores = best_threshold(
            logits, FREE_RUN_FRACTIONS, partial(free_run_spike_times, model, normalisation, data, threshold_mv),
            true_in_range, match)
        summary["free_running"] = {"spike_logit_threshold": free_threshold, "spike_scores": free_scores}
        if free_scores["f1"] > 0:
            threshold, scores = free_threshold, free_scores
    if np.isfinite(threshold):
        model.config.spike_logit_threshold = threshold
    return {**summary, "spike_logit_threshold": model.config.spike_logit_threshold, "spike_scores": scores}


def validation_raw(meta: dict, path, data_path=None, progress: bool = True) -> tuple[RawSimulations, list]:
    """The validation simulations of every data set the checkpoint was trained on, and labels.

    The primary data set (``data_path`` overrides its recorded path) and each extra data set
    (``--extra-data`` in training): their somatic spikes together make the threshold choice
    less dependent on a few dozen spikes of one split.
    """
    recorded = [meta["data"], *meta["data"].get("extra", [])]
    data_sets = [open_data_set(data_path or meta["data"]["path"]),
                 *(open_data_set(extra["path"]) for extra in recorded[1:])]
    for data_set in data_sets:
        check_cell(meta, data_set.layout.segment_hash, path)
    raw, labels = load_labelled(data_sets, [each["validation"] for each in recorded], progress)
    return spike_targets_of(raw, meta["cell"]), labels


def calibrate_checkpoint(path: str | Path, data_path: str | Path | None = None,
                         progress: bool = True, match: str = "f1") -> dict:
    """Calibrate an SRM checkpoint's spike output on its validation splits and rewrite the file.

    Sets the spike jump and the logit threshold (see the module docstring) and stores them,
    with the calibration summary, in the checkpoint (``python -m surrogate_cell.training
    calibrate``).

    Parameters
    ----------
    path : str or Path
        SRM checkpoint; rewritten in place.
    data_path : str or Path, optional
        The primary data set, if it moved since training; default the recorded path. Extra
        data sets are read from their recorded paths.
    progress : bool, default True
        Show progress bars.
    match : {"f1", "count"}, default "f1"
        Choose the threshold with the best spike-time F1 (±3 ms), or the one whose spike count
        is closest to the true count (ties by F1); see :func:`best_threshold`.

    Returns
    -------
    dict
        Summary: the chosen ``spike_logit_threshold`` and its ``spike_scores`` (precision,
        recall, F1, counts), the best ``teacher_forced`` and ``free_running`` candidates,
        ``n_spike_targets`` and ``match``.

    Raises
    ------
    CheckpointError
        If the checkpoint does not hold an SRM, or its cell is not the data sets'.
    """
    model, normalisation, meta, payload = load_checkpoint(path)
    if not family_of(model).calibrates_spikes:
        calibrated = sorted(name for name, family in FAMILIES.items() if family.calibrates_spikes)
        raise CheckpointError(f"{path} holds a {meta['family']} model; only SRM-based models (families "
                              f"{', '.join(calibrated)}) have an all-or-none spike output to calibrate.")
    raw, labels = validation_raw(meta, path, data_path, progress)
    data = build_window_data(raw, normalisation, model.config.window, labels)
    summary = calibrate_model(model, data, raw.spike_times, normalisation, meta["cell"].get("spike_threshold_mv"),
                              match=match)
    meta = {**meta, **model_meta(model, meta["family"]), "spike_calibration": summary}
    standard = {"format", "format_version", "meta", "model", "norm_mean", "norm_std", "norm_low", "norm_high"}
    extra = {key: value for key, value in payload.items() if key not in standard}
    save_checkpoint(path, model, meta, normalisation, extra)
    return summary


# --------------------------------------------------------------------------- command line

COMMAND_HELP = "calibrate an SRM checkpoint's spike output on its validation simulations"
COMMAND_DESCRIPTION = __doc__.split("\n\n")[1]


def add_arguments(parser) -> None:
    """Add the ``calibrate`` options to ``parser``."""
    parser.add_argument("--checkpoint", required=True, metavar="PT", help="SRM checkpoint (best.pt)")
    parser.add_argument("--data", metavar="H5", help="the primary training data set (default: the path in "
                                                     "the checkpoint; extra data sets are read from "
                                                     "their recorded paths)")
    parser.add_argument("--match", choices=MATCH_OBJECTIVES, default="f1",
                        help="f1: the threshold whose spike times best match the true ones (default); "
                             "count: the one whose number of spikes is closest to the true number, "
                             "i.e. the firing rate a network of surrogates inherits")


def run(args) -> int:
    """Run the ``calibrate`` subcommand; returns the exit status."""
    try:
        summary = calibrate_checkpoint(args.checkpoint, args.data, match=args.match)
    except (ValueError, CheckpointError, DataSetError, OSError, KeyError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    for mode in ("teacher_forced", "free_running"):
        if mode in summary:
            scores = summary[mode]["spike_scores"]
            print(f"best {mode.replace('_', '-')} threshold {summary[mode]['spike_logit_threshold']:.3f}: "
                  f"validation spikes (±{SPIKE_TOLERANCE_MS:g} ms) precision {scores['precision']:.2f} "
                  f"recall {scores['recall']:.2f} F1 {scores['f1']:.2f}, "
                  f"{scores['n_predicted']} predicted for {scores['n_true']}")
    print(f"spike logit threshold {summary['spike_logit_threshold']:.3f} written to {args.checkpoint}")
    return 0
