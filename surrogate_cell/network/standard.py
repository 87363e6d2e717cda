"""A standard recurrent network (an excitatory and an inhibitory population, of one model or of
two cell types), for examples, validation and benchmarks."""

from __future__ import annotations

import os
from dataclasses import dataclass

import LFPy
import numpy as np
import torch

from surrogate_cell.network.config import (
    Connection,
    NetworkConfigError,
    PoissonDrive,
    Population,
    Probe,
)
from surrogate_cell.network.connectivity import stream_rng
from surrogate_cell.network.network import SurrogateNetwork
from surrogate_cell.network.placement import cylinder_positions, z_rotations

PLACEMENT_STREAM = 3

DEFAULT_EXC_RATE_HZ = 12.5
"""Default Poisson rate (Hz) of every excitatory input channel: the project's Poisson regime.

The same value as the data generation's ``PoissonInputConfig.exc_rate_hz`` (the published
regime's mean input spread over the dendritic segments); kept here so that the runtime never
imports data generation (``tests/test_network.py`` checks the two agree)."""

DEFAULT_INH_RATE_HZ = 10.0
"""Default Poisson rate (Hz) of every inhibitory input channel (see :data:`DEFAULT_EXC_RATE_HZ`)."""

MIN_CELLS = 2
"""The standard network has both populations, so at least one excitatory and one inhibitory cell."""


@dataclass(frozen=True)
class RecurrentNetworkConfig:
    """``n_cells`` cells, ``inhibitory_fraction`` of them inhibitory, in a cylinder of ``radius_um``.

    Every ordered pair of cells connects with ``connection_probability`` through
    ``synapses_per_connection`` synapses (delays normal(``delay_ms``, ``delay_std_ms``)). Every
    cell's synapses receive Poisson drive at ``exc_rate_hz`` / ``inh_rate_hz`` (default: the
    project's Poisson regime, which matches the training input's mean); the inhibitory
    population's own rates are ``inhibitory_exc_rate_hz`` / ``inhibitory_inh_rate_hz`` when given
    (a model of another cell type, e.g. ``basket-default``, is trained on other input). Probes:
    an electrode column of ``n_contacts`` on the cylinder axis and the current dipole moment.

    Raises
    ------
    NetworkConfigError
        For fewer than 2 cells (the network has an excitatory and an inhibitory population),
        a probability or fraction outside [0, 1], rates outside [0, 1000] Hz, or fewer than
        one synapse per connection or contact.
    """

    n_cells: int = 30
    inhibitory_fraction: float = 0.2
    connection_probability: float = 0.2
    synapses_per_connection: int = 5
    delay_ms: float = 1.5
    delay_std_ms: float = 0.5
    exc_rate_hz: float = DEFAULT_EXC_RATE_HZ
    inh_rate_hz: float = DEFAULT_INH_RATE_HZ
    radius_um: float = 200.0
    z_range_um: tuple[float, float] = (-50.0, 50.0)
    n_contacts: int = 8
    spike_threshold_mv: float | None = None
    inhibitory_exc_rate_hz: float | None = None
    inhibitory_inh_rate_hz: float | None = None

    def __post_init__(self) -> None:
        _check_whole(self.n_cells, "n_cells", MIN_CELLS,
                     "one excitatory and one inhibitory cell at least")
        _check_whole(self.synapses_per_connection, "synapses_per_connection", 1, "")
        _check_whole(self.n_contacts, "n_contacts", 1, "")
        _check_range(self.connection_probability, "connection_probability", 0.0, 1.0)
        _check_range(self.inhibitory_fraction, "inhibitory_fraction", 0.0, 1.0)
        _check_range(self.exc_rate_hz, "exc_rate_hz", 0.0, 1000.0)
        _check_range(self.inh_rate_hz, "inh_rate_hz", 0.0, 1000.0)
        for name in ("inhibitory_exc_rate_hz", "inhibitory_inh_rate_hz"):
            if getattr(self, name) is not None:
                _check_range(getattr(self, name), name, 0.0, 1000.0)
        if self.n_inhibitory >= self.n_cells:
            raise NetworkConfigError(
                f"RecurrentNetworkConfig: inhibitory_fraction {self.inhibitory_fraction} of "
                f"{self.n_cells} cells leaves no excitatory cell; lower inhibitory_fraction or "
                "give more cells.")

    def drive_rates_hz(self, population: str) -> tuple[float, float]:
        """(excitatory, inhibitory) Poisson rate (Hz) per input channel of population "E" or "I"."""
        if population == "I":
            return (self.exc_rate_hz if self.inhibitory_exc_rate_hz is None else self.inhibitory_exc_rate_hz,
                    self.inh_rate_hz if self.inhibitory_inh_rate_hz is None else self.inhibitory_inh_rate_hz)
        return self.exc_rate_hz, self.inh_rate_hz

    @property
    def n_inhibitory(self) -> int:
        """Number of inhibitory cells (at least one)."""
        return max(1, int(round(self.inhibitory_fraction * self.n_cells)))


