"""Throughput of the training-data generator against raw NEURON.

Prints simulated seconds (warm-up included) per wall-clock second, per worker, for

* raw NEURON: the same cell, synapses and input events, without any recording or storage
  (only ``finitialize``, queueing the events and ``continuerun`` are timed);
* the generator with 1 worker (in-process) and with 2 spawned workers, end to end
  (cell building, input drawing, recording, HDF5 writing, worker start-up);

and the generator's overhead relative to raw NEURON. Goal: <= 30 % with 1 worker and
near-linear scaling to 2 workers. On a busy machine wall-clock rates are noisy, so the
same rates per CPU second (this process plus its workers) are printed as well: they show
the overhead without the other jobs' share of the cores. Short runs are dominated by the
workers' start-up (about 3 s each: imports and cell building), so the "steady" column
gives each worker's rate inside its simulations (from the stored ``wall_time_s``).

    .venv/bin/python benchmarks/bench_simulate.py --n-sims 4 --duration-ms 500

Solver accuracy and cost (``--solvers``; issue #26 point 4; default ``--duration-ms`` 1000):
each of a few held-out inputs (the published regime, high drive, a ``mixture`` stimulus of
the volleys family; ``--seeds`` draws per input from ``--solver-seed``, warm-up included) is
run, the same input for every solver, with

* (a) backward Euler, dt 0.025 ms, NEURON's own loop: the project's old path;
* (b) Crank-Nicolson, dt 0.025 ms, NEURON's own loop;
* (c) Crank-Nicolson, dt 0.025 ms, CoreNEURON: the generator's path (skipped, with a note,
  where this NEURON has no CoreNEURON);
* (ref) the converged reference: Crank-Nicolson at dt 0.005 ms in NEURON's own loop;

each through :class:`~surrogate_cell.data.simulation.CellSimulator` (one per dt and engine,
closed before the next is built) with the generator's recordings (every segment at whole ms,
here the soma at every step). Per input and solver it prints the CPU seconds per simulated
second (``time.process_time`` of ``simulate_inputs`` only, warm-up included in the simulated
time; cell building excluded; collecting the recordings adds a few ms), the somatic spikes
of the recorded window (upward crossings of ``SPIKE_THRESHOLD_MV`` at the solver's own step,
``REFRACTORY_MS``), the largest and mean |spike time difference| to the reference (spikes
matched one to one within 2 ms; unmatched ones shown as +extra/-missed), the soma voltage
RMSE and the RMSE over all segments against the reference on the common 1 ms grid, whether
(c) equals (b) bit for bit, and whether the goal holds: every spike within 0.2 ms of the
reference (none unmatched) at <= 4.5 CPU s per simulated second on every input. CPU times
depend on the machine's load (printed): other jobs sharing the cores inflate them.
``--no-recording-cost`` adds the cost of (b) and (c) without any recordings (``run_inputs`` on
a simulator built with ``record=False``): what the integration alone takes.

    .venv/bin/python benchmarks/bench_simulate.py --solvers --duration-ms 1000 --json solvers.json
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from tqdm import tqdm

from surrogate_cell.cells.solver import BACKWARD_EULER_SOLVER, DEFAULT_SOLVER, NeuronSolver
from surrogate_cell.data.generate import generate
from surrogate_cell.data.simulation import CellSimulator, SimulationConfig, simulation_rng
from surrogate_cell.data.stimulus import MixtureInputConfig, draw_stimulus
from surrogate_cell.data.store import open_data_set
from surrogate_cell.spikes import REFRACTORY_MS, SPIKE_THRESHOLD_MV, upward_crossing_times


@dataclass
class Timing:
    """Simulated seconds and the wall-clock and CPU seconds they took."""

    simulated_s: float = 0.0
    wall_s: float = 0.0
    cpu_s: float = 0.0
    in_simulation_s: float = 0.0

    def per_wall_s(self) -> float:
        """Simulated seconds per wall-clock second."""
        return self.simulated_s / self.wall_s

    def per_cpu_s(self) -> float:
        """Simulated seconds per CPU second."""
        return self.simulated_s / self.cpu_s

    def steady_per_worker(self) -> float:
        """Simulated seconds per wall second spent inside simulations, for one worker."""
        return self.simulated_s / self.in_simulation_s


def cpu_seconds() -> float:
    """CPU time of this process and of its finished (reaped) child processes."""
    own = resource.getrusage(resource.RUSAGE_SELF)
    children = resource.getrusage(resource.RUSAGE_CHILDREN)
    return own.ru_utime + own.ru_stime + children.ru_utime + children.ru_stime


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--solvers", action="store_true",
                        help="measure the solvers' accuracy and cost instead of the generator's throughput")
    parser.add_argument("--n-sims", type=int, default=4, help="simulations per measurement")
    parser.add_argument("--duration-ms", type=int,
                        help="recorded ms per simulation (default 500, with --solvers 1000)")
    parser.add_argument("--warmup-ms", type=int, default=200, help="warm-up ms per simulation")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time")
    parser.add_argument("--morphology", help="morphology file (default: built-in cell)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--solver-seed", type=int, default=2626,
                        help="--solvers: base seed of the held-out inputs")
    parser.add_argument("--seeds", type=int, default=1, help="--solvers: inputs drawn per input kind")
    parser.add_argument("--no-recording-cost", action="store_true",
                        help="--solvers: also time (b) and (c) without any recordings (cost only)")
    parser.add_argument("--json", type=Path, help="--solvers: write the measurements to this JSON file")
    args = parser.parse_args()
    if args.duration_ms is None:
        args.duration_ms = 1000 if args.solvers else 500
    return args


def time_raw_neuron(config: SimulationConfig, args: argparse.Namespace) -> Timing:
    """NEURON alone on the generator's cell, synapses and events (no recording, no storage)."""
    timing = Timing()
    with CellSimulator(config, args.morphology, record=False) as simulator:
        for index in range(args.n_sims):
            inputs = simulator.draw_inputs(args.seed, index, args.duration_ms)
            wall, cpu = time.perf_counter(), cpu_seconds()
            simulator.run_inputs(inputs)
            timing.wall_s += time.perf_counter() - wall
            timing.cpu_s += cpu_seconds() - cpu
            timing.simulated_s += inputs.n_ms / 1000.0
    return timing


