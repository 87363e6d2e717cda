"""Training, checkpoints and evaluation on a tiny real NEURON data set."""

from __future__ import annotations

import json
import os
import subprocess
import sys

import numpy as np
import pytest
import torch

from surrogate_cell.checkpoint import CheckpointError, load_checkpoint, read_checkpoint
from surrogate_cell.data.generate import generate
from surrogate_cell.data.simulation import SimulationConfig
from surrogate_cell.data.store import open_data_set
from surrogate_cell.datasets.windows import (
    BalancedSampler,
    RawSimulations,
    WindowData,
    build_window_data,
    load_raw,
    spike_flags,
    with_spike_onsets,
)
from surrogate_cell.models.base import model_input
from surrogate_cell.models.srm import pools_by_section_type
from surrogate_cell.spikes import best_crossing_threshold, match_spikes
from surrogate_cell.training.__main__ import main
from surrogate_cell.training.calibrate import (
    best_threshold,
    calibrate_checkpoint,
    teacher_forced_spikes,
    validation_raw,
)
from surrogate_cell.training.ensemble import build_ensemble, held_out_splits
from surrogate_cell.training.evaluate import (
    LFP_ELECTRODE_X_UM,
    LFP_ELECTRODE_Z_UM,
    extracellular_matrices,
    held_out_simulations,
    permanent,
    roc_auc,
)
from surrogate_cell.training.train import (
    LossBalancer,
    TrainConfig,
    Trainer,
    has_native_bfloat16,
)

TINY_MODEL = "family: mh\nchannels: [8, 4, 2]\ntower_hidden: [8]\ndropout: 0.0\nkernel_size: 4\n"


@pytest.fixture(scope="module")
def data_set(tmp_path_factory):
    """Four 250 ms simulations of the built-in cell (50 ms warm-up)."""
    path = tmp_path_factory.mktemp("training") / "tiny.h5"
    generate(path, 4, 250, seed=21, config=SimulationConfig(warmup_ms=50), progress=False)
    return path


@pytest.fixture(scope="module")
def extra_data_set(tmp_path_factory):
    """Four more 250 ms simulations of the built-in cell, another seed (an --extra-data set)."""
    path = tmp_path_factory.mktemp("training") / "extra.h5"
    generate(path, 4, 250, seed=22, config=SimulationConfig(warmup_ms=50), progress=False)
    return path


@pytest.fixture(scope="module")
def model_file(tmp_path_factory):
    path = tmp_path_factory.mktemp("models") / "tiny_mh.yaml"
    path.write_text(TINY_MODEL)
    return path


def tiny_config(data_set, model_file, out_dir, **changes) -> TrainConfig:
    fields = dict(data=str(data_set), out_dir=str(out_dir), model=str(model_file), batch_size=16,
                  max_steps=20, eval_every=10, val_windows=64, validation_fraction=0.25,
                  test_fraction=0.25, device="cpu", seed=3)
    return TrainConfig(**{**fields, **changes})


@pytest.mark.slow
@pytest.mark.neuron
def test_tiny_model_overfits_a_tiny_simulation(data_set, model_file, tmp_path):
    trainer = Trainer(tiny_config(data_set, model_file, tmp_path, spike_fraction=0.0, lr=3e-3),
                      progress_bar=False)
    trainer.sampler.negatives = tuple(pool[:16] for pool in trainer.sampler.negatives)
    losses = [trainer.train_step() for _ in range(400)]
    assert np.mean(losses[-10:]) <= losses[0] / 10


@pytest.mark.slow
@pytest.mark.neuron
@pytest.mark.skipif(not has_native_bfloat16(torch.device("cpu")),
                    reason="this CPU has no native bfloat16 (AVX512-BF16/AMX)")
