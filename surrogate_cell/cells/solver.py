"""How NEURON integrates the biophysical cells: one setting for every NEURON run of the project.

The training data (:class:`surrogate_cell.data.simulation.CellSimulator`), replays of stored
data, the NEURON side of every surrogate-vs-NEURON comparison (``examples/compare_lfp.py``,
:class:`surrogate_cell.network.reference.NeuronNetwork`, the benchmarks and tests that run
NEURON) integrate inside :func:`neuron_solver`, so they all solve the cell the same way.

The default, :data:`DEFAULT_SOLVER`, is Crank–Nicolson (``h.secondorder = 2``) at a fixed step
of 0.025 ms. Against a converged reference (Crank–Nicolson at dt = 0.005 ms, which agrees with
CVode at atol 1e-6 within 0.004 ms) its somatic spike times are within 0.12 ms on the published
and high-drive inputs (NEURON's default, backward Euler at the same step,
:data:`BACKWARD_EULER_SOLVER`, is off by up to 2.9 ms there), at about the same cost. Larger
steps lose that accuracy quickly (Crank–Nicolson at 1/16 ms: up to 1.1 ms). The measurements
are in ``docs/experiments.md`` ("Solver accuracy and cost") and ``benchmarks/bench_simulate.py``.

Run NEURON inside :func:`neuron_solver`, which sets the solver for the block and restores
NEURON's previous settings after it (``h.secondorder`` is a process-wide global: left at 2 it
would change every later NEURON run, e.g. LFPy's, whose vmem -> imem matrix reproduces NEURON's
membrane currents only under backward Euler). ``LFPy.Cell.simulate`` sets ``h.dt`` from the
cell's ``dt`` and switches CVode off, but leaves ``h.secondorder`` alone: build the cell with
``dt=solver.dt`` and call ``simulate`` inside the block.

:func:`run_coreneuron` integrates the same equations with CoreNEURON instead of NEURON's own
loop: bit-identical voltages (Crank–Nicolson and backward Euler alike) for about 1.2x less CPU
time on this cell. The training-data generator uses it where available. CoreNEURON cannot
record at fixed intervals (``Vector.record(ref, Dt)`` or with a time vector give one sample):
record every step and subsample.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass

SECONDORDER_METHODS = {0: "backward Euler", 1: "Crank-Nicolson (ion currents first order)",
                       2: "Crank-Nicolson"}
"""NEURON's fixed-step methods by the value of ``h.secondorder``."""

_STEP_TOLERANCE = 1e-9


class SolverError(ValueError):
    """Solver settings NEURON cannot run the project's simulations with."""


@dataclass(frozen=True)
class NeuronSolver:
    """NEURON's fixed-step integration: step ``dt`` (ms) and method ``secondorder``.

    ``secondorder`` is NEURON's ``h.secondorder``: 0 backward Euler (first order, NEURON's
    default), 2 Crank–Nicolson (second order, channel states staggered by half a step).
    ``dt`` must divide 1 ms into whole steps, so that the input events at whole ms and the
    1 ms samples fall on time steps.
    """

    dt: float = 0.025
    secondorder: int = 2

    def __post_init__(self) -> None:
        dt = float(self.dt)
        steps = round(1.0 / dt) if dt > 0 else 0
        if steps < 1 or abs(steps * dt - 1.0) > _STEP_TOLERANCE:
            raise SolverError(f"dt must divide 1 ms into whole steps (e.g. 0.025), got {self.dt}")
        if isinstance(self.secondorder, bool) or self.secondorder not in SECONDORDER_METHODS:
            raise SolverError(f"secondorder must be one of {sorted(SECONDORDER_METHODS)} "
                              f"(0 backward Euler, 2 Crank-Nicolson), got {self.secondorder!r}")
        object.__setattr__(self, "dt", dt)
        object.__setattr__(self, "secondorder", int(self.secondorder))

    @property
    def steps_per_ms(self) -> int:
        """Number of time steps per ms."""
        return round(1.0 / self.dt)

    @property
    def description(self) -> str:
        """E.g. ``Crank-Nicolson (secondorder=2), dt = 0.025 ms``."""
        return f"{SECONDORDER_METHODS[self.secondorder]} (secondorder={self.secondorder}), dt = {self.dt:g} ms"

    def to_dict(self) -> dict:
        """``{"dt": ..., "secondorder": ...}``, the keys of the data configs."""
        return {"dt": self.dt, "secondorder": self.secondorder}


DEFAULT_SOLVER = NeuronSolver()
"""Crank–Nicolson at dt = 0.025 ms: training data and every NEURON comparison."""

