"""Per-step cost of the stable MMoE/MMoEEx steppers against the SRM's, on the built-in default cell.

Random-weight models of the packaged configs (``models/srm.yaml`` alone and as a three-member
ensemble like the shipped default, ``models/srm_mmoe.yaml``, ``models/srm_mmoeex.yaml``; the
SRM's data-derived fields filled in) step ``--cells`` cells for ``--steps`` ms through their
fast stepper (:func:`~surrogate_cell.engine.make_stepper`) with Bernoulli events at ``--rate``
per synapse and ms. Prints, per model: parameters, FLOPs per cell-step by part (counted
analytically by the stepper), the best of ``--repeats`` wall times, milliseconds per step and
the ratio to the single SRM. Wall-clock times on a machine shared with other jobs are noisy:
the models run interleaved, ``--repeats`` times each, and the best run counts.

    .venv/bin/python benchmarks/bench_srm_moe.py                       # 1000 steps x 100 cells
    .venv/bin/python benchmarks/bench_srm_moe.py --steps 200 --cells 10 --threads 1
"""

from __future__ import annotations

import os

os.environ.setdefault("OMP_WAIT_POLICY", "PASSIVE")  # idle OpenMP threads sleep (shared machine)

import argparse  # noqa: E402
import time  # noqa: E402

import numpy as np  # noqa: E402
import torch  # noqa: E402

from surrogate_cell.cells import l5pc  # noqa: E402
from surrogate_cell.cells.layout import SYNAPSE_SECTION_TYPES, cell_layout  # noqa: E402
from surrogate_cell.config import PACKAGED_CONFIGS  # noqa: E402
from surrogate_cell.engine import make_stepper  # noqa: E402
from surrogate_cell.models import build_model_from_file  # noqa: E402
from surrogate_cell.models.normalisation import Normalisation  # noqa: E402

MODELS = {"srm": ("srm", {}), "srm-ensemble": ("srm", {"members": 3}),
          "srm_mmoe": ("srm_mmoe", {}), "srm_mmoeex": ("srm_mmoeex", {})}
"""Benchmark name -> (packaged model config, overrides)."""


def parse_args() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cells", type=int, default=100, help="cells stepped together")
    parser.add_argument("--steps", type=int, default=1000, help="1 ms steps per timed run")
    parser.add_argument("--rate", type=float, default=0.01, help="events per synapse per ms")
    parser.add_argument("--threads", type=int, default=2, help="torch threads")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per model (best)")
    parser.add_argument("--models", nargs="+", default=list(MODELS), choices=list(MODELS))
    return parser.parse_args()


def random_model(name: str, n_events: int, n_segments: int) -> torch.nn.Module:
    """A random-weight model of the packaged config behind ``name`` for the default cell's shape."""
    torch.manual_seed(0)
    config, overrides = MODELS[name]
    return build_model_from_file(PACKAGED_CONFIGS / "models" / f"{config}.yaml",
                                 in_channels=n_events + n_segments, n_tasks=n_segments + 1,
                                 event_channels=n_events, spike_threshold_z=3.0, **overrides)


def run_time(stepper, events: torch.Tensor) -> float:
    """Wall time (s) of stepping through ``events`` (n_steps, n_cells, E)."""
    start = time.perf_counter()
    for step in range(events.shape[0]):
        stepper.step(events[step])
    return time.perf_counter() - start


def main() -> None:
    """Time every model and print the table."""
    args = parse_args()
    torch.set_num_threads(args.threads)
    layout = cell_layout(l5pc(), SYNAPSE_SECTION_TYPES)
    n_segments, n_events = layout.n_segments, 2 * layout.input_segments.size
    normalisation = Normalisation(np.full(n_segments, -70.0, np.float32), np.full(n_segments, 5.0, np.float32))
    generator = torch.Generator().manual_seed(2)
    events = (torch.rand(args.steps, args.cells, n_events, generator=generator) < args.rate).float()
    history = -70.0 + 2.0 * torch.randn(args.cells, 100, n_segments, generator=generator)
    print(f"default cell: {n_segments} segments, {n_events} event channels; {args.cells} cells x {args.steps} "
          f"steps, {args.threads} thread(s), load average {os.getloadavg()[0]:.1f}")
    models = {name: random_model(name, n_events, n_segments) for name in args.models}
    steppers = {name: make_stepper(model, normalisation, args.cells) for name, model in models.items()}
    best = dict.fromkeys(models, float("inf"))
    for stepper in steppers.values():
        stepper.reset(history)
        run_time(stepper, events[:3])  # warm-up: kernel selection, allocations
    for _ in range(args.repeats):  # interleaved, so that a change of load hits every model alike
        for name, stepper in steppers.items():
            best[name] = min(best[name], run_time(stepper, events))
    for name, stepper in steppers.items():
        parts = stepper.flop_breakdown(args.rate)
        breakdown = ", ".join(f"{part} {flops / 1e3:.0f}k" for part, flops in parts.items() if flops)
        ratio = f" ({best[name] / best['srm']:.2f} x srm)" if "srm" in best else ""
        n_parameters = sum(p.numel() for p in models[name].parameters()) / 1e6
        print(f"{name:<13} {type(stepper).__name__:<14} {n_parameters:5.2f} M params  "
              f"{sum(parts.values()) / 1e6:5.2f} MFLOP/cell-step  best {best[name]:6.2f} s = "
              f"{1e3 * best[name] / args.steps:6.3f} ms/step{ratio}\n{'':<14}{breakdown}")

if __name__ == "__main__":
    main()
