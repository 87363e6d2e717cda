"""The fast-spiking basket cell shipped as a cell recipe (configs/cells/basket), run in NEURON.

The cell is built with LFPy.Cell from the recipe's own values, as a user's recipe would be,
and checked against the behaviour expected of a Wang & Buzsaki (1996) PV basket cell.
"""

from pathlib import Path

import LFPy
import numpy as np
import pytest
import yaml
from neuron import h

from surrogate_cell.cells.basket_morphology import basket_morphology_swc, write_basket_morphology
from surrogate_cell.cells.solver import NeuronSolver, neuron_solver
from surrogate_cell.data.inputs import PoissonInputConfig, draw_inputs, events_to_spike_times
from surrogate_cell.mechanisms import load_mechanism_folder

RECIPE_DIR = Path(__file__).resolve().parents[1] / "surrogate_cell" / "training" / "configs" / "cells" / "basket"
RECIPE = RECIPE_DIR / "basket.yaml"

STEP_DELAY_MS, STEP_DUR_MS = 50.0, 400.0
STEP_AMPS_NA = (0.0, 0.01, 0.02, 0.05, 0.1, 0.3)


@pytest.fixture(scope="module")
def recipe() -> dict:
    return yaml.safe_load(RECIPE.read_text())


@pytest.fixture(scope="module")
def cell(recipe):
    load_mechanism_folder(RECIPE_DIR / recipe["mechanisms"])
    kwargs = dict(recipe["cell_kwargs"])
    kwargs["custom_code"] = [str(RECIPE_DIR / name) for name in kwargs["custom_code"]]
    simulation = recipe["simulation"]
    cell = LFPy.Cell(morphology=str(RECIPE_DIR / recipe["morphology"]), dt=simulation["dt"],
                     tstart=0.0, tstop=STEP_DELAY_MS + STEP_DUR_MS, delete_sections=True, **kwargs)
    return cell


def _soma(cell):
    return next(sec for sec in cell.allseclist if sec.name().startswith("soma"))


def _spike_times(t: np.ndarray, v: np.ndarray, threshold: float = -20.0) -> np.ndarray:
    crossings = np.nonzero((v[:-1] < threshold) & (v[1:] >= threshold))[0]
    return t[crossings + 1]


@pytest.fixture(scope="module")
def steps(cell) -> dict:
    """Somatic current steps: amplitude (nA) -> (t, v, spike times during the step)."""
    results = {}
    for amp in STEP_AMPS_NA:
        stim = h.IClamp(_soma(cell)(0.5))
        stim.delay, stim.dur, stim.amp = STEP_DELAY_MS, STEP_DUR_MS, amp
        cell.tstop = STEP_DELAY_MS + STEP_DUR_MS
        cell.simulate(rec_vmem=False)
        t, v = np.array(cell.tvec), np.array(cell.somav)
        results[amp] = (t, v, _spike_times(t, v))
        del stim
    return results


def _rate_hz(spikes: np.ndarray) -> float:
    return len(spikes) / (STEP_DUR_MS / 1000.0)


def _half_width_ms(t: np.ndarray, v: np.ndarray, spike_time: float) -> float:
    """Width at half amplitude, the amplitude measured from the threshold (dV/dt = 20 mV/ms)."""
    window = (t > spike_time - 2.0) & (t < spike_time + 3.0)
    t, v = t[window], v[window]
    peak = int(np.argmax(v))
    dvdt = np.diff(v) / np.diff(t)
    onset = np.nonzero(dvdt[:peak] >= 20.0)[0][0]
    half = (v[peak] + v[onset]) / 2
    up = np.nonzero((v[:peak] < half) & (v[1:peak + 1] >= half))[0][-1]
    down = peak + np.nonzero((v[peak:-1] >= half) & (v[peak + 1:] < half))[0][0]

    def cross(i):
        return t[i] + (half - v[i]) * (t[i + 1] - t[i]) / (v[i + 1] - v[i])

    return cross(down) - cross(up)


def test_generated_morphology_is_the_committed_file(tmp_path):
    committed = (RECIPE_DIR / "basket.swc").read_text()
    assert basket_morphology_swc() == committed
    assert write_basket_morphology(tmp_path / "b.swc").read_text() == committed


