"""benchmarks/input_families.py with real NEURON and SurrogateCell runs: one short BAC run, every field finite."""

from __future__ import annotations

import importlib.util
import json
import math
import sys

import numpy as np
import pytest

from tests.conftest import REPO_ROOT


def load_benchmark():
    """benchmarks/input_families.py as a module (benchmarks/ is not a package)."""
    spec = importlib.util.spec_from_file_location("input_families", REPO_ROOT / "benchmarks" / "input_families.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = module  # dataclasses look their module up while the file executes
    spec.loader.exec_module(module)
    return module


SUMMARY_KEYS = {"runs", "soma_spikes", "ca_events", "rmse_all_mv", "rmse_soma_subthreshold_mv", "lfp_r",
                "dipole_z_r", "soma_mean_v_last_s_mv", "cpu_s", "wall_s"}
RUN_KEYS = SUMMARY_KEYS - {"runs"} | {"seed", "duration_ms", "input_events", "same_ms_extra_events",
                                      "surrogate_warnings", "mse_all_mv2", "subthreshold_samples"}
SCORE_KEYS = {"precision", "recall", "f1", "n_true", "n_predicted"}


@pytest.fixture(scope="module")
def report(tmp_path_factory):
    out_dir = tmp_path_factory.mktemp("input_families")
    # 300 ms with 100 ms discarded: one BAC pair (perisomatic volley, then the tuft volley) at 250 ms
    module = load_benchmark()
    result = module.main(["--families", "bac", "--seeds", "0", "--duration-ms", "300", "--discard-ms", "100",
                          "--out-dir", str(out_dir), "--no-progress"])
    return module, result, out_dir


def _finite_numbers(value):
    if isinstance(value, dict):
        for item in value.values():
            yield from _finite_numbers(item)
    elif isinstance(value, (int, float)) and not isinstance(value, bool):
        yield value


@pytest.mark.slow
@pytest.mark.neuron
def test_a_short_bac_run_reports_every_metric_finite(report):
    module, result, _ = report
    summary = result["families"]["bac"]["summary"]
    assert set(summary) == SUMMARY_KEYS
    for key in ("soma_spikes", "ca_events"):
        assert SCORE_KEYS <= set(summary[key])
    assert set(summary["lfp_r"]) == {f"{z:.0f}" for z in module.ELECTRODE_Z_UM}
    assert set(summary["soma_mean_v_last_s_mv"]) == {"neuron", "surrogate"}
    assert set(summary["cpu_s"]) == {"neuron", "surrogate"}
    assert all(math.isfinite(number) for number in _finite_numbers(summary))
    assert all(-1.0 <= r <= 1.0 for r in [*summary["lfp_r"].values(), summary["dipole_z_r"]])
    assert summary["cpu_s"]["neuron"] > 0 and summary["cpu_s"]["surrogate"] > 0
    assert -90.0 < summary["soma_mean_v_last_s_mv"]["neuron"] < 0.0
    (run,) = result["families"]["bac"]["runs"]
    assert RUN_KEYS <= set(run)
    assert run["input_events"]["exc"] > module.BAC_PERISOMATIC_SIZE  # the volley pair plus background


@pytest.mark.slow
@pytest.mark.neuron
def test_neuron_fires_to_the_bac_pair_and_the_trunk_segment_is_near_750_um(report):
    _, result, _ = report
    spikes = result["families"]["bac"]["summary"]["soma_spikes"]
    assert spikes["n_true"] >= 1  # the pair's perisomatic volley alone makes the cell fire
    trunk = result["trunk_segment"]
    assert abs(trunk["path_distance_um"] - 750.0) < 25.0
    assert trunk["name"].startswith("apic")


@pytest.mark.slow
@pytest.mark.neuron
def test_the_report_files_hold_the_table_and_the_settings(report):
    _, result, out_dir = report
    written = json.loads((out_dir / "input_families.json").read_text())
    assert set(written) == {"settings", "trunk_segment", "resting_voltage_mv", "families"}
    assert written["resting_voltage_mv"] is None  # the rest family did not run
    assert written["settings"]["discard_ms"] == 100 and written["settings"]["families"] == ["bac"]
    table = (out_dir / "input_families.md").read_text().splitlines()
    assert len(table) == 3 and table[2].startswith("| bac | 1 × 200 |")


@pytest.mark.neuron
def test_input_families_draw_what_they_promise():
    """No simulation (NEURON only builds the cell): the inputs' rates and volleys on the default cell."""
    module = load_benchmark()
    geometry = module.geometry_of_default_cell()
    exc_hz, inh_hz = geometry.published_rates_hz()
    assert exc_hz.mean() == pytest.approx(12.5, abs=0.3) and inh_hz.mean() == pytest.approx(9.7, abs=0.3)
    duration = 10_000.0
    stationary = module.FAMILIES["poisson_published"].draw(geometry, duration, module.family_rng("x", 0), 0)
    rate = stationary.n_events()["exc"] / len(stationary.exc) / (duration / 1000.0)
    assert rate == pytest.approx(exc_hz.mean(), rel=0.03)
    tuft = module.FAMILIES["tuft_volleys"].draw(geometry, 1000.0, module.family_rng("tuft_volleys", 0), 0)
    rows = geometry.region("tuft")
    in_volley = sum(np.count_nonzero((tuft.exc[row] >= 250.0) & (tuft.exc[row] < 253.0)) for row in rows)
    assert in_volley >= module.TUFT_VOLLEY_SIZES[0]
    assert all(np.all(np.diff(t) >= 0) for t in tuft.exc + tuft.inh)
