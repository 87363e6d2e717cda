"""How long does the default cell remember its synaptic input? A guide to a surrogate's window.

Runs the default L5PC in NEURON on drawn input, then again with all input before a cut time
replaced by the input of another simulation (everything after the cut identical), and prints
the rms difference of the subthreshold soma voltage as a function of the time since the cut,
and the F1 (±3 ms) of the second run's somatic spikes against the first's from each lag on.
A surrogate that reads only the last ``W`` ms of input cannot know what happened before them,
so the difference at lag ``W`` is (up to what input statistics reveal about the past) a floor
on its voltage error; the lag where the difference falls below a tolerance is the window the
cell needs::

    python examples/input_memory.py [--config data/default.yaml] [--n-sims 8]

8 simulations of 1 s (16 NEURON runs) take about 2 minutes on one core.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
from pathlib import Path

import numpy as np
from tqdm.auto import tqdm

from surrogate_cell.data.inputs import SynapticInput
from surrogate_cell.data.simulation import CellSimulator, load_simulation_config
from surrogate_cell.spikes import spike_scores

HIGH_DRIVE_CONFIG = Path("data/published_high_drive.yaml")  # a packaged config name
HELD_OUT_SEED = 5051
SUBTHRESHOLD_MV = -55.0


def parse_arguments(argv=None) -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--config", type=Path, default=HIGH_DRIVE_CONFIG,
                        help="simulation config YAML: a file or a packaged name (data/default.yaml, ...)")
    parser.add_argument("--morphology", help="morphology file (default: the built-in one)")
    parser.add_argument("--n-sims", type=int, default=8)
    parser.add_argument("--duration-ms", type=int, default=1000, help="recorded time after the warm-up")
    parser.add_argument("--cut-ms", type=int, default=250,
                        help="input before this time (ms after the warm-up) is replaced")
    parser.add_argument("--seed", type=int, default=HELD_OUT_SEED, help="input seed")
    parser.add_argument("--lags", type=int, nargs="*", default=[0, 25, 50, 100, 150, 200, 300, 400, 600],
                        help="start of each lag bin (ms after the cut)")
    parser.add_argument("--bin-ms", type=int, default=20, help="width of each lag bin (ms)")
    parser.add_argument("--tolerance-mv", type=float, default=0.5,
                        help="report the first lag bin whose rms difference is below this")
    parser.add_argument("--out", type=Path, help="also write the table as JSON here")
    args = parser.parse_args(argv)
    if args.n_sims < 1 or args.bin_ms < 1:
        parser.error("--n-sims and --bin-ms must be at least 1")
    if not 0 < args.cut_ms < args.duration_ms:
        parser.error(f"--cut-ms must lie inside the recorded time (0, {args.duration_ms}) ms")
    late = [lag for lag in args.lags if lag < 0 or args.cut_ms + lag >= args.duration_ms]
    if late:
        parser.error(f"--lags {late} fall outside [0, duration - cut) = [0, {args.duration_ms - args.cut_ms}) ms")
    return args


def with_past_of(inputs: SynapticInput, donor: SynapticInput, cut_bin: int) -> SynapticInput:
    """``inputs`` with every event before bin ``cut_bin`` (warm-up included) taken from ``donor``."""
    exc, inh = inputs.exc.copy(), inputs.inh.copy()
    exc[:, :cut_bin], inh[:, :cut_bin] = donor.exc[:, :cut_bin], donor.inh[:, :cut_bin]
    return dataclasses.replace(inputs, exc=exc, inh=inh)


def rms_by_lag(reference: list[np.ndarray], spliced: list[np.ndarray], cut_ms: int, lags, bin_ms: int) -> dict:
    """Per lag bin: rms soma difference over samples below -55 mV in both runs, and their number."""
    rows = {}
    for lag in lags:
        window = slice(cut_ms + lag, cut_ms + lag + bin_ms)
        differences = [(b - a)[window][(a[window] < SUBTHRESHOLD_MV) & (b[window] < SUBTHRESHOLD_MV)]
                       for a, b in zip(reference, spliced)]
        pooled = np.concatenate(differences)
        rms = float(np.sqrt(np.mean(pooled ** 2))) if pooled.size else float("nan")
        rows[f"{lag}-{lag + bin_ms}"] = {"lag_ms": lag, "soma_rms_mv": rms, "n_samples": int(pooled.size)}
    return rows


def spike_agreement_after(reference_spikes, spliced_spikes, start_ms: int) -> dict:
    """F1 (±3 ms) of the spliced runs' somatic spike times against the reference's, from ``start_ms`` on.

    The spike-timing counterpart of the rms difference: what a perfect surrogate that sees the
    input only from ``start_ms`` minus the lag on could reach at best, if the past it guesses is
    as good as another simulation's.
    """
    true_spikes = [times[times >= start_ms] for times in reference_spikes]
    other_spikes = [times[times >= start_ms] for times in spliced_spikes]
    return {"spike_f1_after": float(spike_scores(true_spikes, other_spikes)["f1"]),
            "n_spikes_after": int(sum(len(t) for t in true_spikes))}


def main(argv=None) -> dict:
    """Run every simulation twice (own past, another's past) and print the table."""
    args = parse_arguments(argv)
    config = load_simulation_config(args.config)
    with CellSimulator(config, args.morphology) as simulator:
        soma = simulator.layout.soma_segment
        # one more draw than simulations: simulation i takes its past from draw i + 1
        drawn = [simulator.draw_inputs(args.seed, i, args.duration_ms) for i in range(args.n_sims + 1)]
        cut_bin = config.warmup_ms + args.cut_ms
        reference, spliced = [], []
        for inputs, donor in tqdm(list(zip(drawn[:-1], drawn[1:])), desc="NEURON runs (x2)", unit="sim"):
            reference.append(simulator.simulate_inputs(inputs, args.duration_ms))
            spliced.append(simulator.simulate_inputs(with_past_of(inputs, donor, cut_bin), args.duration_ms))
    rows = rms_by_lag([run.vmem[soma].astype(float) for run in reference],
                      [run.vmem[soma].astype(float) for run in spliced], args.cut_ms, args.lags, args.bin_ms)
    for row in rows.values():
        row.update(spike_agreement_after([run.spike_times for run in reference],
                                         [run.spike_times for run in spliced], args.cut_ms + row["lag_ms"]))
    print_table(rows, args)
    if args.out is not None:
        args.out.write_text(json.dumps(rows, indent=2))
    return rows


def print_table(rows: dict, args: argparse.Namespace) -> None:
    """One line per lag bin, then the first bin below the tolerance."""
    print(f"\n{args.n_sims} simulations ({args.config.name}, seed {args.seed}): input before "
          f"{args.cut_ms} ms replaced by another simulation's")
    print(f"{'ms since the cut':>18}{'soma rms (mV)':>15}{'samples':>9}{'spike F1 from here on':>23}")
    for label, row in rows.items():
        print(f"{label:>18}{row['soma_rms_mv']:15.2f}{row['n_samples']:9d}"
              f"{row['spike_f1_after']:14.2f} ({row['n_spikes_after']} spikes)")
    forgotten = [row["lag_ms"] for row in rows.values() if row["soma_rms_mv"] < args.tolerance_mv]
    print(f"first lag with rms < {args.tolerance_mv:g} mV: "
          + (f"{forgotten[0]} ms" if forgotten else "none of those measured"))


if __name__ == "__main__":
    main()