def time_generator(config: SimulationConfig, args: argparse.Namespace, workers: int,
                   folder: Path) -> Timing:
    """``generate`` with ``workers`` workers, end to end."""
    path = folder / f"bench_{workers}.h5"
    wall, cpu = time.perf_counter(), cpu_seconds()
    generate(path, args.n_sims, args.duration_ms, morphology=args.morphology, workers=workers,
             seed=args.seed, config=config, overwrite=True, progress=False)
    wall, cpu = time.perf_counter() - wall, cpu_seconds() - cpu
    data = open_data_set(path)
    in_simulation_s = sum(data.load_simulation(i).attrs["wall_time_s"] for i in data.simulation_indices())
    simulated_s = args.n_sims * (config.warmup_ms + args.duration_ms) / 1000.0
    return Timing(simulated_s, wall, cpu, in_simulation_s)


def report(label: str, timing: Timing, workers: int, raw: Timing | None, single: Timing | None) -> None:
    """Print one line of the table."""
    per_worker = timing.per_wall_s() / workers
    line = f"{label:<26}{per_worker:8.4f} sim-s/s per worker (wall)   {timing.per_cpu_s():8.4f} sim-s/CPU-s"
    if raw is not None:
        line += (f"   overhead vs raw: {1 - per_worker / raw.per_wall_s():+6.1%} wall, "
                 f"{1 - timing.per_cpu_s() / raw.per_cpu_s():+6.1%} CPU")
    if timing.in_simulation_s:
        line += f"   steady {timing.steady_per_worker():.4f} sim-s/s per worker"
    if single is not None and workers > 1:
        line += (f"   scaling vs 1 worker: {timing.per_wall_s() / single.per_wall_s():.2f}x end to end, "
                 f"{workers * timing.steady_per_worker() / single.steady_per_worker():.2f}x steady")
    print(line, flush=True)


