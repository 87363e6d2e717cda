"""``python -m surrogate_cell``: simulate the built-in L5PC with NEURON and print a summary."""

from __future__ import annotations

import argparse
import time

import LFPy
import numpy as np

from surrogate_cell.cells import SECTION_TYPES, l5pc
from surrogate_cell.data.inputs import (
    PublishedInputConfig,
    draw_inputs,
    events_to_spike_times,
)
from surrogate_cell.spikes import spike_peak_times

DENDRITIC_TYPES = ("basal", "apical", "oblique")


def attach_random_input(cell, duration_ms: float, seed: int) -> int:
    """Give every dendritic segment one AMPA+NMDA and one GABA_A synapse driven by published-statistics input."""
    dendritic = np.flatnonzero(np.isin(cell.section_types, DENDRITIC_TYPES))
    trees = np.where(cell.section_types[dendritic] == "basal", "basal", "apical")
    events = draw_inputs(PublishedInputConfig(), trees, cell.length[dendritic], int(duration_ms),
                         np.random.default_rng(seed))
    for syntype, matrix in (("AMPANMDA", events.exc), ("GABAA", events.inh)):
        for index, times in zip(dendritic, events_to_spike_times(matrix)):
            synapse = LFPy.Synapse(cell, idx=int(index), syntype=syntype, weight=1.0)
            synapse.set_spike_times(times)
    return 2 * dendritic.size


def main(argv=None) -> None:
    """Run the summary simulation."""
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--duration-ms", type=float, default=500.0, help="simulated time (ms)")
    parser.add_argument("--seed", type=int, default=1, help="seed of the synaptic input")
    parser.add_argument("--morphology", default=None, help="morphology file (default: built-in cell)")
    args = parser.parse_args(argv)

    start = time.perf_counter()
    cell = l5pc(args.morphology, tstop=args.duration_ms)
    n_synapses = attach_random_input(cell, args.duration_ms, args.seed)
    built = time.perf_counter()
    cell.simulate(rec_vmem=True)
    wall = time.perf_counter() - built

    spikes = spike_peak_times(cell.somav, cell.dt)
    counts = {kind: int((cell.section_types == kind).sum()) for kind in SECTION_TYPES}
    print(f"cell: {cell.recipe['morphology'] or 'built-in synthetic L5PC'}")
    print(f"segments: {cell.totnsegs} ({', '.join(f'{k} {v}' for k, v in counts.items())})")
    print(f"synapses: {n_synapses} (one AMPA+NMDA and one GABA_A per dendritic segment)")
    print(f"simulated {args.duration_ms:.0f} ms at dt {cell.dt} ms in {wall:.2f} s wall "
          f"({args.duration_ms / 1000 / wall:.3f} simulated s per wall s; build {built - start:.1f} s)")
    print(f"soma: {spikes.size} spikes ({spikes.size / args.duration_ms * 1000:.1f} Hz), "
          f"mean {cell.somav.mean():.1f} mV, range {cell.somav.min():.1f} to {cell.somav.max():.1f} mV")
    print(f"all segments: voltage mean {cell.vmem.mean():.1f} mV, std {cell.vmem.std():.1f} mV")


if __name__ == "__main__":
    main()