BACKWARD_EULER_SOLVER = NeuronSolver(dt=0.025, secondorder=0)
"""NEURON's and LFPy's defaults, the project's solver before Crank–Nicolson: what a data set
whose config has no ``secondorder`` was generated with."""


def solver_from_config(config: Mapping) -> NeuronSolver:
    """The solver a simulation config names (``dt`` and ``secondorder``, e.g. a data set's
    ``config`` attribute); a config without ``secondorder`` predates the key and means
    backward Euler."""
    return NeuronSolver(dt=config.get("dt", BACKWARD_EULER_SOLVER.dt),
                        secondorder=config.get("secondorder", BACKWARD_EULER_SOLVER.secondorder))


def with_solver_fields(config: Mapping) -> dict:
    """``config`` with ``secondorder`` filled in where it predates the key (backward Euler)."""
    return {**config, "secondorder": config.get("secondorder", BACKWARD_EULER_SOLVER.secondorder)}


def apply_solver(solver: NeuronSolver | None = None) -> NeuronSolver:
    """Make NEURON integrate with ``solver`` (default :data:`DEFAULT_SOLVER`); returns it.

    Switches CVode off and sets ``h.secondorder`` and ``h.dt``. These are NEURON globals that
    stay in force for the rest of the process, where they change every later NEURON run (e.g.
    LFPy's, whose vmem -> imem matrix matches NEURON's membrane currents only under backward
    Euler); run the project's simulations inside :func:`neuron_solver` instead, which restores them.
    """
    from neuron import h

    solver = DEFAULT_SOLVER if solver is None else solver
    h.load_file("stdrun.hoc")
    h.CVode().active(0)
    h.secondorder = solver.secondorder
    h.dt = solver.dt
    return solver


@contextmanager
def neuron_solver(solver: NeuronSolver | None = None) -> Iterator[NeuronSolver]:
    """Integrate with ``solver`` (default :data:`DEFAULT_SOLVER`) inside the block, then restore
    NEURON's previous ``dt``, ``secondorder`` and CVode state.

    The one way the project runs NEURON: ``finitialize`` ... ``continuerun`` (or
    ``LFPy.Cell.simulate``, with the cell built with ``dt=solver.dt``) inside the block::

        with neuron_solver():
            cell.simulate(rec_vmem=True)
    """
    from neuron import h

    h.load_file("stdrun.hoc")
    cvode = h.CVode()
    previous = (h.dt, int(h.secondorder), int(cvode.active()))
    try:
        yield apply_solver(solver)
    finally:
        h.dt, h.secondorder = previous[0], previous[1]
        cvode.active(previous[2])


# --------------------------------------------------------------------------- CoreNEURON


CORENEURON_CHUNK_MS = 300.0
"""Default stretch of one CoreNEURON run: bounds the memory of every-step recordings (645
segments x 300 ms x 40 steps/ms x 8 bytes = 62 MB) at a small cost per stretch."""


def run_coreneuron(stop_ms: float, chunk_ms: float = CORENEURON_CHUNK_MS,
                   after_chunk: Callable[[], None] | None = None) -> None:
    """Integrate from NEURON's present state (after ``finitialize`` and the queued events) to
    ``stop_ms`` with CoreNEURON, the model transferred in memory; ``after_chunk`` runs after every
    stretch of at most ``chunk_ms`` (e.g. to take and clear every-step recordings).

    Call it inside :func:`neuron_solver` (whose ``dt`` and ``secondorder`` CoreNEURON uses); NEURON
    >= 9 keeps its data in the layout CoreNEURON needs. The results equal NEURON's own loop bit
    for bit. The mechanisms'
    CoreNEURON library is compiled on first use
    (:func:`surrogate_cell.mechanisms.coreneuron_library`, which raises
    :class:`~surrogate_cell.mechanisms.MechanismError` where this NEURON has no CoreNEURON).
    """
    from neuron import coreneuron, h

    from surrogate_cell.mechanisms import coreneuron_library

    os.environ["CORENEURONLIB"] = str(coreneuron_library())
    context = h.ParallelContext()
    coreneuron.enable, coreneuron.verbose = True, 0
    try:
        while h.t < stop_ms - h.dt / 2:
            started = h.t
            # CoreNEURON stops a step short of a target that is a whole number of steps away
            # (rounding of t); half a step beyond it reaches the target and no further.
            context.psolve(min(h.t + chunk_ms, stop_ms) + h.dt / 2)
            if h.t <= started:
                raise RuntimeError(f"CoreNEURON made no progress from t = {started} ms towards "
                                   f"{stop_ms} ms (dt = {h.dt} ms)")
            if after_chunk is not None:
                after_chunk()
    finally:
        coreneuron.enable = False
