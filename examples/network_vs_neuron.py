"""An E-I recurrent network in NEURON and as surrogates: rates, spike counts, LFP.

Builds a small network (``--n-cells`` cells: 80 % L5 pyramidal cells of ``--model``, 20 %
fast-spiking basket cells of ``--inhibitory-model`` (the ``cells/basket/basket.yaml`` recipe),
random recurrent connectivity with delays, Poisson drive on every synapse, an electrode column
and the current dipole), simulates it with the surrogate (:class:`~surrogate_cell.network.SurrogateNetwork`)
and with NEURON on identical cells, synapses, delays and input
(:class:`~surrogate_cell.network.reference.NeuronNetwork`; LFPy.Network needs a hoc template
class, so the NEURON side clones the LFPy-built cell and wires NetCons from each soma), and
prints the population rates (and whether they agree within 20 %), the correlation of spike
counts per cell and the Pearson r of the summed LFP and dipole::

    python examples/network_vs_neuron.py [--model l5pc-default] [--inhibitory-model basket-default]
                                         [--n-cells 30] [--duration-ms 500] [--seed 0]

``--inhibitory-model same`` makes the inhibitory population pyramidal surrogates with inhibitory
synapses, as before the basket cell existed.

Another model: a shipped name or a checkpoint path with ``--model runs/srm/best.pt``, or
``--fallback-model PATH`` used when ``--model`` does not exist; ``--fallback-model random`` shows the plumbing with a
random-weight model (its voltages are flat and meaningless).
"""

from __future__ import annotations

import argparse
import tempfile
import time
from pathlib import Path

import torch

from surrogate_cell.cells import l5pc
from surrogate_cell.cells.layout import SYNAPSE_SECTION_TYPES, cell_layout
from surrogate_cell.checkpoint import CheckpointError, save_untrained_checkpoint
from surrogate_cell.network.reference import NeuronNetwork, compare_runs
from surrogate_cell.network.standard import (
    RecurrentNetworkConfig,
    build_recurrent_network,
)
from surrogate_cell.pretrained import resolve_model

RATE_TOLERANCE = 0.20
DEFAULT_EXC_RATE_HZ = 20.0
DEFAULT_BASKET_RATE_HZ = 8.0
"""Poisson drive per basket-cell input channel (exc and inh): inside its training range (0-26 Hz per
synapse); at a steady 10 Hz the NEURON basket cell fires about 25 Hz."""


def parse_arguments(argv=None) -> argparse.Namespace:
    """Command-line options."""
    defaults = RecurrentNetworkConfig()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--model", default="l5pc-default", help="shipped model name or checkpoint path")
    parser.add_argument("--inhibitory-model", default="basket-default",
                        help="shipped name or checkpoint of the inhibitory cells ('same': --model)")
    parser.add_argument("--inhibitory-exc-rate-hz", type=float, default=DEFAULT_BASKET_RATE_HZ,
                        help="Poisson drive per excitatory synapse of the inhibitory cells")
    parser.add_argument("--inhibitory-inh-rate-hz", type=float, default=DEFAULT_BASKET_RATE_HZ,
                        help="Poisson drive per inhibitory synapse of the inhibitory cells")
    parser.add_argument("--fallback-model", help="checkpoint used when --model does not exist "
                                                 "('random': a random-weight model, plumbing only)")
    parser.add_argument("--n-cells", type=int, default=defaults.n_cells)
    parser.add_argument("--duration-ms", type=int, default=500)
    parser.add_argument("--seed", type=int, default=0, help="connectivity, placement and drive seed")
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads (more only help large networks on an otherwise idle machine)")
    parser.add_argument("--skip-ms", type=float, default=50.0,
                        help="start transient left out of the comparison (both start at rest)")
    parser.add_argument("--connection-probability", type=float, default=defaults.connection_probability)
    parser.add_argument("--synapses-per-connection", type=int, default=defaults.synapses_per_connection)
    parser.add_argument("--exc-rate-hz", type=float, default=DEFAULT_EXC_RATE_HZ,
                        help="Poisson drive per excitatory synapse (at the default, NEURON's cells fire "
                             "about 14 Hz; at the Poisson regime's 12.5 Hz they stay silent)")
    parser.add_argument("--inh-rate-hz", type=float, default=defaults.inh_rate_hz,
                        help="Poisson drive per inhibitory synapse")
    return parser.parse_args(argv)


