"""``simulate`` subcommand: generate (or extend, or resume) a training data set.

    python -m surrogate_cell.training simulate --out data/NAME.h5 --n-sims N --duration-ms T

Simulation ``i`` draws its input from a seed derived from (base seed, ``i``), so the data
do not depend on how many workers ran or in which order. The main process (MPI rank 0)
is the only writer; it appends each finished simulation and closes the file again.
Rerunning the same command after an interruption keeps the finished simulations and runs
the missing ones; a larger ``--n-sims`` extends the data set.
"""

from __future__ import annotations

import argparse
import json
import multiprocessing
import os
import secrets
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import h5py
import LFPy
import neuron
import numpy as np
from tqdm import tqdm

import surrogate_cell
from surrogate_cell.cells import MorphologyError
from surrogate_cell.cells.recipe import CellRecipeError, is_recipe_path, load_recipe
from surrogate_cell.data.simulation import (
    ENGINES,
    CellSimulator,
    ConfigError,
    SimulationConfig,
    SimulationResult,
    load_simulation_config,
    simulation_config_from_dict,
    simulation_config_to_dict,
)
from surrogate_cell.data.store import (
    DataSet,
    DataSetError,
    create_data_set,
    drop_incomplete_simulations,
    read_root_attrs,
    write_simulation,
)
from surrogate_cell.mechanisms import MechanismError, coreneuron_library
from surrogate_cell.outputs import OutputPathError, writable_file_folder

COMMAND_HELP = "simulate the L5PC with random synaptic input and store training data (HDF5)"
COMMAND_DESCRIPTION = """\
Simulate the Hay L5PC (NEURON) with random synaptic input and store training data.

Each simulation puts one excitatory (AMPANMDA) and one inhibitory (GABAA) synapse on
every dendritic segment, draws their input events from the configured regime, simulates
warm-up + T ms and stores, for the T ms after the warm-up: every segment's voltage at
every whole ms, the soma voltage at 8 samples/ms (configurable), the somatic spike times
and the input events (see docs/data_format.md). NEURON integrates with Crank-Nicolson at
dt 0.025 ms (the config's dt and secondorder), by default in CoreNEURON where available
(--engine: bit-identical results, about 1.2x less CPU time).

Rerun the same command after an interruption to continue: finished simulations are kept,
missing ones are run. A larger --n-sims extends the data set. A file made with another
config, duration, seed or cell is refused unless --overwrite is given. The progress bar
shows simulations done, simulated seconds per wall-clock second (sim-s/s) and the ETA.
"""
MAX_SEED = 2**63 - 1
_MPI_ENV_VARS = ("OMPI_COMM_WORLD_SIZE", "PMI_SIZE", "PMI_RANK", "PMIX_RANK", "MV2_COMM_WORLD_SIZE")
_MPI_TAG = 17
USER_ERRORS = (ConfigError, DataSetError, MorphologyError, CellRecipeError, MechanismError, OutputPathError)
"""Errors reported as one line by the command line instead of a traceback."""


@dataclass(frozen=True)
class GenerationPlan:
    """What is left to do for one output file."""

    path: Path
    n_sims: int
    base_seed: int
    missing: tuple[int, ...]

    @property
    def n_done_before(self) -> int:
        """Simulations already complete in the file when this run started."""
        return self.n_sims - len(self.missing)


@dataclass(frozen=True)
class GenerationSummary:
    """Outcome of :func:`generate`."""

    path: Path
    n_sims: int
    n_done_before: int
    n_simulated: int
    base_seed: int
    wall_time_s: float
    is_writer: bool = True
    """False on MPI ranks other than 0, which only simulate."""


# --------------------------------------------------------------------------- preparing the file


def _identity(config: SimulationConfig, duration_ms: int, base_seed: int, segment_hash: str) -> dict:
    """Root attributes that must match for a run to continue an existing file."""
    identity = {"config": simulation_config_to_dict(config), "duration_ms": duration_ms,
                "base_seed": base_seed, "segment_hash": segment_hash}
    return json.loads(json.dumps(identity))  # the same types a stored file gives back


def _versions() -> dict:
    return {"surrogate_cell": surrogate_cell.__version__, "neuron": neuron.__version__,
            "LFPy": LFPy.__version__, "h5py": h5py.__version__, "numpy": np.__version__,
            "python": sys.version.split()[0]}