def test_bfloat16_training_follows_float32_training(data_set, model_file, tmp_path):
    losses = {}
    for mixed in (False, True):
        trainer = Trainer(tiny_config(data_set, model_file, tmp_path / str(mixed), spike_fraction=0.0,
                                      lr=3e-3, mixed_precision=mixed), progress_bar=False)
        trainer.sampler.negatives = tuple(pool[:16] for pool in trainer.sampler.negatives)
        losses[mixed] = np.array([trainer.train_step() for _ in range(200)])
    assert losses[True][-20:].mean() <= losses[True][0] / 5
    assert abs(losses[True][-20:].mean() / losses[False][-20:].mean() - 1) < 0.1


@pytest.mark.slow
@pytest.mark.neuron
def test_resume_reproduces_the_next_step(data_set, model_file, tmp_path):
    config = tiny_config(data_set, model_file, tmp_path, history_noise_std=0.1, rollout_steps=2,
                         free_lead_ms=5, val_free_ms=20, history_drift_std=0.3,
                         model="models/mh_small.yaml")
    first = Trainer(config, progress_bar=False)
    first.run()
    expected = first.train_step()
    resumed = Trainer(config, progress_bar=False)
    assert resumed.progress.step == 20
    assert resumed.train_step() == expected


@pytest.mark.slow
@pytest.mark.neuron
def test_fine_tuning_starts_from_the_given_weights(data_set, model_file, tmp_path):
    Trainer(tiny_config(data_set, model_file, tmp_path / "first", max_steps=10), progress_bar=False).run()
    start = tmp_path / "first" / "last.pt"
    tuned = Trainer(tiny_config(data_set, model_file, tmp_path / "tuned", init_from=str(start)),
                    progress_bar=False)
    saved = read_checkpoint(start)["model"]
    assert all(torch.equal(saved[name], value) for name, value in tuned.model.state_dict().items())
    with pytest.raises(CheckpointError, match="does not fit the model config"):
        Trainer(tiny_config(data_set, model_file, tmp_path / "other", init_from=str(start),
                            model="models/mh_small.yaml"), progress_bar=False)


@pytest.mark.slow
@pytest.mark.neuron
def test_resume_refuses_different_settings(data_set, model_file, tmp_path):
    Trainer(tiny_config(data_set, model_file, tmp_path, max_steps=10), progress_bar=False).run()
    with pytest.raises(CheckpointError, match="different settings"):
        Trainer(tiny_config(data_set, model_file, tmp_path, lr=0.1), progress_bar=False)


@pytest.mark.slow
@pytest.mark.neuron
def test_cosine_learning_rate_falls_to_zero(data_set, model_file, tmp_path):
    config = tiny_config(data_set, model_file, tmp_path, lr=0.01, lr_schedule="cosine", max_steps=100)
    assert [config.learning_rate(step) for step in (0, 50, 100)] == pytest.approx([0.01, 0.005, 0.0])
    trainer = Trainer(config, progress_bar=False)
    trainer.progress.step = 75
    trainer.train_step()
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(config.learning_rate(75))
    with pytest.raises(ValueError, match="lr_schedule"):
        tiny_config(data_set, model_file, tmp_path, lr_schedule="linear")


def test_lbtw_weights_follow_the_published_update():
    balancer = LossBalancer(alpha=0.5, spike_weight=1.0)
    first = torch.tensor([4.0, 1.0, 0.5])
    np.testing.assert_allclose(balancer.weights(first), [1.0, 1.0, 1.0])
    later = torch.tensor([1.0, 0.25, 0.5])
    np.testing.assert_allclose(balancer.weights(later), (later / first) ** 0.5)
    balancer.start_period()
    np.testing.assert_allclose(balancer.weights(later), [1.0, 1.0, 1.0])


