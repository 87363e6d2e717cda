"""The incremental stepping engine against a full-window recompute (small models, one thread)."""

from __future__ import annotations

import LFPy
import numpy as np
import pytest
import torch

from surrogate_cell.cell import SurrogateCell
from surrogate_cell.cells import l5pc
from surrogate_cell.cells.layout import SYNAPSE_SECTION_TYPES, cell_layout
from surrogate_cell.checkpoint import cell_meta_from_layout, model_meta, save_checkpoint
from surrogate_cell.engine import (
    FullWindowStepper,
    SRMStepper,
    SurrogateDivergedError,
    make_stepper,
)
from surrogate_cell.engine.dense import DenseProduct
from surrogate_cell.engine.sliding import SlidingWindow
from surrogate_cell.models import FAMILIES, build_model
from surrogate_cell.models.base import model_input
from surrogate_cell.models.normalisation import Normalisation

N_EVENTS, N_SEGMENTS, N_CELLS = 12, 7, 4
FAMILY_SIZES = {
    "mh": dict(channels=(6, 4, 3), tower_hidden=(5, 5)),
    "mmoe": dict(n_experts=3, expert_channels=(6, 4, 3), compressor_channels=(4, 2, 2),
                 tower_hidden=(5, 5)),
    "mmoeex": dict(n_experts=4, expert_channels=(6, 4, 3), compressor_channels=(4, 2, 2),
                   tower_hidden=(5, 5), exclusivity_fraction=0.25),
}
PAPER_WINDOW = dict(window=100, kernel_size=10, dilations=(1, 2, 4))
SHORT_WINDOW = dict(window=20, kernel_size=5, dilations=(2, 3, 1))  # padding covers the window
TINY_L5PC_MH = dict(channels=(4, 2), kernel_size=3, dilations=(1, 2), dropout=0.0, window=100,
                    tower_hidden=(4, 4))
NORMALISATION = Normalisation(np.full(N_SEGMENTS, -70.0, np.float32), np.full(N_SEGMENTS, 5.0, np.float32))



def small_model(family: str, window: dict = PAPER_WINDOW, **overrides) -> torch.nn.Module:
    """A seeded random-weight model of ``family`` reading events then voltages."""
    torch.manual_seed(0)
    return build_model(family, {**FAMILY_SIZES[family], **window, "dropout": 0.0, **overrides,
                                "in_channels": N_EVENTS + N_SEGMENTS, "n_tasks": N_SEGMENTS + 1,
                                "event_channels": N_EVENTS})


def random_events(generator: torch.Generator, *shape: int, density=None) -> torch.Tensor:
    """Binary events; by default each cell has its own density between 1 % and 5 %."""
    if density is None:
        density = torch.linspace(0.01, 0.05, shape[0]).view(-1, *[1] * (len(shape) - 1))
    return (torch.rand(*shape, generator=generator) < density).float()


def start_both(model, dtype, window: int, seed: int = 1):
    """A full-window and an incremental stepper from the same random history."""
    generator = torch.Generator().manual_seed(seed)
    history = -70.0 + 5.0 * torch.randn(N_CELLS, window, N_SEGMENTS, generator=generator)
    events = random_events(generator, N_CELLS, window, N_EVENTS)
    reference = FullWindowStepper(model, NORMALISATION, N_CELLS, dtype=dtype)
    incremental = make_stepper(model, NORMALISATION, N_CELLS, dtype=dtype)
    reference.reset(history, events)
    incremental.reset(history, events)
    return reference, incremental, generator


def largest_relative_error(model, dtype, window: int, n_steps: int = 150, density=None) -> float:
    """Largest error over ``n_steps`` relative to the largest |reference|, in mV and in z-units."""
    reference, incremental, generator = start_both(model, dtype, window)
    worst = 0.0
    for _ in range(n_steps):
        events = random_events(generator, N_CELLS, N_EVENTS, density=density)
        expected, got = reference.step(events), incremental.step(events)
        for scale in (lambda v: v, NORMALISATION.to_z):
            error = (scale(got) - scale(expected)).abs().max() / scale(expected).abs().max()
            worst = max(worst, float(error))
    return worst


