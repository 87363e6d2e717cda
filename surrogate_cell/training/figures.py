"""Evaluation figures: per-compartment error by section, voltage rasters, soma traces."""

from __future__ import annotations

from pathlib import Path

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

SECTION_ORDER = ("soma", "axon", "basal", "oblique", "apical")


def strip_plot_by_section(path: Path, per_segment_rmse: np.ndarray, types: np.ndarray) -> None:
    """Per-compartment teacher-forced RMSE, one jittered column per section type."""
    figure, axis = plt.subplots(figsize=(6, 4))
    kinds = [k for k in SECTION_ORDER if (types == k).any()]
    jitter = np.random.default_rng(0).uniform(-0.25, 0.25, len(types))
    for column, kind in enumerate(kinds):
        values = per_segment_rmse[types == kind]
        axis.scatter(column + jitter[types == kind], values, s=6, alpha=0.6)
        axis.hlines(np.median(values), column - 0.35, column + 0.35, color="k")
    axis.set_xticks(range(len(kinds)), kinds)
    axis.set_ylabel("teacher-forced RMSE (mV)")
    axis.set_title("Per-compartment error by section")
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def voltage_rasters(path: Path, true_mv: np.ndarray, predicted_mv: np.ndarray, t0: int,
                    title: str) -> None:
    """True and predicted voltages of all segments (rows) over time, same colour scale."""
    figure, axes = plt.subplots(2, 1, figsize=(8, 6), sharex=True)
    extent = (t0, t0 + true_mv.shape[1], true_mv.shape[0], 0)
    for axis, image, label in zip(axes, (true_mv, predicted_mv), ("NEURON", title)):
        shown = axis.imshow(image, aspect="auto", extent=extent, vmin=-85, vmax=0, cmap="viridis")
        axis.set_ylabel(f"{label}\nsegment")
    axes[-1].set_xlabel("time (ms)")
    figure.colorbar(shown, ax=axes, label="mV")
    figure.savefig(path, dpi=120)
    plt.close(figure)


def soma_traces(path: Path, true_mv: np.ndarray, teacher_forced: np.ndarray, free_running: np.ndarray,
                t0: int) -> None:
    """Soma voltage: NEURON, teacher-forced and free-running predictions."""
    figure, axis = plt.subplots(figsize=(8, 3))
    axis.plot(np.arange(true_mv.size), true_mv, "k", lw=1, label="NEURON")
    axis.plot(t0 + np.arange(teacher_forced.size), teacher_forced, lw=1, label="teacher-forced")
    axis.plot(t0 + np.arange(free_running.size), free_running, lw=1, label="free-running")
    axis.set_xlabel("time (ms)")
    axis.set_ylabel("soma (mV)")
    axis.legend(loc="upper right", fontsize=8)
    figure.tight_layout()
    figure.savefig(path, dpi=120)
    plt.close(figure)


def save_evaluation_figures(out_dir: Path, metrics: dict, types: np.ndarray, soma: int,
                            true_mv: np.ndarray, teacher_forced_mv: np.ndarray,
                            free_running_mv: np.ndarray, window: int) -> None:
    """Write the three evaluation figures for the first held-out simulation.

    ``true_mv`` is (n_sims, T, S); the predictions start at ``window``.
    """
    strip_plot_by_section(out_dir / "error_by_section.png",
                          np.asarray(metrics["per_segment_teacher_forced_rmse_mv"]), types)
    n_free = free_running_mv.shape[1]
    voltage_rasters(out_dir / "voltage_rasters.png", true_mv[0, window:window + n_free].T,
                    free_running_mv[0].T, window, "free-running")
    soma_traces(out_dir / "soma_traces.png", true_mv[0, :, soma], teacher_forced_mv[0, :, soma],
                free_running_mv[0, :, soma], window)
