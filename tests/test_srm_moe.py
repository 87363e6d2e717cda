"""The stable MMoE and MMoEEx (``srm_mmoe``, ``srm_mmoeex``): model, fast stepper, calibration, runtime."""

from __future__ import annotations

import LFPy
import numpy as np
import pytest
import torch

from surrogate_cell.cell import SurrogateCell
from surrogate_cell.cells import l5pc
from surrogate_cell.cells.layout import SYNAPSE_SECTION_TYPES, cell_layout
from surrogate_cell.checkpoint import cell_meta_from_layout, model_meta, save_checkpoint
from surrogate_cell.datasets.windows import WindowData
from surrogate_cell.engine import SRMMoEStepper, make_stepper
from surrogate_cell.models import build_model, get_family
from surrogate_cell.models.normalisation import Normalisation
from surrogate_cell.network import PoissonDrive, Population, SurrogateNetwork
from surrogate_cell.training.calibrate import calibrate_model
from tests.test_engine import (
    N_EVENTS,
    N_SEGMENTS,
    NORMALISATION,
    assert_fast_stepper_equals_full_recompute_with_spike_feedback,
)

FAMILIES = ("srm_mmoe", "srm_mmoeex")
SIZES = dict(taus=(1.0, 5.0, 30.0), hidden=6, mlp_layers=2, n_experts=3, expert_hidden=4, compressor_hidden=3,
             dropout=0.0, window=100, soma_segment=2, spike_threshold_z=1.5)
