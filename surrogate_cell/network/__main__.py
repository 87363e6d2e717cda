"""Run the standard recurrent network and write it to HDF5, in one process or under torchrun.

    python -m surrogate_cell.network --model runs/mh/best.pt --n-cells 1000 --duration-ms 1000 --out run.h5
    torchrun --nproc_per_node 2 -m surrogate_cell.network --model runs/mh/best.pt --n-cells 1000 --out run.h5

The network is :func:`surrogate_cell.network.standard.build_recurrent_network`; the file is
written by rank 0 (see :class:`surrogate_cell.network.HDF5Writer`).
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import torch

from surrogate_cell.network.distributed import init_from_environment
from surrogate_cell.network.recording import HDF5Writer
from surrogate_cell.network.standard import (
    RecurrentNetworkConfig,
    build_recurrent_network,
)


def parse_arguments(argv=None) -> argparse.Namespace:
    """Command-line options."""
    defaults = RecurrentNetworkConfig()
    parser = argparse.ArgumentParser(prog="python -m surrogate_cell.network", description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="l5pc-default", help="shipped model name or checkpoint path")
    parser.add_argument("--n-cells", type=int, default=defaults.n_cells)
    parser.add_argument("--duration-ms", type=int, default=1000)
    parser.add_argument("--connection-probability", type=float, default=defaults.connection_probability)
    parser.add_argument("--synapses-per-connection", type=int, default=defaults.synapses_per_connection)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--out", type=Path, default=Path("network.h5"), help="HDF5 file to write")
    parser.add_argument("--record-soma", action="store_true", help="also store every cell's soma voltage")
    parser.add_argument("--threads", type=int, default=1, help="torch threads per process")
    parser.add_argument("--device", help="cpu or cuda (default: cuda if available)")
    return parser.parse_args(argv)


def main(argv=None) -> None:
    """Build, run, write, summarise (rank 0 prints)."""
    args = parse_arguments(argv)
    shard = init_from_environment()
    torch.set_num_threads(args.threads)
    device = args.device or (f"cuda:{torch.cuda.current_device()}" if torch.cuda.is_available() else "cpu")
    config = RecurrentNetworkConfig(n_cells=args.n_cells, connection_probability=args.connection_probability,
                                    synapses_per_connection=args.synapses_per_connection)
    network = build_recurrent_network(args.model, config, seed=args.seed, device=device)
    started = time.perf_counter()
    result = network.simulate(args.duration_ms, record_soma=args.record_soma, keep_in_memory=False,
                              writer=HDF5Writer(args.out, attributes={"arguments": vars(args)}),
                              progress=True)
    if shard.rank == 0:
        print(f"{args.n_cells} cells x {args.duration_ms} ms on {shard.world_size} process(es): "
              f"{time.perf_counter() - started:.1f} s, {result.spike_gids.size} spikes, "
              f"{result.population_rate_hz():.2f} Hz; written to {args.out}")


if __name__ == "__main__":
    main()