def throughput(args: argparse.Namespace) -> None:
    """The generator's throughput against raw NEURON: a small table."""
    config = SimulationConfig(warmup_ms=args.warmup_ms)
    print(f"{args.n_sims} simulations of {args.warmup_ms} + {args.duration_ms} ms per measurement, "
          f"{os.cpu_count()} cores, load average before: {os.getloadavg()[0]:.2f}", flush=True)
    raw = time_raw_neuron(config, args)
    report("raw NEURON", raw, 1, None, None)
    single = None
    with tempfile.TemporaryDirectory() as folder:
        for workers in args.workers:
            timing = time_generator(config, args, workers, Path(folder))
            single = timing if workers == 1 else single
            report(f"generator, {workers} worker(s)", timing, workers, raw, single)
    print(f"load average after: {os.getloadavg()[0]:.2f}")


# --------------------------------------------------------------------------- solver accuracy and cost


REFERENCE_SOLVER = NeuronSolver(dt=0.005, secondorder=2)
"""The converged reference: Crank-Nicolson at dt 0.005 ms (agrees with CVode at atol 1e-6 within
0.004 ms, see :mod:`surrogate_cell.cells.solver`)."""

MATCH_TOLERANCE_MS = 2.0
GOAL_SPIKE_MS = 0.2
GOAL_CPU_PER_SIMULATED_S = 4.5


@dataclass(frozen=True)
class SolverRun:
    """One way of running NEURON: a key, its description, the solver and the engine."""

    key: str
    label: str
    solver: NeuronSolver
    engine: str
    record: bool = True


SOLVER_RUNS = (
    SolverRun("ref", "reference: Crank-Nicolson dt 0.005, NEURON loop", REFERENCE_SOLVER, "neuron"),
    SolverRun("a", "old path: backward Euler dt 0.025, NEURON loop", BACKWARD_EULER_SOLVER, "neuron"),
    SolverRun("b", "Crank-Nicolson dt 0.025, NEURON loop", DEFAULT_SOLVER, "neuron"),
    SolverRun("c", "generator: Crank-Nicolson dt 0.025, CoreNEURON", DEFAULT_SOLVER, "coreneuron"),
)
"""In the order they run: the reference first, CoreNEURON last."""

NO_RECORDING_RUNS = (
    SolverRun("b0", "(b) without recordings: cost only", DEFAULT_SOLVER, "neuron", record=False),
    SolverRun("c0", "(c) without recordings: cost only", DEFAULT_SOLVER, "coreneuron", record=False),
)
"""``--no-recording-cost``: the integration alone (``run_inputs`` on a simulator without recorders)."""

GENERATOR_RUN = "c"

INPUT_KINDS = {
    "published": {"regime": "published"},
    "high drive": {"regime": "published", "exc_per_100ms_range": [300, 1200]},
    "mixture volleys": {"regime": "mixture", "family": "volleys"},
}
"""Held-out inputs: the published regime, high drive and the mixture's volleys family."""


@dataclass
class SolverResult:
    """What one run of one input with one solver gave: cost, soma trace and 1 ms voltages."""

    cpu_s: float
    wall_s: float
    simulated_s: float
    spike_times: np.ndarray
    soma_ms: np.ndarray
    vmem: np.ndarray
    soma_v: np.ndarray


