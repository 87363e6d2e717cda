"""A standard recurrent network (excitatory + inhibitory population of one model), for examples,
validation and benchmarks."""

from __future__ import annotations

import os
from dataclasses import dataclass

import LFPy
import numpy as np
import torch

from surrogate_cell.data.inputs import PoissonInputConfig
from surrogate_cell.network.config import Connection, PoissonDrive, Population, Probe
from surrogate_cell.network.connectivity import stream_rng
from surrogate_cell.network.network import SurrogateNetwork
from surrogate_cell.network.placement import cylinder_positions, z_rotations

PLACEMENT_STREAM = 3


@dataclass(frozen=True)
class RecurrentNetworkConfig:
    """``n_cells`` cells, ``inhibitory_fraction`` of them inhibitory, in a cylinder of ``radius_um``.

    Every ordered pair of cells connects with ``connection_probability`` through
    ``synapses_per_connection`` synapses (delays normal(``delay_ms``, ``delay_std_ms``)). Every
    cell's synapses receive Poisson drive at ``exc_rate_hz`` / ``inh_rate_hz`` (default: the
    project's Poisson regime, which matches the training input's mean). Probes: an electrode
    column of ``n_contacts`` on the cylinder axis and the current dipole moment.
    """

    n_cells: int = 30
    inhibitory_fraction: float = 0.2
    connection_probability: float = 0.2
    synapses_per_connection: int = 5
    delay_ms: float = 1.5
    delay_std_ms: float = 0.5
    exc_rate_hz: float = PoissonInputConfig.exc_rate_hz
    inh_rate_hz: float = PoissonInputConfig.inh_rate_hz
    radius_um: float = 200.0
    z_range_um: tuple[float, float] = (-50.0, 50.0)
    n_contacts: int = 8
    spike_threshold_mv: float | None = None

    @property
    def n_inhibitory(self) -> int:
        """Number of inhibitory cells (at least one)."""
        return max(1, int(round(self.inhibitory_fraction * self.n_cells)))


def electrode_column(n_contacts: int) -> dict:
    """``LFPy.RecExtElectrode`` arguments: contacts on the z axis from -200 to 1200 um."""
    z = np.linspace(-200.0, 1200.0, n_contacts)
    return {"x": np.zeros(n_contacts), "y": np.zeros(n_contacts), "z": z, "sigma": 0.3, "method": "linesource"}


def build_recurrent_network(model: str | os.PathLike, config: RecurrentNetworkConfig, seed: int = 0,
                            device: str | torch.device | None = None,
                            dtype: str | torch.dtype | None = None) -> SurrogateNetwork:
    """The network of ``config`` with surrogate cells of ``model`` (populations "E" and "I")."""
    network = SurrogateNetwork(seed=seed, device=device, dtype=dtype)
    rng = stream_rng(seed, PLACEMENT_STREAM)
    sizes = {"E": config.n_cells - config.n_inhibitory, "I": config.n_inhibitory}
    for name, kind in (("E", "exc"), ("I", "inh")):
        network.add_population(Population(
            name, model, sizes[name], synapse_kind=kind,
            positions=cylinder_positions(sizes[name], config.radius_um, config.z_range_um, rng),
            rotations=z_rotations(sizes[name], rng), spike_threshold_mv=config.spike_threshold_mv))
    for pre in sizes:
        for post in sizes:
            network.connect(Connection(pre, post, config.connection_probability, delay_ms=config.delay_ms,
                                       delay_std_ms=config.delay_std_ms,
                                       synapses_per_connection=config.synapses_per_connection))
        network.add_drive(PoissonDrive(pre, exc_rate_hz=config.exc_rate_hz, inh_rate_hz=config.inh_rate_hz))
    network.add_probe(Probe("lfp", LFPy.RecExtElectrode, electrode_column(config.n_contacts)))
    network.add_probe(Probe("dipole", LFPy.CurrentDipoleMoment))
    return network
