"""Recurrent networks of surrogate cells, in one process or sharded over many (``torch.distributed``).

See :class:`SurrogateNetwork` for the API and :mod:`surrogate_cell.network.reference` for the
same network in NEURON (for validation).
"""

from surrogate_cell.network.config import (
    MIN_DELAY_MS,
    Connection,
    DelayError,
    NetworkConfigError,
    PoissonDrive,
    Population,
    PopulationMismatchError,
    Probe,
    TargetError,
    Targets,
)
from surrogate_cell.network.connectivity import ConnectionTable, PopulationSpan
from surrogate_cell.network.distributed import Shard, init_from_environment, spawn
from surrogate_cell.network.drive import DriveEvents
from surrogate_cell.network.network import SurrogateNetwork
from surrogate_cell.network.placement import cylinder_positions, z_rotations
from surrogate_cell.network.recording import (
    HDF5Writer,
    NetworkResult,
    read_network_file,
)

__all__ = [
    "MIN_DELAY_MS",
    "Connection",
    "ConnectionTable",
    "DelayError",
    "DriveEvents",
    "HDF5Writer",
    "NetworkConfigError",
    "NetworkResult",
    "PoissonDrive",
    "Population",
    "PopulationMismatchError",
    "PopulationSpan",
    "Probe",
    "Shard",
    "SurrogateNetwork",
    "TargetError",
    "Targets",
    "cylinder_positions",
    "init_from_environment",
    "read_network_file",
    "spawn",
    "z_rotations",
]