def draw_held_out_inputs(simulator: CellSimulator, args: argparse.Namespace) -> dict:
    """``{(kind, seed index): input}`` of warm-up + duration, drawn on ``simulator``'s cell."""
    inputs, total_ms = {}, simulator.config.warmup_ms + args.duration_ms
    base_config = simulator.config
    for number, (kind, spec) in enumerate(INPUT_KINDS.items()):
        for index in range(args.seeds):
            if spec["regime"] == "mixture":
                rng = simulation_rng(args.solver_seed + number, index)
                inputs[kind, index] = draw_stimulus(MixtureInputConfig(), simulator.input_geometry(), total_ms,
                                                    rng, family=spec["family"])
            else:
                simulator.config = dataclasses.replace(base_config, inputs=spec)
                inputs[kind, index] = simulator.draw_inputs(args.solver_seed + number, index, args.duration_ms)
    simulator.config = base_config
    return inputs


def run_solver(simulator: CellSimulator, run: SolverRun, inputs, duration_ms: int) -> SolverResult:
    """Run ``inputs`` with ``run``'s solver on ``simulator`` (built for its dt and engine)."""
    simulator.config = dataclasses.replace(simulator.config, secondorder=run.solver.secondorder)
    if not run.record:
        cpu, wall = time.process_time(), time.perf_counter()
        simulator.run_inputs(inputs)
        cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
        return SolverResult(cpu_s=cpu, wall_s=wall, simulated_s=inputs.n_ms / 1000.0, spike_times=None,
                            soma_ms=None, vmem=None, soma_v=None)
    cpu, wall = time.process_time(), time.perf_counter()
    result = simulator.simulate_inputs(inputs, duration_ms)
    cpu, wall = time.process_time() - cpu, time.perf_counter() - wall
    soma_v = result.soma_v.astype(np.float64)  # every step of the recorded window
    steps = run.solver.steps_per_ms
    return SolverResult(
        cpu_s=cpu, wall_s=wall, simulated_s=inputs.n_ms / 1000.0,
        spike_times=upward_crossing_times(soma_v, run.solver.dt, SPIKE_THRESHOLD_MV, REFRACTORY_MS),
        soma_ms=soma_v[::steps][:duration_ms], vmem=result.vmem.astype(np.float64), soma_v=result.soma_v)


def match_spike_pairs(reference: np.ndarray, times: np.ndarray,
                      tolerance: float = MATCH_TOLERANCE_MS) -> tuple[np.ndarray, int, int]:
    """|time differences| of spikes matched one to one within ``tolerance`` ms (each reference spike in
    time order takes the nearest unused one), the number of extra and of missed spikes."""
    used, differences = np.zeros(len(times), dtype=bool), []
    for time_ms in reference:
        candidates = np.flatnonzero(~used & (np.abs(times - time_ms) <= tolerance))
        if candidates.size:
            best = candidates[np.argmin(np.abs(times[candidates] - time_ms))]
            used[best] = True
            differences.append(abs(times[best] - time_ms))
    differences = np.array(differences)
    return differences, int((~used).sum()), int(len(reference) - differences.size)


def compare(run: SolverRun, result: SolverResult, reference: SolverResult) -> dict:
    """One row of the table: cost and accuracy of ``result`` against ``reference``."""
    cpu_per_s = result.cpu_s / result.simulated_s
    if not run.record:
        return {"solver": run.key, "description": run.label, "engine": run.engine, **run.solver.to_dict(),
                "cpu_s": result.cpu_s, "wall_s": result.wall_s, "simulated_s": result.simulated_s,
                "cpu_s_per_simulated_s": cpu_per_s, "cost_within_goal": bool(cpu_per_s <= GOAL_CPU_PER_SIMULATED_S)}
    differences, extra, missed = match_spike_pairs(reference.spike_times, result.spike_times)
    spikes_ok = extra == 0 and missed == 0 and (differences.size == 0 or differences.max() <= GOAL_SPIKE_MS)
    return {
        "solver": run.key, "description": run.label, "engine": run.engine, **run.solver.to_dict(),
        "cpu_s": result.cpu_s, "wall_s": result.wall_s, "simulated_s": result.simulated_s,
        "cpu_s_per_simulated_s": cpu_per_s, "n_spikes": int(result.spike_times.size),
        "n_matched": int(differences.size), "n_extra": extra, "n_missed": missed,
        "max_abs_dt_ms": float(differences.max()) if differences.size else None,
        "mean_abs_dt_ms": float(differences.mean()) if differences.size else None,
        "soma_rmse_mv": float(np.sqrt(np.mean((result.soma_ms - reference.soma_ms) ** 2))),
        "vmem_rmse_mv": float(np.sqrt(np.mean((result.vmem - reference.vmem) ** 2))),
        "spikes_within_goal": bool(spikes_ok),
        "cost_within_goal": bool(cpu_per_s <= GOAL_CPU_PER_SIMULATED_S),
        "spike_times_ms": result.spike_times.tolist(),
    }


