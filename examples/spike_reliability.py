"""How reproducible are the default cell's own spike times? NEURON against slightly perturbed NEURON.

Runs the default L5PC in NEURON on input of the high-drive training regime (a seed the
training data never used), once as drawn and then with small perturbations:

- a somatic noise current (Ornstein-Uhlenbeck, tau 5 ms) of a few amplitudes, and
- a small fraction of the excitatory input events removed,

and prints, for each perturbation, the rms change of the subthreshold soma voltage and the
somatic spike precision, recall and F1 (+-3 ms, the surrogate's metric) against the
unperturbed run. A surrogate whose subthreshold soma error is of a given size cannot be
expected to place spikes more reliably than the cell itself does under a perturbation of
that size, so the table reads as a ceiling on spike F1 per mV of voltage error::

    python examples/spike_reliability.py [--n-sims 12] [--duration-ms 1000]

12 simulations of 1 s take about 15 minutes on one core.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
from neuron import h
from scipy.signal import lfilter
from tqdm.auto import tqdm

from surrogate_cell.data.inputs import SynapticInput
from surrogate_cell.data.simulation import (
    CellSimulator,
    SimulationResult,
    load_simulation_config,
)
from surrogate_cell.spikes import spike_scores

HIGH_DRIVE_CONFIG = Path("data/published_high_drive.yaml")  # a packaged config name
HELD_OUT_SEED = 5051
SUBTHRESHOLD_MV = -55.0
NOISE_TAU_MS = 5.0


def parse_arguments(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=HIGH_DRIVE_CONFIG,
                        help="simulation config YAML: a file or a packaged name (data/default.yaml, ...)")
    parser.add_argument("--morphology", help="morphology file (default: the built-in one)")
    parser.add_argument("--n-sims", type=int, default=12)
    parser.add_argument("--duration-ms", type=int, default=1000, help="compared time after the warm-up")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="input seed")
    parser.add_argument("--noise-na", type=float, nargs="*", default=[0.02, 0.05, 0.1, 0.2],
                        help="s.d. of the somatic noise current (nA), one run each")
    parser.add_argument("--drop-fractions", type=float, nargs="*", default=[0.01, 0.05],
                        help="fractions of excitatory events removed, one run each")
    parser.add_argument("--out", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    if args.n_sims < 1 or args.duration_ms < 1:
        parser.error("--n-sims and --duration-ms must be at least 1")
    if any(not 0.0 <= f < 1.0 for f in args.drop_fractions):
        parser.error("--drop-fractions must lie in [0, 1)")
    return args


class SomaticNoise:
    """An ``IClamp`` at the soma whose amplitude follows a played Ornstein-Uhlenbeck trace."""

    def __init__(self, simulator: CellSimulator):
        segments = [segment for section in simulator.cell.allseclist for segment in section]
        self.clamp = h.IClamp(segments[simulator.layout.soma_segment])
        self.clamp.delay, self.clamp.dur, self.clamp.amp = 0.0, 1e9, 0.0
        self.dt = simulator.config.dt
        self.trace = None

    def switch_on(self, sd_na: float, total_ms: float, rng: np.random.Generator) -> None:
        """Play a fresh noise trace of standard deviation ``sd_na`` over ``total_ms``."""
        n_steps = int(round(total_ms / self.dt)) + 2
        self.trace = h.Vector(ornstein_uhlenbeck(sd_na, NOISE_TAU_MS, self.dt, n_steps, rng))
        self.trace.play(self.clamp._ref_amp, self.dt)

    def switch_off(self) -> None:
        """Stop the noise (amplitude back to 0)."""
        if self.trace is not None:
            self.trace.play_remove()
            self.trace = None
        self.clamp.amp = 0.0


def ornstein_uhlenbeck(sd: float, tau: float, dt: float, n_steps: int, rng: np.random.Generator) -> np.ndarray:
    """A stationary OU trace (starting at 0) with standard deviation ``sd`` and correlation time ``tau``."""
    decay = np.exp(-dt / tau)
    kicks = sd * np.sqrt(1.0 - decay ** 2) * rng.standard_normal(n_steps)
    kicks[0] = 0.0
    return lfilter([1.0], [1.0, -decay], kicks)


def without_some_excitation(inputs: SynapticInput, fraction: float, rng: np.random.Generator) -> SynapticInput:
    """A copy of ``inputs`` with ``fraction`` of the excitatory events (chosen at random) removed."""
    exc = inputs.exc.copy()
    events = np.flatnonzero(exc)
    exc.flat[rng.choice(events, int(round(fraction * events.size)), replace=False)] = False
    return dataclasses.replace(inputs, exc=exc)


def compare(reference: list[SimulationResult], perturbed: list[SimulationResult], soma: int) -> dict:
    """Subthreshold soma-voltage rms difference (samples below -55 mV in both) and spike scores."""
    differences = []
    for ref, other in zip(reference, perturbed):
        a, b = ref.vmem[soma].astype(float), other.vmem[soma].astype(float)
        below = (a < SUBTHRESHOLD_MV) & (b < SUBTHRESHOLD_MV)
        differences.append((b - a)[below])
    scores = spike_scores([r.spike_times for r in reference], [p.spike_times for p in perturbed])
    return {"soma_rms_mv": float(np.sqrt(np.mean(np.concatenate(differences) ** 2))), **scores}


def main(argv=None) -> dict:
    """Run the unperturbed and perturbed simulations and print the table."""
    args = parse_arguments(argv)
    config = load_simulation_config(args.config)
    rng = np.random.default_rng(args.seed)
    perturbations = ([("noise", sd) for sd in args.noise_na]
                     + [("drop", fraction) for fraction in args.drop_fractions])
    rows = {}
    with CellSimulator(config, args.morphology) as simulator:
        soma, noise = simulator.layout.soma_segment, SomaticNoise(simulator)
        inputs = [simulator.draw_inputs(args.seed, i, args.duration_ms) for i in range(args.n_sims)]
        progress = tqdm(total=args.n_sims * (1 + len(perturbations)), desc="NEURON runs", unit="run")

        def run(drawn: SynapticInput) -> SimulationResult:
            result = simulator.simulate_inputs(drawn, args.duration_ms)
            progress.update()
            return result

        reference = [run(drawn) for drawn in inputs]
        for kind, amount in perturbations:
            if kind == "noise":
                results = []
                for drawn in inputs:
                    noise.switch_on(amount, drawn.n_ms, rng)
                    results.append(run(drawn))
                    noise.switch_off()
                label = f"somatic noise {amount:g} nA"
            else:
                results = [run(without_some_excitation(drawn, amount, rng)) for drawn in inputs]
                label = f"{amount:.0%} of exc. events removed"
            rows[label] = compare(reference, results, soma)
        progress.close()
    print_table(rows, sum(len(r.spike_times) for r in reference), args)
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2))
    return rows


def print_table(rows: dict, n_spikes: int, args: argparse.Namespace) -> None:
    """Print one line per perturbation."""
    print(f"\n{args.n_sims} simulations x {args.duration_ms} ms (seed {args.seed}), "
          f"{n_spikes} spikes in the unperturbed runs")
    print(f"{'perturbation':32}{'soma rms (mV)':>14}{'precision':>11}{'recall':>8}{'F1':>6}")
    for label, row in rows.items():
        print(f"{label:32}{row['soma_rms_mv']:14.2f}{row['precision']:11.2f}{row['recall']:8.2f}{row['f1']:6.2f}")


if __name__ == "__main__":
    main()
