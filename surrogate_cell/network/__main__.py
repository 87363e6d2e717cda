"""Run the standard recurrent network and write it to HDF5, in one process or under torchrun.

    python -m surrogate_cell.network --model runs/mh/best.pt --n-cells 1000 --duration-ms 1000 --out run.h5
    torchrun --nproc_per_node 2 -m surrogate_cell.network --model runs/mh/best.pt --n-cells 1000 --out run.h5

The network is :func:`surrogate_cell.network.standard.build_recurrent_network`; the file is
written by rank 0 (see :class:`surrogate_cell.network.HDF5Writer`).
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from surrogate_cell.checkpoint import CheckpointError
from surrogate_cell.device import AUTO, DeviceError, select_device
from surrogate_cell.network.config import NetworkConfigError
from surrogate_cell.network.distributed import init_from_environment
from surrogate_cell.network.recording import HDF5Writer
from surrogate_cell.network.standard import (
    MIN_CELLS,
    RecurrentNetworkConfig,
    build_recurrent_network,
)
from surrogate_cell.outputs import OutputPathError, writable_file_folder

USER_ERRORS = (CheckpointError, NetworkConfigError, DeviceError, OutputPathError)
"""Errors that mean a bad command line or input file: printed as ``error: ...``, exit status 2."""

USAGE_ERROR = 2
"""Exit status of a bad command line (as argparse's own)."""


def whole_number(minimum: int):
    """An argparse ``type``: a whole number >= ``minimum``, else one message naming the limit.

    Parameters
    ----------
    minimum : int
        Smallest value accepted.

    Returns
    -------
    callable
        ``convert(text) -> int``, raising ``argparse.ArgumentTypeError``.
    """
    def convert(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be a whole number >= {minimum}, got {value}")
        return value

    convert.__name__ = f"whole number >= {minimum}"
    return convert


def probability(text: str) -> float:
    """An argparse ``type``: a number in [0, 1].

    Parameters
    ----------
    text : str
        The command-line value.

    Returns
    -------
    float
        The probability.

    Raises
    ------
    argparse.ArgumentTypeError
        For anything else (including NaN).
    """
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text!r}") from None
    if not 0.0 <= value <= 1.0:
        raise argparse.ArgumentTypeError(f"must be a number in [0, 1], got {text}")
    return value


def device_name(text: str) -> str:
    """An argparse ``type``: a torch device that exists here (``cpu``, ``cuda``, ``cuda:1``) or ``auto``.

    Parameters
    ----------
    text : str
        The command-line value.

    Returns
    -------
    str
        ``text`` unchanged (``auto``: picked when the network is built).

    Raises
    ------
    argparse.ArgumentTypeError
        For an unknown device or CUDA where there is none.
    """
    if text == AUTO:
        return text
    try:
        select_device(text)
    except DeviceError as error:
        raise argparse.ArgumentTypeError(str(error)) from None
    return text


def parse_arguments(argv=None) -> argparse.Namespace:
    """Command-line options; a bad value exits with status 2 and one message naming the option.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    argparse.Namespace
        The options.
    """
    defaults = RecurrentNetworkConfig()
    parser = argparse.ArgumentParser(prog="python -m surrogate_cell.network", description=__doc__.splitlines()[0],
                                     formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    parser.add_argument("--model", default="l5pc-default", metavar="NAME_OR_PATH",
                        help="shipped model name or checkpoint path (.pt)")
    parser.add_argument("--inhibitory-model", default="basket-default", metavar="NAME_OR_PATH",
                        help="model of the inhibitory cells: the fast-spiking basket cell's surrogate, "
                             "another shipped name or checkpoint, or 'same' for --model")
    parser.add_argument("--n-cells", type=whole_number(MIN_CELLS), default=defaults.n_cells, metavar="N",
                        help=f"number of cells, {100 * defaults.inhibitory_fraction:.0f}%% of them inhibitory "
                             f"(at least {MIN_CELLS}: one excitatory and one inhibitory)")
    parser.add_argument("--duration-ms", type=whole_number(1), default=1000, metavar="T",
                        help="simulated time in ms (the models step 1 ms)")
    parser.add_argument("--connection-probability", type=probability, default=defaults.connection_probability,
                        metavar="P", help="probability that an ordered pair of cells connects, in [0, 1]")
    parser.add_argument("--synapses-per-connection", type=whole_number(1), default=defaults.synapses_per_connection,
                        metavar="K", help="synapses of every connection")
    parser.add_argument("--seed", type=int, default=0, help="network seed (placement, connections, drive)")
    parser.add_argument("--out", type=Path, default=Path("network.h5"), metavar="PATH",
                        help="HDF5 file to write; an existing file is refused unless --overwrite")
    parser.add_argument("--overwrite", action="store_true", help="replace an existing --out")
    parser.add_argument("--record-soma", action="store_true", help="also store every cell's soma voltage")
    parser.add_argument("--threads", type=whole_number(1), default=1, metavar="N", help="torch threads per process")
    parser.add_argument("--device", type=device_name, default=AUTO, metavar="DEVICE",
                        help=f"cpu, cuda, cuda:<index>, or {AUTO}: this rank's CUDA device if "
                             "CUDA is available, else cpu")
    return parser.parse_args(argv)


def check_output(path: Path, overwrite: bool) -> None:
    """Refuse an ``--out`` that exists (unless ``overwrite``) or cannot be written, before any work.

    Parameters
    ----------
    path : Path
        The ``--out`` file.
    overwrite : bool
        Whether an existing file may be replaced.

    Raises
    ------
    OutputPathError
        If ``path`` exists without ``overwrite``, is a folder, or its folder is not writable.
    """
    writable_file_folder(path, "--out")
    if path.exists() and not overwrite:
        raise OutputPathError(f"--out {path} already exists; choose another --out, or add --overwrite "
                              "to replace it.")


def run(args: argparse.Namespace) -> None:
    """Build, run and write the network of ``args``; rank 0 prints a summary.

    Parameters
    ----------
    args : argparse.Namespace
        Options from :func:`parse_arguments`.

    Raises
    ------
    CheckpointError, NetworkConfigError, DeviceError, OutputPathError
        For an unknown or unreadable model, a bad network, an unusable device or ``--out``.
    """
    check_output(args.out, args.overwrite)
    shard = init_from_environment()
    if shard.is_distributed:
        torch.distributed.barrier()  # every rank has checked --out before rank 0 creates it
    torch.set_num_threads(args.threads)
    device = select_device(args.device)
    config = RecurrentNetworkConfig(n_cells=args.n_cells, connection_probability=args.connection_probability,
                                    synapses_per_connection=args.synapses_per_connection)
    inhibitory_model = None if args.inhibitory_model == "same" else args.inhibitory_model
    network = build_recurrent_network(args.model, config, seed=args.seed, device=device,
                                      inhibitory_model=inhibitory_model)
    started = time.perf_counter()
    result = network.simulate(args.duration_ms, record_soma=args.record_soma, keep_in_memory=False,
                              writer=HDF5Writer(args.out, attributes={"arguments": vars(args)}),
                              progress=True)
    if shard.rank == 0:
        print(f"{args.n_cells} cells x {args.duration_ms} ms on {shard.world_size} process(es): "
              f"{time.perf_counter() - started:.1f} s, {result.spike_gids.size} spikes, "
              f"{result.population_rate_hz():.2f} Hz; written to {args.out}")


def main(argv=None) -> int:
    """Parse, run, and report a bad value or input file as one ``error: ...`` line.

    Parameters
    ----------
    argv : list of str, optional
        The arguments (default: ``sys.argv[1:]``).

    Returns
    -------
    int
        0 on success, 2 for a bad command line, model, device or output path.
    """
    args = parse_arguments(argv)
    try:
        run(args)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return USAGE_ERROR
    return 0


if __name__ == "__main__":
    sys.exit(main())
