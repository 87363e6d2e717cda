"""Evaluate a checkpoint on held-out simulations: ``python -m surrogate_cell.training evaluate``.

Reports teacher-forced voltage RMSE (mV) overall and per section type, free-running RMSE from
a true 100 ms history, somatic spike precision/recall/F1 (±3 ms) from the soma-voltage
threshold, spike-task AUC, the free runs' LFP and dipole Pearson r (LFPy's vmem→imem matrix and
probes on the checkpoint's cell) and, for families with experts (MMoE, MMoEEx and their stable forms
``srm_mmoe``, ``srm_mmoeex``), expert and gate diversity and gate usage
(:mod:`surrogate_cell.training.diversity`; a warning when the gates have collapsed onto one
expert). Works for every registered family. Saves ``metrics.json`` and figures
(per-compartment error by section, voltage rasters, soma traces).
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from tqdm import tqdm

from surrogate_cell.checkpoint import check_cell, load_checkpoint
from surrogate_cell.data.store import open_data_set
from surrogate_cell.datasets.windows import (
    WindowData,
    build_window_data,
    check_long_enough,
    load_raw,
    spike_targets_of,
)
from surrogate_cell.engine import (
    FreeRun,
    SurrogateDivergedError,
    free_run,
    make_stepper,
)
from surrogate_cell.models import family_of
from surrogate_cell.models.base import model_input
from surrogate_cell.spikes import (
    REFRACTORY_MS,
    SPIKE_THRESHOLD_MV,
    SPIKE_TOLERANCE_MS,
    spike_scores,
    upward_crossing_times,
)
from surrogate_cell.training.diversity import (
    collapse_message,
    mixture_diagnostics,
    warn_if_collapsed,
)
from surrogate_cell.training.diversity import permanent as permanent  # re-exported (used to live here)


@dataclass
class EvaluationConfig:
    """What to evaluate and how.

    Parameters
    ----------
    checkpoint : str
        Checkpoint path (``best.pt``).
    data : str
        HDF5 data set made by ``simulate``; its test split if the model was trained on it,
        else every simulation.
    out_dir : str, default "runs/evaluation"
        Folder for ``metrics.json`` and the figures.
    free_run_ms : int, default 1000
        Length of every free run (ms), from a true history of one model window.
    spike_threshold_mv : float, optional
        Somatic spike threshold (mV); default the checkpoint's.
    max_simulations : int, default 0
        Evaluate at most this many simulations (0: all held-out ones).
    batch_size : int, default 256
        Windows per teacher-forced batch.
    figures : bool, default True
        Save the figures.
    """

    checkpoint: str
    data: str
    out_dir: str = "runs/evaluation"
    free_run_ms: int = 1000
    spike_threshold_mv: float | None = None
    max_simulations: int = 0
    batch_size: int = 256
    figures: bool = True


def held_out_simulations(meta: dict, data_set) -> list[int]:
    """The test split when evaluating on a file the model was trained on (``--data`` or an
    ``--extra-data`` set), else every simulation of the file."""
    available = data_set.simulation_indices()
    for trained_on in (meta["data"], *meta["data"].get("extra", [])):
        if data_set.path.resolve() == Path(trained_on["path"]).resolve():
            return [i for i in trained_on["test"] if i in available]
    return available


@torch.no_grad()
def teacher_forced(model, data: WindowData, batch_size: int):
    """One-step predictions at every t >= W of every sim: z-voltages (n, T-W, S), spike logits (n, T-W)."""
    sims, times = data.target_positions()
    voltages, logits = [], []
    for start in tqdm(range(0, sims.size, batch_size), desc="teacher-forced", leave=False):
        batch = data.gather(sims[start:start + batch_size], times[start:start + batch_size])
        voltage, spike = model(model_input(batch[0], batch[1]))
        voltages.append(voltage.float())
        logits.append(spike.float())
    shape = (len(data.sim_indices), data.n_ms - data.window)
    return torch.cat(voltages).reshape(*shape, -1), torch.cat(logits).reshape(shape)


def free_run_from_data(stepper, data: WindowData, normalisation, n_steps: int, record=None,
                       repeats: int = 1, stop_on_divergence: bool = False) -> FreeRun:
    """Free runs of every simulation in ``data`` from its true first window, through ``stepper``.

    The stepper (``n_cells = repeats x n_sims``: ``repeats`` copies of every simulation, e.g.
    one per candidate spike threshold) starts from the true voltages of ``0 .. W - 1`` ms and
    the events before, and then runs on its own predictions for ``n_steps`` ms: the returned
    voltages are those at ``W .. W + n_steps - 1`` ms. See :func:`surrogate_cell.engine.free_run`.
    """
    window, events = data.window, data.events
    # reset() takes the event bins one ms before the voltages: the first step adds bin W-1
    earlier_events = torch.cat([torch.zeros_like(events[:, :1]), events[:, :window - 1]], dim=1)
    history = normalisation.to_mv(data.voltages[:, :window])

    def events_between(start: int, stop: int) -> torch.Tensor:
        return events[:, window - 1 + start:window - 1 + stop].repeat(repeats, 1, 1)

    return free_run(stepper, events_between, history.repeat(repeats, 1, 1), earlier_events.repeat(repeats, 1, 1),
                    n_steps=n_steps, record=record, stop_on_divergence=stop_on_divergence, progress=True)


def rmse_by_type(error_mv: np.ndarray, section_types: np.ndarray) -> dict:
    """RMSE (mV) over everything and per section type; ``error_mv`` has segments last."""
    result = {"all": float(np.sqrt(np.mean(error_mv ** 2)))}
    for kind in dict.fromkeys(section_types):
        result[str(kind)] = float(np.sqrt(np.mean(error_mv[..., section_types == kind] ** 2)))
    return result


LFP_ELECTRODE_Z_UM = (200.0, 400.0, 600.0, 800.0, 1000.0)
LFP_ELECTRODE_X_UM = 50.0
"""Where the extracellular potential is compared: along the apical (z) axis, 50 um beside it."""


def extracellular_matrices(recipe: dict) -> tuple[np.ndarray, np.ndarray]:
    """Matrices from segment voltages (mV) to the LFP at :data:`LFP_ELECTRODE_Z_UM` (mV) and to
    the current dipole moment (nA um), for the cell ``recipe`` describes.

    LFPy's vmem→imem matrix (axial currents, no capacitance term: valid on any time grid)
    followed by a ``RecExtElectrode``'s and a ``CurrentDipoleMoment``'s transformation matrices.

    Returns
    -------
    lfp : ndarray, shape (n_electrodes, n_segments)
    dipole : ndarray, shape (3, n_segments)
    """
    import LFPy

    from surrogate_cell.cells.build import build_stored_cell

    cell = build_stored_cell(recipe, {})
    imem = cell.get_transformation_matrix_vmem_to_imem()
    n = len(LFP_ELECTRODE_Z_UM)
    electrode = LFPy.RecExtElectrode(cell, x=np.full(n, LFP_ELECTRODE_X_UM), y=np.zeros(n),
                                     z=np.asarray(LFP_ELECTRODE_Z_UM))
    return (electrode.get_transformation_matrix() @ imem,
            LFPy.CurrentDipoleMoment(cell).get_transformation_matrix() @ imem)


def pearson_rows(truth: np.ndarray, prediction: np.ndarray) -> np.ndarray:
    """Pearson r of every trace pair along the last axis (NaN where a trace is constant)."""
    truth = truth - truth.mean(axis=-1, keepdims=True)
    prediction = prediction - prediction.mean(axis=-1, keepdims=True)
    norms = np.sqrt((truth ** 2).sum(axis=-1) * (prediction ** 2).sum(axis=-1))
    with np.errstate(invalid="ignore", divide="ignore"):
        return (truth * prediction).sum(axis=-1) / norms


def extracellular_scores(matrices: tuple[np.ndarray, np.ndarray], true_mv: np.ndarray,
                         predicted_mv: np.ndarray) -> dict:
    """LFP and dipole Pearson r of free runs, per simulation and averaged over simulations.

    ``true_mv`` and ``predicted_mv`` are (n_sims, T, n_segments). Returns ``lfp_r`` (one mean
    per electrode at :data:`LFP_ELECTRODE_Z_UM`), ``lfp_z_um`` and ``dipole_z_r``;
    simulations whose true LFP is flat are left out of the means.
    """
    lfp, dipole = matrices
    # a matrix product, not np.einsum: numpy 2.4's einsum returned a wrong first sample here
    lfp_r = pearson_rows((true_mv @ lfp.T).swapaxes(1, 2), (predicted_mv @ lfp.T).swapaxes(1, 2))
    dipole_r = pearson_rows(true_mv @ dipole[2], predicted_mv @ dipole[2])
    with np.errstate(invalid="ignore"):
        return {"lfp_z_um": list(LFP_ELECTRODE_Z_UM),
                "lfp_r": [float(value) for value in np.nanmean(lfp_r, axis=0)] if lfp_r.size else [],
                "dipole_z_r": float(np.nanmean(dipole_r)) if dipole_r.size else float("nan")}


def roc_auc(labels: np.ndarray, scores: np.ndarray) -> float:
    """Area under the ROC curve (Mann-Whitney statistic with average ranks for ties)."""
    labels = labels.astype(bool)
    n_pos, n_neg = labels.sum(), (~labels).sum()
    if n_pos == 0 or n_neg == 0:
        return float("nan")
    order = np.argsort(scores, kind="mergesort")
    ranks = np.empty(len(scores))
    sorted_scores = scores[order]
    _, first, counts = np.unique(sorted_scores, return_index=True, return_counts=True)
    average = first + (counts + 1) / 2.0
    ranks[order] = np.repeat(average, counts)
    return float((ranks[labels].sum() - n_pos * (n_pos + 1) / 2) / (n_pos * n_neg))


@torch.no_grad()
def expert_diversity(model, data: WindowData, n_windows: int = 512) -> dict:
    """Expert diversity, gate diversity and gate usage on ``n_windows`` held-out windows.

    See :func:`surrogate_cell.training.diversity.mixture_diagnostics`; a ``UserWarning`` says
    when the gates have collapsed onto one expert.

    Returns
    -------
    dict
        ``expert_diversity``, ``gate_diversity`` and ``gate_usage`` (each None for a family
        without experts).
    """
    if not family_of(model).has_experts:
        return {"expert_diversity": None, "gate_diversity": None, "gate_usage": None}
    sims, times = data.target_positions()
    picks = np.random.default_rng(0).permutation(sims.size)[:n_windows]
    batch = data.gather(sims[picks], times[picks])
    diagnostics = mixture_diagnostics(model, model_input(batch[0], batch[1]))
    warn_if_collapsed(diagnostics, "on the held-out windows")
    return diagnostics


def soma_spike_trains(soma_mv: np.ndarray, threshold: float, t0: float) -> list[np.ndarray]:
    """Upward threshold crossings of 1 ms soma voltage traces, one train per simulation."""
    return [upward_crossing_times(trace, 1.0, threshold, REFRACTORY_MS, t0) for trace in soma_mv]


def evaluate(config: EvaluationConfig) -> dict:
    """Evaluate a checkpoint on held-out simulations (``python -m surrogate_cell.training evaluate``).

    Parameters
    ----------
    config : EvaluationConfig
        Checkpoint, data set, free-run length, output folder.

    Returns
    -------
    dict
        Also written to ``out_dir/metrics.json``: ``teacher_forced_rmse_mv`` and
        ``free_running_rmse_mv`` (mV, overall and per section type), ``free_running_ms``,
        ``spikes`` (somatic spike precision, recall, F1 within ±3 ms, counts and the threshold
        in mV), ``spike_task_auc``, ``free_running_diverged_at_ms`` (None if the free runs
        stayed in range), ``expert_diversity``, ``gate_diversity`` and ``gate_usage`` (families
        with experts, else None; see :func:`expert_diversity`),
        ``per_segment_teacher_forced_rmse_mv`` and the simulations used.

    Raises
    ------
    ValueError
        If the data set has no held-out simulations for the checkpoint.
    CheckpointError
        If the checkpoint's cell is not the data set's.
    SurrogateDivergedError
        If the first free-running step is already out of range (broken weights).
    """
    model, normalisation, meta, _ = load_checkpoint(config.checkpoint)
    model.eval()
    data_set = open_data_set(config.data)
    check_cell(meta, data_set.layout.segment_hash, config.checkpoint)
    sims = held_out_simulations(meta, data_set)
    if config.max_simulations:
        sims = sims[:config.max_simulations]
    if not sims:
        raise ValueError(f"{config.data} has no held-out simulations for {config.checkpoint}")
    check_long_enough(data_set, model.config.window + 1,
                      f"the model window of {config.checkpoint} ({model.config.window} ms) plus one target")
    raw = spike_targets_of(load_raw(data_set, sims), meta["cell"])
    data = build_window_data(raw, normalisation, model.config.window, sims)
    types = np.asarray(meta["cell"]["section_types"])
    soma = int(meta["cell"]["soma_segment"])
    std = normalisation.std

    tf_z, tf_logits = teacher_forced(model, data, config.batch_size)
    true_z = data.voltages[:, data.window:]
    tf_error = ((tf_z - true_z).numpy() * std)
    n_free = min(config.free_run_ms, data.n_ms - data.window)
    run = free_run_from_data(make_stepper(model, normalisation, len(sims)), data, normalisation, n_free,
                             stop_on_divergence=True)
    diverged_at, n_free = run.diverged_at, run.voltages_mv.shape[1]
    if n_free == 0:
        raise SurrogateDivergedError(
            f"{config.checkpoint}: the model's first free-running step is already NaN/infinite or "
            "outside the physiological range; its weights are probably broken (e.g. NaN). Retrain it "
            "or use another checkpoint.")
    fr_mv = run.voltages_mv.numpy()
    true_fr_mv = normalisation.to_mv(data.voltages[:, data.window:data.window + n_free]).numpy()
    fr_error = fr_mv - true_fr_mv

    true_spikes = raw.spike_times
    window_end = data.window + n_free
    true_in_window = [t[(t > data.window) & (t <= window_end)] for t in true_spikes]
    threshold = config.spike_threshold_mv
    if threshold is None:
        threshold = meta["cell"].get("spike_threshold_mv", SPIKE_THRESHOLD_MV)
    predicted = soma_spike_trains(fr_mv[:, :, soma], threshold, data.window)
    metrics = {
        "checkpoint": str(config.checkpoint), "data": str(config.data), "simulations": sims,
        "teacher_forced_rmse_mv": rmse_by_type(tf_error, types),
        "free_running_rmse_mv": rmse_by_type(fr_error, types),
        "free_running_ms": n_free,
        "spikes": {**spike_scores(true_in_window, predicted), "threshold_mv": threshold},
        "spike_task_auc": roc_auc(data.spikes[:, data.window:].numpy().ravel(), tf_logits.numpy().ravel()),
        "free_running_diverged_at_ms": diverged_at,
        **expert_diversity(model, data),
        "per_segment_teacher_forced_rmse_mv": np.sqrt((tf_error ** 2).mean(axis=(0, 1))).tolist(),
        "per_segment_free_running_rmse_mv": np.sqrt((fr_error ** 2).mean(axis=(0, 1))).tolist(),
    }
    matrices = extracellular_matrices(meta["cell"]["recipe"])
    metrics["extracellular"] = extracellular_scores(matrices, true_fr_mv, fr_mv)
    families = [data_set.simulation_attrs(index).get("input_family") for index in sims]
    if any(families):
        metrics["per_family"] = family_metrics(families, fr_mv, true_fr_mv, true_in_window, predicted,
                                               soma, meta["cell"].get("ca_segment"), data.window, matrices)
    out_dir = Path(config.out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    (out_dir / "metrics.json").write_text(json.dumps(metrics, indent=2))
    if config.figures:
        from surrogate_cell.training.figures import save_evaluation_figures

        true_mv = normalisation.to_mv(data.voltages).numpy()
        tf_mv = normalisation.to_mv(tf_z).numpy()
        save_evaluation_figures(out_dir, metrics, types, soma, true_mv, tf_mv, fr_mv, data.window)
    return metrics


CA_TOLERANCE_MS = 5.0
CA_REFRACTORY_MS = 20.0
"""A Ca spike keeps the hot zone above -20 mV for about 20-25 ms: one event per Ca spike."""


def family_metrics(families: list, fr_mv: np.ndarray, true_mv: np.ndarray, true_spikes: list, predicted: list,
                   soma: int, ca_segment: int | None, t0: float, matrices=None) -> dict:
    """Free-running metrics per input family of ``mixture`` data: all-segment and soma RMSE (mV),
    somatic spike scores, LFP and dipole r (with ``matrices`` from :func:`extracellular_matrices`)
    and, when the cell names its Ca hot zone, apical Ca-event scores (upward crossings of
    -20 mV, ±5 ms)."""
    from surrogate_cell.models.srm import CA_EVENT_THRESHOLD_MV

    families = np.asarray(families, dtype=object)
    result = {}
    for family in sorted(set(families.tolist()), key=str):
        rows = np.flatnonzero(families == family)
        error = fr_mv[rows] - true_mv[rows]
        entry = {"simulations": int(rows.size),
                 "rmse_mv": float(np.sqrt(np.mean(error ** 2))),
                 "soma_rmse_mv": float(np.sqrt(np.mean(error[..., soma] ** 2))),
                 "spikes": spike_scores([true_spikes[i] for i in rows], [predicted[i] for i in rows])}
        if matrices is not None:
            entry["extracellular"] = extracellular_scores(matrices, true_mv[rows], fr_mv[rows])
        if ca_segment is not None:
            def events(traces):
                return [upward_crossing_times(trace, 1.0, CA_EVENT_THRESHOLD_MV, CA_REFRACTORY_MS, t0)
                        for trace in traces]
            entry["ca_events"] = spike_scores(events(true_mv[rows, :, ca_segment]),
                                              events(fr_mv[rows, :, ca_segment]), CA_TOLERANCE_MS)
        result[str(family)] = entry
    return result


def family_report_lines(metrics: dict) -> list[str]:
    """One line per input family (``mixture`` data), none otherwise."""
    lines = []
    for family, entry in metrics.get("per_family", {}).items():
        spikes, ca = entry["spikes"], entry.get("ca_events")
        line = (f"{family:<10} n={entry['simulations']:<3} RMSE {entry['rmse_mv']:5.2f} mV "
                f"(soma {entry['soma_rmse_mv']:5.2f})  spikes F1 {spikes['f1']:.2f} "
                f"({spikes['n_true']} true, {spikes['n_predicted']} predicted)")
        if entry.get("extracellular"):
            line += f"  LFP r {np.nanmean(entry['extracellular']['lfp_r']):.2f}"
        if ca is not None:
            line += f"  Ca events F1 {ca['f1']:.2f} ({ca['n_true']} true, {ca['n_predicted']} predicted)"
        lines.append(line)
    return (["per input family, free-running:"] + lines) if lines else []


def format_report(metrics: dict) -> str:
    """A short human-readable table of the headline metrics."""
    tf, fr, spikes = metrics["teacher_forced_rmse_mv"], metrics["free_running_rmse_mv"], metrics["spikes"]
    lines = [f"held-out simulations: {len(metrics['simulations'])}",
             f"{'RMSE (mV)':<22}" + "".join(f"{k:>9}" for k in tf),
             f"{'teacher-forced':<22}" + "".join(f"{v:9.2f}" for v in tf.values()),
             f"{'free-running ' + str(metrics['free_running_ms']) + ' ms':<22}"
             + "".join(f"{fr[k]:9.2f}" for k in tf),
             *([f"free run diverged after {metrics['free_running_diverged_at_ms']} ms (stopped there)"]
               if metrics["free_running_diverged_at_ms"] is not None else []),
             f"somatic spikes (±{SPIKE_TOLERANCE_MS:g} ms, threshold {spikes['threshold_mv']:g} mV): "
             f"precision {spikes['precision']:.2f} recall {spikes['recall']:.2f} F1 {spikes['f1']:.2f} "
             f"({spikes['n_true']} true, {spikes['n_predicted']} predicted)",
             f"spike-task AUC: {metrics['spike_task_auc']:.3f}",
             *extracellular_lines(metrics)]
    return "\n".join(lines + family_report_lines(metrics) + mixture_report_lines(metrics))


def extracellular_lines(metrics: dict) -> list[str]:
    """The free runs' LFP r per electrode and dipole r (none for metrics without them)."""
    scores = metrics.get("extracellular")
    if not scores:
        return []
    electrodes = ", ".join(f"{z:g} um {r:.2f}" for z, r in zip(scores["lfp_z_um"], scores["lfp_r"]))
    return [f"free-running LFP r ({LFP_ELECTRODE_X_UM:g} um beside the apical axis): {electrodes}; "
            f"dipole (z) r {scores['dipole_z_r']:.2f}"]


