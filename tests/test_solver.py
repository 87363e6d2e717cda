"""NEURON's integration settings (surrogate_cell.cells.solver): validation, accuracy, and data sets recording them."""

from __future__ import annotations

import dataclasses
import json

import h5py
import numpy as np
import pytest

from surrogate_cell.cells.solver import (
    BACKWARD_EULER_SOLVER,
    DEFAULT_SOLVER,
    NeuronSolver,
    SolverError,
    apply_solver,
    neuron_solver,
    solver_from_config,
)
from surrogate_cell.data.simulation import ConfigError, SimulationConfig, simulation_config_from_dict
from surrogate_cell.spikes import REFRACTORY_MS, SPIKE_THRESHOLD_MV, upward_crossing_times

REFERENCE_SOLVER = NeuronSolver(dt=0.01, secondorder=2)
"""Converged to ~0.01 ms in spike time (Crank-Nicolson's error shrinks as dt^2; docs/experiments.md)."""
WARMUP_MS, DURATION_MS = 50, 200
VOLLEYS_MS = (70, 140, 210)


def test_solver_settings_are_validated():
    assert DEFAULT_SOLVER == NeuronSolver(dt=0.025, secondorder=2)
    assert DEFAULT_SOLVER.steps_per_ms == 40
    assert "Crank-Nicolson" in DEFAULT_SOLVER.description
    with pytest.raises(SolverError, match="whole steps"):
        NeuronSolver(dt=0.03)
    with pytest.raises(SolverError, match="secondorder"):
        NeuronSolver(secondorder=3)
    with pytest.raises(ConfigError, match="secondorder"):
        SimulationConfig(secondorder=5)
    config = simulation_config_from_dict({"dt": 0.025, "secondorder": 0})
    assert config.solver == BACKWARD_EULER_SOLVER
    assert SimulationConfig().solver == DEFAULT_SOLVER
    # a stored config from before 'secondorder' was backward Euler
    assert solver_from_config({"dt": 0.025}) == BACKWARD_EULER_SOLVER


@pytest.mark.neuron
def test_neuron_solver_sets_neurons_globals_for_its_block_only():
    from neuron import h

    h.load_file("stdrun.hoc")
    h.dt, h.secondorder = 0.05, 0
    h.CVode().active(1)
    with neuron_solver() as solver:
        assert solver == DEFAULT_SOLVER
        assert (h.dt, h.secondorder, h.CVode().active()) == (0.025, 2, 0)
        with neuron_solver(BACKWARD_EULER_SOLVER):
            assert (h.dt, h.secondorder) == (0.025, 0)
        assert h.secondorder == 2
        assert apply_solver(BACKWARD_EULER_SOLVER) == BACKWARD_EULER_SOLVER and h.secondorder == 0
    assert (h.dt, h.secondorder, h.CVode().active()) == (0.05, 0, 1)
    h.dt = 0.025
    h.CVode().active(0)


@pytest.mark.neuron
def test_simulations_leave_neurons_settings_as_they_found_them_and_coreneuron_equals_neuron():
    """After a run h.secondorder is back (left at 2 it changed later LFPy runs); CoreNEURON gives
    NEURON's voltages bit for bit over several of its stretches (CORENEURON_CHUNK_MS; the run once
    stopped a step short of a stretch's end and looped for ever), skipped where this NEURON has no
    CoreNEURON."""
    from neuron import h

    from surrogate_cell.data.simulation import CellSimulator
    from surrogate_cell.mechanisms import MechanismError, coreneuron_library

    config = SimulationConfig(warmup_ms=20, inputs={"regime": "published", "exc_per_100ms_range": [600.0, 1200.0]})
    results = {}
    h.load_file("stdrun.hoc")
    for engine in ("neuron", "coreneuron"):
        if engine == "coreneuron":
            try:
                coreneuron_library()
            except MechanismError as error:
                pytest.skip(f"no CoreNEURON: {error}")
        with CellSimulator(config, engine=engine) as simulator:
            h.secondorder = 0
            results[engine] = simulator.simulate(5, 0, 700)
            assert h.secondorder == 0
    assert np.ptp(results["neuron"].vmem) > 1.0
    np.testing.assert_array_equal(results["coreneuron"].vmem, results["neuron"].vmem)
    np.testing.assert_array_equal(results["coreneuron"].soma_v, results["neuron"].soma_v)
    assert results["coreneuron"].engine == "coreneuron"