def _differences(stored, requested, name: str) -> list[str]:
    if isinstance(stored, dict) and isinstance(requested, dict):
        keys = sorted(set(stored) | set(requested))
        return [line for key in keys
                for line in _differences(stored.get(key), requested.get(key), f"{name}.{key}")]
    return [] if stored == requested else [f"{name}: file has {stored!r}, requested {requested!r}"]


def _check_same_setup(path: Path, stored: dict, identity: dict) -> None:
    differences = [line for key, value in identity.items()
                   for line in _differences(stored.get(key), value, key)]
    if differences:
        raise DataSetError(
            f"{path} was generated with a different setup:\n  " + "\n  ".join(differences)
            + "\nUse another --out, or --overwrite to delete the existing data set."
        )


def _remove_output(path: Path) -> None:
    for stale in (path, path.with_name(path.name + ".partial")):
        stale.unlink(missing_ok=True)


def prepare_output(path: str | Path, simulator: CellSimulator, duration_ms: int, n_sims: int,
                   seed: int | None = None, overwrite: bool = False) -> GenerationPlan:
    """Create the data set file or check an existing one, and list the missing simulations.

    An existing file must have been made with the same config, duration, seed (taken
    from the file when ``seed`` is None) and cell geometry; its incomplete groups are
    deleted. ``overwrite`` deletes the file first.
    """
    path = Path(path)
    if overwrite or not path.exists():
        writable_file_folder(path, "--out")
    if overwrite:
        _remove_output(path)
    if path.exists():
        stored = read_root_attrs(path)
        base_seed = stored["base_seed"] if seed is None else seed
        _check_same_setup(path, stored, _identity(simulator.config, duration_ms, base_seed,
                                                  simulator.segment_hash))
        drop_incomplete_simulations(path)
        done = set(DataSet(path).simulation_indices())
    else:
        base_seed = secrets.randbits(63) if seed is None else seed
        path.parent.mkdir(parents=True, exist_ok=True)
        _remove_output(path)
        attrs = {**_identity(simulator.config, duration_ms, base_seed, simulator.segment_hash),
                 "cell_recipe": simulator.layout.recipe, "versions": _versions(),
                 "created": time.strftime("%Y-%m-%dT%H:%M:%S%z")}
        create_data_set(path, simulator.layout, attrs)
        done = set()
    missing = tuple(index for index in range(n_sims) if index not in done)
    return GenerationPlan(path=path, n_sims=max(n_sims, len(done)), base_seed=int(base_seed),
                          missing=missing)


# --------------------------------------------------------------------------- writing results


class ResultWriter:
    """The single writer: appends results to the file and drives the progress bar."""

    def __init__(self, plan: GenerationPlan, config: SimulationConfig, segment_hash: str,
                 progress: bool):
        self.plan = plan
        self.compression = config.compression
        self.segment_hash = segment_hash
        self.n_written = 0
        self.simulated_ms = 0
        self.started = time.perf_counter()
        self.bar = tqdm(total=plan.n_sims, initial=plan.n_done_before, unit="sim",
                        desc=plan.path.name, disable=not progress, dynamic_ncols=True)

    def write(self, result: SimulationResult) -> None:
        """Store one result and update the progress bar."""
        if result.segment_hash != self.segment_hash:
            raise DataSetError(
                f"simulation {result.index} ran on a cell whose segment geometry differs from the "
                f"file's (hash {result.segment_hash[:12]} vs {self.segment_hash[:12]}); was the "
                f"morphology changed during the run?"
            )
        write_simulation(self.plan.path, result, self.compression)
        self.n_written += 1
        self.simulated_ms += result.simulated_ms
        self.bar.set_postfix_str(f"{self.throughput():.3g} sim-s/s", refresh=False)
        self.bar.update(1)

    def throughput(self) -> float:
        """Simulated seconds (warm-up included) per wall-clock second so far."""
        return self.simulated_ms / 1000.0 / max(time.perf_counter() - self.started, 1e-9)

    def close(self) -> None:
        """Close the progress bar."""
        self.bar.close()


# --------------------------------------------------------------------------- running


_worker_simulator: CellSimulator | None = None


def _init_worker(config: SimulationConfig, morphology: str | None, engine: str) -> None:
    """Pool initializer: build this worker's cell once."""
    global _worker_simulator
    _worker_simulator = CellSimulator(config, morphology, engine=engine)


def _simulate_in_worker(task: tuple[int, int, int]) -> SimulationResult:
    base_seed, index, duration_ms = task
    return _worker_simulator.simulate(base_seed, index, duration_ms)