def mixture_report_lines(metrics: dict) -> list[str]:
    """Lines on expert and gate diversity and gate usage (none for a family without experts)."""
    lines = [f"{kind} diversity: score {d['score']:.3f} det {d['determinant']:.3g} permanent {d['permanent']:.3g}"
             for kind, d in (("expert", metrics.get("expert_diversity")), ("gate", metrics.get("gate_diversity")))
             if d]
    usage = metrics.get("gate_usage")
    if usage:
        shares = " ".join(f"{share:.2f}" for share in usage["expert_share"])
        lines.append(f"gate weight per expert: {shares} (normalised entropy {usage['normalised_entropy']:.2f})")
        collapsed = collapse_message(metrics, "on the held-out windows")
        lines += [f"warning: {collapsed}"] if collapsed else []
    return lines


# --------------------------------------------------------------------------- command line

COMMAND_HELP = "evaluate a trained surrogate on held-out simulations"
COMMAND_DESCRIPTION = """Evaluate a checkpoint on held-out simulations of a data set.

On the training data set the checkpoint's test split is used; on any other data set made for
the same cell (e.g. another input regime) every simulation is held out. Prints a table and
writes metrics.json and figures to OUT_DIR.
"""


def add_arguments(parser) -> None:
    """Add the ``evaluate`` options to ``parser``."""
    parser.add_argument("--checkpoint", required=True, metavar="PT", help="checkpoint (best.pt)")
    parser.add_argument("--data", required=True, metavar="H5", help="data set made by `simulate`")
    parser.add_argument("--out-dir", default="runs/evaluation", metavar="DIR",
                        help="where metrics.json and figures go")
    parser.add_argument("--free-run-ms", type=int, default=1000, metavar="T",
                        help="length of the free-running test (ms, default 1000)")
    parser.add_argument("--spike-threshold", type=float, metavar="MV",
                        help="soma-voltage threshold for output spikes (default: the checkpoint's, "
                             "chosen from the training data)")
    parser.add_argument("--max-sims", type=int, default=0, metavar="N", help="evaluate at most N sims")
    parser.add_argument("--no-figures", action="store_true", help="skip the figures")


def run(args) -> int:
    """Run the ``evaluate`` subcommand; returns the exit status."""
    import sys

    from surrogate_cell.checkpoint import CheckpointError
    from surrogate_cell.data.store import DataSetError

    config = EvaluationConfig(checkpoint=args.checkpoint, data=args.data, out_dir=args.out_dir,
                              free_run_ms=args.free_run_ms, spike_threshold_mv=args.spike_threshold,
                              max_simulations=args.max_sims, figures=not args.no_figures)
    try:
        metrics = evaluate(config)
    except (ValueError, CheckpointError, DataSetError, OSError, SurrogateDivergedError) as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    print(format_report(metrics))
    print(f"metrics and figures in {args.out_dir}")
    return 0
