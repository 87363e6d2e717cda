"""Surrogate vs NEURON: the same held-out synaptic input, voltages, spikes and extracellular signals.

Builds the default L5PC, draws synaptic input from a seed the training data never used, runs
NEURON + LFPy and then the ``SurrogateCell`` on identical input (the surrogate starts from
NEURON's last 100 ms of warm-up), records six electrodes along the apical axis 50 um beside the
cell and the current dipole moment, prints a comparison table and saves a figure::

    python examples/compare_lfp.py [--model l5pc-default] [--duration-ms 1000] [--regime published]
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

import LFPy
import numpy as np

from surrogate_cell.cell import SurrogateCell
from surrogate_cell.cells import l5pc
from surrogate_cell.cells.solver import DEFAULT_SOLVER, neuron_solver
from surrogate_cell.checkpoint import read_checkpoint
from surrogate_cell.data.inputs import (
    draw_inputs,
    events_to_spike_times,
    input_config_from_dict,
)
from surrogate_cell.pretrained import resolve_model
from surrogate_cell.spikes import spike_peak_times, spike_scores

TREE_OF_TYPE = {"basal": "basal", "apical": "apical", "oblique": "apical"}
SECTION_ORDER = ("soma", "axon", "basal", "oblique", "apical")
HELD_OUT_SEED_OFFSET = 7_000_003


def parse_arguments(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="l5pc-default", help="shipped model name or checkpoint path")
    parser.add_argument("--duration-ms", type=int, default=1000, help="compared time after the warm-up")
    parser.add_argument("--warmup-ms", type=int, default=200, help="NEURON warm-up before the comparison")
    parser.add_argument("--regime", default="published", choices=("published", "poisson"),
                        help="input statistics (poisson was never seen in training)")
    parser.add_argument("--seed", type=int, help="input seed (default: one the training data never used)")
    parser.add_argument("--out-dir", type=Path, default=Path("compare_lfp_output"),
                        help="where the figure and metrics.json go")
    return parser.parse_args(argv)


def electrode_positions(n_contacts: int = 6) -> dict:
    """Contacts along the apical (z) axis, 50 um beside the cell."""
    z = np.linspace(0.0, 1000.0, n_contacts)
    return {"x": np.full(n_contacts, 50.0), "y": np.zeros(n_contacts), "z": z}


def draw_held_out_input(cell, checkpoint_meta: dict, regime: str, total_ms: int, seed: int | None):
    """Input events (exc, inh) for every input segment, from a seed outside the training data."""
    inputs = np.asarray(checkpoint_meta["cell"]["input_segments"])
    trees = [TREE_OF_TYPE[t] for t in cell.section_types[inputs]]
    if seed is None:
        seed = int(checkpoint_meta["data"].get("base_seed", 0)) + HELD_OUT_SEED_OFFSET
    config = input_config_from_dict({"regime": regime})
    events = draw_inputs(config, trees, cell.length[inputs], total_ms, np.random.default_rng(seed))
    return inputs, events, seed


def attach_synapses(cell, inputs: np.ndarray, events, shift_ms: float = 0.0) -> list:
    """One AMPANMDA and one GABAA LFPy.Synapse per input segment, spike times from ``events``."""
    synapses = []
    for syntype, matrix in (("AMPANMDA", events.exc), ("GABAA", events.inh)):
        for index, times in zip(inputs, events_to_spike_times(matrix)):
            times = times - shift_ms
            synapse = LFPy.Synapse(cell, idx=int(index), syntype=syntype, weight=1.0)
            synapse.set_spike_times(times[times >= 0.0])
            synapses.append(synapse)
    return synapses


def run_neuron(cell, inputs, events) -> dict:
    """NEURON + LFPy with probes; returns numpy results only (NEURON objects are released)."""
    attach_synapses(cell, inputs, events)
    electrode = LFPy.RecExtElectrode(cell, **electrode_positions(), sigma=0.3)
    dipole = LFPy.CurrentDipoleMoment(cell)
    started = time.perf_counter()
    with neuron_solver(DEFAULT_SOLVER):  # as in the training data; the cell was built with its dt
        cell.simulate(probes=[electrode, dipole], rec_vmem=True)
    wall = time.perf_counter() - started
    every_ms = int(round(1.0 / cell.dt))
    result = {"vmem": cell.vmem[:, ::every_ms], "lfp": electrode.data[:, ::every_ms],
              "dipole": dipole.data[:, ::every_ms], "spikes": spike_peak_times(cell.somav, cell.dt),
              "wall_s": wall, "section_types": cell.section_types.copy(),
              "x": cell.x.copy(), "z": cell.z.copy()}
    # NetCons left pointing into this cell's sections crash NEURON once the next cell deletes them
    cell.strip_hoc_objects()
    return result


def run_surrogate(model: str, inputs, events, neuron: dict, warmup_ms: int, duration_ms: int) -> dict:
    """The SurrogateCell on the same input, started from NEURON's last window of warm-up."""
    cell = SurrogateCell(model=model, tstop=float(duration_ms))
    attach_synapses(cell, inputs, events, shift_ms=warmup_ms)
    electrode = LFPy.RecExtElectrode(cell, **electrode_positions(), sigma=0.3)
    dipole = LFPy.CurrentDipoleMoment(cell)
    window = cell.window_ms
    history_events = np.concatenate([events.exc, events.inh])[:, warmup_ms - window:warmup_ms]
    started = time.perf_counter()
    cell.simulate(probes=[electrode, dipole], rec_vmem=True, history_mv=neuron["vmem"][:, :warmup_ms + 1],
                  history_events=history_events)
    every_ms = int(round(1.0 / cell.dt))  # compared on NEURON's whole-ms samples
    return {"vmem": cell.vmem[:, ::every_ms], "lfp": electrode.data[:, ::every_ms],
            "dipole": dipole.data[:, ::every_ms], "spikes": cell.spike_times + warmup_ms,
            "wall_s": time.perf_counter() - started}


def pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson correlation of two traces."""
    a, b = a - a.mean(), b - b.mean()
    return float((a * b).sum() / np.sqrt((a * a).sum() * (b * b).sum()))


def relative_rmse(truth: np.ndarray, prediction: np.ndarray) -> float:
    """RMSE divided by the standard deviation of the truth."""
    return float(np.sqrt(np.mean((truth - prediction) ** 2)) / truth.std())


def comparison(neuron: dict, surrogate: dict, warmup_ms: int, duration_ms: int) -> dict:
    """All metrics of the printed table."""
    window = slice(warmup_ms, warmup_ms + duration_ms + 1)
    types = neuron["section_types"]
    error = neuron["vmem"][:, window] - surrogate["vmem"]
    rmse = {"all": float(np.sqrt(np.mean(error ** 2)))}
    rmse.update({k: float(np.sqrt(np.mean(error[types == k] ** 2))) for k in SECTION_ORDER if (types == k).any()})
    true_spikes = neuron["spikes"][(neuron["spikes"] >= warmup_ms)]
    lfp_true, lfp_pred = neuron["lfp"][:, window], surrogate["lfp"]
    return {
        "rmse_mv": rmse,
        "spikes": spike_scores([true_spikes], [surrogate["spikes"]]),
        "lfp_r": [pearson(t, p) for t, p in zip(lfp_true, lfp_pred)],
        "lfp_relative_rmse": [relative_rmse(t, p) for t, p in zip(lfp_true, lfp_pred)],
        "dipole_z_r": pearson(neuron["dipole"][2, window], surrogate["dipole"][2]),
    }


def print_table(metrics: dict, neuron: dict, surrogate: dict, total_ms: int, duration_ms: int) -> None:
    """The comparison table."""
    rmse, spikes = metrics["rmse_mv"], metrics["spikes"]
    print("voltage RMSE (mV): " + ", ".join(f"{k} {v:.2f}" for k, v in rmse.items()))
    print(f"somatic spikes: NEURON {spikes['n_true']}, surrogate {spikes['n_predicted']}; "
          f"precision {spikes['precision']:.2f}, recall {spikes['recall']:.2f}, F1 {spikes['f1']:.2f} (±3 ms)")
    print(f"{'electrode z (um)':>18} {'Pearson r':>10} {'rel. RMSE':>10}")
    for z, r, e in zip(electrode_positions()["z"], metrics["lfp_r"], metrics["lfp_relative_rmse"]):
        print(f"{z:18.0f} {r:10.3f} {e:10.3f}")
    print(f"current dipole moment (z) Pearson r: {metrics['dipole_z_r']:.3f}")
    neuron_per_ms = neuron["wall_s"] / total_ms
    surrogate_per_ms = surrogate["wall_s"] / duration_ms
    print(f"wall time: NEURON {neuron['wall_s']:.1f} s for {total_ms} ms, surrogate "
          f"{surrogate['wall_s']:.1f} s for {duration_ms} ms; speed ratio per simulated ms "
          f"{neuron_per_ms / surrogate_per_ms:.1f}x")


def save_figure(path: Path, neuron: dict, surrogate: dict, warmup_ms: int, duration_ms: int) -> None:
    """Morphology with electrodes, voltage rasters, LFP traces overlaid."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    window = slice(warmup_ms, warmup_ms + duration_ms + 1)
    t = np.arange(duration_ms + 1)
    figure = plt.figure(figsize=(13, 7), layout="constrained")
    grid = figure.add_gridspec(2, 3, width_ratios=(1, 2, 2))
    axis = figure.add_subplot(grid[:, 0])
    for x, z in zip(neuron["x"], neuron["z"]):
        axis.plot(x, z, "k", lw=0.5)
    positions = electrode_positions()
    axis.plot(positions["x"], positions["z"], "ro", ms=4)
    axis.set(aspect="equal", xlabel="x (um)", ylabel="z (um)", title="cell and electrodes")
    for row, (name, vmem) in enumerate((("NEURON", neuron["vmem"][:, window]), ("surrogate", surrogate["vmem"]))):
        axis = figure.add_subplot(grid[row, 1])
        image = axis.imshow(vmem, aspect="auto", vmin=-85, vmax=0, extent=(0, duration_ms, vmem.shape[0], 0))
        axis.set(ylabel="segment", title=f"{name} voltages", xlabel="t (ms)" if row else None)
    figure.colorbar(image, ax=figure.axes[1:3], label="mV")
    axis = figure.add_subplot(grid[:, 2])
    lfp_true, lfp_pred = neuron["lfp"][:, window], surrogate["lfp"]
    scale = np.abs(lfp_true).max() or 1.0
    for i, z in enumerate(positions["z"]):
        axis.plot(t, z + 80 * lfp_true[i] / scale, "k", lw=0.8, label="NEURON" if i == 0 else None)
        axis.plot(t, z + 80 * lfp_pred[i] / scale, "r", lw=0.8, label="surrogate" if i == 0 else None)
    axis.set(xlabel="t (ms)", ylabel="electrode z (um)", ylim=(positions["z"][0] - 150, positions["z"][-1] + 150),
             title=f"LFP ({1000 * scale:.1f} uV = 80 um; traces beyond the axes clipped)")
    axis.legend(loc="upper right")
    figure.savefig(path, dpi=110)
    plt.close(figure)


