"""Tests of the synaptic input generator (surrogate_cell.data.inputs)."""

from __future__ import annotations

import numpy as np
import pytest

from surrogate_cell.data.inputs import (
    TREES,
    PoissonInputConfig,
    PublishedInputConfig,
    draw_inputs,
    events_to_spike_times,
    input_config_from_dict,
    input_config_to_dict,
    pack_events,
    spike_times_to_events,
    unpack_events,
)

N_SIMS = 120
SIM_MS = 2000


@pytest.fixture(scope="module")
def segments():
    """Synthetic cell: 260 basal + 380 apical segments of 5-40 um."""
    rng = np.random.default_rng(1234)
    trees = np.array(["basal"] * 260 + ["apical"] * 380)
    lengths = rng.uniform(5.0, 40.0, size=trees.size)
    return trees, lengths


def expected_inh_mean(config: PublishedInputConfig) -> float:
    """E[inh total] for exc ~ U[lo, hi], inh ~ U[max(0, exc - below), exc + above]."""
    lo, hi = config.exc_per_100ms_range
    below, above = config.inh_offset_below, config.inh_offset_above
    start = max(lo, below)
    # E[max(0, exc - below)]: integral of (exc - below) over [start, hi], divided by hi - lo.
    mean_excess = ((hi - below) ** 2 - (start - below) ** 2) / (2 * (hi - lo)) if start < hi else 0.0
    return 0.5 * (mean_excess + 0.5 * (lo + hi) + above)


@pytest.fixture(scope="module")
def published_stats(segments):
    """Aggregates over many published-regime simulations (seeds 0..N_SIMS-1)."""
    trees, lengths = segments
    config = PublishedInputConfig()
    per_100ms = {"exc": np.zeros((N_SIMS, len(TREES))), "inh": np.zeros((N_SIMS, len(TREES)))}
    seg_counts = {"exc": np.zeros(trees.size), "inh": np.zeros(trees.size)}
    exc_totals, inh_totals, intervals, sigmas = [], [], [], []
    for seed in range(N_SIMS):
        result = draw_inputs(config, trees, lengths, SIM_MS, np.random.default_rng(seed))
        for kind in ("exc", "inh"):
            counts = getattr(result, kind).sum(axis=1)
            seg_counts[kind] += counts
            for t, tree in enumerate(TREES):
                per_100ms[kind][seed, t] = counts[trees == tree].sum() * 100.0 / SIM_MS
        exc_totals.append(result.exc_totals)
        inh_totals.append(result.inh_totals)
        intervals.append(result.interval_ms)
        sigmas.append(result.smoothing_sigma_ms)
    return {
        "config": config,
        "per_100ms": per_100ms,
        "seg_counts": seg_counts,
        "exc_totals": np.concatenate(exc_totals, axis=1),
        "inh_totals": np.concatenate(inh_totals, axis=1),
        "intervals": np.array(intervals),
        "sigmas": np.array(sigmas),
    }


# ----------------------------------------------------------------------- published


def test_published_output_shapes_and_types(segments):
    trees, lengths = segments
    result = draw_inputs(PublishedInputConfig(), trees, lengths, 1500, np.random.default_rng(0))
    for name in ("exc", "inh"):
        assert getattr(result, name).shape == (trees.size, 1500)
        assert getattr(result, name).dtype == bool
        assert getattr(result, f"{name}_rate").shape == (trees.size, 1500)
        assert getattr(result, f"{name}_rate").dtype == np.float32
    assert result.n_segments == trees.size and result.n_ms == 1500
    n_intervals = int(np.ceil(1500 / result.interval_ms))
    assert result.exc_totals.shape == result.inh_totals.shape == (len(TREES), n_intervals)


def test_published_mean_total_per_tree(published_stats):
    config = published_stats["config"]
    exc_expected = 0.5 * sum(config.exc_per_100ms_range)
    inh_expected = expected_inh_mean(config)
    assert exc_expected == pytest.approx(400.0)
    assert inh_expected == pytest.approx(312.5)
    exc_mean = published_stats["per_100ms"]["exc"].mean(axis=0)
    inh_mean = published_stats["per_100ms"]["inh"].mean(axis=0)
    np.testing.assert_allclose(exc_mean, exc_expected, rtol=0.04)
    np.testing.assert_allclose(inh_mean, inh_expected, rtol=0.04)


