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
"""

from __future__ import annotations

import argparse
import os
import resource
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

from surrogate_cell.data.generate import generate
from surrogate_cell.data.simulation import CellSimulator, SimulationConfig
from surrogate_cell.data.store import open_data_set


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
    parser.add_argument("--n-sims", type=int, default=4, help="simulations per measurement")
    parser.add_argument("--duration-ms", type=int, default=500, help="recorded ms per simulation")
    parser.add_argument("--warmup-ms", type=int, default=200, help="warm-up ms per simulation")
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 2], help="worker counts to time")
    parser.add_argument("--morphology", help="morphology file (default: built-in cell)")
    parser.add_argument("--seed", type=int, default=1)
    return parser.parse_args()


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


def main() -> None:
    """Run the measurements and print a small table."""
    args = parse_args()
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


if __name__ == "__main__":
    main()