@pytest.mark.slow
@pytest.mark.neuron
def test_train_and_evaluate_commands(data_set, model_file, tmp_path, capsys):
    out_dir = tmp_path / "run"
    assert main(["train", "--data", str(data_set), "--model", str(model_file), "--out-dir", str(out_dir),
                 "--max-steps", "10", "--batch-size", "8", "--no-progress"]) == 0
    rows = (out_dir / "metrics.csv").read_text().splitlines()
    assert rows[0].startswith("step,train_loss,val_loss") and len(rows) == 2
    evaluation = tmp_path / "evaluation"
    assert main(["evaluate", "--checkpoint", str(out_dir / "best.pt"), "--data", str(data_set),
                 "--out-dir", str(evaluation), "--free-run-ms", "100"]) == 0
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert metrics["simulations"] == read_checkpoint(out_dir / "best.pt")["meta"]["data"]["test"]
    assert set(metrics["teacher_forced_rmse_mv"]) >= {"all", "soma", "basal", "apical", "oblique"}
    assert np.isfinite(metrics["free_running_rmse_mv"]["all"])
    assert len(metrics["per_segment_free_running_rmse_mv"]) == len(metrics["per_segment_teacher_forced_rmse_mv"])
    extracellular = metrics["extracellular"]
    assert extracellular["lfp_z_um"] == list(LFP_ELECTRODE_Z_UM) and len(extracellular["lfp_r"]) == 5
    assert all(-1.0 <= r <= 1.0 for r in extracellular["lfp_r"]) and -1.0 <= extracellular["dipole_z_r"] <= 1.0
    for figure in ("error_by_section.png", "voltage_rasters.png", "soma_traces.png"):
        assert (evaluation / figure).stat().st_size > 0
    assert "teacher-forced" in capsys.readouterr().out
    shipped = tmp_path / "shipped"
    assert main(["ship", "--checkpoint", str(out_dir / "last.pt"), "--name", "tiny", "--run-dir", str(out_dir),
                 "--evaluation", f"held-out={evaluation / 'metrics.json'}", "--out-dir", str(shipped)]) == 0
    payload = torch.load(shipped / "tiny.pt", weights_only=True)
    assert "optimizer" not in payload and "optimizer" in torch.load(out_dir / "last.pt", weights_only=True)
    card = (shipped / "tiny.md").read_text()
    assert "### held-out" in card and "teacher-forced" in card
    model, _, _, _ = load_checkpoint(shipped / "tiny.pt")


@pytest.mark.slow
@pytest.mark.neuron
def test_extra_data_joins_training_and_must_match_the_recording_length(data_set, extra_data_set, model_file,
                                                                      tmp_path):
    trainer = Trainer(tiny_config(data_set, model_file, tmp_path / "run", extra_data=[str(extra_data_set)]),
                      progress_bar=False)
    assert len(trainer.data.train.sim_indices) == 4 and len(trainer.data.validation.sim_indices) == 2
    meta = trainer.data.data_meta
    assert meta["extra"][0]["base_seed"] == 22 and len(meta["test"]) == 1
    assert held_out_simulations(trainer.meta(), open_data_set(extra_data_set)) == meta["extra"][0]["test"]
    shorter = tmp_path / "shorter.h5"
    generate(shorter, 3, 150, seed=23, config=SimulationConfig(warmup_ms=50), progress=False)
    with pytest.raises(ValueError, match="--duration-ms 250"):
        Trainer(tiny_config(data_set, model_file, tmp_path / "bad", extra_data=[str(shorter)]),
                progress_bar=False)


@pytest.mark.slow
@pytest.mark.neuron
def test_checkpoint_loads_without_code_and_checks_fields(data_set, model_file, tmp_path):
    Trainer(tiny_config(data_set, model_file, tmp_path, max_steps=10), progress_bar=False).run()
    model, normalisation, meta, _ = load_checkpoint(tmp_path / "best.pt")
    assert normalisation.mean.shape == (meta["cell"]["n_segments"],)
    payload = torch.load(tmp_path / "best.pt", weights_only=True)
    del payload["norm_std"]
    torch.save(payload, tmp_path / "broken.pt")
    with pytest.raises(CheckpointError, match="norm_std"):
        load_checkpoint(tmp_path / "broken.pt")
    payload = torch.load(tmp_path / "best.pt", weights_only=True)
    key = next(k for k in payload["model"] if k.endswith("weight"))
    payload["model"][key] = torch.zeros(3, 3)
    torch.save(payload, tmp_path / "reshaped.pt")
    with pytest.raises(CheckpointError, match="do not fit"):
        load_checkpoint(tmp_path / "reshaped.pt")
    (tmp_path / "truncated.pt").write_bytes((tmp_path / "best.pt").read_bytes()[:1000])
    with pytest.raises(CheckpointError, match="not a readable"):
        load_checkpoint(tmp_path / "truncated.pt")