POOLED = {"pooled_taus": (20.0, 80.0), "input_pools": tuple(i % 5 for i in range(N_EVENTS))}
SUBUNITS = {"subunit_hidden": 4, "subunit_out": 2, "input_sections": tuple(i % 3 for i in range(N_EVENTS // 2)),
            "section_distances": (0.0, 0.2, 0.5)}
SECTION_PROJECTION = {"section_projection": True, "input_sections": tuple(i % 3 for i in range(N_EVENTS // 2))}
EXCLUSIVE = {"exclusivity_fraction": 0.34}  # one of three experts


def small_moe(family: str, **overrides) -> torch.nn.Module:
    """A seeded random stable MMoE(Ex) whose soma (segment 2) jumps far above threshold on a spike."""
    torch.manual_seed(0)
    model = build_model(family, {**SIZES, **(EXCLUSIVE if family == "srm_mmoeex" else {}), **overrides,
                                 "in_channels": N_EVENTS + N_SEGMENTS, "n_tasks": N_SEGMENTS + 1,
                                 "event_channels": N_EVENTS})
    with torch.no_grad():
        model.spike_jump[2] = 8.0
        spike_weight = model.spike_head[-1].weight if model.spike_head else model.towers.weight[-1]
        spike_weight.mul_(20.0)  # spike logits of both signs: some steps spike
        model.gate_weight.mul_(5.0)  # gates far from uniform: the mixing matters
        if model.subunits is not None:
            model.subunits.readout.normal_(0.0, 0.5)
        x = window_input(64)
        _, logits = model.heads(model.project(model.window_inputs(x)))
    model.config.spike_logit_threshold = float(logits.median())  # half the windows above threshold
    return model


def window_input(batch: int = 5, seed: int = 0) -> torch.Tensor:
    """Model input (batch, events + voltages, 100): sparse events, z-voltages with some soma spikes."""
    generator = torch.Generator().manual_seed(seed)
    events = (torch.rand(batch, N_EVENTS, 100, generator=generator) < 0.03).float()
    voltages = torch.randn(batch, N_SEGMENTS, 100, generator=generator)
    return torch.cat([events, voltages], dim=1)


# ------------------------------------------------------------------ the model


@pytest.mark.parametrize("family", FAMILIES)
def test_registry_entry_is_a_stable_calibrated_expert_family(family):
    entry = get_family(family)
    assert entry.has_experts and entry.calibrates_spikes and not entry.ensembles
    assert entry.stepper_factory() is SRMMoEStepper and entry.float16_weights == ("projection.weight",)


@pytest.mark.parametrize("family", FAMILIES)
def test_gates_are_softmaxes_over_the_allowed_experts(family):
    model = small_moe(family).eval()
    gates, experts = model.gates_and_experts(window_input())
    assert gates.shape == (5, N_SEGMENTS + 1, 3) and experts.shape == (5, 3, 4)
    torch.testing.assert_close(gates.sum(-1), torch.ones(5, N_SEGMENTS + 1))
    if family == "srm_mmoeex":
        assert len(model.special_experts) == 1
        assert torch.all(gates[:, ~model.gate_mask] == 0) and model.gate_mask.sum(0).min() == 1


@pytest.mark.parametrize("spike_hidden", [0, 5])
@pytest.mark.parametrize("family", FAMILIES)
def test_towers_read_the_projection_and_their_tasks_mixture(family, spike_hidden):
    """The fused product equals every task's tower on its own explicit mixture (a loop, here only)."""
    model = small_moe(family, spike_hidden=spike_hidden).eval().double()
    x = window_input().double()
    projected = model.project(model.window_inputs(x))
    gates, experts = model.gates_and_experts(x)
    mixtures = torch.einsum("bte,beh->bth", gates, experts)
    hidden, weight, bias = model.config.hidden, model.towers.weight, model.towers.bias
    expected = torch.stack([projected @ weight[t, :hidden] + mixtures[:, t] @ weight[t, hidden:] + bias[t]
                            for t in range(model.towers.out_features)], dim=1)
    voltage, logit = model.heads(projected)
    torch.testing.assert_close(voltage, expected[:, :N_SEGMENTS])
    if spike_hidden:
        expected_logit = model.spike_head(torch.cat([projected, mixtures[:, -1]], dim=1))[:, 0]
    else:
        expected_logit = expected[:, -1]
    torch.testing.assert_close(logit, expected_logit)
    torch.testing.assert_close(model.spike_logit(projected), logit)


def test_exclusion_hides_an_expert_from_one_task_only():
    model = small_moe("srm_mmoeex", exclusion=True)
    hidden = ~model.gate_mask
    assert hidden.sum() == 1
    gates, _ = model.gates_and_experts(window_input())
    assert torch.all(gates[:, hidden] == 0) and torch.all(gates[:, ~hidden] > 0)


def test_members_and_empty_experts_are_refused():
    with pytest.raises(ValueError, match="members must be 1"):
        small_moe("srm_mmoe", members=2, spike_hidden=4)
    with pytest.raises(ValueError, match="n_experts"):
        small_moe("srm_mmoe", n_experts=0)


@pytest.mark.parametrize("family", FAMILIES)
def test_tiny_model_fits_a_fixed_batch(family):
    model = small_moe(family, spike_hidden=5)
    model.spike_jump.requires_grad_(False)
    x, target = window_input(16), torch.randn(16, N_SEGMENTS)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)
    losses = []
    for _ in range(150):
        voltage, _ = model(x)
        loss = ((voltage - target) ** 2).mean()
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    assert losses[-1] < 0.3 * losses[0]


# ------------------------------------------------------------------ the fast stepper


@pytest.mark.parametrize("options", [{}, {"spike_hidden": 5}, {"spike_hidden": 5, **POOLED},
                                     {"spike_hidden": 5, **SUBUNITS}, {**SECTION_PROJECTION, **POOLED}],
                         ids=["linear-spike", "spike-head", "pooled", "subunits", "sections"])
@pytest.mark.parametrize("family", FAMILIES)
def test_stepper_equals_full_recompute_with_spike_feedback(family, options):
    assert_fast_stepper_equals_full_recompute_with_spike_feedback(small_moe(family, **options), SRMMoEStepper)


def test_flops_count_the_experts_gates_and_towers():
    stepper = make_stepper(small_moe("srm_mmoe", spike_hidden=5), NORMALISATION, 1)
    parts = stepper.flop_breakdown()
    assert set(parts) == {"filter update", "subunits", "experts", "compressor and gates", "towers", "spike head"}
    assert parts["towers"] == 2 * (6 * N_SEGMENTS + 3 * 4 * N_SEGMENTS + 3 * N_SEGMENTS)
    assert stepper.flops_per_cell_step() == sum(parts.values())


# ------------------------------------------------------------------ calibration


@pytest.mark.parametrize("family", FAMILIES)
def test_spike_output_calibrates_through_the_generic_path(family):
    """Jump and threshold are set from teacher-forced and free runs, as for the SRM."""
    model = small_moe(family, spike_hidden=5)
    generator = torch.Generator().manual_seed(3)
    n_sims, n_ms = 3, 400
    events = (torch.rand(n_sims, n_ms, N_EVENTS, generator=generator) < 0.03).to(torch.uint8)
    voltages = 0.3 * torch.randn(n_sims, n_ms, N_SEGMENTS, generator=generator)
    spikes = torch.zeros(n_sims, n_ms, dtype=torch.bool)
    spikes[:, 150::60] = True
    voltages[spikes] += 4.0
    data = WindowData(events=events, voltages=voltages, spikes=spikes, window=100, sim_indices=list(range(n_sims)))
    spike_times = [np.flatnonzero(row.numpy()).astype(float) for row in spikes]
    summary = calibrate_model(model, data, spike_times, NORMALISATION, threshold_mv=-70.0 + 5.0 * 1.5)
    assert summary["n_spike_targets"] == int(spikes[:, 100:].sum())
    assert "free_running" in summary and np.isfinite(model.config.spike_logit_threshold)
    assert float(model.spike_jump.detach()[2]) > 3.0  # the mean true jump at the spike targets, ~4 z


# ------------------------------------------------------------------ in SurrogateCell and networks


@pytest.fixture(scope="module", params=FAMILIES)
def l5pc_moe_checkpoint(request, tmp_path_factory):
    """A tiny random stable MMoE(Ex) of the default cell, with the SRM's data-derived fields."""
    layout = cell_layout(l5pc(), SYNAPSE_SECTION_TYPES)
    n_segments, n_events = layout.n_segments, 2 * layout.input_segments.size
    cell_meta = {**cell_meta_from_layout(layout), "spike_threshold_mv": -50.0}
    normalisation = Normalisation(np.full(n_segments, -70.0, np.float32), np.full(n_segments, 5.0, np.float32))
    fields = {"taus": (2.0, 10.0), "hidden": 8, "mlp_layers": 1, "n_experts": 3, "expert_hidden": 4,
              "compressor_hidden": 4, "spike_hidden": 4, "dropout": 0.0, "window": 100, "pooled_taus": (50.0,)}
    family = get_family(request.param)
    torch.manual_seed(0)
    model = family.build({**fields, "in_channels": n_events + n_segments, "n_tasks": n_segments + 1,
                          "event_channels": n_events, **family.data_fields(cell_meta, normalisation, fields)})
    with torch.no_grad():
        model.projection.weight.mul_(30.0)  # synaptic events move the voltages visibly
    meta = {**model_meta(model, request.param), "cell": cell_meta, "data": {}, "training": {}}
    path = tmp_path_factory.mktemp("srm_moe") / f"{request.param}.pt"
    save_checkpoint(path, model, meta, normalisation)
    return path


@pytest.mark.neuron
def test_runs_free_in_a_surrogate_cell(l5pc_moe_checkpoint):
    cell = SurrogateCell(model=l5pc_moe_checkpoint, tstop=40.0, device="cpu")
    synapse = LFPy.Synapse(cell, idx=int(cell.get_idx("apic")[5]), syntype="AMPANMDA", weight=1.0)
    synapse.set_spike_times(np.array([2.0, 9.5, 20.0]))
    cell.simulate(rec_vmem=True)
    assert np.isfinite(cell.vmem).all() and np.ptp(cell.vmem[:, 1:], axis=1).max() > 0


@pytest.mark.neuron
def test_runs_in_a_surrogate_network(l5pc_moe_checkpoint):
    network = SurrogateNetwork(seed=3, device="cpu")
    network.add_population(Population("E", l5pc_moe_checkpoint, 3))
    network.add_drive(PoissonDrive("E", exc_rate_hz=20.0, inh_rate_hz=10.0))
    result = network.simulate(30, record_soma=True)
    assert result.soma_v["E"].shape[0] == 3 and np.isfinite(result.soma_v["E"]).all()