def _check_whole(value, name: str, minimum: int, why: str) -> None:
    """Refuse ``value`` unless it is a whole number >= ``minimum`` (:class:`NetworkConfigError`)."""
    if isinstance(value, bool) or not isinstance(value, (int, np.integer)) or value < minimum:
        reason = f" ({why})" if why else ""
        raise NetworkConfigError(f"RecurrentNetworkConfig: {name} must be a whole number >= {minimum}"
                                 f"{reason}, got {value!r}.")


def _check_range(value, name: str, low: float, high: float) -> None:
    """Refuse ``value`` unless it is a number in ``[low, high]`` (:class:`NetworkConfigError`)."""
    if isinstance(value, bool) or not isinstance(value, (int, float, np.number)) or not low <= value <= high:
        raise NetworkConfigError(f"RecurrentNetworkConfig: {name} must be a number in [{low:g}, {high:g}], "
                                 f"got {value!r}.")


def electrode_column(n_contacts: int) -> dict:
    """``LFPy.RecExtElectrode`` arguments: contacts on the z axis from -200 to 1200 um."""
    z = np.linspace(-200.0, 1200.0, n_contacts)
    return {"x": np.zeros(n_contacts), "y": np.zeros(n_contacts), "z": z, "sigma": 0.3, "method": "linesource"}


def build_recurrent_network(model: str | os.PathLike, config: RecurrentNetworkConfig, seed: int = 0,
                            device: str | torch.device | None = None,
                            dtype: str | torch.dtype | None = None,
                            inhibitory_model: str | os.PathLike | None = None) -> SurrogateNetwork:
    """The network of ``config``: population "E" of ``model`` surrogates and population "I" of
    ``inhibitory_model`` surrogates (default: ``model`` too; e.g. ``"basket-default"``)."""
    network = SurrogateNetwork(seed=seed, device=device, dtype=dtype)
    rng = stream_rng(seed, PLACEMENT_STREAM)
    sizes = {"E": config.n_cells - config.n_inhibitory, "I": config.n_inhibitory}
    models = {"E": model, "I": model if inhibitory_model is None else inhibitory_model}
    for name, kind in (("E", "exc"), ("I", "inh")):
        network.add_population(Population(
            name, models[name], sizes[name], synapse_kind=kind,
            positions=cylinder_positions(sizes[name], config.radius_um, config.z_range_um, rng),
            rotations=z_rotations(sizes[name], rng), spike_threshold_mv=config.spike_threshold_mv))
    for pre in sizes:
        for post in sizes:
            network.connect(Connection(pre, post, config.connection_probability, delay_ms=config.delay_ms,
                                       delay_std_ms=config.delay_std_ms,
                                       synapses_per_connection=config.synapses_per_connection))
        exc_rate_hz, inh_rate_hz = config.drive_rates_hz(pre)
        network.add_drive(PoissonDrive(pre, exc_rate_hz=exc_rate_hz, inh_rate_hz=inh_rate_hz))
    network.add_probe(Probe("lfp", LFPy.RecExtElectrode, electrode_column(config.n_contacts)))
    network.add_probe(Probe("dipole", LFPy.CurrentDipoleMoment))
    return network