def coreneuron_note() -> str | None:
    """None where CoreNEURON can run here, else why not."""
    from surrogate_cell.mechanisms import MechanismError, coreneuron_library

    try:
        coreneuron_library()
    except (MechanismError, ImportError) as error:
        return f"(c) skipped: no CoreNEURON here ({error})"
    return None


def print_row(kind: str, row: dict) -> None:
    """One line of the solver table."""
    def ms(value):
        return f"{value:8.3f}" if value is not None else "       -"
    if "n_spikes" not in row:
        cost = "within" if row["cost_within_goal"] else "above"
        print(f"{kind:<16}{row['solver']:<4}{row['description']:<48}{row['cpu_s_per_simulated_s']:8.2f}"
              f"{'-':>7}{'-':>8}{'-':>8}{'-':>9}{'-':>9}{'-':>9}   (cost {cost} goal)", flush=True)
        return
    unmatched = f"+{row['n_extra']}/-{row['n_missed']}"
    goal = "-" if row["solver"] == "ref" else (
        "yes" if row["spikes_within_goal"] and row["cost_within_goal"]
        else "no: " + " and ".join(name for name, ok in (("spikes", row["spikes_within_goal"]),
                                                          ("cost", row["cost_within_goal"])) if not ok))
    print(f"{kind:<16}{row['solver']:<4}{row['description']:<48}{row['cpu_s_per_simulated_s']:8.2f}"
          f"{row['n_spikes']:7d}{ms(row['max_abs_dt_ms'])}{ms(row['mean_abs_dt_ms'])}{unmatched:>9}"
          f"{row['soma_rmse_mv']:9.3f}{row['vmem_rmse_mv']:9.3f}   {goal}", flush=True)


