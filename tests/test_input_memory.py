"""examples/input_memory.py with real NEURON: the cell's own past reproduces it, another past does not."""

from __future__ import annotations

import numpy as np
import pytest

from tests.conftest import load_example


@pytest.fixture(scope="module")
def example():
    return load_example("input_memory")


@pytest.fixture(scope="module")
def rows(example, tmp_path_factory):
    out = tmp_path_factory.mktemp("memory") / "rows.json"
    return example.main(["--n-sims", "1", "--duration-ms", "120", "--cut-ms", "60",
                         "--lags", "0", "40", "--bin-ms", "10", "--out", str(out)])


@pytest.mark.slow
@pytest.mark.neuron
def test_another_past_moves_the_soma_voltage_right_after_the_cut(rows):
    assert rows["0-10"]["n_samples"] > 0
    assert rows["0-10"]["soma_rms_mv"] > 0.1


@pytest.mark.slow
@pytest.mark.neuron
def test_a_past_that_is_the_cells_own_changes_nothing(example):
    config = example.load_simulation_config(example.HIGH_DRIVE_CONFIG)
    with example.CellSimulator(config) as simulator:
        inputs = simulator.draw_inputs(1, 0, 50)
        same = example.with_past_of(inputs, inputs, config.warmup_ms + 25)
        soma = simulator.layout.soma_segment
        first = simulator.simulate_inputs(inputs, 50).vmem[soma]
        again = simulator.simulate_inputs(same, 50).vmem[soma]
    assert (first == again).all()


def test_lags_beyond_the_recording_are_refused_with_the_option_named(example, capsys):
    with pytest.raises(SystemExit):
        example.parse_arguments(["--duration-ms", "300", "--cut-ms", "250", "--lags", "100"])
    assert "--lags" in capsys.readouterr().err


def test_spike_agreement_counts_only_spikes_from_the_start_on(example):
    reference, shifted = [np.array([10.0, 200.0, 400.0])], [np.array([50.0, 202.0, 409.0])]
    agreement = example.spike_agreement_after(reference, shifted, start_ms=100)
    assert agreement["n_spikes_after"] == 2
    assert agreement["spike_f1_after"] == 0.5  # 202 matches 200 within 3 ms, 409 misses 400


@pytest.mark.slow
@pytest.mark.neuron
def test_every_lag_reports_the_spike_agreement_from_there_on(rows):
    assert all(0.0 <= row["spike_f1_after"] <= 1.0 for row in rows.values())
