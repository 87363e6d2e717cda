"""benchmarks/input_families.py with real NEURON and SurrogateCell runs: one short BAC run, every field finite;
one short held-out family with a tiny drive model; held-out families reported as unsupported by an events model."""

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


@pytest.fixture(scope="module")
def drive_report(tmp_path_factory, tiny_drive_checkpoint):
    """A 300 ms run (100 ms discarded) of a held-out family on the tiny drive model: theta-modulated background,
    one tuft volley or BAC pair at about 250 ms and a 0.3 nA somatic IClamp throughout."""
    checkpoint = tiny_drive_checkpoint
    out_dir = tmp_path_factory.mktemp("input_families_drive")
    result = load_benchmark().main(["--model", str(checkpoint), "--families", "volleys_on_theta_with_current",
                                    "--seeds", "0", "--duration-ms", "300", "--discard-ms", "100",
                                    "--out-dir", str(out_dir), "--no-progress"])
    return result, out_dir


@pytest.mark.slow
@pytest.mark.neuron
def test_a_held_out_family_runs_on_a_drive_model_with_every_metric_finite(drive_report):
    result, out_dir = drive_report
    family = result["families"]["volleys_on_theta_with_current"]
    assert family["supported"] and family["unsupported_error"] is None
    assert family["held_out"] and family["training_distribution"] == "held out"
    summary = family["summary"]
    assert set(summary) == SUMMARY_KEYS
    numbers = list(_finite_numbers(summary))
    assert len(numbers) > 20 and all(math.isfinite(number) for number in numbers)
    (run,) = family["runs"]
    assert RUN_KEYS <= set(run)
    assert all(math.isfinite(number) for number in _finite_numbers(run))
    assert run["input_events"]["current_clamps"] == 1 and run["input_events"]["exc"] > 0
    assert result["settings"]["model_input_kind"] == "drive"
    assert result["settings"]["held_out_families"] == ["volleys_on_theta_with_current"]
    table = (out_dir / "input_families.md").read_text().splitlines()
    assert table[0].endswith("| mixture training data |")
    assert table[2].startswith("| volleys_on_theta_with_current | 1 × 200 |") and table[2].endswith("| held out |")


@pytest.mark.neuron
def test_an_events_model_reports_held_out_families_it_cannot_take_as_unsupported(tmp_path):
    """l5pc-default takes neither Exp2Syn synapses at weights other than 1 nor IClamps: reported, no NEURON run."""
    result = load_benchmark().main(["--families", "exp2syn_population", "current_steps", "--seeds", "0",
                                    "--out-dir", str(tmp_path), "--no-progress"])
    assert result["settings"]["model_input_kind"] == "events"
    for name, words in (("exp2syn_population", "weight"), ("current_steps", "StimIntElectrode")):
        family = result["families"][name]
        assert not family["supported"] and family["runs"] == [] and family["summary"] is None
        assert words in family["unsupported_error"]
    assert result["families"]["exp2syn_population"]["training_distribution"] == "held out"
    assert result["families"]["current_steps"]["training_distribution"] == "in the training distribution"
    assert result["families"]["current_steps"]["unsupported_error"].startswith("UnsupportedFeatureError")
    assert result["families"]["exp2syn_population"]["unsupported_error"].startswith("SynapseMappingError")
    table = (tmp_path / "input_families.md").read_text().splitlines()
    assert len(table) == 4 and all("not supported by this model" in row for row in table[2:])
    assert json.loads((tmp_path / "input_families.json").read_text())["families"]["current_steps"]["supported"] is False


@pytest.mark.neuron
def test_held_out_families_draw_what_they_promise():
    """No simulation (NEURON only builds the cell): the held-out families' inputs on the default cell."""
    module = load_benchmark()
    assert set(module.HELD_OUT_FAMILIES) == {"theta_gamma", "volleys_on_theta_with_current", "exp2syn_population"}
    assert all(module.training_distribution(name) == "in the training distribution"
               for name in ("rest", "poisson_published", "bac", "poisson_modulated", "current_steps"))
    geometry = module.geometry_of_default_cell()
    exc_hz, _ = geometry.published_rates_hz()
    duration = 10_000.0
    nested = module.FAMILIES["theta_gamma"].draw(geometry, duration, module.family_rng("theta_gamma", 0), 0)
    rate = nested.n_events()["exc"] / len(nested.exc) / (duration / 1000.0)
    assert rate == pytest.approx(exc_hz.mean(), rel=0.05)  # the nested gain's mean is 1
    counts, _ = np.histogram(np.concatenate(nested.exc), bins=np.arange(0.0, duration + 1.0, 5.0))
    assert counts.max() > 2.0 * counts.mean() and counts.min() < 0.3 * counts.mean()  # deeply modulated

    population = module.FAMILIES["exp2syn_population"].draw(geometry, 1000.0,
                                                             module.family_rng("exp2syn_population", 0), 0)
    assert population.exc == [] and population.inh == [] and population.clamps == []
    synapses = population.synapses
    assert 50 <= len(synapses) <= 200 and {s.syntype for s in synapses} == {"Exp2Syn"}
    inhibitory = [s for s in synapses if s.parameters["e"] == -80.0]
    assert len(inhibitory) == round(0.2 * len(synapses))
    assert all(8.0 <= s.parameters["tau2"] <= 15.0 for s in inhibitory)
    assert all(0.001 <= s.weight <= 0.01 and 0.3 <= s.parameters["tau1"] <= 1.0 for s in synapses)
    assert set(s.idx for s in synapses) <= set(geometry.input_segments.tolist())

    steps = module.FAMILIES["current_steps"]
    clamps = steps.draw(geometry, float(steps.duration_ms), module.family_rng("current_steps", 0), 0).clamps
    assert [c.amp_na for c in clamps] == [0.2, 0.6, 1.0, 1.5] and all(c.dur_ms == 300.0 for c in clamps)
    assert np.diff([c.delay_ms for c in clamps]).tolist() == [500.0] * 3
    assert clamps[0].delay_ms >= module.DISCARD_MS and clamps[-1].delay_ms + 300.0 < steps.duration_ms

    combined = module.FAMILIES["volleys_on_theta_with_current"].draw(
        geometry, 1000.0, module.family_rng("volleys_on_theta_with_current", 0), 0)
    assert combined.clamps == [module.CurrentClamp(0.3, 0.0, 1000.0)]
    assert all(np.all(np.diff(t) >= 0) for t in combined.exc + combined.inh)