def test_published_interval_totals_follow_ranges(published_stats):
    config = published_stats["config"]
    exc, inh = published_stats["exc_totals"], published_stats["inh_totals"]
    lo, hi = config.exc_per_100ms_range
    assert exc.min() >= lo and exc.max() <= hi
    assert np.all(inh >= np.maximum(0.0, exc - config.inh_offset_below))
    assert np.all(inh <= exc + config.inh_offset_above)
    assert exc.mean() == pytest.approx(0.5 * (lo + hi), rel=0.03)
    assert inh.mean() == pytest.approx(expected_inh_mean(config), rel=0.03)


def test_published_interval_and_sigma_ranges(published_stats):
    config = published_stats["config"]
    for values, choices, jitter in (
        (published_stats["intervals"], config.interval_choices_ms, config.interval_jitter_ms),
        (published_stats["sigmas"], config.smoothing_sigma_choices_ms, config.smoothing_jitter_ms),
    ):
        assert values.min() >= min(choices) - jitter
        assert values.max() <= max(choices) + jitter
        assert len(np.unique(values)) == values.size


def test_published_spatial_spread_proportional_to_length_plus_offset(segments, published_stats):
    trees, lengths = segments
    offset = published_stats["config"].segment_length_offset_um
    for kind in ("exc", "inh"):
        counts = published_stats["seg_counts"][kind]
        for tree in TREES:
            mask = trees == tree
            observed = counts[mask] / counts[mask].sum()
            expected = (lengths[mask] + offset) / (lengths[mask] + offset).sum()
            assert np.corrcoef(observed, expected)[0, 1] > 0.95
            ratio = observed / expected
            order = np.argsort(lengths[mask])
            quarter = mask.sum() // 4
            short, long = ratio[order[:quarter]].mean(), ratio[order[-quarter:]].mean()
            assert short == pytest.approx(1.0, abs=0.03)
            assert long == pytest.approx(1.0, abs=0.03)


def test_published_tree_rates_are_convex_mixtures_of_totals(segments):
    trees, lengths = segments
    config = PublishedInputConfig()
    result = draw_inputs(config, trees, lengths, 3000, np.random.default_rng(7))
    for t, tree in enumerate(TREES):
        mask = trees == tree
        for kind, totals in (("exc", result.exc_totals), ("inh", result.inh_totals)):
            tree_per_100ms = getattr(result, f"{kind}_rate")[mask].sum(axis=0) * 100.0
            assert tree_per_100ms.min() >= totals[t].min() * (1 - 1e-4) - 1e-3
            assert tree_per_100ms.max() <= totals[t].max() * (1 + 1e-4) + 1e-3


def test_same_seed_same_output_different_seed_different(segments):
    trees, lengths = segments
    for config in (PublishedInputConfig(), PoissonInputConfig()):
        a = draw_inputs(config, trees, lengths, 1000, np.random.default_rng(42))
        b = draw_inputs(config, trees, lengths, 1000, np.random.default_rng(42))
        c = draw_inputs(config, trees, lengths, 1000, np.random.default_rng(43))
        for name in ("exc", "inh", "exc_rate", "inh_rate"):
            np.testing.assert_array_equal(getattr(a, name), getattr(b, name))
        assert not np.array_equal(a.exc, c.exc)
        assert not np.array_equal(a.inh, c.inh)


# ----------------------------------------------------------------------- poisson


def test_poisson_mean_rates_match_config(segments):
    trees, lengths = segments
    config = PoissonInputConfig(exc_rate_hz=12.5, inh_rate_hz=10.0)
    result = draw_inputs(config, trees, lengths, 5000, np.random.default_rng(3))
    assert result.exc.mean() * 1e3 == pytest.approx(config.exc_rate_hz, rel=0.02)
    assert result.inh.mean() * 1e3 == pytest.approx(config.inh_rate_hz, rel=0.02)
    assert np.all(result.exc_rate == np.float32(config.exc_rate_hz * 1e-3))
    assert result.interval_ms is None and result.exc_totals is None


def test_poisson_defaults_match_published_whole_cell_mean():
    config, published = PoissonInputConfig(), PublishedInputConfig()
    n_dendritic = 639
    assert config.exc_rate_hz * n_dendritic == pytest.approx(
        2 * 0.5 * sum(published.exc_per_100ms_range) * 10, rel=0.01)
    assert config.inh_rate_hz * n_dendritic == pytest.approx(
        2 * expected_inh_mean(published) * 10, rel=0.03)