@pytest.mark.slow
@pytest.mark.neuron
def test_distributed_training_with_two_processes(data_set, model_file, tmp_path):
    out_dir = tmp_path / "ddp"
    command = [sys.executable, "-m", "torch.distributed.run", "--nproc_per_node", "2",
               "--master_port", "29517", "-m", "surrogate_cell.training", "train",
               "--data", str(data_set), "--model", str(model_file), "--out-dir", str(out_dir),
               "--max-steps", "6", "--batch-size", "8", "--device", "cpu", "--no-progress"]
    env = {**os.environ, "OMP_NUM_THREADS": "1"}
    result = subprocess.run(command, capture_output=True, text=True, timeout=600, env=env)
    assert result.returncode == 0, result.stderr[-2000:]
    meta = read_checkpoint(out_dir / "last.pt")["meta"]
    assert meta["training"]["world_size"] == 2
    assert meta["training"]["progress"]["step"] == 6


def test_spike_flags_mark_the_millisecond_ending_at_the_peak():
    flags = spike_flags(np.array([10.0, 10.125, 42.875]), 50)
    assert np.flatnonzero(flags).tolist() == [10, 11, 43]


def test_spike_onset_targets_are_the_first_samples_above_threshold():
    soma = np.full((1, 1, 60), -70.0)
    soma[0, 0, [20, 21, 22]] = [-30.0, -10.0, -52.0]  # one spike, two samples above threshold
    soma[0, 0, 40] = -40.0
    raw = RawSimulations(np.zeros((1, 60, 2)), soma, spike_flags(np.array([20.6, 40.3]), 60)[None],
                         [np.array([20.6, 40.3])])
    onsets = with_spike_onsets(raw, 0, -48.0)
    assert np.flatnonzero(onsets.spike_flags[0]).tolist() == [20, 40]
    assert onsets.voltages_mv is soma and onsets.spike_times is raw.spike_times
    joined = RawSimulations.concatenate([raw, onsets])
    assert len(joined) == 2 and joined.spike_flags.shape == (2, 60) and len(joined.spike_times) == 2


def test_metric_helpers():
    assert match_spikes(np.array([10.0, 50.0]), np.array([12.0, 48.0, 100.0]), 3.0) == 2
    assert match_spikes(np.array([10.0]), np.array([14.0]), 3.0) == 0
    assert roc_auc(np.array([0, 0, 1, 1]), np.array([0.1, 0.4, 0.35, 0.8])) == pytest.approx(0.75)
    assert permanent(np.array([[1.0, 2.0], [3.0, 4.0]])) == pytest.approx(10.0)


def test_spike_threshold_is_chosen_from_sampled_traces():
    trace = np.full(200, -70.0)
    trace[[50, 120]] = -20.0   # spikes caught near their peak by the 1 ms samples
    trace[[90]] = -45.0        # a subthreshold bump
    threshold, f1 = best_crossing_threshold(trace[None], [np.array([50.2, 120.4])])
    assert -45.0 < threshold <= -20.0 and f1 == 1.0


