"""examples/fi_curve.py with real NEURON runs and a tiny drive checkpoint: two short current steps."""

from __future__ import annotations

import json
import math

import pytest

from tests.conftest import load_example


@pytest.fixture(scope="module")
def fi_report(tmp_path_factory, tiny_drive_checkpoint):
    """0.5 and 1.5 nA, 100 ms steps after the 200 ms warm-up."""
    checkpoint = tiny_drive_checkpoint
    out = tmp_path_factory.mktemp("fi_curve") / "fi.png"
    report = load_example("fi_curve").main(["--model", str(checkpoint), "--amplitudes", "0.5", "1.5",
                                            "--step-ms", "100", "--out", str(out), "--no-progress"])
    return report, out


@pytest.mark.slow
@pytest.mark.neuron
def test_the_json_holds_rates_of_both_simulators_and_neuron_fires_at_1_5_na(fi_report):
    report, out = fi_report
    written = json.loads(out.with_suffix(".json").read_text())
    assert written == json.loads(json.dumps(report))
    rows = written["amplitudes"]
    assert [row["amplitude_na"] for row in rows] == [0.5, 1.5]
    for row in rows:
        for who in ("neuron", "surrogate"):
            assert math.isfinite(row[who]["rate_hz"]) and row[who]["rate_hz"] >= 0.0
            assert row[who]["warmup_spikes"] >= 0
        assert set(row["comparison"]) == {"rate_ratio", "latency_difference_ms", "rate_ok", "latency_ok"}
    high = rows[1]["neuron"]
    assert high["rate_hz"] > 0.0 and 0.0 <= high["latency_ms"] < 100.0
    assert rows[1]["comparison"]["rate_ratio"] is not None
    assert written["settings"]["input_kind"] == "drive" and written["settings"]["step_ms"] == 100.0
    assert isinstance(written["targets_hold"], bool)
    assert out.is_file() and out.stat().st_size > 10_000


def test_an_events_model_is_refused_with_a_clear_message(tmp_path):
    with pytest.raises(SystemExit, match="needs a drive model"):
        load_example("fi_curve").main(["--model", "l5pc-default", "--amplitudes", "1.0", "--step-ms", "10",
                                       "--out", str(tmp_path / "fi.png"), "--no-progress"])
    assert not (tmp_path / "fi.png").exists()
