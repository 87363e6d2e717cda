"""An ordinary LFPy script whose NEURON cell is replaced by a surrogate by changing one line.

Run with NEURON (the Hay L5PC)::

    python examples/replace_lfpy_cell.py

Run the same script with a trained surrogate (only the ``cell = ...`` line differs)::

    python examples/replace_lfpy_cell.py --surrogate l5pc-default

A random-weight checkpoint shows the plumbing alone (its output is meaningless, flat
voltages)::

    python examples/replace_lfpy_cell.py --write-random-checkpoint /tmp/random.pt
    python examples/replace_lfpy_cell.py --surrogate /tmp/random.pt

Both runs save ``soma.png``, ``lfp.png`` and ``dipole.png`` in ``--out-dir``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import LFPy
import matplotlib.pyplot as plt
import numpy as np

from surrogate_cell.cell import SurrogateCell
from surrogate_cell.cells import l5pc
from surrogate_cell.spikes import upward_crossing_times


def parse_arguments() -> argparse.Namespace:
    """Command-line options."""
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--surrogate", metavar="CHECKPOINT",
                        help="simulate with this surrogate model instead of NEURON")
    parser.add_argument("--tstop", type=float, default=300.0, help="simulated time (ms)")
    parser.add_argument("--n-synapses", type=int, default=300, help="excitatory + inhibitory synapses")
    parser.add_argument("--rate", type=float, default=5.0, help="Poisson rate of each synapse (Hz)")
    parser.add_argument("--seed", type=int, default=1)
    parser.add_argument("--out-dir", type=Path, default=Path("example_output"))
    parser.add_argument("--write-random-checkpoint", metavar="PATH", type=Path,
                        help="only write a random-weight checkpoint for l5pc() to PATH and exit")
    return parser.parse_args()


def poisson_spike_times(rng: np.random.Generator, rate_hz: float, tstop_ms: float) -> np.ndarray:
    """Sorted spike times (ms) of a homogeneous Poisson process on [0, tstop)."""
    count = rng.poisson(rate_hz * tstop_ms / 1000.0)
    return np.sort(rng.uniform(0.0, tstop_ms, count))


def add_synapses(cell, n_synapses: int, rate_hz: float, rng: np.random.Generator) -> list:
    """Four fifths excitatory (AMPANMDA), one fifth inhibitory (GABAA), spread by membrane area."""
    idx = cell.get_rand_idx_area_norm(section=["dend", "apic"], nidx=n_synapses)
    n_excitatory = int(0.8 * n_synapses)
    synapses = []
    for number, segment in enumerate(idx):
        excitatory = number < n_excitatory
        synapse = LFPy.Synapse(cell, idx=int(segment), syntype="AMPANMDA" if excitatory else "GABAA",
                               e=0.0 if excitatory else -80.0, weight=1.0)
        synapse.set_spike_times(poisson_spike_times(rng, rate_hz, cell.tstop))
        synapses.append(synapse)
    return synapses


def laminar_electrode(cell) -> LFPy.RecExtElectrode:
    """A linear probe 30 um beside the soma, contacts every 100 um along the apical axis."""
    z = np.arange(-200.0, 1201.0, 100.0)
    return LFPy.RecExtElectrode(cell, x=np.full_like(z, 30.0), y=np.zeros_like(z), z=z,
                                sigma=0.3, method="linesource")


def plot_results(cell, electrode, dipole, out_dir: Path, title: str) -> None:
    """Soma voltage, laminar LFP and current dipole moment as PNG files."""
    out_dir.mkdir(parents=True, exist_ok=True)
    fig, ax = plt.subplots(figsize=(8, 3))
    ax.plot(cell.tvec, cell.somav, "k", lw=1)
    ax.set(xlabel="t (ms)", ylabel="soma V (mV)", title=title)
    fig.tight_layout()
    fig.savefig(out_dir / "soma.png", dpi=120)

    fig, ax = plt.subplots(figsize=(8, 5))
    lfp_uv = 1000.0 * electrode.data
    limit = np.abs(lfp_uv).max() or 1.0
    image = ax.imshow(lfp_uv, aspect="auto", cmap="RdBu_r", vmin=-limit, vmax=limit, origin="lower",
                      extent=(cell.tvec[0], cell.tvec[-1], electrode.z[0], electrode.z[-1]))
    fig.colorbar(image, ax=ax, label="LFP (uV)")
    ax.set(xlabel="t (ms)", ylabel="contact depth z (um)", title=title)
    fig.tight_layout()
    fig.savefig(out_dir / "lfp.png", dpi=120)

    fig, ax = plt.subplots(figsize=(8, 3))
    for component, name in zip(dipole.data, "xyz"):
        ax.plot(cell.tvec, component, lw=1, label=f"p_{name}")
    ax.set(xlabel="t (ms)", ylabel="dipole moment (nA um)", title=title)
    ax.legend()
    fig.tight_layout()
    fig.savefig(out_dir / "dipole.png", dpi=120)
    plt.close("all")


def main() -> None:
    """Build the cell, attach synapses and probes, simulate and plot."""
    args = parse_arguments()
    if args.write_random_checkpoint:
        write_random_checkpoint(args.write_random_checkpoint)
        return
    rng = np.random.default_rng(args.seed)

    # The one line that chooses NEURON or the surrogate:
    cell = l5pc(tstop=args.tstop) if args.surrogate is None else SurrogateCell(model=args.surrogate, tstop=args.tstop)

    cell.set_rotation(z=np.pi / 2)  # about the apical (z) axis; any placement works as in LFPy
    cell.set_pos(x=0.0, y=0.0, z=0.0)
    synapses = add_synapses(cell, args.n_synapses, args.rate, rng)
    electrode = laminar_electrode(cell)
    dipole = LFPy.CurrentDipoleMoment(cell)
    cell.simulate(probes=[electrode, dipole], rec_vmem=True, rec_imem=True)

    title = "surrogate" if args.surrogate else "NEURON"
    plot_results(cell, electrode, dipole, args.out_dir, title)
    spikes = upward_crossing_times(cell.somav, cell.dt, threshold=-30.0, refractory_ms=2.0)
    print(f"{title}: {len(synapses)} synapses, {cell.tvec.size} samples, {spikes.size} somatic "
          f"spikes; figures in {args.out_dir}/")


# ----------------------------------------------------------------------------- demo model only


def write_random_checkpoint(path: Path) -> None:
    """A tiny MH at random initialisation for l5pc(), to try the surrogate path before training."""
    from surrogate_cell.cells.layout import SYNAPSE_SECTION_TYPES, cell_layout
    from surrogate_cell.checkpoint import save_untrained_checkpoint

    save_untrained_checkpoint(path, cell_layout(l5pc(), SYNAPSE_SECTION_TYPES))
    print(f"wrote random-weight checkpoint {path}")


if __name__ == "__main__":
    main()