def solvers(args: argparse.Namespace) -> None:
    """Accuracy and cost of the old, the present and the generator's solver against a converged reference."""
    load_before = os.getloadavg()
    print(f"Solver accuracy and cost: {len(INPUT_KINDS)} inputs x {args.seeds} seed(s) of {args.warmup_ms} + "
          f"{args.duration_ms} ms, {os.cpu_count()} cores, load average (1, 5, 15 min) before: "
          + ", ".join(f"{value:.2f}" for value in load_before), flush=True)
    print("CPU s per simulated s are process_time of the run only (warm-up included); other jobs on the "
          "cores inflate them relative to an idle machine.", flush=True)
    notes = []
    note = coreneuron_note()
    runs = [run for run in SOLVER_RUNS + (NO_RECORDING_RUNS if args.no_recording_cost else ())
            if not (note and run.engine == "coreneuron")]
    if note:
        notes.append(note)
        print(note, flush=True)
    groups: dict[tuple[float, str, bool], list[SolverRun]] = {}
    for run in runs:
        groups.setdefault((run.solver.dt, run.engine, run.record), []).append(run)
    inputs, results = None, {}
    progress = tqdm(total=len(runs) * len(INPUT_KINDS) * args.seeds, desc="solver runs", unit="run")
    for (dt, engine, record), group in groups.items():
        steps = round(1.0 / dt)
        config = SimulationConfig(dt=dt, secondorder=group[0].solver.secondorder, warmup_ms=args.warmup_ms,
                                  soma_samples_per_ms=steps)
        with CellSimulator(config, args.morphology, record=record, engine=engine) as simulator:
            if inputs is None:
                inputs = draw_held_out_inputs(simulator, args)
            for run in group:
                for key, stimulus in inputs.items():
                    progress.set_postfix_str(f"{run.key} {key[0]}")
                    results[run.key, key] = run_solver(simulator, run, stimulus, args.duration_ms)
                    progress.update()
    progress.close()

    print(f"\n{'input':<16}{'':<4}{'solver':<48}{'CPU s/s':>8}{'spikes':>7}{'max|dt|':>8}{'mean|dt|':>8}"
          f"{'unmatch':>9}{'soma RMSE':>9}{'all RMSE':>9}   goal")
    print(f"{'':<68}{'':>8}{'':>7}{'ms':>8}{'ms':>8}{'+x/-m':>9}{'mV':>9}{'mV':>9}")
    rows = []
    for key in inputs:
        kind = key[0] if args.seeds == 1 else f"{key[0]} #{key[1]}"
        reference = results["ref", key]
        for run in runs:
            row = {"input": key[0], "seed_index": key[1], **compare(run, results[run.key, key], reference)}
            if run.key == "c" and ("b", key) in results:
                row["equals_b_bitwise"] = bool(np.array_equal(results["c", key].soma_v, results["b", key].soma_v)
                                               and np.array_equal(results["c", key].vmem, results["b", key].vmem))
            rows.append(row)
            print_row(kind, row)

    print("\nCPU s per simulated s, mean over inputs: " + ", ".join(
        f"({run.key}) {np.mean([r['cpu_s_per_simulated_s'] for r in rows if r['solver'] == run.key]):.2f}"
        for run in runs))
    equal = [r["equals_b_bitwise"] for r in rows if "equals_b_bitwise" in r]
    if equal:
        print(f"(c) CoreNEURON equals (b) NEURON bit for bit (soma every step, all segments at 1 ms, float32): "
              f"{'yes' if all(equal) else 'NO'} on {sum(equal)}/{len(equal)} inputs")
    goal_key = GENERATOR_RUN if not note else "b"
    goal_rows = [r for r in rows if r["solver"] == goal_key]
    holds = all(r["spikes_within_goal"] and r["cost_within_goal"] for r in goal_rows)
    worst = max((r["max_abs_dt_ms"] or 0.0) for r in goal_rows)
    print(f"Goal (every spike within {GOAL_SPIKE_MS} ms of the reference, none unmatched, "
          f"<= {GOAL_CPU_PER_SIMULATED_S} CPU s per simulated s on every input) for the generator's path "
          f"({goal_key}{', NEURON loop: no CoreNEURON' if note else ''}): {'HOLDS' if holds else 'DOES NOT HOLD'} "
          f"(worst spike {worst:.3f} ms, worst cost "
          f"{max(r['cpu_s_per_simulated_s'] for r in goal_rows):.2f} CPU s/s)")
    load_after = os.getloadavg()
    print("load average after: " + ", ".join(f"{value:.2f}" for value in load_after))
    if args.json:
        summary = {
            "reference": REFERENCE_SOLVER.description, "match_tolerance_ms": MATCH_TOLERANCE_MS,
            "goal": {"spike_ms": GOAL_SPIKE_MS, "cpu_s_per_simulated_s": GOAL_CPU_PER_SIMULATED_S,
                     "solver": goal_key, "holds": holds},
            "warmup_ms": args.warmup_ms, "duration_ms": args.duration_ms, "solver_seed": args.solver_seed,
            "seeds": args.seeds, "inputs": INPUT_KINDS, "cpu_count": os.cpu_count(),
            "load_average_before": load_before, "load_average_after": load_after, "notes": notes, "rows": rows,
        }
        args.json.write_text(json.dumps(summary, indent=2))
        print(f"wrote {args.json}")


def main() -> None:
    """Run the chosen measurements."""
    args = parse_args()
    if args.solvers:
        solvers(args)
    else:
        throughput(args)


if __name__ == "__main__":
    main()
