"""The f-I curve of NEURON and of a surrogate: firing rate and first-spike latency under somatic current steps.

For every amplitude (default 0, 0.25, ..., 2.0 nA) the same LFPy script runs twice, with the NEURON
cell (``l5pc``, integrated inside :func:`surrogate_cell.cells.solver.neuron_solver`, the training
data's Crank-Nicolson at 0.025 ms) and with ``SurrogateCell(model=...)``, both cold from t = 0::

    cell = l5pc(tstop=pre + step, dt=0.025)          # or SurrogateCell(model=..., ...)
    LFPy.StimIntElectrode(cell, idx=soma, pptype="IClamp", amp=amplitude, delay=pre, dur=step)
    cell.simulate()

The first ``--pre-ms`` (200 ms, no current) are a warm-up and not compared. Spikes of both are the
upward crossings of -25 mV (``surrogate_cell.spikes.SPIKE_THRESHOLD_MV``, 2 ms refractory) by the
soma voltage on the cell's ``dt`` grid (:func:`surrogate_cell.spikes.upward_crossing_times`); the
rate is the number of spikes during the step over its length, the latency the time from the step's
onset to the first spike. The table gives per amplitude the rates, their ratio (surrogate / NEURON),
the latencies and their difference, and whether the targets hold: rate within 15 % of NEURON's
(no spike where NEURON fires none) and latency within 3 ms (both fire, or neither). A figure
(``--out``) and a JSON (``--json``, default next to the figure) are written::

    .venv/bin/python examples/fi_curve.py --model path/to/best.pt [--amplitudes 0 0.5 1.0]
        [--step-ms 1000] [--out fi_curve.png]

Only drive models (checkpoint ``cell.input_kind == "drive"``) take an injected current; for an
events model (e.g. the shipped ``l5pc-default``) it stops with a message saying so.
"""

from __future__ import annotations

import argparse
import json
import math
import time
from pathlib import Path

import LFPy
import numpy as np
import torch
from tqdm.auto import tqdm

from surrogate_cell.cell import SurrogateCell
from surrogate_cell.cells import l5pc
from surrogate_cell.cells.solver import DEFAULT_SOLVER, neuron_solver
from surrogate_cell.checkpoint import load_checkpoint
from surrogate_cell.pretrained import resolve_model
from surrogate_cell.spikes import REFRACTORY_MS, SPIKE_THRESHOLD_MV, upward_crossing_times

DEFAULT_AMPLITUDES_NA = tuple(np.round(np.arange(0.0, 2.0 + 1e-9, 0.25), 2).tolist())
RATE_TOLERANCE = 0.15
"""Target: the surrogate's rate within 15 % of NEURON's."""
LATENCY_TOLERANCE_MS = 3.0
"""Target: the surrogate's first-spike latency within 3 ms of NEURON's."""
TRACE_EVERY_MS = 0.1
"""The figure's voltage traces are kept at this resolution."""
SIMULATORS = ("neuron", "surrogate")


def parse_arguments(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="l5pc-default",
                        help="shipped model name or checkpoint path; must be a drive model (default: %(default)s)")
    parser.add_argument("--amplitudes", nargs="+", type=float, default=list(DEFAULT_AMPLITUDES_NA),
                        metavar="NA", help="step amplitudes (nA; default 0, 0.25, ..., 2.0)")
    parser.add_argument("--step-ms", type=float, default=1000.0, help="length of each current step (ms)")
    parser.add_argument("--pre-ms", type=float, default=200.0,
                        help="warm-up before the step, not compared (ms; every run starts cold at t = 0)")
    parser.add_argument("--out", type=Path, default=Path("fi_curve.png"), help="the figure")
    parser.add_argument("--json", type=Path, help="the numbers (default: --out with the suffix .json)")
    parser.add_argument("--torch-threads", type=int, default=1, help="torch threads of the surrogate")
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    args = parser.parse_args(argv)
    if args.step_ms <= 0 or args.pre_ms < 0:
        parser.error("--step-ms must be > 0 and --pre-ms >= 0")
    if any(not math.isfinite(a) for a in args.amplitudes):
        parser.error("--amplitudes must be finite numbers (nA)")
    if args.torch_threads < 1:
        parser.error("--torch-threads must be >= 1")
    args.json = args.json or args.out.with_suffix(".json")
    return args


def input_kind(model: str) -> str:
    """``"events"`` or ``"drive"``: what the model reads (its checkpoint's ``cell.input_kind``)."""
    return str(load_checkpoint(resolve_model(model))[2]["cell"].get("input_kind", "events"))


