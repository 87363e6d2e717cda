"""What training and evaluation show: per-section-type losses, LBTW weights, expert and gate diversity,
gate collapse, and ``evaluate`` on every family with experts (real torch; a tiny real NEURON data set)."""

from __future__ import annotations

import csv
import json
import math
import warnings

import numpy as np
import pytest
import torch

from surrogate_cell.data.generate import generate
from surrogate_cell.data.simulation import SimulationConfig
from surrogate_cell.models import FAMILIES, build_model
from surrogate_cell.training.__main__ import main
from surrogate_cell.training.diversity import (
    GATE_COLLAPSE_SHARE,
    diagnostic_columns,
    diversity_scores,
    flat_diagnostics,
    gate_usage,
    mixture_diagnostics,
    pairwise_distances,
    warn_if_collapsed,
)
from surrogate_cell.training.evaluate import format_report
from surrogate_cell.training.train import LossBalancer, MetricsLog, TaskLog, TrainConfig, Trainer

N_EVENTS, N_SEGMENTS, WINDOW = 8, 5, 24
EXPERT_FAMILIES = {
    "mmoe": dict(n_experts=3, expert_channels=(4, 2), compressor_channels=(2, 2), tower_hidden=(4,),
                 kernel_size=3, dilations=(1, 2)),
    "mmoeex": dict(n_experts=3, expert_channels=(4, 2), compressor_channels=(2, 2), tower_hidden=(4,),
                   kernel_size=3, dilations=(1, 2), exclusivity_fraction=0.34),
    "srm_mmoe": dict(taus=(2.0, 10.0), hidden=8, mlp_layers=1, n_experts=3, expert_hidden=4, compressor_hidden=4,
                     spike_hidden=4, soma_segment=0, spike_threshold_z=1.0),
    "srm_mmoeex": dict(taus=(2.0, 10.0), hidden=8, mlp_layers=1, n_experts=3, expert_hidden=4,
                       compressor_hidden=4, spike_hidden=4, soma_segment=0, spike_threshold_z=1.0,
                       exclusivity_fraction=0.34),
}
YAML = {family: "\n".join([f"family: {family}", "dropout: 0.0",
                           *(f"{key}: {list(value) if isinstance(value, tuple) else value}"
                             for key, value in fields.items() if key not in ("soma_segment", "spike_threshold_z"))])
        for family, fields in EXPERT_FAMILIES.items()}


def small_model(family: str) -> torch.nn.Module:
    torch.manual_seed(0)
    return build_model(family, {**EXPERT_FAMILIES[family], "dropout": 0.0, "window": WINDOW,
                                "in_channels": N_EVENTS + N_SEGMENTS, "n_tasks": N_SEGMENTS + 1,
                                "event_channels": N_EVENTS})


def model_input(batch: int = 7) -> torch.Tensor:
    generator = torch.Generator().manual_seed(0)
    events = (torch.rand(batch, N_EVENTS, WINDOW, generator=generator) < 0.1).float()
    return torch.cat([events, torch.randn(batch, N_SEGMENTS, WINDOW, generator=generator)], dim=1)


# ------------------------------------------------------------------ diversity and gates


def test_distances_are_between_experts_averaged_over_samples():
    """The distance matrix is experts x experts (not samples x samples, the bug of issue #28)."""
    generator = torch.Generator().manual_seed(1)
    base = torch.randn(10, 1, 6, generator=generator)
    outputs = torch.cat([base, base, base + 2.0], dim=1)  # experts 0 and 1 agree, 2 is offset
    distances = pairwise_distances(outputs)
    assert distances.shape == (3, 3)
    np.testing.assert_allclose(distances, distances.T)
    np.testing.assert_allclose(np.diag(distances), 0.0, atol=1e-12)
    assert distances[0, 1] == pytest.approx(0.0, abs=1e-12) and distances.max() == pytest.approx(1.0)
    scores = diversity_scores(np.array([[0.0, 0.5, 1.0], [0.5, 0.0, 0.25], [1.0, 0.25, 0.0]]))
    assert scores["score"] == pytest.approx((0.5 + 1.0 + 0.25) / 3)
    assert scores["determinant"] == pytest.approx(2 * 0.5 * 1.0 * 0.25)
    assert scores["permanent"] == pytest.approx(2 * 0.5 * 1.0 * 0.25)


