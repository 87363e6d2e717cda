"""Tests of the surrogate model families (real torch, small sizes)."""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from surrogate_cell.config import PACKAGED_CONFIGS
from surrogate_cell.models import (
    FAMILIES,
    TCN,
    MMoEEx,
    StackedTowers,
    TCNConfig,
    build_model,
    build_model_from_file,
    load_model_config,
    make_gate_mask,
)
from surrogate_cell.models.events import EventIndex
from surrogate_cell.models.mmoeex import n_special_experts
from surrogate_cell.models.srm import pools_by_section_type, sections_of_inputs
from surrogate_cell.models.tcn import MaskDropout

CONFIG_DIR = PACKAGED_CONFIGS / "models"

N_EVENTS, N_DENSE, WINDOW, N_TASKS = 8, 4, 24, 6
SMALL = dict(in_channels=N_EVENTS + N_DENSE, n_tasks=N_TASKS, window=WINDOW,
             kernel_size=3, dilations=(1, 2), event_channels=N_EVENTS)
FAMILY_SIZES = {
    "mh": dict(channels=(6, 4), tower_hidden=(5, 5)),
    "mmoe": dict(n_experts=3, expert_channels=(6, 4), compressor_channels=(4, 2),
                 tower_hidden=(5, 5)),
    "mmoeex": dict(n_experts=4, expert_channels=(6, 4), compressor_channels=(4, 2),
                   tower_hidden=(5, 5), exclusivity_fraction=0.25),
}


def make_input(batch: int = 5, density: float = 0.03, seed: int = 0) -> torch.Tensor:
    """Binary sparse event channels followed by dense voltage-like channels."""
    g = torch.Generator().manual_seed(seed)
    events = (torch.rand(batch, N_EVENTS, WINDOW, generator=g) < density).float()
    return torch.cat([events, torch.randn(batch, N_DENSE, WINDOW, generator=g)], dim=1)


def small_model(family: str, **overrides) -> torch.nn.Module:
    """A seeded small model of ``family``."""
    torch.manual_seed(0)
    return build_model(family, {**SMALL, **FAMILY_SIZES[family], **overrides})


# ---------------------------------------------------------------- shapes / registry

@pytest.mark.parametrize("family", sorted(FAMILY_SIZES))
def test_residual_voltage_adds_the_last_input_voltage(family):
    """With residual_voltage the towers predict changes from the last millisecond."""
    x = make_input(batch=3)
    plain = small_model(family, n_tasks=N_DENSE + 1).eval()
    residual = small_model(family, n_tasks=N_DENSE + 1, residual_voltage=True).eval()
    (v_plain, s_plain), (v_residual, s_residual) = plain(x), residual(x)
    torch.testing.assert_close(v_residual - v_plain, x[:, N_EVENTS:, -1])
    torch.testing.assert_close(s_residual, s_plain)
    with pytest.raises(ValueError, match="one voltage input channel per voltage task"):
        small_model(family, residual_voltage=True)


@pytest.mark.parametrize("family", sorted(FAMILY_SIZES))
def test_output_shapes(family):
    """Every family returns (batch, n_voltage) voltages and a (batch,) spike logit."""
    model = small_model(family)
    voltage, spike = model(make_input(batch=5))
    assert voltage.shape == (5, N_TASKS - 1)
    assert spike.shape == (5,)
    assert model.config.n_voltage_tasks == N_TASKS - 1


@pytest.mark.parametrize("family", ["mmoe", "mmoeex"])
def test_gates_and_experts_shapes(family):
    """Gate weights and expert features have the documented shapes; gates sum to 1."""
    model = small_model(family).eval()
    gates, experts = model.gates_and_experts(make_input(batch=3))
    cfg = model.config
    assert gates.shape == (3, N_TASKS, cfg.n_experts)
    assert experts.shape == (3, cfg.n_experts, cfg.expert_channels[-1] * WINDOW)
    torch.testing.assert_close(gates.sum(-1), torch.ones(3, N_TASKS))


def test_mmoe_forward_equals_towers_on_explicit_mixtures():
    """The fused first tower layer equals the towers applied to explicit mixtures."""
    model = small_model("mmoe").eval()
    x = make_input()
    voltage, spike = model(x)
    reference = model.towers(model.mixtures(x))
    torch.testing.assert_close(torch.cat([voltage, spike[:, None]], 1), reference,
                               rtol=1e-5, atol=1e-5)


