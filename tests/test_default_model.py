"""Regression guard for the shipped default surrogate: a fresh NEURON run vs the model card.

The truth comes from NEURON inside this test (``examples/compare_lfp.py`` on a short held-out
input); the shipped ``l5pc-default.json`` states what that protocol gave when the model was
shipped and the margins it may move by (thread counts and BLAS change round-off, so the
numbers are not bit-exact across machines).
"""

from __future__ import annotations

import json

import pytest

from surrogate_cell.pretrained import PRETRAINED_DIR
from tests.conftest import load_example

REFERENCE = PRETRAINED_DIR / "l5pc-default.json"

pytestmark = [
    pytest.mark.neuron, pytest.mark.slow,  # a NEURON run of compare_lfp.py, ~15 s
    pytest.mark.skipif(not (PRETRAINED_DIR / "l5pc-default.pt").is_file(), reason="no shipped l5pc-default model"),
]


@pytest.fixture(scope="module")
def reference():
    return json.loads(REFERENCE.read_text())


@pytest.fixture(scope="module")
def measured(reference, tmp_path_factory):
    protocol = reference["protocol"]
    return load_example("compare_lfp").main([
        "--model", "l5pc-default", "--regime", protocol["regime"], "--seed", str(protocol["seed"]),
        "--warmup-ms", str(protocol["warmup_ms"]), "--duration-ms", str(protocol["duration_ms"]),
        "--out-dir", str(tmp_path_factory.mktemp("compare"))])


def test_voltage_rmse_stays_within_the_model_card_margin(measured, reference):
    margin = reference["margins"]["rmse_mv"]
    for section, value in reference["metrics"]["rmse_mv"].items():
        assert measured["rmse_mv"][section] <= value + margin, section


def test_lfp_correlation_stays_within_the_model_card_margin(measured, reference):
    margin = reference["margins"]["lfp_r"]
    for electrode, (now, then) in enumerate(zip(measured["lfp_r"], reference["metrics"]["lfp_r"])):
        assert now >= then - margin, f"electrode {electrode}"
    assert measured["dipole_z_r"] >= reference["metrics"]["dipole_z_r"] - margin


def test_spike_count_stays_within_the_model_card_margin(measured, reference):
    expected = reference["metrics"]["spikes"]["n_predicted"]
    assert abs(measured["spikes"]["n_predicted"] - expected) <= reference["margins"]["spike_count"]
    assert measured["spikes"]["n_true"] == reference["metrics"]["spikes"]["n_true"]