def main(argv=None) -> dict:
    """Run both simulators, print the table, save the figure; returns the metrics."""
    args = parse_arguments(argv)
    meta = read_checkpoint(resolve_model(args.model))["meta"]
    total_ms = args.warmup_ms + args.duration_ms
    cell = l5pc(tstop=float(total_ms), dt=DEFAULT_SOLVER.dt)
    inputs, events, seed = draw_held_out_input(cell, meta, args.regime, total_ms, args.seed)
    print(f"model {args.model}; {args.regime} input, seed {seed}; {args.duration_ms} ms after "
          f"{args.warmup_ms} ms of NEURON warm-up; NEURON: {DEFAULT_SOLVER.description}")
    neuron = run_neuron(cell, inputs, events)
    del cell
    surrogate = run_surrogate(args.model, inputs, events, neuron, args.warmup_ms, args.duration_ms)
    metrics = comparison(neuron, surrogate, args.warmup_ms, args.duration_ms)
    print_table(metrics, neuron, surrogate, total_ms, args.duration_ms)
    args.out_dir.mkdir(parents=True, exist_ok=True)
    save_figure(args.out_dir / "compare_lfp.png", neuron, surrogate, args.warmup_ms, args.duration_ms)
    (args.out_dir / "metrics.json").write_text(json.dumps(
        {**metrics, "protocol": {"regime": args.regime, "seed": seed, "warmup_ms": args.warmup_ms,
                                 "duration_ms": args.duration_ms}}, indent=2))
    print(f"figure and metrics.json in {args.out_dir}")
    return metrics


if __name__ == "__main__":
    main()