SECTION_CONFIGS = ("srm_subunits", "srm_sections", "srm_sections_subunits")
"""Model configs that need the data's sections (built by the test after the next)."""


@pytest.mark.parametrize("name", sorted(path.stem for path in CONFIG_DIR.glob("*.yaml")
                                        if path.stem not in SECTION_CONFIGS))
def test_yaml_configs_build(name):
    """Every shipped YAML config loads and builds a working model."""
    family, fields = load_model_config(CONFIG_DIR / f"{name}.yaml")
    assert family in FAMILIES
    model = build_model_from_file(CONFIG_DIR / f"{name}.yaml", in_channels=10, n_tasks=4,
                                  event_channels=6)
    voltage, spike = model(torch.zeros(2, 10, fields["window"]))
    assert voltage.shape == (2, 3) and spike.shape == (2,)


@pytest.mark.parametrize("name", SECTION_CONFIGS)
def test_section_yaml_configs_build_with_the_sections_of_the_data(name):
    """The SRM configs that read dendritic sections build once the data's sections are given."""
    model = build_model_from_file(CONFIG_DIR / f"{name}.yaml", in_channels=10, n_tasks=4, event_channels=6,
                                  input_sections=(0, 1, 1), section_distances=(0.1, 0.3))
    voltage, spike = model(torch.zeros(2, 10, model.config.window))
    assert voltage.shape == (2, 3) and spike.shape == (2,)


def test_unknown_family_and_fields_rejected(tmp_path):
    """Unknown families and misspelt config fields raise ValueError."""
    with pytest.raises(ValueError):
        build_model("lstm", {})
    bad = tmp_path / "bad.yaml"
    bad.write_text("family: mh\nchanels: [1, 2]\n")
    with pytest.raises(ValueError, match="chanels"):
        load_model_config(bad)


@pytest.mark.parametrize("family", ["mh", "mmoe"])
def test_samples_do_not_interact(family):
    """A batched forward equals per-sample forwards (no cross-sample leak)."""
    model = small_model(family).eval()
    x = make_input(batch=4)
    with torch.inference_mode():
        batched = model(x)[0]
        single = torch.cat([model(x[i:i + 1])[0] for i in range(4)])
    torch.testing.assert_close(batched, single)


def test_wrong_window_rejected():
    """Inputs whose length differs from the window are rejected."""
    model = small_model("mh")
    with pytest.raises(ValueError):
        model(torch.zeros(2, N_EVENTS + N_DENSE, WINDOW + 1))


# ---------------------------------------------------------------- TCN structure

def test_paper_default_tcn_layout():
    """TCN defaults: kernel 10, dilations 1-2-4, widths 32-16-8, 800 features."""
    tcn = TCN(TCNConfig(in_channels=7))
    assert [b.conv1.out_channels for b in tcn.blocks] == [32, 16, 8]
    assert [b.dilation for b in tcn.blocks] == [1, 2, 4]
    assert [b.pad for b in tcn.blocks] == [9, 18, 36]
    assert all(b.conv1.kernel_size == (10,) for b in tcn.blocks)
    assert all(b.residual is not None for b in tcn.blocks)  # every block changes width
    assert tcn.n_features == 800
    assert tcn(torch.randn(2, 7, 100)).shape == (2, 1, 800)


def test_identity_residual_when_width_unchanged():
    """No residual projection when a block keeps its width."""
    tcn = TCN(TCNConfig(in_channels=4, channels=(4, 4), kernel_size=3, dilations=(1, 2),
                        window=10))
    assert all(b.residual is None for b in tcn.blocks)