# ------------------------------------------------------------------ equality with a full recompute


SRM_MOE_SIZES = dict(taus=(1.0, 5.0, 30.0), hidden=6, mlp_layers=2, n_experts=3, expert_hidden=4,
                     compressor_hidden=3, spike_hidden=5, soma_segment=2, spike_threshold_z=1.5)
REGISTERED_SIZES = {**FAMILY_SIZES, "srm": dict(taus=(1.0, 5.0, 30.0), hidden=6, mlp_layers=1, soma_segment=2,
                                                spike_threshold_z=1.5),
                    "srm_mmoe": SRM_MOE_SIZES, "srm_mmoeex": {**SRM_MOE_SIZES, "exclusivity_fraction": 0.34}}
"""Small test sizes of every registered family: a family registered without them fails below."""


@pytest.mark.parametrize("family", sorted(FAMILIES))
def test_every_registered_family_has_a_fast_stepper_equal_to_the_full_recompute(family):
    assert family in REGISTERED_SIZES, f"give the newly registered family {family!r} test sizes"
    torch.manual_seed(0)
    model = build_model(family, {**REGISTERED_SIZES[family], **PAPER_WINDOW, "dropout": 0.0,
                                 "in_channels": N_EVENTS + N_SEGMENTS, "n_tasks": N_SEGMENTS + 1,
                                 "event_channels": N_EVENTS})
    assert largest_relative_error(model, torch.float64, PAPER_WINDOW["window"], n_steps=40) < 1e-9


@pytest.mark.parametrize("window", [PAPER_WINDOW, SHORT_WINDOW], ids=["paper", "short"])
@pytest.mark.parametrize("family", sorted(FAMILY_SIZES))
def test_incremental_equals_full_recompute_in_float64(family, window):
    model = small_model(family, window)
    assert largest_relative_error(model, torch.float64, window["window"]) < 1e-12


@pytest.mark.parametrize("family", sorted(FAMILY_SIZES))
def test_incremental_matches_full_recompute_in_float32(family):
    model = small_model(family)
    assert largest_relative_error(model, torch.float32, PAPER_WINDOW["window"]) < 1e-5


@pytest.mark.parametrize("family", sorted(FAMILY_SIZES))
def test_incremental_equals_full_recompute_for_residual_voltage_models(family):
    model = small_model(family, residual_voltage=True)  # random updates drift: keep the run short
    assert largest_relative_error(model, torch.float64, PAPER_WINDOW["window"], n_steps=30) < 1e-12


@pytest.mark.parametrize("family", sorted(FAMILY_SIZES))
def test_incremental_equals_full_recompute_for_events_only_models(family):
    model = small_model(family, voltage_input=False)
    assert largest_relative_error(model, torch.float64, PAPER_WINDOW["window"], n_steps=60) < 1e-12


def small_srm(**overrides) -> torch.nn.Module:
    """A seeded random SRM whose soma (segment 2) jumps far above threshold on a spike."""
    torch.manual_seed(0)
    model = build_model("srm", {"taus": (1.0, 5.0, 30.0), "hidden": 6, "mlp_layers": 1,
                                "dropout": 0.0, "window": 100, "soma_segment": 2,
                                "spike_threshold_z": 1.5, "in_channels": N_EVENTS + N_SEGMENTS,
                                "n_tasks": N_SEGMENTS + 1, "event_channels": N_EVENTS, **overrides})
    with torch.no_grad():
        model.spike_jump[2] = 8.0
        if model.config.members > 1:
            spike_weight = model.spike_head.layers[-1].weight
        else:
            spike_weight = model.spike_head[-1].weight if model.spike_head else model.towers.weight[-1]
        spike_weight.mul_(20.0)  # spike logits of both signs: some steps spike
        if model.subunits is not None:
            model.subunits.readout.normal_(0.0, 0.5)  # trained subunits: not the zero start
    return model


