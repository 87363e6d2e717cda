"""The incremental stepping engine against NEURON, on the built-in default cell.

Prints, from one run on this machine:

* NEURON through LFPy: the default ``l5pc`` with one excitatory (AMPANMDA) and one inhibitory
  (GABAA) synapse per dendritic segment, Poisson (Bernoulli per 1 ms bin) input at
  ``--rate`` events per ms, the project's NEURON solver (``surrogate_cell.cells.solver.DEFAULT_SOLVER``:
  Crank-Nicolson, dt = 0.025 ms), ``rec_vmem``, ``rec_imem``, a ``RecExtElectrode``
  with a few contacts and a ``CurrentDipoleMoment``; seconds per simulated second.
* The fast steppers (:func:`make_stepper`: :class:`IncrementalStepper` for the random-weight
  paper-size MH and MMoE models, :class:`SRMStepper` for the SRM of
  ``models/srm.yaml`` (packaged config) alone and as a three-member ensemble like the shipped default)
  at 1, 10 and 100 cells: seconds per simulated
  second, FLOPs per cell-step (counted analytically on the incremental path), achieved
  GFLOP/s against torch's own large float32 matmul rate, the per-cell speed ratio to NEURON
  and memory (the engine's window state; the process's peak RSS, measured before NEURON runs).
* The published inference workloads (100 cells x 1, 10 and 100 ms; 1000 cells x 100 ms) for
  every family, beside the published P100 times (MMoE 100 x 100 ms: 43.6 s; goal < 5 s).
* Side measurements: the full-window reference stepper, MMoE mixing before the towers
  versus the per-expert product, and a low-rank shared first tower layer (timing only).

Wall-clock times on a machine shared with other jobs are noisy: every rate is the best of
``--repeats`` runs, and the load average is printed.

    .venv/bin/python benchmarks/bench_engine.py                 # full run, a few minutes
    .venv/bin/python benchmarks/bench_engine.py --neuron-ms 200 --steps 100 100 20
"""

from __future__ import annotations

import os

# Idle OpenMP threads sleep instead of spinning. On a machine shared with other jobs a spinning
# thread that lost its core stalls every parallel region (we measured 5-10x slower medians with
# 2 threads); set OMP_WAIT_POLICY=ACTIVE for the last few percent on an idle machine. Must be
# set before torch starts OpenMP.
os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")

import argparse  # noqa: E402
import resource  # noqa: E402
import time  # noqa: E402
from dataclasses import dataclass  # noqa: E402

import LFPy  # noqa: E402
import numpy as np  # noqa: E402
import torch  # noqa: E402

from surrogate_cell.cells import l5pc  # noqa: E402
from surrogate_cell.cells.layout import cell_layout  # noqa: E402
from surrogate_cell.cells.solver import DEFAULT_SOLVER, neuron_solver  # noqa: E402
from surrogate_cell.config import PACKAGED_CONFIGS  # noqa: E402
from surrogate_cell.engine import FullWindowStepper, make_stepper  # noqa: E402
from surrogate_cell.engine.dense import DenseProduct  # noqa: E402
from surrogate_cell.models import SRM, build_model_from_file  # noqa: E402
from surrogate_cell.models.normalisation import Normalisation  # noqa: E402

CONFIG_DIR = PACKAGED_CONFIGS / "models"
SYNAPSE_SECTION_TYPES = ("basal", "apical", "oblique")
PUBLISHED_P100_S = {("mh", 100, 100): 7.19, ("mmoe", 100, 100): 43.6, ("mh", 1000, 100): 10.9,
                    ("mmoe", 1000, 100): 365.0}
"""Published inference times on a P100 GPU (s), (family, neurons, simulated ms) -> seconds."""
TABLE1_WORKLOADS = ((100, 1), (100, 10), (100, 100), (1000, 100))
"""The published inference workloads: (neurons, simulated ms)."""
MMOE_GOAL_S = 5.0
"""This project's goal for the published MMoE workload of 100 cells x 100 ms."""