@pytest.mark.parametrize("n_members", [1, 3])
def test_tcn_is_causal(n_members):
    """Changing inputs from t0 on leaves all features before t0 unchanged."""
    cfg = TCNConfig(in_channels=N_EVENTS + N_DENSE, channels=(5, 3), kernel_size=3,
                    dilations=(1, 2), window=WINDOW, n_members=n_members,
                    event_channels=N_EVENTS)
    tcn = TCN(cfg).eval()
    x = make_input()
    base = tcn(x).view(5, n_members, 3, WINDOW)
    for t0 in (0, 7, WINDOW - 1):
        x2 = x.clone()
        x2[:, N_EVENTS:, t0:] += torch.randn_like(x2[:, N_EVENTS:, t0:])
        # Redraw the (still sparse) events too, so the sparse path stays in use.
        x2[:, :N_EVENTS, t0:] = (torch.rand_like(x2[:, :N_EVENTS, t0:]) < 0.05).float()
        out = tcn(x2).view(5, n_members, 3, WINDOW)
        assert torch.equal(out[..., :t0], base[..., :t0])
        assert not torch.allclose(out[..., t0:], base[..., t0:])


def test_grouped_members_equal_independent_tcns():
    """Each member of a grouped TCN equals a separate TCN with its weights."""
    kwargs = dict(in_channels=6, channels=(4, 2), kernel_size=3, dilations=(1, 2), window=12)
    grouped = TCN(TCNConfig(**kwargs, n_members=3)).eval()
    x = torch.randn(2, 6, 12)
    out = grouped(x)
    for m in range(3):
        single = TCN(TCNConfig(**kwargs)).eval()
        # Every parameter's first dimension is the output channel, member-major.
        single.load_state_dict({
            name: value.chunk(3, dim=0)[m] for name, value in grouped.state_dict().items()
        })
        torch.testing.assert_close(single(x)[:, 0], out[:, m])


def test_effective_weights_reproduce_forward():
    """A plain functional forward with effective_weights() reproduces the TCN."""
    tcn = TCN(TCNConfig(in_channels=5, channels=(4, 3), kernel_size=3, dilations=(1, 2),
                        window=16, n_members=2)).eval()
    x = torch.randn(3, 5, 16)
    h = x
    for w in tcn.effective_weights():
        conv1 = F.conv1d(F.pad(h, (w.pad, 0)), w.conv1_weight, w.conv1_bias,
                         dilation=w.dilation, groups=w.conv1_groups)
        res = h if w.residual_weight is None else F.conv1d(
            h, w.residual_weight, w.residual_bias, groups=w.conv1_groups)
        out = torch.sigmoid(F.conv1d(F.pad(torch.sigmoid(conv1), (w.pad, 0)), w.conv2_weight,
                                     w.conv2_bias, dilation=w.dilation, groups=w.groups))
        h = torch.sigmoid(out + res)
    torch.testing.assert_close(h.reshape(3, 2, -1), tcn(x))
    assert not tcn.effective_weights()[0].conv1_weight.requires_grad


# ---------------------------------------------------------------- sparse-event path

def test_event_conv_matches_dense_conv_and_gradient():
    """Sparse event convolution equals conv1d, value and weight gradient."""
    g = torch.Generator().manual_seed(1)
    x = (torch.rand(3, 7, 20, generator=g) < 0.2).double()
    x[0, 0, 0] = 2.5  # non-binary values use per-entry weights
    for kernel, dilation in [(3, 1), (4, 3), (1, 1)]:
        w = torch.randn(5, 7, kernel, dtype=torch.double, generator=g, requires_grad=True)
        out = EventIndex(x).conv(w, dilation)
        grad = torch.randn_like(out)
        (gw,) = torch.autograd.grad(out, w, grad)
        ref = F.conv1d(F.pad(x, ((kernel - 1) * dilation, 0)), w, dilation=dilation)
        (gw_ref,) = torch.autograd.grad(ref, w, grad)
        torch.testing.assert_close(out, ref)
        torch.testing.assert_close(gw, gw_ref)


def test_event_conv_without_events():
    """An all-zero event batch gives zero output and zero gradient."""
    w = torch.randn(2, 3, 4, requires_grad=True)
    out = EventIndex(torch.zeros(2, 3, 6)).conv(w)
    out.sum().backward()
    assert torch.equal(out, torch.zeros(2, 2, 6)) and torch.equal(w.grad, torch.zeros(2, 3, 4))