POOLED = {"pooled_taus": (20.0, 80.0), "input_pools": tuple(i % 5 for i in range(N_EVENTS))}
SUBUNITS = {"subunit_hidden": 4, "subunit_out": 2, "input_sections": tuple(i % 3 for i in range(N_EVENTS // 2)),
            "section_distances": (0.0, 0.2, 0.5)}
SECTION_PROJECTION = {"section_projection": True, "input_sections": tuple(i % 3 for i in range(N_EVENTS // 2))}


@pytest.mark.parametrize("spike_hidden, members, options", [(0, 1, {}), (5, 1, {}), (5, 3, {}),
                                                            (5, 1, POOLED), (5, 3, POOLED),
                                                            (5, 1, SUBUNITS), (5, 3, {**SUBUNITS, **POOLED}),
                                                            (5, 1, SECTION_PROJECTION),
                                                            (5, 3, {**SUBUNITS, **POOLED, **SECTION_PROJECTION})])
def test_srm_stepper_equals_full_recompute_with_spike_feedback(spike_hidden, members, options):
    assert_fast_stepper_equals_full_recompute_with_spike_feedback(
        small_srm(spike_hidden=spike_hidden, members=members, **options), SRMStepper)


def random_drive(generator, *shape) -> torch.Tensor:
    """Dense non-negative inputs, as drive channels (conductances in nS) are."""
    return 2.0 * torch.rand(*shape, generator=generator, dtype=torch.float64)


def test_srm_stepper_equals_full_recompute_on_dense_drive_input():
    assert_fast_stepper_equals_full_recompute_with_spike_feedback(
        small_srm(spike_hidden=5, drive_input=True), SRMStepper, draw=random_drive)


def test_srm_stepper_equals_full_recompute_with_dendritic_event_feedback():
    """Upward crossings of segment 1's voltage (a 'Ca hot zone') are fed back as the somatic spikes are."""
    threshold_z = -4.4  # about the median of segment 1 under this random model and input
    model = small_srm(spike_hidden=5, drive_input=True, feedback_segments=(1,), feedback_thresholds_z=(threshold_z,))
    crossings = assert_fast_stepper_equals_full_recompute_with_spike_feedback(model, SRMStepper, draw=random_drive,
                                                                              crossing_z=threshold_z)
    assert crossings[1] > 3  # the dendritic feedback path was exercised


def assert_fast_stepper_equals_full_recompute_with_spike_feedback(model, stepper_class, draw=random_events,
                                                                  crossing_z: float = 0.3) -> list:
    """150 steps of random input: the family's fast stepper equals the full recompute (float64,
    1e-9), with somatic spikes (soma segment 2, threshold z 1.5) fed back along the way; returns
    every segment's count of upward crossings of ``crossing_z``."""
    generator = torch.Generator().manual_seed(1)
    history = -70.0 + 5.0 * torch.randn(N_CELLS, 100, N_SEGMENTS, generator=generator)
    history[..., 2] = history[..., 2].clamp(max=-65.0)  # soma below its threshold (-62.5 mV) ...
    history[:, 40:99:13, 2] = -40.0  # ... but for a few spikes
    events = draw(generator, N_CELLS, 100, N_EVENTS)
    reference = FullWindowStepper(model, NORMALISATION, N_CELLS, dtype=torch.float64)
    fast = make_stepper(model, NORMALISATION, N_CELLS, dtype=torch.float64)
    assert type(fast) is stepper_class
    reference.reset(history, events)
    fast.reset(history, events)
    n_spikes, crossings, above = 0, [0] * N_SEGMENTS, None
    for step in range(150):
        step_events = draw(generator, N_CELLS, N_EVENTS)
        expected, got = reference.step(step_events), fast.step(step_events)
        torch.testing.assert_close(got, expected, rtol=1e-9, atol=1e-9, msg=f"step {step}")
        n_spikes += int((expected[:, 2] > -70.0 + 5.0 * 1.5).sum())
        now = NORMALISATION.to_z(expected) > crossing_z
        if above is not None:
            crossings = [c + int((now[:, s] & ~above[:, s]).sum()) for s, c in enumerate(crossings)]
        above = now
    assert n_spikes > 3  # the spike feedback path was exercised
    return crossings


def test_srm_cells_with_their_own_logit_thresholds_step_as_separate_runs():
    model = small_srm(spike_hidden=5, **SUBUNITS)
    generator = torch.Generator().manual_seed(2)
    history = -70.0 + 5.0 * torch.randn(N_CELLS, 100, N_SEGMENTS, generator=generator)
    events = random_events(generator, N_CELLS, 100, N_EVENTS)
    thresholds = (model.config.spike_logit_threshold, 2.0)
    separate = []
    for threshold in thresholds:
        model.config.spike_logit_threshold = threshold
        separate.append(SRMStepper(model, NORMALISATION, N_CELLS, dtype=torch.float64))
    together = SRMStepper(model, NORMALISATION, 2 * N_CELLS, dtype=torch.float64,
                          logit_thresholds=torch.tensor(thresholds).repeat_interleave(N_CELLS))
    for stepper in separate:
        stepper.reset(history, events)
    together.reset(history.repeat(2, 1, 1), events.repeat(2, 1, 1))
    differed = False
    for step in range(100):
        step_events = random_events(generator, N_CELLS, N_EVENTS)
        expected = torch.cat([stepper.step(step_events) for stepper in separate])
        torch.testing.assert_close(together.step(step_events.repeat(2, 1)), expected, rtol=1e-9, atol=1e-9,
                                   msg=f"step {step}")
        differed |= not torch.equal(expected[:N_CELLS], expected[N_CELLS:])
    assert differed  # the thresholds changed the spikes
    with pytest.raises(ValueError, match="one threshold per cell"):
        SRMStepper(model, NORMALISATION, N_CELLS, logit_thresholds=torch.zeros(N_CELLS + 1))


def test_dense_events_take_the_dense_path_and_stay_exact():
    model = small_model("mh")
    assert largest_relative_error(model, torch.float64, 100, n_steps=30, density=0.3) < 1e-12


def test_mixing_before_the_towers_gives_the_same_outputs():
    model = small_model("mmoe")
    generator = torch.Generator().manual_seed(3)
    history = -70.0 + 5.0 * torch.randn(1, 100, N_SEGMENTS, generator=generator)
    steppers = [make_stepper(model, NORMALISATION, N_CELLS, dtype=torch.float64, mix_first=mix)
                for mix in (False, True)]
    for stepper in steppers:
        stepper.reset(history)  # one history broadcast to every cell
    for _ in range(20):
        events = random_events(generator, N_CELLS, N_EVENTS)
        per_expert, mixed_first = (stepper.step(events) for stepper in steppers)
        torch.testing.assert_close(mixed_first, per_expert, rtol=1e-12, atol=0)


def test_spike_logits_match_the_model():
    model = small_model("mmoeex").double()
    reference, incremental, generator = start_both(model, torch.float64, 100)
    for _ in range(5):
        events = random_events(generator, N_CELLS, N_EVENTS)
        voltages_before = reference.voltages.clone()
        reference.step(events)
        incremental.step(events)
    _, expected = model(model_input(reference.events, voltages_before))
    torch.testing.assert_close(incremental.spike_logits, expected, rtol=1e-12, atol=1e-12)


# ------------------------------------------------------------------ long runs and divergence


@pytest.mark.slow
def test_ten_second_free_run_stays_finite_and_exact():
    torch.manual_seed(0)
    model = build_model("mh", {**TINY_L5PC_MH, "in_channels": N_EVENTS + N_SEGMENTS,
                               "n_tasks": N_SEGMENTS + 1, "event_channels": N_EVENTS})
    stepper = make_stepper(model, NORMALISATION, 2)
    generator = torch.Generator().manual_seed(4)
    stepper.reset(-70.0 + torch.randn(2, 100, N_SEGMENTS, generator=generator))
    events = random_events(generator, 10_000, 2, N_EVENTS, density=0.02)
    voltages = torch.empty(10_000, 2, N_SEGMENTS)
    for step in range(10_000):
        voltages[step] = stepper.step(events[step])
    assert torch.isfinite(voltages).all()
    # After 10 000 window moves the state still equals a fresh full recompute of the last window.
    window_voltages = NORMALISATION.to_z(voltages[-101:-1]).transpose(0, 1)
    expected_z, _ = model(model_input(events[-100:].transpose(0, 1), window_voltages))
    torch.testing.assert_close(NORMALISATION.to_z(voltages[-1]), expected_z, rtol=0, atol=2e-5)


def test_nan_input_stops_with_the_step_and_cell():
    stepper = make_stepper(small_model("mh"), NORMALISATION, N_CELLS)
    stepper.reset(torch.full((1, 100, N_SEGMENTS), -70.0))
    quiet = torch.zeros(N_CELLS, N_EVENTS)
    for _ in range(3):
        stepper.step(quiet)
    poisoned = quiet.clone()
    poisoned[2, 5] = float("nan")
    with pytest.raises(SurrogateDivergedError, match=r"step 4 .*cell 2,"):
        stepper.step(poisoned)


def test_runaway_voltage_stops_with_the_step_and_cell():
    model = small_model("mh")
    with torch.no_grad():
        model.towers.biases[-1][3] = 1e3  # segment 3: z = 1000, i.e. 5 V
    stepper = make_stepper(model, NORMALISATION, N_CELLS)
    stepper.reset(torch.full((1, 100, N_SEGMENTS), -70.0))
    with pytest.raises(SurrogateDivergedError, match=r"step 1 .*cell 0, segment 3"):
        stepper.step(torch.zeros(N_CELLS, N_EVENTS))


@pytest.mark.parametrize("stepper_class", [FullWindowStepper, make_stepper])
def test_predictions_stay_within_the_training_range(stepper_class):
    model = small_model("mh")
    with torch.no_grad():
        model.towers.biases[-1][3] = 1e3  # segment 3 would jump to 5 V
    low, high = np.full(N_SEGMENTS, -90.0, np.float32), np.full(N_SEGMENTS, 40.0, np.float32)
    bounded = Normalisation(NORMALISATION.mean, NORMALISATION.std, low, high)
    stepper = stepper_class(model, bounded, N_CELLS)
    stepper.reset(torch.full((1, 100, N_SEGMENTS), -70.0))
    for _ in range(5):
        voltage = stepper.step(torch.zeros(N_CELLS, N_EVENTS))
    assert torch.allclose(voltage[:, 3], torch.tensor(40.0)) and bool((voltage >= -90.0).all())


def test_checkpoints_keep_the_training_range(tmp_path):
    from surrogate_cell.checkpoint import load_checkpoint

    model = small_model("mh")
    low, high = np.full(N_SEGMENTS, -90.0, np.float32), np.full(N_SEGMENTS, 40.0, np.float32)
    cell = {"segment_hash": "test", "section_types": ["soma"] * N_SEGMENTS, "soma_segment": 0,
            "input_segments": list(range(N_EVENTS // 2)), "n_segments": N_SEGMENTS, "recipe": {}}
    meta = {**model_meta(model, "mh"), "cell": cell, "data": {}, "training": {}}
    save_checkpoint(tmp_path / "bounded.pt", model, meta,
                    Normalisation(NORMALISATION.mean, NORMALISATION.std, low, high))
    _, normalisation, _, _ = load_checkpoint(tmp_path / "bounded.pt")
    assert np.array_equal(normalisation.low, low) and np.array_equal(normalisation.high, high)


# ------------------------------------------------------------------ through SurrogateCell


@pytest.fixture(scope="module")
def l5pc_checkpoint(tmp_path_factory):
    """A tiny random MH for the default l5pc whose outputs depend on its input."""
    layout = cell_layout(l5pc(), SYNAPSE_SECTION_TYPES)
    n_segments, n_events = layout.n_segments, 2 * layout.input_segments.size
    torch.manual_seed(0)
    model = build_model("mh", {**TINY_L5PC_MH, "in_channels": n_events + n_segments,
                               "n_tasks": n_segments + 1, "event_channels": n_events})
    meta = {**model_meta(model, "mh"), "cell": cell_meta_from_layout(layout), "data": {}, "training": {}}
    normalisation = Normalisation(np.full(n_segments, -70.0, np.float32),
                                  np.full(n_segments, 5.0, np.float32))
    path = tmp_path_factory.mktemp("engine") / "random.pt"
    save_checkpoint(path, model, meta, normalisation)
    return path


def simulated_vmem(checkpoint, stepper) -> np.ndarray:
    cell = SurrogateCell(model=checkpoint, tstop=30.0, device="cpu", stepper=stepper)
    for kind, syntype, times in (("apic", "AMPANMDA", [2.0, 9.5, 20.0]), ("dend", "GABAA", [5.0])):
        synapse = LFPy.Synapse(cell, idx=int(cell.get_idx(kind)[5]), syntype=syntype, weight=1.0)
        synapse.set_spike_times(np.array(times))
    cell.simulate(rec_vmem=True)
    return cell.vmem


@pytest.mark.neuron
def test_surrogate_cell_runs_on_the_incremental_stepper(l5pc_checkpoint):
    expected = simulated_vmem(l5pc_checkpoint, FullWindowStepper)
    got = simulated_vmem(l5pc_checkpoint, make_stepper)
    assert np.ptp(expected[:, 1:], axis=1).max() > 0  # the run is not trivially constant
    np.testing.assert_allclose(got, expected, rtol=1e-5, atol=0)


# ------------------------------------------------------------------ building blocks


def test_sliding_window_keeps_the_last_steps_and_zero_padding():
    sliding = SlidingWindow((2, 3, 5), time_dim=-1, pad=4, slack=2, device=torch.device("cpu"),
                            dtype=torch.float64)
    sliding.window().copy_(torch.arange(5.0).expand(2, 3, 5))
    for step in range(5, 40):  # several moves back to the storage start
        sliding.advance()
        sliding.newest().fill_(float(step))
        expected = torch.arange(step - 4.0, step + 1.0, dtype=torch.float64)
        torch.testing.assert_close(sliding.window(), expected.expand(2, 3, 5))
        assert not sliding.padded()[..., :4].any()


def test_dense_product_equals_matmul():
    generator = torch.Generator().manual_seed(5)
    weight, bias = torch.randn(64, 300, generator=generator), torch.randn(300, generator=generator)
    for rows in (1, 7):
        x = torch.randn(rows, 64, generator=generator)
        torch.testing.assert_close(DenseProduct(weight, rows, bias)(x), x @ weight + bias,
                                   rtol=1e-5, atol=1e-5)


def test_flop_count_is_below_a_full_window_recompute():
    stepper = make_stepper(small_model("mmoe"), NORMALISATION, 1)
    config = stepper.model.config
    first_conv_full = 2 * config.in_channels * config.kernel_size * config.window * (6 * 3 + 4)
    assert 0 < stepper.flops_per_cell_step() < first_conv_full