@dataclass
class CellShape:
    """Channel counts of the default cell: event channels and segments."""

    n_events: int
    n_segments: int


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--rate", type=float, default=0.01, help="events per synapse per ms")
    parser.add_argument("--neuron-ms", type=int, default=1000, help="simulated ms for NEURON")
    parser.add_argument("--cells", type=int, nargs="+", default=[1, 10, 100])
    parser.add_argument("--steps", type=int, nargs="+", default=[1000, 500, 100],
                        help="simulated ms per cell count (scaled to 1 s in the table)")
    parser.add_argument("--repeats", type=int, default=2, help="timed runs per measurement (best)")
    parser.add_argument("--families", nargs="+", default=["mh", "mmoe", "srm", ENSEMBLE],
                        help=f"model families ({ENSEMBLE}: three SRM members, like the shipped default)")
    return parser.parse_args()


def peak_rss_mb() -> float:
    """Peak resident memory of this process so far (MB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def best_time(run, repeats: int) -> float:
    """Fastest of ``repeats`` wall-clock timings of ``run()`` (seconds)."""
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        run()
        times.append(time.perf_counter() - start)
    return min(times)


# --------------------------------------------------------------------------- reference rates


def matmul_rate(size: int = 4096, repeats: int = 5) -> float:
    """torch's float32 ``a @ b`` rate on a large square product (GFLOP/s)."""
    a, b = torch.randn(size, size), torch.randn(size, size)
    a @ b
    return 2 * size**3 / best_time(lambda: a @ b, repeats) / 1e9


def packed_product_rate(rows: int = 500, inner: int = 800, outer: int = 6460) -> float:
    """Rate of the engine's packed product at the MMoE tower shape (GFLOP/s)."""
    product = DenseProduct(torch.randn(inner, outer), rows)
    x = torch.randn(rows, inner)
    product(x)
    return 2 * rows * inner * outer / best_time(lambda: product(x), 5) / 1e9


# --------------------------------------------------------------------------- NEURON


def neuron_seconds_per_second(cell, layout, duration_ms: int, rate: float, seed: int = 0) -> float:
    """Wall seconds of ``cell.simulate`` per simulated second, with synapses and probes."""
    rng = np.random.default_rng(seed)
    for syntype in ("AMPANMDA", "GABAA"):
        for segment in layout.input_segments:
            synapse = LFPy.Synapse(cell, idx=int(segment), syntype=syntype, weight=1.0)
            synapse.set_spike_times(np.flatnonzero(rng.random(duration_ms) < rate).astype(float))
    contacts = np.linspace(0.0, 1000.0, 4)
    electrode = LFPy.RecExtElectrode(cell, x=np.full(4, 30.0), y=np.zeros(4), z=contacts)
    dipole = LFPy.CurrentDipoleMoment(cell)
    start = time.perf_counter()
    with neuron_solver(DEFAULT_SOLVER):  # the training data's solver; the cell was built with its dt
        cell.simulate(probes=[electrode, dipole], rec_vmem=True, rec_imem=True)
    return (time.perf_counter() - start) / (duration_ms / 1000.0)


# --------------------------------------------------------------------------- engine


ENSEMBLE = "srm-ensemble"
"""Benchmark name of an SRM ensemble shaped like the shipped default (srm.yaml, 3 members)."""


def model_family(name: str) -> str:
    """The model family behind a benchmark name (``srm-ensemble`` is an ``srm``)."""
    return "srm" if name == ENSEMBLE else name


def paper_model(name: str, shape: CellShape) -> torch.nn.Module:
    """A random-weight paper-size model of family ``name`` (or :data:`ENSEMBLE`) for the default cell."""
    torch.manual_seed(0)
    family = model_family(name)
    spike_input = {"spike_threshold_z": 3.0} if family.startswith("srm") else {}
    members = {"members": 3} if name == ENSEMBLE else {}
    return build_model_from_file(CONFIG_DIR / f"{family}.yaml",
                                 in_channels=shape.n_events + shape.n_segments,
                                 n_tasks=shape.n_segments + 1, event_channels=shape.n_events,
                                 **spike_input, **members)


