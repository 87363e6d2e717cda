"""The ``mixture`` input regime: families drawn as specified, run by NEURON as stored, read back
as drive channels (conductances and somatic current) that match what NEURON's synapses did."""

from __future__ import annotations

import numpy as np
import pytest

from surrogate_cell.data.simulation import CellSimulator, SimulationConfig, simulation_rng
from surrogate_cell.data.stimulus import (
    DOMAINS,
    EXP2SYN,
    EXPSYN,
    FAMILIES,
    MECHANISMS,
    TRAINED_PARAMETERS,
    InputGeometry,
    MixtureInputConfig,
    draw_stimulus,
    stimulus_drive,
)
from surrogate_cell.synapses import drive_channel_count

WARMUP_MS = 20
CONFIG = SimulationConfig(warmup_ms=WARMUP_MS, inputs={"regime": "mixture"})


def toy_geometry() -> InputGeometry:
    """A soma, 30 basal segments, a 60-segment apical tree reaching 1200 um and an axon."""
    types = np.array(["soma"] + ["basal"] * 30 + ["apical"] * 40 + ["oblique"] * 20 + ["axon"] * 5)
    distance = np.concatenate([[0.0], np.linspace(10, 250, 30), np.linspace(20, 1200, 40),
                               np.linspace(100, 400, 20), np.linspace(10, 60, 5)])
    return InputGeometry(section_types=types, length_um=np.full(types.size, 20.0),
                         path_distance_um=distance, synapse_segments=np.flatnonzero(types != "axon"))


@pytest.mark.parametrize("family", FAMILIES)
def test_every_family_draws_a_valid_reproducible_stimulus(family):
    geometry = toy_geometry()
    config = MixtureInputConfig()
    first = draw_stimulus(config, geometry, 1500, simulation_rng(3, 1), family=family)
    again = draw_stimulus(config, geometry, 1500, simulation_rng(3, 1), family=family)
    for name in first.ARRAYS:
        np.testing.assert_array_equal(getattr(first, name), getattr(again, name))
    assert first.family == family and first.n_ms == 1500
    assert np.all((first.event_time_ms >= 0) & (first.event_time_ms < 1500))
    assert np.all(np.diff(first.event_time_ms) >= 0)
    assert first.event_synapse.min(initial=0) >= 0 and first.event_synapse.max(initial=0) < first.n_synapses
    assert set(first.synapse_segment.tolist()) <= set(geometry.synapse_segments.tolist())  # never the axon
    assert np.all(first.synapse_weight > 0)
    # sub-ms event times, not whole ms
    if first.event_time_ms.size > 20:
        assert np.mean(first.event_time_ms % 1.0 > 1e-6) > 0.9
    if family == "rest":
        assert first.event_time_ms.size == 0 and not first.soma_current_na.any()
    # every synapse maps to drive channels (reversal potentials within the receptor ranges)
    drive = stimulus_drive(first, geometry.section_types.size)
    assert drive.shape == (1500, drive_channel_count(geometry.section_types.size))
    assert np.isfinite(drive).all() and drive.min() >= -3.0  # conductances >= 0, currents >= -0.5 nA


def test_families_cover_what_they_promise():
    """Volleys are synchronous on one domain, currents inject, extra populations use ExpSyn/Exp2Syn."""
    geometry, config = toy_geometry(), MixtureInputConfig()
    volleys = [draw_stimulus(config, geometry, 2000, simulation_rng(5, i), family="volleys") for i in range(6)]
    counts = np.concatenate([np.histogram(s.event_time_ms, bins=np.arange(0, 2001, 5))[0] for s in volleys])
    assert counts.max() >= 10  # at least one volley of >= 10 synapses within 5 ms
    currents = [draw_stimulus(config, geometry, 2000, simulation_rng(6, i), family="current") for i in range(6)]
    assert all(np.abs(s.soma_current_na).max() > 0.05 for s in currents)
    extra = MixtureInputConfig(extra_probability=1.0)
    mechanisms = np.concatenate([draw_stimulus(extra, geometry, 300, simulation_rng(7, i), family="poisson")
                                 .synapse_mechanism for i in range(4)])
    assert np.isin([EXPSYN, EXP2SYN], mechanisms).all()
    for name in DOMAINS:
        assert geometry.domain(name, config).size > 0


def test_mixture_config_errors_name_the_field():
    with pytest.raises(ValueError, match="proportions"):
        MixtureInputConfig(proportions=(1.0, 0.0))
    with pytest.raises(ValueError, match="extra_probability"):
        MixtureInputConfig(extra_probability=1.5)
    with pytest.raises(ValueError, match="unknown input family"):
        draw_stimulus(MixtureInputConfig(), toy_geometry(), 100, simulation_rng(1, 1), family="storm")


@pytest.mark.neuron
def test_trained_parameters_are_the_mechanisms_defaults():
    from neuron import h

    from surrogate_cell.mechanisms import load_mechanisms

    load_mechanisms()
    section = h.Section(name="probe")
    for mechanism, parameters in TRAINED_PARAMETERS.items():
        synapse = getattr(h, mechanism)(section(0.5))
        assert {name: getattr(synapse, name) for name in parameters} == pytest.approx(parameters)


