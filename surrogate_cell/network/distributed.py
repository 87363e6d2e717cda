"""Cells sharded over processes with ``torch.distributed``: shards, spike exchange, reductions.

Each population's cells are split into contiguous, nearly equal shards, one per rank. Every
random draw of the network is made for all cells from the network seed, and each rank keeps
its shard, so results do not depend on the number of processes. Each step every rank
contributes a fixed-size vector of its cells' spike times (NaN = no spike) to one
``all_gather``; afterwards every rank knows all spikes.

Launch with ``torchrun --nproc_per_node N script.py`` and call :func:`init_from_environment`
first (gloo on CPU, NCCL on CUDA), or use :func:`spawn` (gloo on localhost).
"""

from __future__ import annotations

import os
import socket
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import torch
import torch.distributed as dist


@dataclass(frozen=True)
class Shard:
    """This process's place among ``world_size`` processes."""

    rank: int = 0
    world_size: int = 1

    @classmethod
    def current(cls) -> Shard:
        """The shard of this process: from ``torch.distributed`` when initialised, else (0, 1)."""
        if dist.is_available() and dist.is_initialized():
            return cls(dist.get_rank(), dist.get_world_size())
        return cls()

    @property
    def is_distributed(self) -> bool:
        """True with more than one process."""
        return self.world_size > 1

    def cells(self, n_cells: int, rank: int | None = None) -> range:
        """Indices (within a population of ``n_cells``) of the cells owned by ``rank`` (default: this one)."""
        rank = self.rank if rank is None else rank
        return range(n_cells * rank // self.world_size, n_cells * (rank + 1) // self.world_size)


class SpikeExchange:
    """Every step: each rank's spike-time vector in, all spikes (gids, times) out.

    ``gids_by_rank[r]`` are the global ids of rank ``r``'s cells, in the order of its vector.
    """

    def __init__(self, gids_by_rank: list[np.ndarray], shard: Shard, device: torch.device):
        self.shard = shard
        width = max(len(gids) for gids in gids_by_rank)
        padded = np.full((len(gids_by_rank), width), -1, dtype=np.int64)
        for rank, gids in enumerate(gids_by_rank):  # once, at setup
            padded[rank, :len(gids)] = gids
        self.width = width
        self.gathered_gids = torch.as_tensor(padded.ravel(), device=device)
        self._buffers = [torch.empty(width, dtype=torch.float64, device=device)
                         for _ in range(shard.world_size)]
        self._send = torch.empty(width, dtype=torch.float64, device=device)

    def exchange(self, local_times: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(gids, times) of all spikes of all ranks; ``local_times`` is NaN where a cell did not fire."""
        if self.shard.is_distributed:
            self._send.fill_(float("nan"))
            self._send[:local_times.numel()] = local_times
            dist.all_gather(self._buffers, self._send)
            times = torch.cat(self._buffers)
        else:
            times = local_times
        fired = torch.nonzero(~torch.isnan(times)).squeeze(1)
        return self.gathered_gids[fired], times[fired]


def all_reduce_sum(tensor: torch.Tensor, shard: Shard) -> torch.Tensor:
    """The sum of ``tensor`` over all ranks (in place)."""
    if shard.is_distributed:
        dist.all_reduce(tensor, op=dist.ReduceOp.SUM)
    return tensor


def gather_rows(rows: torch.Tensor, n_total: int, shard: Shard) -> torch.Tensor:
    """Concatenate every rank's ``rows`` (its contiguous shard of ``n_total`` rows) on all ranks."""
    if not shard.is_distributed:
        return rows
    width = max(len(shard.cells(n_total, rank)) for rank in range(shard.world_size))
    padded = torch.zeros((width, *rows.shape[1:]), dtype=rows.dtype, device=rows.device)
    padded[:rows.shape[0]] = rows
    buffers = [torch.empty_like(padded) for _ in range(shard.world_size)]
    dist.all_gather(buffers, padded)
    return torch.cat([buffer[:len(shard.cells(n_total, rank))] for rank, buffer in enumerate(buffers)])


# --------------------------------------------------------------------------- launching


def default_backend() -> str:
    """NCCL when CUDA is available, else gloo."""
    return "nccl" if torch.cuda.is_available() and dist.is_nccl_available() else "gloo"


def init_from_environment(backend: str | None = None) -> Shard:
    """Initialise ``torch.distributed`` from torchrun's environment (RANK, WORLD_SIZE, ...).

    Without those variables (a plain ``python`` run) nothing is initialised and the shard is
    (0, 1). With NCCL each rank uses the CUDA device ``LOCAL_RANK``.
    """
    if "WORLD_SIZE" in os.environ and not dist.is_initialized():
        backend = backend or default_backend()
        if backend == "nccl":
            torch.cuda.set_device(int(os.environ.get("LOCAL_RANK", 0)))
        dist.init_process_group(backend)
    return Shard.current()


def free_port() -> int:
    """A TCP port on localhost that is free right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def _spawned(rank: int, function: Callable, world_size: int, port: int, args: tuple) -> None:
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    torch.set_num_threads(1)
    dist.init_process_group("gloo", rank=rank, world_size=world_size)
    try:
        function(rank, *args)
    finally:
        dist.destroy_process_group()


def spawn(function: Callable, world_size: int, *args) -> None:
    """Run ``function(rank, *args)`` in ``world_size`` new processes joined by gloo on localhost.

    ``function`` must be importable (a module-level function); raises if any process fails.
    """
    import torch.multiprocessing as mp

    mp.spawn(_spawned, args=(function, world_size, free_port(), args), nprocs=world_size, join=True)