@pytest.mark.parametrize("family", sorted(FAMILY_SIZES))
def test_sparse_path_equals_dense_path(family):
    """Models give the same outputs and gradients with and without the event path."""
    sparse = small_model(family)
    dense = small_model(family, event_channels=0)
    dense.load_state_dict(sparse.state_dict())
    sparse.eval(), dense.eval()
    x = make_input(density=0.03)
    outs = [torch.cat([v, s[:, None]], 1) for v, s in (sparse(x), dense(x))]
    torch.testing.assert_close(outs[0], outs[1], rtol=1e-5, atol=1e-6)
    grads = []
    for model, out in zip((sparse, dense), outs):
        model.zero_grad()
        out.pow(2).sum().backward()
        grads.append([p.grad.clone() for p in model.parameters()])
    for g_sparse, g_dense in zip(*grads):
        torch.testing.assert_close(g_sparse, g_dense, rtol=1e-4, atol=1e-6)


def test_dense_events_fall_back_to_dense_path():
    """Dense events or inputs needing gradients use the dense convolution."""
    tcn = small_model("mh").tcn
    assert tcn.prepare(make_input(density=0.03)) is not None
    assert tcn.prepare(make_input(density=0.5)) is None
    assert tcn.prepare(make_input().requires_grad_()) is None


# ---------------------------------------------------------------- towers

def loop_reference(towers: StackedTowers, x: torch.Tensor) -> torch.Tensor:
    """Per-task loop evaluation of the stacked towers with the same weights."""
    outs = []
    for t in range(towers.n_tasks):
        h = x if x.dim() == 2 else x[:, t]
        weights = towers.layer_weights()
        for i, (w, b) in enumerate(zip(weights, towers.biases)):
            h = h @ w[t] + b[t]
            if i < len(weights) - 1:
                h = F.elu(h)
        outs.append(h[:, 0])
    return torch.stack(outs, 1)


@pytest.mark.parametrize("per_task", [False, True])
def test_stacked_towers_match_loop(per_task):
    """Batched towers equal an explicit per-task loop over the same weights."""
    torch.manual_seed(0)
    towers = StackedTowers(n_tasks=7, in_features=9, hidden=(5, 4))
    x = torch.randn(6, 7, 9) if per_task else torch.randn(6, 9)
    out = towers(x)
    assert out.shape == (6, 7)
    torch.testing.assert_close(out, loop_reference(towers, x), rtol=1e-5, atol=1e-5)


def test_stacked_towers_init_like_linear():
    """Tower weights are U(-1/sqrt(fan_in), 1/sqrt(fan_in)) like nn.Linear."""
    towers = StackedTowers(n_tasks=50, in_features=64, hidden=(16,))
    w = towers.layer_weights()[0]
    assert w.shape == (50, 64, 16) and towers.input_weight.shape == (64, 50, 16)
    assert w.abs().max() <= 1 / 8 and w.std() > 0.05  # U(-1/sqrt(64), 1/sqrt(64))


# ---------------------------------------------------------------- MMoEEx masks

@pytest.mark.parametrize("n_tasks,n_experts,fraction", [(6, 5, 0.1), (10, 8, 0.25),
                                                         (3, 4, 0.5), (643, 5, 0.1)])
def test_exclusivity_mask(n_tasks, n_experts, fraction):
    """Exclusivity: the configured number of experts, each usable by exactly one task."""
    mask = make_gate_mask(n_tasks, n_experts, fraction, exclusion=False, seed=3)
    n_special = n_special_experts(n_experts, fraction)
    assert n_special == max(1, round(fraction * n_experts))
    users = mask.sum(0)
    assert int((users == 1).sum()) == n_special  # each exclusive expert: exactly one task
    assert int((users == n_tasks).sum()) == n_experts - n_special
    assert bool(mask.any(1).all())  # every task keeps an expert


def test_exclusion_mask():
    """Exclusion: each special expert is hidden from exactly one task."""
    mask = make_gate_mask(6, 8, 0.25, exclusion=True, seed=1)
    users = mask.sum(0)
    assert int((users == 5).sum()) == 2 and int((users == 6).sum()) == 6
    assert bool(mask.any(1).all())


def test_mask_is_seeded_and_validated():
    """Masks are reproducible from the seed; impossible fractions raise."""
    assert torch.equal(make_gate_mask(9, 5, 0.4, seed=7), make_gate_mask(9, 5, 0.4, seed=7))
    assert torch.equal(make_gate_mask(9, 5, 0.0), torch.ones(9, 5, dtype=torch.bool))
    with pytest.raises(ValueError):
        make_gate_mask(4, 2, 1.0)