def test_sampler_fractions_fixed_or_natural():
    spikes = torch.zeros(2, 1000, dtype=torch.bool)
    spikes[:, ::50] = True  # 2 % of positions are spike targets
    data = WindowData(events=torch.zeros(2, 1000, 4, dtype=torch.uint8), voltages=torch.zeros(2, 1000, 3),
                      spikes=spikes, window=100, sim_indices=[0, 1])
    balanced = BalancedSampler(data, 1 / 3, 1, np.random.default_rng(0))
    natural = BalancedSampler(data, None, 1, np.random.default_rng(0), lead=40)
    balanced_hits = [spikes[torch.as_tensor(s), torch.as_tensor(t)].float().mean() for s, t in
                     (balanced.sample(300) for _ in range(20))]
    sims, times = zip(*(natural.sample(300) for _ in range(20)))
    natural_hits = spikes[torch.as_tensor(np.concatenate(sims)), torch.as_tensor(np.concatenate(times))]
    assert all(abs(h - 1 / 3) < 0.01 for h in balanced_hits)
    assert abs(natural_hits.float().mean() - 0.02) < 0.01
    assert np.concatenate(times).min() >= 140


@pytest.mark.slow
@pytest.mark.neuron
def test_srm_training_calibrates_its_spike_output(data_set, extra_data_set, tmp_path):
    model_file = tmp_path / "tiny_srm.yaml"
    model_file.write_text("family: srm\ntaus: [2, 10]\nhidden: 8\nmlp_layers: 1\ndropout: 0.0\n")
    out_dir = tmp_path / "srm"
    assert main(["train", "--data", str(data_set), "--extra-data", str(extra_data_set), "--model", str(model_file),
                 "--out-dir", str(out_dir), "--max-steps", "10", "--batch-size", "8", "--no-progress"]) == 0
    model, normalisation, meta, _ = load_checkpoint(out_dir / "best.pt")
    soma = meta["cell"]["soma_segment"]
    expected_z = (meta["cell"]["spike_threshold_mv"] - normalisation.mean[soma]) / normalisation.std[soma]
    assert model.config.soma_segment == soma
    assert model.config.spike_threshold_z == pytest.approx(expected_z, rel=1e-5)
    assert meta["cell"]["spike_targets"] == "soma_onset"
    _, labels = validation_raw(meta, out_dir / "best.pt", progress=False)
    assert labels == [*meta["data"]["validation"], *(f"extra/{i}" for i in meta["data"]["extra"][0]["validation"])]
    summary = meta["spike_calibration"]
    assert summary["spike_logit_threshold"] == model.config.spike_logit_threshold
    assert main(["calibrate", "--checkpoint", str(out_dir / "last.pt"), "--match", "count"]) == 0
    assert load_checkpoint(out_dir / "last.pt")[2]["spike_calibration"]["match"] == "count"
    tiny_mh = tmp_path / "mh"
    main(["train", "--data", str(data_set), "--model", "models/mh_small.yaml",
          "--out-dir", str(tiny_mh), "--max-steps", "2", "--batch-size", "4", "--no-progress"])
    with pytest.raises(CheckpointError, match="only SRM"):
        calibrate_checkpoint(tiny_mh / "best.pt")


def test_a_count_matched_threshold_predicts_the_true_number_of_spikes():
    logits = np.zeros((1, 100))
    logits[0, [10, 30, 50, 70]] = 5.0, 4.0, 3.0, 2.0
    true_spikes = [np.array([10.0, 50.0])]
    crossings = teacher_forced_spikes(logits, t0=0)
    fractions = (0.005, 0.015, 0.025)  # thresholds between the peaks: 1, 2 and 3 spikes
    by_f1 = best_threshold(logits, fractions, crossings, true_spikes)
    by_count = best_threshold(logits, fractions, crossings, true_spikes, match="count")
    assert (by_f1[1]["n_predicted"], by_f1[1]["f1"]) == (3, pytest.approx(0.8))
    assert (by_count[1]["n_predicted"], by_count[1]["f1"]) == (2, pytest.approx(0.5))
    with pytest.raises(ValueError, match="count"):
        best_threshold(logits, fractions, crossings, true_spikes, match="rate")


def test_count_matching_searches_between_the_candidates_that_enclose_the_true_count():
    logits = np.zeros((1, 100))
    logits[0, [10, 30, 50, 70]] = 5.0, 4.0, 3.0, 2.0
    true_spikes = [np.array([10.0, 30.0, 50.0])]
    crossings = teacher_forced_spikes(logits, t0=0)
    fractions = (0.005, 0.035)  # thresholds above 4 (1 spike) and below 2 (4 spikes)
    threshold, scores = best_threshold(logits, fractions, crossings, true_spikes, match="count")
    assert (scores["n_predicted"], scores["f1"]) == (3, pytest.approx(1.0))
    assert 2.0 <= threshold < 3.0