def test_gate_usage_finds_a_collapse_and_warns():
    balanced = torch.full((4, 6, 3), 1 / 3)
    collapsed = torch.tensor([0.03, 0.95, 0.02]).expand(4, 6, 3)
    usage = gate_usage(balanced)
    assert usage["expert_share"] == pytest.approx([1 / 3] * 3) and usage["normalised_entropy"] == pytest.approx(1.0)
    diagnostics = {"gate_usage": gate_usage(collapsed)}
    assert diagnostics["gate_usage"]["largest_share"] == pytest.approx(0.95) and 0.95 > GATE_COLLAPSE_SHARE
    with pytest.warns(UserWarning, match=r"gates collapsed at step 200: expert 1 takes 95.0 %"):
        assert "expert 1" in warn_if_collapsed(diagnostics, "at step 200")
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        assert warn_if_collapsed({"gate_usage": usage}, "at step 200") is None


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_family_with_experts_reports_its_diversity(family):
    if family not in EXPERT_FAMILIES:
        assert not FAMILIES[family].has_experts
        return
    model = small_model(family).train()
    diagnostics = mixture_diagnostics(model, model_input())
    assert model.training  # evaluated without dropout, then handed back as it was
    flat = flat_diagnostics(diagnostics)
    assert tuple(flat) == diagnostic_columns(3) and all(math.isfinite(value) for value in flat.values())
    assert sum(diagnostics["gate_usage"]["expert_share"]) == pytest.approx(1.0)
    assert 0 < diagnostics["expert_diversity"]["score"] <= 1


def test_families_without_experts_report_none():
    model = build_model("srm", {"taus": (2.0,), "hidden": 4, "mlp_layers": 1, "window": WINDOW,
                                "in_channels": N_EVENTS + N_SEGMENTS, "n_tasks": N_SEGMENTS + 1,
                                "event_channels": N_EVENTS})
    assert mixture_diagnostics(model, model_input()) is None


# ------------------------------------------------------------------ the metrics log


def test_task_log_averages_per_section_type_and_over_the_period():
    log = TaskLog(["soma", "apical", "apical", "basal"], lbtw=True)
    assert log.columns()[:5] == ("train_loss_soma", "train_loss_apical", "train_loss_basal", "train_loss_spike",
                                 "val_loss_soma")
    assert log.columns()[-1] == "lbtw_weight_spike"
    balancer = LossBalancer(alpha=0.5, spike_weight=1.0)
    for losses in (torch.tensor([1.0, 2.0, 4.0, 3.0, 0.5]), torch.tensor([3.0, 4.0, 2.0, 1.0, 0.5])):
        balancer.combine(losses)
        log.add(losses, balancer.latest)
    row = log.period_row(torch.tensor([0.1, 0.2, 0.4, 0.3, 0.7], dtype=torch.float64))
    assert row["train_loss_soma"] == pytest.approx(2.0) and row["train_loss_apical"] == pytest.approx(3.0)
    assert row["train_loss_basal"] == pytest.approx(2.0) and row["train_loss_spike"] == pytest.approx(0.5)
    assert row["val_loss_apical"] == pytest.approx(0.3) and row["val_loss_spike"] == pytest.approx(0.7)
    second = (torch.tensor([3.0, 4.0, 2.0, 1.0, 0.5]) / torch.tensor([1.0, 2.0, 4.0, 3.0, 0.5])) ** 0.5
    assert row["lbtw_weight_apical"] == pytest.approx(float((2 + second[1] + second[2]) / 4))
    assert row["lbtw_weight_spike"] == pytest.approx(1.0)
    log.start_period()
    assert math.isnan(log.period_row(torch.zeros(5))["train_loss_soma"])


def test_a_resumed_metrics_log_takes_the_new_columns(tmp_path):
    path = tmp_path / "metrics.csv"
    header = ",".join(MetricsLog.FIELDS)
    path.write_text(f"{header}\n10,1,1,1,nan,1\n")  # written before the per-type columns existed
    log = MetricsLog(tmp_path, resumed_step=10, extra_fields=("val_loss_soma",))
    log.write({"step": 20, "train_loss": 2, "val_loss": 2, "val_rmse_mv": 2, "val_free_rmse_mv": "nan",
               "elapsed_s": 2, "val_loss_soma": 0.5})
    assert path.read_text().splitlines() == [f"{header},val_loss_soma", "10,1,1,1,nan,1,", "20,2,2,2,nan,2,0.5"]