# ----------------------------------------------------------------------- formats


def test_pack_unpack_round_trip():
    rng = np.random.default_rng(5)
    for n_ms in (1, 7, 8, 9, 1003):
        matrix = rng.random((13, n_ms)) < 0.3
        packed = pack_events(matrix)
        assert packed.dtype == np.uint8 and packed.shape == (13, -(-n_ms // 8))
        np.testing.assert_array_equal(unpack_events(packed, n_ms), matrix)


def test_spike_times_round_trip(segments):
    trees, lengths = segments
    result = draw_inputs(PublishedInputConfig(), trees, lengths, 777, np.random.default_rng(9))
    matrix = result.exc.copy()
    matrix[0] = False  # an empty row
    times = events_to_spike_times(matrix)
    assert len(times) == matrix.shape[0] and times[0].size == 0
    assert all(t.dtype == np.float64 and np.all(t == np.round(t)) for t in times)
    assert all(np.all(np.diff(t) > 0) for t in times)
    np.testing.assert_array_equal(spike_times_to_events(times, 777), matrix)
    assert events_to_spike_times(np.zeros((0, 10), dtype=bool)) == []


def test_spike_times_out_of_range_raise():
    with pytest.raises(ValueError, match="outside"):
        spike_times_to_events([np.array([10.0])], 10)
    with pytest.raises(ValueError, match="outside"):
        spike_times_to_events([np.array([-0.5])], 10)


# ----------------------------------------------------------------------- configs


def test_config_dict_round_trip():
    for config in (PublishedInputConfig(segment_factor_range=[0.8, 1.2]), PoissonInputConfig(exc_rate_hz=3)):
        d = input_config_to_dict(config)
        assert input_config_from_dict(d) == config
    assert input_config_from_dict({}) == PublishedInputConfig()
    assert PublishedInputConfig(segment_factor_range=[0.8, 1.2]).segment_factor_range == (0.8, 1.2)


@pytest.mark.parametrize(
    "d, message",
    [
        ({"regime": "gamma"}, r"unknown input regime 'gamma'.*poisson.*published"),
        ({"regime": "published", "sigma_ms": 3}, r"unknown field\(s\) \['sigma_ms'\].*smoothing_jitter_ms"),
        ({"regime": "poisson", "interval_jitter_ms": 3}, r"'interval_jitter_ms'.*exc_rate_hz"),
        ({"exc_per_100ms_range": [800, 0]}, "low <= high"),
        ({"exc_per_100ms_range": [0, 400, 800]}, "must have 2 values"),
        ({"segment_factor_range": [0.0, 1.0]}, "lower bound must be > 0"),
        ({"interval_choices_ms": []}, "must not be empty"),
        ({"interval_choices_ms": [25, -5]}, "must all be > 0"),
        ({"smoothing_jitter_ms": -1}, "must be >= 0"),
        ({"inh_offset_below": "lots"}, "must be a number"),
        ({"interval_choices_ms": 25}, "must be a list"),
        ({"regime": "poisson", "exc_rate_hz": 2000}, r"exc_rate_hz must be in \[0, 1000\]"),
        ({"regime": "poisson", "inh_rate_hz": -1}, "inh_rate_hz"),
    ],
)
def test_bad_configs_raise(d, message):
    with pytest.raises(ValueError, match=message):
        input_config_from_dict(d)


def test_bad_segments_and_duration_raise(segments):
    trees, lengths = segments
    config, rng = PublishedInputConfig(), np.random.default_rng(0)
    with pytest.raises(ValueError, match=r"unknown tree name\(s\) \['axon'\]"):
        draw_inputs(config, ["axon", "basal"], [10.0, 10.0], 100, rng)
    with pytest.raises(ValueError, match="lengths for"):
        draw_inputs(config, trees, lengths[:-1], 100, rng)
    with pytest.raises(ValueError, match="> 0 um"):
        draw_inputs(config, ["basal"], [0.0], 100, rng)
    for duration in (0, 100.5, -10):
        with pytest.raises(ValueError, match="whole number"):
            draw_inputs(config, trees, lengths, duration, rng)