@pytest.mark.slow
@pytest.mark.neuron
def test_an_ensemble_of_srms_predicts_their_mean_voltage_and_calibrates(data_set, tmp_path):
    model_file = tmp_path / "tiny_srm.yaml"  # pooled filters, subunits, section projection: train fills in the layout
    model_file.write_text("family: srm\ntaus: [2, 10]\npooled_taus: [40]\nhidden: 8\nmlp_layers: 1\n"
                          "spike_hidden: 4\ndropout: 0.0\nsubunit_hidden: 3\nsubunit_out: 2\n"
                          "section_projection: true\n")
    members = []
    for steps, init_seed in ((6, []), (10, ["--init-seed", "1"])):  # same split, different weights
        out_dir = tmp_path / f"srm{steps}"
        main(["train", "--data", str(data_set), "--model", str(model_file), "--out-dir", str(out_dir),
              "--max-steps", str(steps), "--batch-size", "8", "--no-progress", *init_seed])
        members.append(out_dir / "last.pt")
    first, second = (load_checkpoint(path) for path in members)
    assert first[2]["data"]["train"] == second[2]["data"]["train"]  # --init-seed keeps the split
    assert not torch.equal(first[0].subunits.weight_in, second[0].subunits.weight_in)  # ... not the weights
    ensemble_path = tmp_path / "ensemble.pt"
    assert main(["ensemble", "--checkpoint", str(members[0]), "--checkpoint", str(members[1]),
                 "--out", str(ensemble_path)]) == 0

    ensemble, normalisation, meta, _ = load_checkpoint(ensemble_path)
    ensemble.eval()
    cell = meta["cell"]
    assert ensemble.config.input_pools == pools_by_section_type(
        [cell["section_types"][segment] for segment in cell["input_segments"]])
    assert list(ensemble.config.input_sections) == cell["input_sections"]
    assert ensemble.subunits.readout.abs().sum() > 0  # trained: the subunits take part
    raw = load_raw(open_data_set(data_set), meta["data"]["validation"])
    data = build_window_data(raw, normalisation, ensemble.config.window, meta["data"]["validation"])
    windows = data.gather(*(np.asarray(a)[:16] for a in data.target_positions()))
    x = model_input(windows[0], windows[1])
    with torch.no_grad():
        voltage_z, logit = ensemble.heads(ensemble.project(ensemble.window_inputs(x)))
        mean_mv, margins = 0.0, 0.0
        for path in members:
            model, norm, _, _ = load_checkpoint(path)
            z, member_logit = model.eval().heads(model.project(model.window_inputs(x)))
            mean_mv = mean_mv + norm.to_mv(z.double()) / len(members)
            margins = margins + (member_logit - model.config.spike_logit_threshold) / len(members)
    torch.testing.assert_close(normalisation.to_mv(voltage_z.double()), mean_mv, rtol=0, atol=1e-4)
    torch.testing.assert_close(logit, margins, rtol=0, atol=1e-5)
    assert [m["checkpoint"] for m in meta["ensemble"]] == ["srm6/last.pt", "srm10/last.pt"]
    assert main(["calibrate", "--checkpoint", str(ensemble_path)]) == 0

    shipped = tmp_path / "shipped"
    assert main(["ship", "--checkpoint", str(ensemble_path), "--name", "tiny-ensemble", "--out-dir", str(shipped)]) == 0
    shipped_weights = torch.load(shipped / "tiny-ensemble.pt", weights_only=True)["model"]
    assert shipped_weights["projection.weight"].dtype == torch.float16
    assert "Ensemble of 2 SRMs" in (shipped / "tiny-ensemble.md").read_text()
    shipped_meta = json.loads(torch.load(shipped / "tiny-ensemble.pt", weights_only=True)["meta"])
    assert {member["data"]["path"] for member in shipped_meta["ensemble"]} == {data_set.name}
    ensemble, _, _, _ = load_checkpoint(shipped / "tiny-ensemble.pt")
    with torch.no_grad():
        shipped_z, _ = ensemble.eval().heads(ensemble.project(ensemble.window_inputs(x)))
    assert ensemble.projection.weight.dtype == torch.float32
    torch.testing.assert_close(normalisation.to_mv(shipped_z), normalisation.to_mv(voltage_z), rtol=0, atol=0.01)