def _run_in_process(simulator: CellSimulator, plan: GenerationPlan, duration_ms: int,
                    writer: ResultWriter) -> None:
    for index in plan.missing:
        writer.write(simulator.simulate(plan.base_seed, index, duration_ms))


def _run_worker_pool(config: SimulationConfig, morphology: str | None, plan: GenerationPlan,
                     duration_ms: int, workers: int, writer: ResultWriter, engine: str) -> None:
    # 'spawn': every worker starts a fresh interpreter and NEURON, none inherits the parent's.
    context = multiprocessing.get_context("spawn")
    tasks = [(plan.base_seed, index, duration_ms) for index in plan.missing]
    with context.Pool(workers, initializer=_init_worker, initargs=(config, morphology, engine)) as pool:
        for result in pool.imap_unordered(_simulate_in_worker, tasks):
            writer.write(result)


def _resolve_config(config: SimulationConfig | str | Path | None,
                    morphology: str | Path | None = None) -> SimulationConfig:
    if config is None and is_recipe_path(morphology):
        recipe = load_recipe(morphology)
        if recipe.simulation is not None:
            return simulation_config_from_dict(recipe.simulation, f"{recipe.source}: simulation")
    if config is None:
        return SimulationConfig()
    if isinstance(config, SimulationConfig):
        return config
    return load_simulation_config(config)


def _check_counts(n_sims: int, duration_ms: int, workers: int) -> None:
    if n_sims < 0:
        raise ConfigError(f"--n-sims must be >= 0, got {n_sims}")
    if duration_ms < 1 or duration_ms != int(duration_ms):
        raise ConfigError(f"--duration-ms must be a whole number of ms >= 1, got {duration_ms}")
    if workers < 1:
        raise ConfigError(f"--workers must be >= 1, got {workers}")


def generate(out: str | Path, n_sims: int, duration_ms: int, *, morphology: str | Path | None = None,
             workers: int = 1, seed: int | None = None,
             config: SimulationConfig | str | Path | None = None, overwrite: bool = False,
             progress: bool = True, engine: str = "auto") -> GenerationSummary:
    """Make ``out`` hold complete simulations ``0 .. n_sims - 1`` of ``duration_ms`` each.

    The ``simulate`` subcommand. An existing file is extended or resumed: its finished
    simulations are kept, incomplete ones redone. Under mpirun/srun with mpi4py and more than
    one rank, the ranks share the work instead of ``workers``.

    Parameters
    ----------
    out : str or Path
        HDF5 data set (format: ``docs/data_format.md``).
    n_sims : int
        Number of simulations the file should hold (>= 0).
    duration_ms : int
        Recorded length of every simulation (ms, whole, >= 1), after the warm-up.
    morphology : str or Path, optional
        Morphology file for :func:`~surrogate_cell.cells.l5pc` (default the built-in one), or a
        cell recipe (``.yaml``, :mod:`surrogate_cell.cells.recipe`; ``simulate --cell``), whose
        ``simulation`` block is the default ``config``.
    workers : int, default 1
        Spawned worker processes (> 1 runs in parallel).
    seed : int, optional
        Base seed in [0, 2**63 - 1]; simulation ``i`` draws its input from (seed, ``i``).
        Default: the file's seed when extending, else a random one.
    config : SimulationConfig or str or Path, optional
        Simulation config or the path of its YAML file (e.g. ``default.yaml``,
        ``poisson.yaml``); default :class:`SimulationConfig` defaults (``dt`` 0.025 ms,
        200 ms warm-up, published input regime).
    overwrite : bool, default False
        Delete an existing file first.
    progress : bool, default True
        Show a progress bar.
    engine : str, default "auto"
        Who integrates (same solver settings, bit-identical results): ``"coreneuron"`` (about
        1.2x less CPU time; its mechanism library is compiled on first use), ``"neuron"``, or
        ``"auto"``: CoreNEURON where this NEURON has it, else NEURON (with a note); under MPI
        ``"auto"`` is NEURON. Each simulation stores its engine in its ``engine`` attribute.

    Returns
    -------
    GenerationSummary
        The file, simulation counts (total, done before, simulated now), base seed and wall
        time (s).

    Raises
    ------
    ConfigError
        For bad counts or seed.
    DataSetError
        For an existing file made with another config, duration, seed or cell.
    """
    config = _resolve_config(config, morphology)
    _check_counts(n_sims, duration_ms, workers)
    duration_ms = int(duration_ms)
    morphology = None if morphology is None else str(morphology)
    if seed is not None and not 0 <= seed <= MAX_SEED:
        raise ConfigError(f"--seed must be in [0, 2**63 - 1], got {seed}")
    communicator = mpi_world()
    if communicator is not None:
        return _generate_mpi(communicator, out, n_sims, duration_ms, morphology, seed, config,
                             overwrite, progress, resolve_engine("neuron" if engine == "auto" else engine,
                                                                 recipe_cell=is_recipe_path(morphology)))
    started = time.perf_counter()
    engine = resolve_engine(engine, recipe_cell=is_recipe_path(morphology))
    with CellSimulator(config, morphology, engine=engine) as simulator:
        plan = prepare_output(out, simulator, duration_ms, n_sims, seed, overwrite)
        writer = ResultWriter(plan, config, simulator.segment_hash, progress)
        try:
            workers = min(workers, len(plan.missing))
            if workers <= 1:
                _run_in_process(simulator, plan, duration_ms, writer)
            else:
                _run_worker_pool(config, morphology, plan, duration_ms, workers, writer, engine)
        finally:
            writer.close()
    return GenerationSummary(plan.path, plan.n_sims, plan.n_done_before, writer.n_written,
                             plan.base_seed, time.perf_counter() - started)