def chosen_model(args: argparse.Namespace) -> str:
    """``--model`` if it exists, else ``--fallback-model`` (with a message), else exit with advice."""
    try:
        return str(resolve_model(args.model))
    except CheckpointError as error:
        if args.fallback_model is None:
            raise SystemExit(f"{error}\nTrain a model or pass --fallback-model PATH "
                             "(or --fallback-model random to see the plumbing).") from None
        print(f"Model {args.model!r} is not available; falling back to {args.fallback_model}.")
    if args.fallback_model == "random":
        path = Path(tempfile.mkdtemp()) / "random.pt"
        save_untrained_checkpoint(path, cell_layout(l5pc(), SYNAPSE_SECTION_TYPES))
        print("  (a random-weight model: its voltages are flat and meaningless)")
        return str(path)
    return str(resolve_model(args.fallback_model))


def main(argv=None) -> None:
    """Build the network, run both simulators, print the comparison."""
    args = parse_arguments(argv)
    torch.set_num_threads(args.threads)
    model = chosen_model(args)
    two_types = args.inhibitory_model != "same"
    config = RecurrentNetworkConfig(n_cells=args.n_cells, connection_probability=args.connection_probability,
                                    synapses_per_connection=args.synapses_per_connection,
                                    exc_rate_hz=args.exc_rate_hz, inh_rate_hz=args.inh_rate_hz,
                                    inhibitory_exc_rate_hz=args.inhibitory_exc_rate_hz if two_types else None,
                                    inhibitory_inh_rate_hz=args.inhibitory_inh_rate_hz if two_types else None)
    inhibitory = str(resolve_model(args.inhibitory_model)) if two_types else None
    network = build_recurrent_network(model, config, seed=args.seed, device="cpu", inhibitory_model=inhibitory)
    print(f"{config.n_cells} cells ({config.n_cells - config.n_inhibitory} E, {config.n_inhibitory} I), "
          f"{len(network.connectivity())} recurrent synapses, {args.duration_ms} ms, seed {args.seed}")

    started = time.perf_counter()
    surrogate = network.simulate(args.duration_ms, progress=True)
    surrogate_s = time.perf_counter() - started
    started = time.perf_counter()
    with NeuronNetwork(network) as reference:
        neuron = reference.run(args.duration_ms, record_soma=False, progress=True)
    neuron_s = time.perf_counter() - started
    report(compare_runs(neuron, surrogate, args.skip_ms), neuron, surrogate, args, (neuron_s, surrogate_s))


def report(comparison, neuron, surrogate, args: argparse.Namespace, wall_s: tuple[float, float]) -> None:
    """Print the comparison table."""
    print(f"\nFrom {args.skip_ms:g} ms on:")
    print(f"{'':28}{'NEURON':>10}{'surrogate':>11}")
    for population in neuron.populations:
        rates = [run.population_rate_hz(population, args.skip_ms) for run in (neuron, surrogate)]
        print(f"  rate {population} (Hz){'':15}{rates[0]:10.2f}{rates[1]:11.2f}")
    print(f"  rate, all cells (Hz){'':6}{comparison.neuron_rate_hz:10.2f}{comparison.surrogate_rate_hz:11.2f}")
    print(f"  wall time (s){'':14}{wall_s[0]:10.1f}{wall_s[1]:11.1f}")
    within = comparison.rate_relative_difference <= RATE_TOLERANCE
    print(f"  population rate difference: {comparison.rate_relative_difference:.1%} -> "
          f"{'within' if within else 'NOT within'} {RATE_TOLERANCE:.0%}")
    print(f"  spike-count correlation per cell: r = {comparison.spike_count_correlation:.3f}")
    for name, r in comparison.lfp_pearson_r.items():
        print(f"  summed {name} Pearson r: {r:.3f}")


if __name__ == "__main__":
    main()