def current_step_run(cell, amplitude_na: float, pre_ms: float, step_ms: float) -> dict:
    """The script on one cell: a somatic IClamp step, ``simulate()``; spikes, rate, latency, trace."""
    LFPy.StimIntElectrode(cell, idx=int(cell.get_idx("soma")[0]), pptype="IClamp", amp=float(amplitude_na),
                          delay=float(pre_ms), dur=float(step_ms))
    cpu = time.process_time()
    cell.simulate()
    cpu = time.process_time() - cpu
    dt = float(cell.dt)
    spikes = upward_crossing_times(np.asarray(cell.somav, dtype=float), dt, SPIKE_THRESHOLD_MV, REFRACTORY_MS)
    during = spikes[(spikes >= pre_ms) & (spikes <= pre_ms + step_ms)]
    every = max(1, int(round(TRACE_EVERY_MS / dt)))
    return {"spike_times_ms": spikes.round(3).tolist(), "warmup_spikes": int(np.count_nonzero(spikes < pre_ms)),
            "rate_hz": float(during.size / (step_ms / 1000.0)),
            "latency_ms": float(during[0] - pre_ms) if during.size else None, "cpu_s": cpu,
            "trace": (np.asarray(cell.tvec)[::every].copy(), np.asarray(cell.somav)[::every].copy())}


def run_neuron(amplitude_na: float, pre_ms: float, step_ms: float) -> dict:
    """The step on the NEURON cell, integrated by the project's solver."""
    cell = l5pc(tstop=pre_ms + step_ms, dt=DEFAULT_SOLVER.dt)
    try:
        with neuron_solver(DEFAULT_SOLVER):  # the training data's solver; the cell was built with its dt
            return current_step_run(cell, amplitude_na, pre_ms, step_ms)
    finally:
        cell.strip_hoc_objects()


def run_surrogate(model: str, amplitude_na: float, pre_ms: float, step_ms: float) -> dict:
    """The step on ``SurrogateCell(model=...)``, cold; also its own ``spike_times`` (its threshold)."""
    cell = SurrogateCell(model=model, tstop=pre_ms + step_ms, dt=DEFAULT_SOLVER.dt)
    result = current_step_run(cell, amplitude_na, pre_ms, step_ms)
    result["cell_spike_times_ms"] = np.asarray(cell.spike_times, dtype=float).round(3).tolist()
    result["cell_spike_threshold_mv"] = float(cell.spike_threshold)
    return result


def compare(neuron: dict, surrogate: dict) -> dict:
    """Rate ratio, latency difference and the targets for one amplitude."""
    rate_n, rate_s = neuron["rate_hz"], surrogate["rate_hz"]
    latency_n, latency_s = neuron["latency_ms"], surrogate["latency_ms"]
    ratio = rate_s / rate_n if rate_n > 0 else None
    rate_ok = abs(ratio - 1.0) <= RATE_TOLERANCE if ratio is not None else rate_s == 0.0
    both = latency_n is not None and latency_s is not None
    difference = latency_s - latency_n if both else None
    latency_ok = abs(difference) <= LATENCY_TOLERANCE_MS if both else latency_n is None and latency_s is None
    return {"rate_ratio": ratio, "latency_difference_ms": difference, "rate_ok": bool(rate_ok),
            "latency_ok": bool(latency_ok)}


def _f(value, digits: int = 1) -> str:
    return "-" if value is None else f"{value:.{digits}f}"


def table(report: dict) -> str:
    """One markdown row per amplitude."""
    lines = ["| I (nA) | rate N (Hz) | rate S (Hz) | S / N | latency N (ms) | latency S (ms) | S - N (ms) | "
             "rate within 15 % | latency within 3 ms |", "|" + "---|" * 9]
    for row in report["amplitudes"]:
        n, s, c = row["neuron"], row["surrogate"], row["comparison"]
        lines.append(f"| {row['amplitude_na']:.2f} | {n['rate_hz']:.1f} | {s['rate_hz']:.1f} | "
                     f"{_f(c['rate_ratio'], 2)} | {_f(n['latency_ms'])} | {_f(s['latency_ms'])} | "
                     f"{_f(c['latency_difference_ms'])} | {'yes' if c['rate_ok'] else 'NO'} | "
                     f"{'yes' if c['latency_ok'] else 'NO'} |")
    return "\n".join(lines)