# --------------------------------------------------------------------------- MPI


def mpi_world():
    """``MPI.COMM_WORLD`` when launched by mpirun/srun with mpi4py and > 1 rank, else None."""
    if not any(name in os.environ for name in _MPI_ENV_VARS):
        return None
    try:
        from mpi4py import MPI
    except ImportError:
        return None
    world = MPI.COMM_WORLD
    return world if world.Get_size() > 1 else None


@dataclass(frozen=True)
class _RankFailure:
    """Sent to rank 0 by a rank whose simulation raised."""

    rank: int
    message: str


def _generate_mpi(world, out, n_sims, duration_ms, morphology, seed, config, overwrite,
                  progress, engine: str = "neuron") -> GenerationSummary:
    """Rank ``r`` simulates missing indices ``r, r + size, ...``; rank 0 also writes."""
    started = time.perf_counter()
    rank, size = world.Get_rank(), world.Get_size()
    with CellSimulator(config, morphology, engine=engine) as simulator:
        plan: GenerationPlan | Exception | None = None
        if rank == 0:
            try:
                plan = prepare_output(out, simulator, duration_ms, n_sims, seed, overwrite)
            except Exception as error:  # every rank must learn that there is nothing to do
                plan = error
        plan = world.bcast(plan, root=0)
        if isinstance(plan, Exception):
            raise plan
        own = plan.missing[rank::size]
        if rank == 0:
            n_written = _mpi_root(world, simulator, plan, own, duration_ms, progress)
        else:
            n_written = _mpi_worker(world, simulator, plan, own, duration_ms)
    return GenerationSummary(plan.path, plan.n_sims, plan.n_done_before, n_written,
                             plan.base_seed, time.perf_counter() - started, is_writer=rank == 0)


def _mpi_worker(world, simulator: CellSimulator, plan: GenerationPlan, own, duration_ms: int) -> int:
    pending = None
    for index in own:
        try:
            result = simulator.simulate(plan.base_seed, index, duration_ms)
        except Exception as error:
            world.send(_RankFailure(world.Get_rank(), repr(error)), dest=0, tag=_MPI_TAG)
            raise
        if pending is not None:
            pending.wait()  # at most one result in flight per rank
        pending = world.isend(result, dest=0, tag=_MPI_TAG)
    if pending is not None:
        pending.wait()
    return 0


def _mpi_root(world, simulator: CellSimulator, plan: GenerationPlan, own, duration_ms: int,
              progress: bool) -> int:
    from mpi4py import MPI

    writer = ResultWriter(plan, simulator.config, simulator.segment_hash, progress)
    expected_from_others = len(plan.missing) - len(own)
    received = 0

    def store(message) -> None:
        if isinstance(message, _RankFailure):
            raise DataSetError(f"MPI rank {message.rank} failed: {message.message}")
        writer.write(message)

    try:
        for index in own:
            writer.write(simulator.simulate(plan.base_seed, index, duration_ms))
            while received < expected_from_others and world.iprobe(source=MPI.ANY_SOURCE, tag=_MPI_TAG):
                store(world.recv(source=MPI.ANY_SOURCE, tag=_MPI_TAG))
                received += 1
        while received < expected_from_others:
            store(world.recv(source=MPI.ANY_SOURCE, tag=_MPI_TAG))
            received += 1
    finally:
        writer.close()
    return writer.n_written


