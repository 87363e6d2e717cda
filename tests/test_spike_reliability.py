"""examples/spike_reliability.py with real NEURON: unperturbed reruns are identical, perturbations are not."""

from __future__ import annotations

import pytest

from tests.conftest import load_example


@pytest.fixture(scope="module")
def rows(tmp_path_factory):
    out = tmp_path_factory.mktemp("reliability") / "rows.json"
    return load_example("spike_reliability").main(["--n-sims", "1", "--duration-ms", "150", "--noise-na", "0", "0.2",
                                "--drop-fractions", "0", "--out", str(out)])


@pytest.mark.slow
@pytest.mark.neuron
def test_unperturbed_reruns_reproduce_the_cell_exactly(rows):
    for label in ("somatic noise 0 nA", "0% of exc. events removed"):
        assert rows[label]["soma_rms_mv"] == 0.0
        assert rows[label]["f1"] == 1.0


@pytest.mark.slow
@pytest.mark.neuron
def test_a_somatic_noise_current_moves_the_subthreshold_soma_voltage(rows):
    assert rows["somatic noise 0.2 nA"]["soma_rms_mv"] > 0.5


def test_bad_fractions_are_refused_with_the_option_named(capsys):
    with pytest.raises(SystemExit):
        load_example("spike_reliability").parse_arguments(["--drop-fractions", "1.5"])
    assert "--drop-fractions" in capsys.readouterr().err
