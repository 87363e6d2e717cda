"""Recurrent surrogate networks on this machine: wall time, ratio to NEURON, memory, scaling.

For every size in ``--sizes`` a fresh process (so that its peak memory is its own) builds the
standard recurrent network (:mod:`surrogate_cell.network.standard`: 20 % inhibitory cells,
``--in-degree`` connections per cell of ``--synapses-per-connection`` synapses, delays
1.5 +- 0.5 ms, Poisson drive on every synapse at the project's Poisson rates, an electrode
column and the current dipole) and simulates ``--duration-ms``. Printed per size: setup time
(templates, connectivity, probe matrices), run time, spikes, per-cell speed against one NEURON
cell (``l5pc()`` with one AMPANMDA + one GABAA synapse per dendritic segment at a similar
input rate, timed here, or ``--neuron-seconds-per-second``), the network's state and the
process's peak RSS; then how the run time grows with the size.

Without ``--model`` the cells use a random-weight paper-size model of ``--family`` (same cost
as a trained one; its voltages are meaningless and it hardly spikes). ``--nproc N`` runs each
size under ``torchrun --nproc_per_node N``.

    .venv/bin/python benchmarks/bench_network.py                       # quick: 20 and 100 cells x 100 ms
    .venv/bin/python benchmarks/bench_network.py --sizes 100 1000 5000 --duration-ms 1000
    .venv/bin/python benchmarks/bench_network.py --sizes 10 --duration-ms 20 --neuron-seconds-per-second 10
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # see bench_engine.py; before torch starts OpenMP

import argparse  # noqa: E402
import json  # noqa: E402
import subprocess  # noqa: E402
import sys  # noqa: E402
import tempfile  # noqa: E402
import time  # noqa: E402
from pathlib import Path  # noqa: E402

import torch  # noqa: E402
import torch.distributed as dist  # noqa: E402
from bench_engine import (  # noqa: E402
    ENSEMBLE,
    CellShape,
    model_family,
    neuron_seconds_per_second,
    normalisation,
    paper_model,
    peak_rss_mb,
)

from surrogate_cell.cells import l5pc  # noqa: E402
from surrogate_cell.cells.layout import SYNAPSE_SECTION_TYPES, cell_layout  # noqa: E402
from surrogate_cell.cells.solver import DEFAULT_SOLVER  # noqa: E402
from surrogate_cell.checkpoint import cell_meta_from_layout, model_meta, save_checkpoint  # noqa: E402
from surrogate_cell.data.inputs import PoissonInputConfig  # noqa: E402
from surrogate_cell.network import init_from_environment  # noqa: E402
from surrogate_cell.network.standard import (  # noqa: E402
    RecurrentNetworkConfig,
    build_recurrent_network,
)

RESULT_PREFIX = "RESULT "


def parse_args(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="+", default=[20, 100], help="cells per network")
    parser.add_argument("--duration-ms", type=int, default=100, help="simulated time per network")
    parser.add_argument("--model", help="checkpoint (default: a random-weight paper-size --family model)")
    parser.add_argument("--family", default="mh", choices=("mh", "mmoe", "srm", ENSEMBLE))
    parser.add_argument("--in-degree", type=float, default=100.0, help="expected connections onto a cell")
    parser.add_argument("--synapses-per-connection", type=int, default=2)
    parser.add_argument("--threads", type=int, default=2, help="torch threads per process")
    parser.add_argument("--nproc", type=int, default=1, help="processes per network (torchrun)")
    parser.add_argument("--neuron-ms", type=int, default=200, help="simulated ms of the NEURON timing")
    parser.add_argument("--neuron-seconds-per-second", type=float,
                        help="NEURON wall seconds per simulated second of one cell (skips timing it)")
    parser.add_argument("--child", action="store_true", help=argparse.SUPPRESS)
    parser.add_argument("--n-cells", type=int, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


# --------------------------------------------------------------------------- one size (child process)


def random_paper_checkpoint(family: str, path: Path) -> Path:
    """A checkpoint of a random-weight paper-size ``family`` model for the default cell."""
    layout = cell_layout(l5pc(), SYNAPSE_SECTION_TYPES)
    shape = CellShape(2 * layout.input_segments.size, layout.n_segments)
    model = paper_model(family, shape)
    meta = {**model_meta(model, model_family(family)), "cell": cell_meta_from_layout(layout), "data": {},
            "training": {"untrained": True}}
    save_checkpoint(path, model, meta, normalisation(shape))
    return path


def network_config(n_cells: int, args: argparse.Namespace) -> RecurrentNetworkConfig:
    """The standard network at ``n_cells`` with ``--in-degree`` expected connections per cell."""
    drive = PoissonInputConfig()
    return RecurrentNetworkConfig(n_cells=n_cells, connection_probability=min(1.0, args.in_degree / n_cells),
                                  synapses_per_connection=args.synapses_per_connection,
                                  exc_rate_hz=drive.exc_rate_hz, inh_rate_hz=drive.inh_rate_hz, n_contacts=16)


def run_one_size(args: argparse.Namespace) -> None:
    """Build and time one network; rank 0 prints one JSON result line."""
    shard = init_from_environment()
    torch.set_num_threads(args.threads)
    started = time.perf_counter()
    network = build_recurrent_network(args.model, network_config(args.n_cells, args), seed=1, device="cpu")
    network.simulate(1)  # builds connectivity, batches and probe matrices
    setup_s = time.perf_counter() - started
    started = time.perf_counter()
    result = network.simulate(args.duration_ms, keep_in_memory=False)
    run_s = time.perf_counter() - started
    numbers = torch.tensor([run_s, setup_s, peak_rss_mb(), network.state_bytes() / 1e6,
                            float(len(network.connectivity()))], dtype=torch.float64)
    if shard.is_distributed:
        slowest = numbers[:2].clone()
        dist.all_reduce(slowest, op=dist.ReduceOp.MAX)
        dist.all_reduce(numbers, op=dist.ReduceOp.SUM)
        numbers[:2] = slowest
    if shard.rank == 0:
        print(RESULT_PREFIX + json.dumps({
            "n_cells": args.n_cells, "processes": shard.world_size, "run_s": numbers[0].item(),
            "setup_s": numbers[1].item(), "peak_rss_mb": numbers[2].item(), "state_mb": numbers[3].item(),
            "synapses": int(numbers[4].item()), "spikes": int(result.spike_gids.size),
            "rate_hz": result.population_rate_hz()}), flush=True)


# --------------------------------------------------------------------------- all sizes (parent)


def measure_size(n_cells: int, model: str, args: argparse.Namespace) -> dict:
    """Run one size in a fresh process (under torchrun with ``--nproc`` > 1) and read its result."""
    launcher = [sys.executable] if args.nproc == 1 else [
        sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={args.nproc}"]
    command = [*launcher, __file__, "--child", "--n-cells", str(n_cells), "--model", model,
               "--duration-ms", str(args.duration_ms), "--in-degree", str(args.in_degree),
               "--synapses-per-connection", str(args.synapses_per_connection), "--threads", str(args.threads)]
    completed = subprocess.run(command, capture_output=True, text=True)
    lines = [line for line in completed.stdout.splitlines() if line.startswith(RESULT_PREFIX)]
    if completed.returncode or not lines:
        raise SystemExit(f"{n_cells} cells failed:\n{completed.stdout[-3000:]}\n{completed.stderr[-3000:]}")
    return json.loads(lines[0][len(RESULT_PREFIX):])


def neuron_reference_seconds(args: argparse.Namespace) -> float:
    """NEURON wall seconds per simulated second of one default cell with similar input."""
    if args.neuron_seconds_per_second is not None:
        return args.neuron_seconds_per_second
    cell = l5pc(tstop=float(args.neuron_ms), dt=DEFAULT_SOLVER.dt)  # run inside neuron_solver(DEFAULT_SOLVER)
    layout = cell_layout(cell, SYNAPSE_SECTION_TYPES)
    rate_per_ms = PoissonInputConfig().exc_rate_hz / 1000.0
    return neuron_seconds_per_second(cell, layout, args.neuron_ms, rate_per_ms)


def report(rows: list[dict], neuron_s: float, duration_ms: int) -> None:
    """The table and the scaling between consecutive sizes."""
    print(f"{'cells':>6} {'procs':>5} {'synapses':>9} {'setup s':>8} {'run s':>8} {'s/cell-s':>9} "
          f"{'x NEURON':>9} {'spikes':>7} {'state MB':>9} {'peak RSS MB':>12}")
    for row in rows:
        per_cell_s = row["run_s"] / (duration_ms / 1000.0) / row["n_cells"]
        print(f"{row['n_cells']:>6} {row['processes']:>5} {row['synapses']:>9} {row['setup_s']:>8.1f} "
              f"{row['run_s']:>8.2f} {per_cell_s:>9.4f} {neuron_s / per_cell_s:>9.1f} {row['spikes']:>7} "
              f"{row['state_mb']:>9.0f} {row['peak_rss_mb']:>12.0f}")
    for smaller, larger in zip(rows, rows[1:]):
        growth = larger["n_cells"] / smaller["n_cells"]
        print(f"  {smaller['n_cells']} -> {larger['n_cells']} cells ({growth:.0f}x): run time "
              f"x{larger['run_s'] / smaller['run_s']:.1f}, setup x{larger['setup_s'] / smaller['setup_s']:.1f}")


def main() -> None:
    """Time NEURON once, then every size in its own process."""
    args = parse_args()
    if args.child:
        run_one_size(args)
        return
    print(f"{os.cpu_count()} cores, {args.threads} torch thread(s) x {args.nproc} process(es); load average "
          f"{os.getloadavg()[0]:.2f}; {args.duration_ms} ms per network, in-degree {args.in_degree:g} "
          f"x {args.synapses_per_connection} synapses", flush=True)
    neuron_s = neuron_reference_seconds(args)
    print(f"NEURON, one l5pc() with synapses on every dendritic segment: {neuron_s:.1f} s per simulated second",
          flush=True)
    with tempfile.TemporaryDirectory() as scratch:
        model = args.model or str(random_paper_checkpoint(args.family, Path(scratch) / f"{args.family}.pt"))
        rows = []
        for n_cells in args.sizes:
            rows.append(measure_size(n_cells, model, args))
            print(f"  {n_cells} cells done: {rows[-1]['run_s']:.1f} s", flush=True)
    report(rows, neuron_s, args.duration_ms)


if __name__ == "__main__":
    main()