def normalisation(shape: CellShape) -> Normalisation:
    """-70 +- 5 mV on every segment."""
    return Normalisation(np.full(shape.n_segments, -70.0, np.float32),
                         np.full(shape.n_segments, 5.0, np.float32))


def started(stepper_class, model, shape: CellShape, n_cells: int, **kwargs):
    """A stepper reset to a random history of ``n_cells`` cells."""
    stepper = stepper_class(model, normalisation(shape), n_cells, **kwargs)
    generator = torch.Generator().manual_seed(1)
    window = model.config.window
    stepper.reset(-70.0 + 2.0 * torch.randn(n_cells, window, shape.n_segments, generator=generator),
                  (torch.rand(n_cells, window, shape.n_events, generator=generator) < 0.01).float())
    return stepper


def time_steps(stepper, shape: CellShape, n_cells: int, n_steps: int, rate: float,
               repeats: int) -> float:
    """Best wall time (s) of ``n_steps`` steps of ``n_cells`` cells with Poisson events."""
    generator = torch.Generator().manual_seed(2)
    events = torch.rand(n_steps, n_cells, shape.n_events, generator=generator) < rate
    for step in range(min(3, n_steps)):  # warm-up: kernel selection, allocations
        stepper.step(events[step].float())

    def run() -> None:
        for step in range(n_steps):
            stepper.step(events[step].float())

    return best_time(run, repeats)


def full_window_flops(model) -> int:
    """FLOPs per cell of one full-window forward (every convolution over the whole window, dense
    input; the head as the incremental engine evaluates it), for comparison."""
    config, total = model.config, 0
    if isinstance(model, SRM):  # filter bank, projection, MLP, towers
        return 2 * (config.n_filtered * (config.window + config.width)
                    + config.mlp_layers * config.members * config.hidden ** 2 + 2 * config.width * config.n_tasks)
    stacks = [model.tcn] if hasattr(model, "tcn") else [model.experts, model.compressor]
    for stack in stacks:
        for block in stack.effective_weights():
            for weight in (block.conv1_weight, block.conv2_weight, block.residual_weight):
                total += 0 if weight is None else 2 * weight.numel() * config.window
    return total + started(make_stepper, model, CellShape(config.event_channels,
                                                                config.n_tasks - 1), 1).head.flops()


@dataclass
class EngineRun:
    """One timed engine configuration."""

    family: str
    n_cells: int
    n_steps: int
    seconds: float
    flops_per_cell_step: int
    state_mb: float
    peak_rss_mb: float


def measure_engine(family: str, model, shape: CellShape, args) -> list[EngineRun]:
    """Time ``family`` at every cell count; prints the FLOP breakdown per cell-step."""
    breakdown = started(make_stepper, model, shape, 1).flop_breakdown(args.rate)
    print(f"  {family}: MFLOP per cell-step " + ", ".join(
        f"{part} {flops / 1e6:.1f}" for part, flops in breakdown.items())
        + f" (full-window model forward: {full_window_flops(model) / 1e6:.0f})", flush=True)
    runs = []
    for n_cells, n_steps in zip(args.cells, args.steps):
        stepper = started(make_stepper, model, shape, n_cells)
        seconds = time_steps(stepper, shape, n_cells, n_steps, args.rate, args.repeats)
        runs.append(EngineRun(family, n_cells, n_steps, seconds, stepper.flops_per_cell_step(args.rate),
                              stepper.state_bytes() / 1e6, peak_rss_mb()))
        del stepper
    return runs