# --------------------------------------------------------------------------- command line


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Add the ``simulate`` options to ``parser``."""
    parser.add_argument("--out", required=True, type=Path, metavar="PATH",
                        help="HDF5 file to create, resume or extend (e.g. data/train.h5)")
    parser.add_argument("--n-sims", required=True, type=int, metavar="N",
                        help="number of simulations the file should hold; simulations already "
                             "in the file are kept and only the missing ones are run")
    parser.add_argument("--duration-ms", required=True, type=int, metavar="T",
                        help="recorded length of each simulation in ms, after the warm-up")
    cell = parser.add_mutually_exclusive_group()
    cell.add_argument("--morphology", metavar="PATH",
                      help="morphology file (.asc, .swc, .hoc, .xml) for the Hay biophysics; default: "
                           "the built-in synthetic L5 pyramidal cell")
    cell.add_argument("--cell", metavar="RECIPE",
                      help="cell recipe YAML of your own NEURON cell (morphology, LFPy.Cell arguments, "
                           ".mod folder, synapse sections; e.g. training/configs/cells/basket/basket.yaml); "
                           "its 'simulation' block is the default --config")
    parser.add_argument("--workers", type=int, default=1, metavar="K",
                        help="worker processes, each simulating with its own NEURON (default 1: "
                             "simulate in this process). Ignored under mpirun/srun, where the "
                             "MPI ranks share the work")
    parser.add_argument("--seed", type=int, metavar="S",
                        help="base seed; simulation i uses a seed derived from (S, i). Default: "
                             "the file's seed when it exists, else a random one (stored)")
    parser.add_argument("--config", type=Path, metavar="FILE",
                        help="simulation config YAML: a file or a packaged name, e.g. data/poisson.yaml "
                             "or data/published_high_drive.yaml (default: built-in defaults = "
                             "data/default.yaml)")
    parser.add_argument("--overwrite", action="store_true",
                        help="delete an existing --out first (needed when its config, duration, "
                             "seed or cell differ)")
    parser.add_argument("--no-progress", action="store_true", help="do not show the progress bar")
    parser.add_argument("--engine", choices=("auto", *ENGINES), default="auto",
                        help="who integrates, with the same solver and bit-identical results: "
                             "coreneuron (about 1.2x less CPU time; compiles its mechanism library "
                             "on first use), neuron, or auto (default: coreneuron where this NEURON "
                             "has it, else neuron; neuron under MPI)")


def resolve_engine(engine: str, recipe_cell: bool = False) -> str:
    """The engine to run: ``"auto"`` is CoreNEURON where its library builds (compiled now), else
    NEURON; a recipe cell runs on NEURON (its own mechanisms have no CoreNEURON library yet)."""
    if engine not in ("auto", *ENGINES):
        raise ConfigError(f"--engine must be auto, neuron or coreneuron, got {engine!r}")
    if recipe_cell and engine == "coreneuron":
        raise ConfigError("--engine coreneuron runs the built-in Hay cell only; a cell recipe runs on "
                          "NEURON: use --engine neuron (or auto).")
    if engine == "neuron" or recipe_cell:
        return "neuron"
    try:
        coreneuron_library()  # compile now, once, before any worker needs it
    except MechanismError as error:
        if engine == "coreneuron":
            raise
        print(f"note: simulating with NEURON ({error})", file=sys.stderr)
        return "neuron"
    return "coreneuron"


def run(args: argparse.Namespace) -> int:
    """Run the ``simulate`` subcommand; returns the exit status."""
    try:
        summary = generate(args.out, args.n_sims, args.duration_ms, morphology=args.cell or args.morphology,
                           workers=args.workers, seed=args.seed, config=args.config,
                           overwrite=args.overwrite, progress=not args.no_progress, engine=args.engine)
    except USER_ERRORS as error:
        print(f"error: {error}", file=sys.stderr)
        return 1
    if summary.is_writer:
        print(f"{summary.path}: {summary.n_sims} simulations ({summary.n_done_before} already there, "
              f"{summary.n_simulated} new) in {summary.wall_time_s:.1f} s, seed {summary.base_seed}")
    return 0