def test_mmoeex_gates_zero_where_masked():
    """MMoEEx gates are exactly 0 where masked, positive elsewhere, and sum to 1."""
    model = small_model("mmoeex").eval()
    assert isinstance(model, MMoEEx) and len(model.special_experts) == 1
    gates, _ = model.gates_and_experts(make_input())
    mask = model.gate_mask.expand_as(gates)
    assert bool((gates[~mask] == 0).all())
    assert bool((gates[mask] > 0).all())
    torch.testing.assert_close(gates.sum(-1), torch.ones(gates.shape[:2]))
    assert "gate_mask" in model.state_dict()


# ---------------------------------------------------------------- training

@pytest.mark.parametrize("family", ["mh", "mmoe"])
def test_tiny_model_overfits_fixed_batch(family):
    """A tiny model drives the loss on a fixed batch down at least tenfold."""
    model = small_model(family, dropout=0.0)
    x = make_input(batch=8, density=0.05, seed=2)
    g = torch.Generator().manual_seed(3)
    v_target = torch.randn(8, N_TASKS - 1, generator=g)
    s_target = torch.tensor([0, 1, 0, 0, 1, 0, 1, 0], dtype=torch.float32)
    optimiser = torch.optim.Adam(model.parameters(), lr=1e-2)

    def loss_fn() -> torch.Tensor:
        """Voltage MSE plus spike binary cross-entropy."""
        voltage, spike = model(x)
        return F.mse_loss(voltage, v_target) + F.binary_cross_entropy_with_logits(spike, s_target)

    first = loss_fn().item()
    for _ in range(200):
        optimiser.zero_grad()
        loss = loss_fn()
        loss.backward()
        optimiser.step()
    assert loss_fn().item() < first / 10


@pytest.mark.parametrize("family", ["mh", "mmoe"])
def test_events_only_models_ignore_the_voltage_input(family):
    model = small_model(family, voltage_input=False).eval()
    x = make_input()
    changed = x.clone()
    changed[:, model.config.event_channels:] += 10.0
    assert all(torch.equal(a, b) for a, b in zip(model(x), model(changed)))
    with pytest.raises(ValueError, match="voltage_input"):
        small_model(family, voltage_input=False, residual_voltage=True, n_tasks=N_DENSE + 1)


def test_rescaled_initialisation_makes_sparse_events_visible():
    def event_sensitivity(rescaled: bool) -> float:
        torch.manual_seed(0)
        tcn = TCN(TCNConfig(in_channels=400, channels=(16, 8, 4), kernel_size=5, dilations=(1, 2, 4),
                            dropout=0.0, window=40, event_channels=400, rescaled_init=rescaled))
        g = torch.Generator().manual_seed(1)
        first, second = ((torch.rand(4, 400, 40, generator=g) < 0.01).float() for _ in range(2))
        with torch.no_grad():
            return float((tcn(first) - tcn(second)).abs().mean())

    assert event_sensitivity(False) < 1e-3 < 1e-2 < event_sensitivity(True)


def test_mask_dropout_drops_and_scales_like_nn_dropout():
    dropout = MaskDropout(0.2)
    x = torch.ones(1000, 1000)
    y = dropout(x)
    assert abs((y == 0).float().mean().item() - 0.2) < 0.005
    assert torch.allclose(y[y != 0], torch.tensor(1.25))
    assert abs(y.mean().item() - 1.0) < 0.01  # inverted dropout keeps the expectation
    dropout.eval()
    assert torch.equal(dropout(x), x)
    with pytest.raises(ValueError, match="dropout"):
        MaskDropout(1.0)


SRM_SMALL = dict(in_channels=N_EVENTS + N_DENSE, n_tasks=N_TASKS, window=WINDOW,
                 event_channels=N_EVENTS, taus=(1.0, 4.0), hidden=8, mlp_layers=1,
                 soma_segment=1, spike_threshold_z=2.0)