def report_engine(run: EngineRun, neuron_s: float, matmul: float) -> None:
    """One line: speed, FLOP rate, ratio to NEURON, memory."""
    per_cell_s = run.seconds / (run.n_steps / 1000.0) / run.n_cells  # wall s per cell-second
    gflops = run.flops_per_cell_step * run.n_cells * run.n_steps / run.seconds / 1e9
    print(f"  {run.family:<13}{run.n_cells:>4} cells x {run.n_steps:>4} ms: {run.seconds:7.2f} s"
          f" = {per_cell_s:7.3f} s per cell-second | {run.flops_per_cell_step / 1e6:5.1f} MFLOP/cell-step"
          f" | {gflops:5.1f} GFLOP/s = {gflops / matmul:5.1%} of matmul"
          f" | {neuron_s / per_cell_s:6.1f}x NEURON per cell"
          f" | window state {run.state_mb:5.1f} MB, peak RSS so far {run.peak_rss_mb:5.0f} MB",
          flush=True)


def published_workloads(families, shape: CellShape, rate: float, repeats: int) -> list[dict]:
    """The published inference workloads (:data:`TABLE1_WORKLOADS`) for random-weight paper-size
    models of ``families``: one dict per family and workload with the best wall time of the steps
    (``seconds``), the time to build and reset the stepper (``setup_s``) and the published P100
    time (``published_s``, None where the publication gives none)."""
    rows = []
    for family in families:
        model = paper_model(family, shape)
        for n_cells, n_ms in TABLE1_WORKLOADS:
            start = time.perf_counter()
            stepper = started(make_stepper, model, shape, n_cells)
            setup = time.perf_counter() - start
            rows.append({"family": family, "cells": n_cells, "ms": n_ms, "setup_s": setup,
                         "seconds": time_steps(stepper, shape, n_cells, n_ms, rate, repeats),
                         "published_s": PUBLISHED_P100_S.get((family, n_cells, n_ms))})
            del stepper
    return rows


def report_published(shape: CellShape, args) -> None:
    """The published workloads for every family; building and reset excluded (printed separately)."""
    for row in published_workloads(args.families, shape, args.rate, args.repeats):
        published = row["published_s"]
        line = (f"  {row['family']:<13}{row['cells']:>5} cells x {row['ms']:>3} ms: {row['seconds']:8.3f} s "
                f"(+ {row['setup_s']:.2f} s to build and reset)")
        if published is not None:
            line += f"; published {published} s on a P100 ({published / row['seconds']:.1f}x)"
        if (row["family"], row["cells"], row["ms"]) == ("mmoe", 100, 100):
            line += f"; goal < {MMOE_GOAL_S:g} s {'met' if row['seconds'] < MMOE_GOAL_S else 'MISSED'}"
        print(line, flush=True)


def report_reference_stepper(shape: CellShape, args) -> None:
    """Full-window recompute against the incremental engine (20 steps, 1 and 10 cells)."""
    for family in args.families:
        model = paper_model(family, shape)
        for n_cells in (1, 10):
            timings = {}
            for stepper_class in (FullWindowStepper, make_stepper):
                stepper = started(stepper_class, model, shape, n_cells)
                timings[stepper_class] = time_steps(stepper, shape, n_cells, 20, args.rate, 1) / 20
            full, incremental = timings[FullWindowStepper], timings[make_stepper]
            print(f"  {family:<13}{n_cells:>4} cells: full-window {full * 1e3:8.1f} ms/step, "
                  f"incremental {incremental * 1e3:7.1f} ms/step ({full / incremental:5.1f}x)", flush=True)


def report_mixing_order(shape: CellShape, args) -> None:
    """MMoE towers: per-expert product (default) against mixing the experts first."""
    model = paper_model("mmoe", shape)
    for n_cells in args.cells:
        n_steps = 30 if n_cells < 100 else 10
        per_step = {}
        for mix_first in (False, True):
            stepper = started(make_stepper, model, shape, n_cells, mix_first=mix_first)
            per_step[mix_first] = time_steps(stepper, shape, n_cells, n_steps, args.rate,
                                             args.repeats) / n_steps
        print(f"  MMoE {n_cells:>4} cells: per-expert {per_step[False] * 1e3:7.1f} ms/step, "
              f"mix first {per_step[True] * 1e3:7.1f} ms/step", flush=True)