def test_report_prints_rmse_per_section_type_and_the_gates():
    metrics = {"simulations": [1], "teacher_forced_rmse_mv": {"all": 1.0, "soma": 2.0, "apical": 0.5},
               "free_running_rmse_mv": {"all": 1.5, "soma": 2.5, "apical": 0.75}, "free_running_ms": 100,
               "free_running_diverged_at_ms": None, "spike_task_auc": 0.9,
               "spikes": {"threshold_mv": -50.0, "precision": 1.0, "recall": 0.5, "f1": 0.67, "n_true": 2,
                          "n_predicted": 1},
               "expert_diversity": {"score": 0.5, "determinant": 0.2, "permanent": 0.3},
               "gate_diversity": {"score": 0.1, "determinant": 0.01, "permanent": 0.02},
               "gate_usage": {"expert_share": [0.96, 0.04], "largest_share": 0.96, "dominant_expert": 0,
                              "normalised_entropy": 0.1}}
    report = format_report(metrics).splitlines()
    assert report[1].split() == ["RMSE", "(mV)", "all", "soma", "apical"]
    assert report[2].split()[-3:] == ["1.00", "2.00", "0.50"] and report[3].split()[-3:] == ["1.50", "2.50", "0.75"]
    assert any(line.startswith("expert diversity: score 0.500") for line in report)
    assert any(line.startswith("gate diversity: score 0.100") for line in report)
    assert "gate weight per expert: 0.96 0.04" in "\n".join(report)
    assert report[-1].startswith("warning: gates collapsed on the held-out windows: expert 0 takes 96.0 %")


# ------------------------------------------------------------------ training and evaluate on real data


@pytest.fixture(scope="module")
def data_set(tmp_path_factory):
    """Four 250 ms simulations of the built-in cell (50 ms warm-up)."""
    path = tmp_path_factory.mktemp("diagnostics") / "tiny.h5"
    generate(path, 4, 250, seed=21, config=SimulationConfig(warmup_ms=50), progress=False)
    return path


def tiny_config(data_set, tmp_path, family: str, **changes) -> TrainConfig:
    model = tmp_path / f"{family}.yaml"
    model.write_text(YAML[family])
    fields = dict(data=str(data_set), out_dir=str(tmp_path / "run"), model=str(model), batch_size=8, max_steps=6,
                  eval_every=3, val_windows=32, validation_fraction=0.25, test_fraction=0.25, device="cpu",
                  seed=3, lbtw_alpha=0.5)
    return TrainConfig(**{**fields, **changes})


def metrics_rows(out_dir) -> list[dict]:
    with (out_dir / "metrics.csv").open() as handle:
        return list(csv.DictReader(handle))


@pytest.mark.slow
@pytest.mark.neuron
@pytest.mark.parametrize("family", sorted(EXPERT_FAMILIES))
def test_training_logs_and_evaluate_reports_every_family_with_experts(family, data_set, tmp_path, capsys):
    trainer = Trainer(tiny_config(data_set, tmp_path, family), progress_bar=False)
    trainer.run()
    types = list(dict.fromkeys(trainer.data.cell_meta["section_types"]))
    rows = metrics_rows(tmp_path / "run")
    assert [row["step"] for row in rows] == ["3", "6"]
    for row in rows:
        for column in ([f"{kind}_{name}" for kind in ("train_loss", "val_loss", "lbtw_weight")
                        for name in (*types, "spike")] + list(diagnostic_columns(3))):
            assert math.isfinite(float(row[column])), column
        assert sum(float(row[f"gate_share_{e}"]) for e in range(3)) == pytest.approx(1.0)
    assert float(rows[0]["lbtw_weight_soma"]) != 1.0  # the weights moved within the period
    evaluation = tmp_path / "evaluation"
    capsys.readouterr()
    assert main(["evaluate", "--checkpoint", str(tmp_path / "run" / "best.pt"), "--data", str(data_set),
                 "--out-dir", str(evaluation), "--free-run-ms", "50", "--no-figures"]) == 0
    printed = capsys.readouterr().out
    assert all(kind in printed.splitlines()[1] for kind in types)  # RMSE per section type
    assert "expert diversity: score" in printed and "gate weight per expert" in printed
    metrics = json.loads((evaluation / "metrics.json").read_text())
    assert set(metrics["teacher_forced_rmse_mv"]) == {"all", *types}
    assert len(metrics["gate_usage"]["expert_share"]) == 3 and metrics["gate_diversity"]["score"] >= 0


@pytest.mark.slow
@pytest.mark.neuron
def test_training_warns_when_the_gates_collapse(data_set, tmp_path):
    trainer = Trainer(tiny_config(data_set, tmp_path, "srm_mmoe", lr=0.0, max_steps=3, lbtw_alpha=0.0),
                      progress_bar=False)
    with torch.no_grad():
        trainer.model.gate_bias[1] = 20.0  # expert 1 takes (nearly) all gate weight
    with pytest.warns(UserWarning, match=r"gates collapsed at step 3: expert 1 takes"):
        trainer.run()
    row = metrics_rows(tmp_path / "run")[0]
    assert float(row["gate_largest_share"]) > GATE_COLLAPSE_SHARE and "lbtw_weight_soma" not in row