def spike_times(simulator, inputs, solver: NeuronSolver) -> np.ndarray:
    """Somatic spikes (ms, after the warm-up) of ``inputs`` run with ``solver``, soma sampled every step."""
    from neuron import h

    soma = [segment for section in simulator.cell.allseclist for segment in section][simulator.layout.soma_segment]
    trace = h.Vector()
    trace.record(soma._ref_v, solver.dt)
    simulator.config = dataclasses.replace(simulator.config, **solver.to_dict())
    simulator.run_inputs(inputs)
    times = upward_crossing_times(trace.as_numpy().copy(), solver.dt, SPIKE_THRESHOLD_MV, REFRACTORY_MS)
    return times[times >= WARMUP_MS]


@pytest.mark.neuron
@pytest.mark.slow
def test_default_solver_spike_times_are_within_0_2_ms_of_a_converged_reference():
    """Synchronous volleys (80 % of the excitatory synapses within 3 ms) on quiet Poisson input: spikes and doublets."""
    from surrogate_cell.data.simulation import CellSimulator

    config = SimulationConfig(warmup_ms=WARMUP_MS, soma_samples_per_ms=1,
                              inputs={"regime": "poisson", "exc_rate_hz": 4.0, "inh_rate_hz": 4.0})
    with CellSimulator(config, record=False) as simulator:
        inputs = simulator.draw_inputs(3, 0, DURATION_MS)
        rng = np.random.default_rng(0)
        exc = inputs.exc.copy()
        for start in VOLLEYS_MS:
            chosen = np.flatnonzero(rng.random(exc.shape[0]) < 0.8)
            exc[chosen, start + rng.integers(0, 3, chosen.size)] = True
        inputs = dataclasses.replace(inputs, exc=exc)
        reference = spike_times(simulator, inputs, REFERENCE_SOLVER)
        chosen_times = spike_times(simulator, inputs, DEFAULT_SOLVER)
    assert reference.size >= len(VOLLEYS_MS), f"the volleys no longer make the cell fire: {reference}"
    assert chosen_times.size == reference.size, (chosen_times, reference)
    np.testing.assert_allclose(chosen_times, reference, atol=0.2, rtol=0)


@pytest.mark.neuron
def test_data_sets_record_their_solver_and_older_files_read_as_backward_euler(tmp_path):
    from surrogate_cell.data.generate import generate
    from surrogate_cell.data.store import DataSetError, open_data_set

    path = tmp_path / "solver.h5"
    config = SimulationConfig(warmup_ms=5)
    generate(path, 1, 10, config=config, seed=1, progress=False, engine="neuron")
    data = open_data_set(path)
    stored = data.config
    assert (stored["dt"], stored["secondorder"]) == (DEFAULT_SOLVER.dt, DEFAULT_SOLVER.secondorder)
    assert solver_from_config(stored) == DEFAULT_SOLVER
    assert data.load_simulation(0).attrs["engine"] == "neuron"

    with h5py.File(path, "r+") as h5:  # as written before 'secondorder' existed
        old = json.loads(h5.attrs["config"])
        del old["secondorder"]
        h5.attrs["config"] = json.dumps(old)
    assert open_data_set(path).config["secondorder"] == 0
    with pytest.raises(DataSetError, match="config.secondorder: file has 0, requested 2"):
        generate(path, 2, 10, config=config, progress=False, engine="neuron")