def test_srm_reads_events_and_soma_spikes_only():
    torch.manual_seed(0)
    model = build_model("srm", SRM_SMALL).eval()
    x = make_input().clamp(max=1.5)  # no soma spike in the history
    changed = x.clone()
    changed[:, N_EVENTS:] -= 3.0  # sub-threshold voltages of every segment
    assert all(torch.equal(a, b) for a, b in zip(model(x), model(changed)))
    spiked = x.clone()
    spiked[:, N_EVENTS + 1, -3] = 4.0  # the soma crossed threshold 3 ms ago
    assert not torch.equal(model(x)[0], model(spiked)[0])
    moved = x.clone()
    moved[:, 0] = torch.roll(moved[:, 0], 1, dims=-1)
    assert not torch.equal(model(x)[0], model(moved)[0])
    with pytest.raises(ValueError, match="voltage_input"):
        build_model("srm", {**SRM_SMALL, "voltage_input": True})


def test_srm_filter_bank_weighs_inputs_by_their_age():
    model = build_model("srm", {**SRM_SMALL, "spike_threshold_z": None})
    x = torch.zeros(1, N_EVENTS + N_DENSE, WINDOW)
    x[0, 2, WINDOW - 1] = 1.0  # newest millisecond: lag 0
    x[0, 2, WINDOW - 5] = 1.0  # lag 4
    filtered = model.filtered_inputs(x).reshape(N_EVENTS + 1, 2)
    expected = torch.tensor([1 + math.exp(-4 / 1.0), 1 + math.exp(-4 / 4.0)])
    torch.testing.assert_close(filtered[2], expected)
    assert filtered.abs().sum() == filtered[2].abs().sum()


def assert_projection_rows_fold_the_projection(model) -> None:
    """The projection of random events' features = every input filtered with all taus, times its
    :meth:`SRM.projection_rows` (what the stepping engine uses)."""
    x = torch.zeros(1, N_EVENTS + N_DENSE, WINDOW)
    x[0, :N_EVENTS] = (torch.rand(N_EVENTS, WINDOW) < 0.1).float()
    inputs = model.window_inputs(x)
    all_kernels = torch.exp(-torch.arange(WINDOW - 1, -1, -1.0)[:, None] / torch.tensor(model.config.all_taus))
    folded = torch.einsum("biw,wk,ikh->bh", inputs, all_kernels, model.projection_rows())
    with torch.no_grad():
        projected = model.projection(model.filtered_inputs(x)) - model.projection.bias
    torch.testing.assert_close(folded, projected)


def test_srm_pooled_filters_read_pool_means_and_fold_into_per_input_rows():
    pools = tuple(i % 2 for i in range(N_EVENTS))  # two pools of event channels
    model = build_model("srm", {**SRM_SMALL, "spike_threshold_z": None, "pooled_taus": (50.0,),
                                "input_pools": pools})
    assert model.config.n_pooled == 3  # two pools and the spike train
    x = torch.zeros(1, N_EVENTS + N_DENSE, WINDOW)
    x[0, 0, WINDOW - 1] = 1.0  # pool 0, lag 0
    x[0, 2, WINDOW - 11] = 1.0  # pool 0, lag 10
    pooled = model.filtered_inputs(x)[0, (N_EVENTS + 1) * 2:]
    pool_size = pools.count(0)
    torch.testing.assert_close(pooled, torch.tensor([(1 + math.exp(-10 / 50.0)) / pool_size, 0.0, 0.0]))
    assert_projection_rows_fold_the_projection(model)
    with pytest.raises(ValueError, match="input_pools"):
        build_model("srm", {**SRM_SMALL, "pooled_taus": (50.0,)})