def figure(report: dict, traces: dict, path: Path) -> None:
    """f-I curve, latency-I curve and both soma voltages at the largest amplitude."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = report["amplitudes"]
    amplitudes = [row["amplitude_na"] for row in rows]
    fig, axes = plt.subplots(1, 3, figsize=(14, 4), constrained_layout=True)
    styles = {"neuron": ("k", "o", "NEURON"), "surrogate": ("tab:red", "s", "surrogate")}
    for who, (color, marker, label) in styles.items():
        axes[0].plot(amplitudes, [row[who]["rate_hz"] for row in rows], color=color, marker=marker, label=label)
        latency = [np.nan if row[who]["latency_ms"] is None else row[who]["latency_ms"] for row in rows]
        axes[1].plot(amplitudes, latency, color=color, marker=marker, label=label)
    axes[0].set(xlabel="step amplitude (nA)", ylabel="rate during the step (Hz)", title="f-I curve")
    axes[1].set(xlabel="step amplitude (nA)", ylabel="first-spike latency (ms)", title="latency")
    largest = int(np.argmax(amplitudes))
    for who, (color, _, label) in styles.items():
        t, v = traces[who][largest]
        axes[2].plot(t, v, color=color, lw=0.8, label=label)
    axes[2].axvspan(0, report["settings"]["pre_ms"], color="0.9", label="warm-up (not compared)")
    axes[2].set(xlabel="t (ms)", ylabel="soma voltage (mV)", title=f"{amplitudes[largest]:.2f} nA")
    for ax in axes:
        ax.legend(fontsize=8)
    fig.suptitle(f"{report['settings']['model']}: targets {'hold' if report['targets_hold'] else 'do not hold'}")
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None) -> dict:
    """Run every amplitude with both simulators, print the table, write the figure and the JSON."""
    args = parse_arguments(argv)
    kind = input_kind(args.model)
    if kind != "drive":
        raise SystemExit(
            f"fi_curve needs a drive model (checkpoint cell.input_kind 'drive'), which takes a somatic IClamp; "
            f"{args.model!r} is an {kind!r} model, trained without injected current, and refuses "
            "LFPy.StimIntElectrode. Pass --model with a drive checkpoint (e.g. from "
            "'python -m surrogate_cell.training train --config train_drive.yaml' on data of "
            "'simulate --config data/mixture.yaml').")
    torch.set_num_threads(args.torch_threads)
    rows, traces = [], {who: [] for who in SIMULATORS}
    for amplitude in tqdm(args.amplitudes, desc="current steps", unit="amplitude", disable=args.no_progress):
        runs = {"neuron": run_neuron(amplitude, args.pre_ms, args.step_ms),
                "surrogate": run_surrogate(args.model, amplitude, args.pre_ms, args.step_ms)}
        for who in SIMULATORS:
            traces[who].append(runs[who].pop("trace"))
        rows.append({"amplitude_na": float(amplitude), **runs, "comparison": compare(runs["neuron"],
                                                                                       runs["surrogate"])})
    report = {
        "settings": {"model": args.model, "input_kind": kind, "step_ms": args.step_ms, "pre_ms": args.pre_ms,
                     "dt_ms": DEFAULT_SOLVER.dt, "neuron_solver": DEFAULT_SOLVER.description,
                     "start": "cold: both at t = 0 from v_init, no current before the step",
                     "spike_threshold_mv": SPIKE_THRESHOLD_MV, "spike_refractory_ms": REFRACTORY_MS,
                     "spikes": "upward crossings of the soma voltage on the cell's dt grid, both simulators",
                     "rate_tolerance": RATE_TOLERANCE, "latency_tolerance_ms": LATENCY_TOLERANCE_MS},
        "amplitudes": rows,
        "targets_hold": all(row["comparison"]["rate_ok"] and row["comparison"]["latency_ok"] for row in rows),
    }
    print(f"f-I curve of {args.model} vs NEURON ({DEFAULT_SOLVER.description}); {args.step_ms:g} ms steps after "
          f"{args.pre_ms:g} ms warm-up, both cold; spikes: {SPIKE_THRESHOLD_MV:g} mV crossings")
    print(table(report))
    failed = [row["amplitude_na"] for row in rows
              if not (row["comparison"]["rate_ok"] and row["comparison"]["latency_ok"])]
    print("targets (rate within 15 %, latency within 3 ms): "
          + ("hold at every amplitude" if not failed else f"miss at {', '.join(f'{a:g}' for a in failed)} nA"))
    args.json.parent.mkdir(parents=True, exist_ok=True)
    args.json.write_text(json.dumps(report, indent=1))
    figure(report, traces, args.out)
    print(f"written: {args.out}, {args.json}")
    return report


if __name__ == "__main__":
    main()