@pytest.mark.neuron
def test_neuron_runs_the_stimulus_and_the_drive_channels_are_what_its_synapses_conducted():
    """A somatic current step and Poisson input with an extra ExpSyn/Exp2Syn population run in
    NEURON; the drive channels computed from the stimulus alone equal the 1 ms means of the IClamp
    current and of the conductances NEURON's inhibitory synapses had (within the dt sampling)."""
    from neuron import h

    from surrogate_cell.data.simulation import _StimulusObjects

    with CellSimulator(CONFIG, engine="neuron") as simulator:
        geometry = simulator.input_geometry()
        stimulus = draw_stimulus(MixtureInputConfig(extra_probability=1.0), geometry, 140,
                                 simulation_rng(11, 0), family="poisson")
        stimulus.soma_current_na[60:100] += 1.5  # a step that makes the soma fire
        with _StimulusObjects(simulator, stimulus) as objects:
            conductances = [h.Vector().record(synapse._ref_g) for synapse, mechanism
                            in zip(objects.synapses, stimulus.synapse_mechanism) if MECHANISMS[mechanism] != "AMPANMDA"]
            current = h.Vector().record(objects.clamp._ref_i)
            soma = h.Vector().record(simulator._segments[simulator.layout.soma_segment]._ref_v)
            simulator._integrate(stimulus.n_ms, objects.queue_events)
    assert soma.as_numpy().max() > 0.0  # the step made the soma spike

    n_segments, steps = geometry.section_types.size, round(1.0 / CONFIG.dt)

    def bin_means(vector) -> np.ndarray:
        # sample n + 1 holds the value used during step n (see tests/test_drive.py)
        return vector.as_numpy()[1:1 + steps * stimulus.n_ms].reshape(stimulus.n_ms, steps).mean(axis=1)

    drive = stimulus_drive(stimulus, n_segments)
    np.testing.assert_allclose(bin_means(current), drive[:, -1], atol=1e-6)
    gaba_rows = [row for row, mechanism in enumerate(stimulus.synapse_mechanism)
                 if MECHANISMS[mechanism] != "AMPANMDA"]
    recorded = np.zeros((n_segments, stimulus.n_ms))
    for vector, row in zip(conductances, gaba_rows):
        inhibitory = MECHANISMS[stimulus.synapse_mechanism[row]] == "GABAA" or stimulus.synapse_e[row] < -40
        if inhibitory:
            recorded[stimulus.synapse_segment[row]] += 1000.0 * bin_means(vector)
    expected = drive[:, 2 * n_segments:3 * n_segments].T  # the gaba channels, nS
    assert expected.max() > 0
    # step-sampled means of fast rises (0.025 ms steps): within 1 % of the largest channel value
    assert np.abs(recorded - expected).max() < 0.01 * expected.max()


@pytest.mark.neuron
def test_mixture_data_sets_store_the_stimulus_and_load_as_drive(tmp_path):
    from surrogate_cell.data.generate import generate
    from surrogate_cell.data.store import open_data_set
    from surrogate_cell.datasets.windows import DRIVE, input_kind, load_labelled, load_raw

    path = tmp_path / "mixture.h5"
    generate(path, 2, 60, seed=4, config=CONFIG, progress=False, engine="neuron")
    data_set = open_data_set(path)
    assert input_kind(data_set) == DRIVE
    record = data_set.load_simulation(1)
    assert record.exc is None and record.stimulus.n_ms == WARMUP_MS + 60
    assert record.attrs["input_family"] == record.stimulus.family
    raw = load_raw(data_set, [0, 1], progress=False)
    n_segments = data_set.layout.n_segments
    assert raw.events.shape == (2, 60, drive_channel_count(n_segments)) and raw.events.dtype == np.float16
    expected = stimulus_drive(record.stimulus, n_segments)[WARMUP_MS:]
    np.testing.assert_allclose(raw.events[1].astype(np.float32), expected, rtol=2e-3, atol=1e-4)
    published = tmp_path / "published.h5"
    generate(published, 1, 60, seed=4, config=SimulationConfig(warmup_ms=WARMUP_MS), progress=False,
             engine="neuron")
    with pytest.raises(ValueError, match="mix input kinds"):
        load_labelled([data_set, open_data_set(published)], [[0], [0]], progress=False)


@pytest.mark.neuron
@pytest.mark.slow
def test_a_drive_model_with_ca_feedback_trains_and_evaluates_per_family(tmp_path):
    """Train a tiny drive SRM with dendritic feedback on NEURON mixture data for a few steps; its
    checkpoint names the Ca hot zone, and evaluate reports every held-out family."""
    import json

    from surrogate_cell.checkpoint import load_checkpoint
    from surrogate_cell.data.generate import generate
    from surrogate_cell.training.__main__ import main

    data = tmp_path / "mixture.h5"
    generate(data, 4, 160, seed=9, config=CONFIG, progress=False, engine="neuron")
    model_file = tmp_path / "srm.yaml"
    model_file.write_text("family: srm\ntaus: [1, 4, 16]\nhidden: 8\nmlp_layers: 1\nspike_hidden: 4\n"
                          "dropout: 0.0\nwindow: 50\ndendritic_feedback: true\n")
    run = tmp_path / "run"
    assert main(["train", "--data", str(data), "--model", str(model_file), "--out-dir", str(run),
                 "--max-steps", "6", "--batch-size", "8", "--no-progress"]) == 0
    model, _, meta, _ = load_checkpoint(run / "best.pt")
    assert meta["cell"]["input_kind"] == "drive" and model.config.drive_input
    assert model.config.feedback_segments == (meta["cell"]["ca_segment"],)
    assert main(["evaluate", "--checkpoint", str(run / "best.pt"), "--data", str(data),
                 "--out-dir", str(tmp_path / "evaluation"), "--free-run-ms", "60", "--no-figures"]) == 0
    metrics = json.loads((tmp_path / "evaluation" / "metrics.json").read_text())
    families = {open_family(data, index) for index in metrics["simulations"]}
    assert set(metrics["per_family"]) == families
    for entry in metrics["per_family"].values():
        assert np.isfinite(entry["rmse_mv"]) and "ca_events" in entry


def open_family(path, index: int) -> str:
    from surrogate_cell.data.store import open_data_set

    return open_data_set(path).simulation_attrs(index)["input_family"]