def test_srm_subunits_sum_their_sections_inputs_and_start_at_zero():
    sections = tuple(i % 2 for i in range(N_EVENTS // 2))  # two sections
    model = build_model("srm", {**SRM_SMALL, "spike_threshold_z": None, "subunit_hidden": 4,
                                "subunit_out": 2, "input_sections": sections,
                                "section_distances": (0.1, 0.4)})
    x = torch.zeros(1, N_EVENTS + N_DENSE, WINDOW)
    x[0, 0, WINDOW - 1] = 1.0  # excitatory input of segment 0 (section 0), lag 0
    x[0, N_EVENTS // 2 + 1, WINDOW - 1] = 1.0  # inhibitory input of segment 1 (section 1)
    inputs = model.window_inputs(x)
    n_inputs, n_taus = N_EVENTS + 1, len(model.config.taus)
    per_input = model.filter_bank(inputs)[:, :n_inputs * n_taus].reshape(1, n_inputs, n_taus)
    section_state = torch.einsum("bik,im->bkm", per_input, model.section_map.float())
    features = model.subunits.section_features(section_state)[0]  # (sections, exc | inh | spikes | distance)
    torch.testing.assert_close(features[:, [0, n_taus, 2 * n_taus]], torch.tensor([[1.0, 0.0, 0.0], [0.0, 1.0, 0.0]]))
    torch.testing.assert_close(features[:, -1], torch.tensor([0.1, 0.4]))
    with torch.no_grad():  # an untrained readout is zero: subunits start as a plain SRM
        torch.testing.assert_close(model.project(inputs), model.projection(model.filtered_inputs(x)))
    with pytest.raises(ValueError, match="input_sections"):
        build_model("srm", {**SRM_SMALL, "subunit_hidden": 4})


def test_sections_of_inputs_number_sections_and_measure_from_the_soma():
    names = ["soma[0](0.5)", "dend[0](0.25)", "dend[0](0.75)", "apic[0](0.5)"]
    midpoints = [[0, 0, 0], [-100, 0, 0], [-300, 0, 0], [0, 500, 0]]
    sections, distances = sections_of_inputs(names, midpoints, [1, 2, 3], soma_segment=0)
    assert sections == (1, 1, 0)  # apic[0], dend[0] in sorted order
    assert distances == pytest.approx((0.5, 0.3))


def test_pools_by_section_type_separate_kinds_and_types():
    assert pools_by_section_type(["soma", "apic", "dend", "apic"]) == (2, 0, 1, 0, 5, 3, 4, 3)


def test_srm_spike_jump_is_added_at_upward_logit_crossings_in_evaluation():
    torch.manual_seed(0)
    model = build_model("srm", SRM_SMALL).eval()
    with torch.no_grad():
        model.spike_jump.fill_(5.0)
    x = torch.zeros(1, N_EVENTS + N_DENSE, WINDOW)
    x[0, :N_EVENTS, -1] = 1.0  # events only in the newest millisecond
    with torch.no_grad():
        quiet_logit = model.spike_logit(model.projection(torch.zeros(1, model.config.n_filtered)))
        logit = model(x)[1]
    with torch.no_grad():  # make the events raise the spike logit
        model.towers.weight[-1] *= torch.sign(logit - quiet_logit)
        logit = model(x)[1]
    assert logit.item() > quiet_logit.item()
    outputs = {}
    for name, threshold in (("crossing", (logit + quiet_logit).item() / 2),
                            ("above both", -1e6), ("below both", 1e6)):
        model.config.spike_logit_threshold = threshold
        outputs[name] = model(x)[0]
    torch.testing.assert_close(outputs["crossing"] - outputs["below both"],
                               torch.full_like(outputs["crossing"], 5.0))
    torch.testing.assert_close(outputs["above both"], outputs["below both"])
    model.config.spike_logit_threshold = 0.5
    assert model.spike_gate(torch.tensor([1.0, 1.0, -1.0]), torch.tensor([0.0, 2.0, 0.0])).tolist() == [1, 0, 0]


def test_srm_section_projection_reads_section_sums_and_folds_into_per_input_rows():
    sections = (0, 0, 1, 1)  # four input segments on two sections
    model = build_model("srm", {**SRM_SMALL, "spike_threshold_z": None, "section_projection": True,
                                "input_sections": sections})
    assert model.projection.in_features == (2 * 2 + 1) * len(model.config.taus)  # 2 sections x exc|inh + spikes
    one_segment, two_segments = torch.zeros(2, N_EVENTS + N_DENSE, WINDOW)
    one_segment[0, WINDOW - 1] = 2.0  # two excitatory events on segment 0 ...
    two_segments[[0, 1], WINDOW - 1] = 1.0  # ... equal one on each segment of its section
    with torch.no_grad():
        torch.testing.assert_close(model.filtered_inputs(one_segment[None]), model.filtered_inputs(two_segments[None]))
    assert_projection_rows_fold_the_projection(model)
    with pytest.raises(ValueError, match="input_sections"):
        build_model("srm", {**SRM_SMALL, "section_projection": True})