def report_low_rank_towers(shape: CellShape, n_cells: int = 100, rank: int = 64) -> None:
    """First tower layer at ``n_cells`` cells: full per-task weights vs a shared rank-``rank`` factor.

    ``W_t`` (features x hidden) becomes ``U V_t`` with one ``U`` (features x rank) for all
    towers: a different (retrained) model, so only the cost is measured here.
    """
    features, n_tasks = 800, shape.n_segments + 1
    for family, hidden, rows in (("MH", 25, n_cells), ("MMoE", 10, 5 * n_cells)):
        x = torch.randn(rows, features)
        full = DenseProduct(torch.randn(features, n_tasks * hidden), rows)
        shared = DenseProduct(torch.randn(features, rank), rows)
        per_task = DenseProduct(torch.randn(rank, n_tasks * hidden), rows)
        full(x), per_task(shared(x))
        full_s = best_time(lambda full=full, x=x: full(x), 5)
        low_rank_s = best_time(lambda per_task=per_task, shared=shared, x=x: per_task(shared(x)), 5)
        print(f"  {family:<5}{n_cells} cells: full {full_s * 1e3:6.1f} ms, rank {rank} shared "
              f"first layer {low_rank_s * 1e3:6.1f} ms ({full_s / low_rank_s:4.1f}x); "
              f"MFLOP/cell {2 * rows // n_cells * features * n_tasks * hidden / 1e6:.1f} -> "
              f"{2 * rows // n_cells * rank * (features + n_tasks * hidden) / 1e6:.1f}", flush=True)


# --------------------------------------------------------------------------- main


def main() -> None:
    """Run every measurement and print the table."""
    args = parse_args()
    if len(args.steps) != len(args.cells):
        raise SystemExit("--steps needs one value per --cells value")
    torch.set_num_threads(args.threads)
    print(f"{os.cpu_count()} cores, {args.threads} torch threads "
          f"(OMP_WAIT_POLICY={os.environ['OMP_WAIT_POLICY']}), load average "
          f"{os.getloadavg()[0]:.2f}; event rate {args.rate} per synapse per ms", flush=True)

    cell = l5pc(tstop=float(args.neuron_ms), dt=DEFAULT_SOLVER.dt)
    layout = cell_layout(cell, SYNAPSE_SECTION_TYPES)
    shape = CellShape(2 * layout.input_segments.size, layout.n_segments)
    print(f"default cell: {shape.n_segments} segments, {shape.n_events} event channels "
          f"({shape.n_events} synapses)", flush=True)

    matmul = matmul_rate()
    print(f"torch float32 matmul (4096^2): {matmul:.1f} GFLOP/s; engine's packed product at the "
          f"MMoE tower shape: {packed_product_rate():.1f} GFLOP/s", flush=True)

    print(f"Incremental engine, before NEURON so that peak RSS is the engine's "
          f"(start: {peak_rss_mb():.0f} MB):", flush=True)
    runs = [run for family in args.families
            for run in measure_engine(family, paper_model(family, shape), shape, args)]

    neuron_s = neuron_seconds_per_second(cell, layout, args.neuron_ms, args.rate)
    del cell
    print(f"NEURON (LFPy, {DEFAULT_SOLVER.description}, vmem + imem + electrode + dipole), "
          f"1 cell x {args.neuron_ms} ms: "
          f"{neuron_s:.1f} s per simulated second", flush=True)

    print("Incremental engine (times scaled to 1 simulated second per cell):")
    for run in runs:
        report_engine(run, neuron_s, matmul)
    print("Published inference workloads:")
    report_published(shape, args)
    print("Full-window reference stepper vs incremental (20 steps):")
    report_reference_stepper(shape, args)
    print("MMoE tower evaluation order:")
    report_mixing_order(shape, args)
    print("Going further, low-rank shared first tower layer (timing only):")
    report_low_rank_towers(shape)
    print(f"peak RSS {peak_rss_mb():.0f} MB (NEURON's recordings included); load average after "
          f"{os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