def test_ensemble_splits_leave_out_every_members_training_simulations():
    first = {"data": {"path": "/a/pub.h5", "train": [0, 1], "validation": [2, 3], "test": [4, 5],
                      "extra": [{"path": "/a/hd.h5", "train": [0], "validation": [1, 2], "test": [3]}]}}
    second = {"data": {"path": "/b/pub.h5", "train": [0, 3], "validation": [1], "test": [2, 4, 5],
                       "extra": [{"path": "/b/hd.h5", "train": [2, 3], "validation": [0], "test": [1]}]}}
    splits = held_out_splits([first, second])
    assert (splits["validation"], splits["test"]) == ([2], [4, 5])
    assert (splits["extra"][0]["validation"], splits["extra"][0]["test"]) == ([1], [])


@pytest.mark.slow
@pytest.mark.neuron
def test_ensemble_members_must_share_the_architecture(data_set, tmp_path):
    paths = []
    for hidden in (8, 6):
        model_file = tmp_path / f"srm{hidden}.yaml"
        model_file.write_text(f"family: srm\ntaus: [2]\nhidden: {hidden}\nmlp_layers: 1\nspike_hidden: 4\n")
        main(["train", "--data", str(data_set), "--model", str(model_file), "--out-dir", str(tmp_path / str(hidden)),
              "--max-steps", "2", "--batch-size", "4", "--no-progress"])
        paths.append(str(tmp_path / str(hidden) / "last.pt"))
    with pytest.raises(CheckpointError, match=r"differs .* in \['hidden'\]"):
        build_ensemble(paths, tmp_path / "ensemble.pt")
    with pytest.raises(CheckpointError, match="at least two"):
        build_ensemble(paths[:1], tmp_path / "ensemble.pt")
    assert not (tmp_path / "ensemble.pt").exists()


@pytest.mark.neuron
def test_extracellular_matrices_reproduce_lfpys_own_probes(data_set):
    """The evaluation's voltage -> LFP and dipole matrices give what LFPy's probes record from
    NEURON's membrane currents on the same cell."""
    import LFPy

    from surrogate_cell.cells.build import build_stored_cell

    recipe = open_data_set(data_set).layout.recipe
    lfp, dipole = extracellular_matrices(recipe)
    cell = build_stored_cell(recipe, {"tstop": 60.0, "dt": 0.025})
    for z, start in ((300.0, 10.0), (700.0, 25.0), (0.0, 40.0)):
        synapse = LFPy.Synapse(cell, idx=cell.get_closest_idx(z=z), syntype="Exp2Syn", weight=0.02,
                               tau1=0.5, tau2=3.0, e=0.0)
        synapse.set_spike_times(np.array([start]))
    n = len(LFP_ELECTRODE_Z_UM)
    electrode = LFPy.RecExtElectrode(cell, x=np.full(n, LFP_ELECTRODE_X_UM), y=np.zeros(n),
                                     z=np.asarray(LFP_ELECTRODE_Z_UM))
    moment = LFPy.CurrentDipoleMoment(cell)
    cell.simulate(probes=[electrode, moment], rec_vmem=True)
    for matrix, recorded in ((lfp, electrode.data), (dipole, moment.data)):  # t = 0 holds no current yet
        np.testing.assert_allclose((matrix @ cell.vmem)[:, 1:], recorded[:, 1:], atol=0.02 * np.abs(recorded).max())
