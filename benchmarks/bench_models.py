"""Throughput of the paper-size surrogate models on this CPU.

Prints training samples/s (forward + loss + backward + Adam step) and
forward-only samples/s (eval mode, inference) for each model family, on
synthetic data shaped like the real input: ``event_channels`` binary synaptic
channels at the given event density followed by z-scored voltage channels.
Also prints how many windows/s the data pipeline delivers (spike-balanced sampling
+ gathering a batch of windows from stacked simulations), to compare with training.

    .venv/bin/python benchmarks/bench_models.py --families mmoe mh
    .venv/bin/python benchmarks/bench_models.py --dense   # no sparse-event path
"""

from __future__ import annotations

import argparse
import os
import statistics
import time

import numpy as np
import torch
import torch.nn.functional as F

from surrogate_cell.config import PACKAGED_CONFIGS
from surrogate_cell.datasets.windows import BalancedSampler, WindowData
from surrogate_cell.models import build_model_from_file

CONFIG_DIR = PACKAGED_CONFIGS / "models"


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--families", nargs="+", default=["mmoe", "mh"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--in-channels", type=int, default=1920)
    p.add_argument("--event-channels", type=int, default=1278)
    p.add_argument("--n-tasks", type=int, default=643)
    p.add_argument("--window", type=int, default=100)
    p.add_argument("--density", type=float, default=0.01,
                   help="fraction of non-zero entries in the event channels")
    p.add_argument("--dense", action="store_true", help="disable the sparse-event path")
    p.add_argument("--iters", type=int, default=10)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--bf16", action="store_true",
                   help="bfloat16 autocast (mixed precision on CPUs with AVX512-BF16/AMX)")
    p.add_argument("--unfused-adam", action="store_true", help="use the default Adam kernel")
    p.add_argument("--loader-sims", type=int, default=16, help="simulations held by the loader test")
    p.add_argument("--loader-ms", type=int, default=3000, help="length of each simulation")
    return p.parse_args()


def synthetic_batch(args: argparse.Namespace) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Input window, voltage targets and spike targets with realistic structure."""
    g = torch.Generator().manual_seed(0)
    shape = (args.batch, args.event_channels, args.window)
    events = (torch.rand(shape, generator=g) < args.density).float()
    voltages = torch.randn(args.batch, args.in_channels - args.event_channels, args.window,
                           generator=g)
    x = torch.cat([events, voltages], dim=1)
    v_target = torch.randn(args.batch, args.n_tasks - 1, generator=g)
    s_target = (torch.rand(args.batch, generator=g) < 0.05).float()
    return x, v_target, s_target


def timed(step, warmup: int, iters: int) -> tuple[float, float]:
    """(median, fastest) seconds per call of ``step`` after ``warmup`` untimed calls.

    The fastest call is the better estimate on a machine shared with other jobs.
    """
    for _ in range(warmup):
        step()
    times = []
    for _ in range(iters):
        start = time.perf_counter()
        step()
        times.append(time.perf_counter() - start)
    return statistics.median(times), min(times)


def bench_family(family: str, args: argparse.Namespace) -> dict[str, float]:
    """Samples/s (median and best) for training and forward, and the parameter count."""
    torch.manual_seed(0)
    model = build_model_from_file(
        CONFIG_DIR / f"{family}.yaml", in_channels=args.in_channels, n_tasks=args.n_tasks,
        event_channels=0 if args.dense else args.event_channels, window=args.window)
    x, v_target, s_target = synthetic_batch(args)
    # The fused CPU Adam kernel is several times faster than the default
    # per-parameter loop on these ~10 M-parameter models.
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-3, fused=not args.unfused_adam)

    def autocast():
        return torch.autocast("cpu", dtype=torch.bfloat16, enabled=args.bf16)

    def train_step() -> None:
        """One Adam step on the synthetic batch."""
        with autocast():
            v_pred, s_logit = model(x)
        loss = (F.mse_loss(v_pred.float(), v_target)
                + F.binary_cross_entropy_with_logits(s_logit.float(), s_target))
        optimiser.zero_grad(set_to_none=True)
        loss.backward()
        optimiser.step()

    def forward_step() -> None:
        """One inference forward pass."""
        with torch.inference_mode(), autocast():
            model(x)

    model.train()
    train = timed(train_step, args.warmup, args.iters)
    model.eval()
    forward = timed(forward_step, args.warmup, args.iters)
    return {
        "params": sum(p.numel() for p in model.parameters()),
        "train": args.batch / train[0], "train_best": args.batch / train[1],
        "forward": args.batch / forward[0], "forward_best": args.batch / forward[1],
    }


def bench_loader(args: argparse.Namespace) -> tuple[float, float]:
    """Windows/s (median, best) of sampling + gathering training batches from stacked simulations."""
    g = torch.Generator().manual_seed(1)
    shape = (args.loader_sims, args.loader_ms)
    data = WindowData(
        events=(torch.rand(*shape, args.event_channels, generator=g) < args.density).to(torch.uint8),
        voltages=torch.randn(*shape, args.in_channels - args.event_channels, generator=g),
        spikes=torch.rand(*shape, generator=g) < 0.001, window=args.window,
        sim_indices=list(range(args.loader_sims)))
    sampler = BalancedSampler(data, 1 / 3, 1, np.random.default_rng(0))

    def load_batch() -> None:
        """One spike-balanced batch of windows, as model input."""
        sims, times = sampler.sample(args.batch)
        events, history, _, _ = data.gather(sims, times)
        torch.cat([events, history], dim=-1).transpose(1, 2).contiguous()

    median, best = timed(load_batch, args.warmup, args.iters)
    return args.batch / median, args.batch / best


def main() -> None:
    """Run the benchmark and print one line per family."""
    args = parse_args()
    torch.set_num_threads(args.threads)
    path = "dense" if args.dense else f"sparse events (density {args.density:g})"
    path += ", bfloat16 autocast" if args.bf16 else ", float32"
    print(f"torch {torch.__version__}, threads {args.threads}, batch {args.batch}, "
          f"C_in {args.in_channels}, n_tasks {args.n_tasks}, T {args.window}, {path}, "
          f"load average {os.getloadavg()[0]:.2f}")
    for family in args.families:
        r = bench_family(family, args)
        print(f"{family:8s} params {r['params'] / 1e6:6.2f} M   "
              f"train {r['train']:6.1f} samples/s (best {r['train_best']:6.1f})   "
              f"forward {r['forward']:6.1f} samples/s (best {r['forward_best']:6.1f})")
    loader, loader_best = bench_loader(args)
    print(f"loader   {loader:8.0f} windows/s (best {loader_best:8.0f}): sampling + gathering + "
          f"input assembly, {args.loader_sims} simulations x {args.loader_ms} ms in memory")

if __name__ == "__main__":
    main()