def test_morphology_as_neuron_reads_it(cell):
    sections = list(cell.allseclist)
    somas = [sec for sec in sections if sec.name().startswith("soma")]
    dends = [sec for sec in sections if sec.name().startswith("dend")]
    assert len(somas) == 1 and len(somas) + len(dends) == len(sections)
    soma = somas[0]
    # A 15 um spherical soma: NEURON's three-point-soma cylinder has the sphere's area.
    assert soma.L == pytest.approx(15.0, abs=0.5) and soma.diam == pytest.approx(15.0, abs=0.5)
    primaries = list(soma.children())
    assert 4 <= len(primaries) <= 6
    assert all(len(sec.children()) in (0, 2) for sec in dends)
    assert any(len(sec.children()) == 2 for sec in primaries)
    dend_length = sum(sec.L for sec in dends)
    assert 1500 <= dend_length <= 2500
    diameters = np.array([seg.diam for sec in dends for seg in sec])
    assert diameters.min() >= 0.45 and diameters.max() <= 1.55
    distance = np.sqrt(cell.x.mean(axis=1) ** 2 + cell.y.mean(axis=1) ** 2 + cell.z.mean(axis=1) ** 2)
    assert 150 <= distance.max() <= 400


def test_rest_is_stable(steps):
    t, v, spikes = steps[0.0]
    assert len(spikes) == 0
    late = v[t >= 100.0]
    assert -70.0 <= late[-1] <= -60.0
    assert np.abs(late - late[-1]).max() < 1.0


def test_rheobase_type_f_i_curve(steps):
    rates = [_rate_hz(steps[amp][2]) for amp in STEP_AMPS_NA]
    assert rates[0] == 0 and rates[1] == 0
    assert all(b > a for a, b in zip(rates[1:], rates[2:])), dict(zip(STEP_AMPS_NA, rates))


def test_strong_step_fires_above_100_hz(steps):
    assert _rate_hz(steps[0.3][2]) > 100.0


@pytest.mark.parametrize("amp", [0.05, 0.1, 0.3])
def test_tonic_firing_with_little_adaptation(steps, amp):
    _, _, spikes = steps[amp]
    isi = np.diff(spikes)
    assert len(isi) >= 5
    assert abs(isi[-1] - isi[1]) <= 0.3 * isi[1]
    # Firing lasts the whole step.
    assert spikes[-1] >= STEP_DELAY_MS + STEP_DUR_MS - 2 * isi[-1]


def test_spikes_are_narrow(steps):
    t, v, spikes = steps[0.1]
    widths = [_half_width_ms(t, v, s) for s in spikes[1:4]]
    assert max(widths) < 0.6, widths


def test_singularities_are_removed(cell):
    # The Na activation rate has 0/0 at -35 mV; the continued function is smooth there.
    with_singularity = h.minf_wbNa(-35.0)
    around = (h.minf_wbNa(-35.001) + h.minf_wbNa(-34.999)) / 2
    assert np.isfinite(with_singularity) and with_singularity == pytest.approx(around, rel=1e-5)
    assert h.x_over_1_minus_exp_wbKdr(0.0) == 1.0


def test_poisson_input_at_10_hz_per_synapse_fires_10_to_40_hz(cell, recipe):
    """Stationary drive in the middle of the training range: every synapse at 10 Hz, weight 1."""
    simulation = recipe["simulation"]
    config = PoissonInputConfig(exc_rate_hz=10.0, inh_rate_hz=10.0)
    segments = [seg for sec in cell.allseclist for seg in sec]
    assert len(segments) == cell.totnsegs
    synapses = [h.AMPANMDA(seg) for seg in segments] + [h.GABAA(seg) for seg in segments]
    netcons = [h.NetCon(None, synapse) for synapse in synapses]
    for netcon in netcons:
        netcon.weight[0] = 1.0
    warmup_ms, duration_ms = simulation["warmup_ms"], 1000
    inputs = draw_inputs(config, ["basal"] * len(segments), np.ones(len(segments)),
                         warmup_ms + duration_ms, np.random.default_rng(0))
    v = h.Vector().record(_soma(cell)(0.5)._ref_v)
    t = h.Vector().record(h._ref_t)
    h.celsius = simulation["celsius"]
    # scoped: NEURON's dt and method are global and must not leak into later tests
    with neuron_solver(NeuronSolver(dt=simulation["dt"], secondorder=simulation["secondorder"])):
        h.finitialize(simulation["v_init"])
        events = events_to_spike_times(inputs.exc) + events_to_spike_times(inputs.inh)
        for netcon, times in zip(netcons, events):
            for time_ms in times:
                netcon.event(time_ms)
        h.continuerun(warmup_ms + duration_ms)
    spikes = _spike_times(np.array(t), np.array(v), simulation["spike_threshold_mv"])
    rate = np.sum(spikes >= warmup_ms) / (duration_ms / 1000.0)
    assert 10.0 <= rate <= 40.0
