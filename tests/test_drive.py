"""The conductance drive (surrogate_cell.synapses): 1 ms bin means of every segment's synaptic
conductance per receptor, against NEURON's own AMPANMDA, GABAA, ExpSyn, Exp2Syn and IClamp."""

from __future__ import annotations

import numpy as np
import pytest

from surrogate_cell.synapses import (
    EXCITATORY_REVERSAL_MV,
    INHIBITORY_REVERSAL_MV,
    RECEPTORS,
    ConductanceDrive,
    DriveSynapses,
    bin_mean_conductance,
    bin_mean_current,
    mg_block,
    synapse_kinetics,
)

DT = 0.005  # ms; event times below are multiples of it, so NEURON delivers each event at its own time
STEPS_PER_BIN = round(1.0 / DT)
N_BINS = 60
AMPANMDA = dict(e=0.0, gmax_ampa=0.0004, gmax_nmda=0.0004, tau_r_ampa=0.3, tau_d_ampa=3.0, tau_r_nmda=2.0,
                tau_d_nmda=70.0, mg=1.0)
GABAA = dict(e=-80.0, gmax=0.001, tau_r=0.2, tau_d=8.0)
EXPSYN = dict(e=0.0, tau=2.0)
EXP2SYN = dict(e=-75.0, tau1=0.5, tau2=5.0)
PARAMETERS = {"AMPANMDA": AMPANMDA, "GABAA": GABAA, "ExpSyn": EXPSYN, "Exp2Syn": EXP2SYN}

# (mechanism, segment, NetCon weight, event times in ms): several synapses per segment, two events
# within one ms, events at sub-ms times and at bin edges
SYNAPSES = [
    ("AMPANMDA", 0, 1.0, [3.37, 3.9, 17.02]),
    ("AMPANMDA", 0, 0.6, [5.125, 30.5, 31.0]),
    ("GABAA", 0, 1.0, [8.21, 8.74]),
    ("ExpSyn", 1, 0.005, [3.37, 3.9, 12.555]),
    ("ExpSyn", 1, 0.01, [12.005]),
    ("Exp2Syn", 1, 0.002, [20.13, 20.8, 41.065]),
    ("GABAA", 2, 0.7, [25.31]),
    ("Exp2Syn", 2, 0.008, [25.995, 26.4]),
    ("AMPANMDA", 2, 1.0, [44.44, 44.9]),
]
N_SEGMENTS = 3


@pytest.fixture
def fine_fixed_step():
    """NEURON at dt = 0.005 ms, backward Euler, fixed step; its previous settings come back afterwards."""
    from neuron import h

    from surrogate_cell.mechanisms import load_mechanisms

    load_mechanisms()
    h.load_file("stdrun.hoc")
    cvode = h.CVode()
    saved = (h.dt, h.secondorder, cvode.active())
    try:
        h.dt, h.secondorder = DT, 0
        cvode.active(0)
        yield h
    finally:
        h.dt, h.secondorder = saved[0], saved[1]
        cvode.active(saved[2])


def _run(h, n_steps: int) -> None:
    for _ in range(n_steps):
        h.fadvance()


def _as_computed(recorded) -> np.ndarray:
    """A recorded point-process variable, sample n + 1 onwards: the value belonging to the step
    [t_n, t_(n+1)), n = 0, 1, ...

    ``Vector.record`` stores after each step, at t_(n+1). An ASSIGNED g or i (AMPANMDA, GABAA,
    Exp2Syn, IClamp) was computed in BREAKPOINT at the start of that step, from the states at t_n
    after the events due at t_n: sample n + 1 is g(t_n) just *after* any event at t_n. ExpSyn's g
    is a STATE, advanced by the step: sample n + 1 is g(t_(n+1)) just *before* the events at t_(n+1).
    """
    return np.asarray(recorded)[1:]


def _bin_means_of_steps(step_integrals: np.ndarray) -> np.ndarray:
    """Bin means (per 1 ms) from the integrals over the steps [t_n, t_n + dt), n = 0 .. N_BINS / DT - 1."""
    steps = step_integrals[..., : N_BINS * STEPS_PER_BIN]
    return steps.reshape(*steps.shape[:-1], N_BINS, STEPS_PER_BIN).sum(-1)


def _step_integrals(g: np.ndarray, expsyn_tau: float | None) -> np.ndarray:
    """The integral of a conductance over each step [t_n, t_(n+1)) from :func:`_as_computed` samples.

    ExpSyn (a single exponential, jumping at its events, which lie on the grid): sample n is
    g(t_(n+1)) before any new event, so the step's integral is exactly g tau (exp(dt / tau) - 1).
    The others are continuous, sampled at t_n: the trapezoid rule, error ~ dt^2 / 12 g'' (< 1e-5
    of the peak here).
    """
    if expsyn_tau is not None:
        return g[:-1] * (expsyn_tau * np.expm1(DT / expsyn_tau))
    return 0.5 * DT * (g[:-1] + g[1:])


@pytest.mark.neuron
def test_bin_mean_conductance_matches_neurons_synapses(fine_fixed_step):
    h = fine_fixed_step
    section = h.Section(name="drive_test")
    section.L = section.diam = 20.0
    section.nseg = N_SEGMENTS
    section.insert("pas")
    for seg in section:
        seg.pas.e = -70.0
    positions = [(k + 0.5) / N_SEGMENTS for k in range(N_SEGMENTS)]
    voltages = [h.Vector().record(section(x)._ref_v) for x in positions]
    point_processes, netcons, traces = [], [], []
    for syntype, segment, _, _ in SYNAPSES:
        synapse = getattr(h, syntype)(section(positions[segment]))
        for name, value in PARAMETERS[syntype].items():
            setattr(synapse, name, value)
        if syntype == "AMPANMDA":
            traces.append((h.Vector().record(synapse._ref_g_ampa), h.Vector().record(synapse._ref_g_nmda)))
        else:
            traces.append((h.Vector().record(synapse._ref_g),))
        point_processes.append(synapse)
        netcons.append(h.NetCon(None, synapse))
    h.finitialize(-70.0)
    for netcon, (_, _, weight, times) in zip(netcons, SYNAPSES):
        netcon.weight[0] = weight
        for time in times:
            netcon.event(time)
    _run(h, N_BINS * STEPS_PER_BIN + 1)  # one step more: the trapezoid's last sample

    v_at_step_start = np.array([np.asarray(v)[:-1] for v in voltages])  # v at t_n, as BREAKPOINT saw it
    expected = np.zeros((len(RECEPTORS), N_SEGMENTS, N_BINS))  # NEURON's bin means, per receptor and segment
    by_type: dict[str, np.ndarray] = {}  # the same per mechanism, to measure each one's agreement
    for (syntype, segment, _, _), recorded in zip(SYNAPSES, traces):
        g = [_as_computed(trace) for trace in recorded]
        if syntype == "AMPANMDA":  # the drive carries NMDA unblocked: divide by the block BREAKPOINT applied
            parts = [("ampa", g[0]), ("nmda", g[1] / mg_block(v_at_step_start[segment], AMPANMDA["mg"]))]
        elif syntype == "GABAA" or PARAMETERS[syntype]["e"] < -60:
            parts = [("gaba", g[0])]
        else:
            parts = [("ampa", g[0])]
        tau = EXPSYN["tau"] if syntype == "ExpSyn" else None
        for receptor, values in parts:
            means = _bin_means_of_steps(_step_integrals(values, tau))
            expected[RECEPTORS.index(receptor), segment] += means
            by_type.setdefault(f"{syntype}/{receptor}", np.zeros((N_SEGMENTS, N_BINS)))[segment] += means

    kinetics = [synapse_kinetics(syntype, PARAMETERS[syntype]) for syntype, *_ in SYNAPSES]
    drive_synapses = DriveSynapses.from_kinetics([s[1] for s in SYNAPSES], kinetics, [s[2] for s in SYNAPSES])
    event_times = np.concatenate([s[3] for s in SYNAPSES])
    event_synapse = np.repeat(np.arange(len(SYNAPSES)), [len(s[3]) for s in SYNAPSES])
    drive = bin_mean_conductance(drive_synapses, event_times, event_synapse, N_BINS, N_SEGMENTS)
    assert drive.shape == (len(RECEPTORS), N_SEGMENTS, N_BINS) and drive.dtype == np.float32

    # NEURON's conductances are exact at the step times (cnexp integrates exponentials exactly and
    # every event time is on the step grid), and the step integrals above are exact (ExpSyn) or
    # trapezoidal (~1e-5 of the peak); measured: <= 1.1e-5 of the peak bin mean (GABAA, the fastest
    # rise). Tolerance 2e-4: reading the samples one step off (the recorded g at t_(n+1) taken as
    # g(t_(n+1)): 3.4e-3; v at t_(n+1) for the Mg2+ block: 6e-3), ExpSyn's STATE g as if it were
    # ASSIGNED (2e-3) or a plain mean of each bin's samples (1.7e-3) all fail it.
    tolerance = 2e-4
    for receptor in range(len(RECEPTORS)):
        for segment in range(N_SEGMENTS):
            peak = np.abs(expected[receptor, segment]).max()
            if peak == 0:
                assert not np.any(drive[receptor, segment]), (RECEPTORS[receptor], segment)
                continue
            error = np.abs(drive[receptor, segment] - expected[receptor, segment]).max() / peak
            assert error < tolerance, (RECEPTORS[receptor], segment, error)

    for name, neuron_means in by_type.items():  # each mechanism alone (pytest -s prints the agreement)
        syntype, receptor = name.split("/")
        mask = np.isin(event_synapse, [i for i, s in enumerate(SYNAPSES) if s[0] == syntype])
        alone = bin_mean_conductance(drive_synapses, event_times[mask], event_synapse[mask], N_BINS, N_SEGMENTS)
        error = np.abs(alone[RECEPTORS.index(receptor)] - neuron_means).max() / np.abs(neuron_means).max()
        print(f"{name}: max |drive - NEURON| = {error:.2e} of the peak bin mean")
        assert error < tolerance, (name, error)


def _random_synapses(rng: np.random.Generator, n: int, n_segments: int) -> DriveSynapses:
    choices = [synapse_kinetics("AMPANMDA", AMPANMDA), synapse_kinetics("GABAA", GABAA),
               synapse_kinetics("ExpSyn", EXPSYN), synapse_kinetics("Exp2Syn", EXP2SYN)]
    kinetics = [choices[k] for k in rng.integers(0, len(choices), n)]
    return DriveSynapses.from_kinetics(rng.integers(0, n_segments, n), kinetics, rng.uniform(0.001, 1.5, n))


def test_blocks_of_any_size_equal_one_shot():
    rng = np.random.default_rng(7)
    n_synapses, n_segments, n_bins = 40, 9, 500
    synapses = _random_synapses(rng, n_synapses, n_segments)
    times = rng.uniform(0, n_bins, 3000)
    times[:50] = np.floor(times[:50])  # events exactly on bin (and block) edges
    which = rng.integers(0, n_synapses, times.size)
    whole = bin_mean_conductance(synapses, times, which, n_bins, n_segments)
    assert np.all(np.isfinite(whole)) and whole.max() > 0
    for _ in range(3):
        edges = np.unique(np.concatenate([[0, n_bins], rng.integers(0, n_bins, rng.integers(1, 40))]))
        edges = np.insert(edges, 1, edges[0])  # an empty block too
        drive = ConductanceDrive(synapses, n_segments)
        blocks = []
        for start, stop in zip(edges[:-1], edges[1:]):
            inside = (times >= start) & (times < stop)
            blocks.append(drive.block(times[inside], which[inside], start, stop))
        streamed = np.concatenate(blocks, axis=-1)
        np.testing.assert_allclose(streamed, whole, rtol=1e-5, atol=1e-6 * np.abs(whole).max())
        assert drive.next_bin == n_bins


def test_drive_is_linear_in_weights_and_events():
    """Two events of one synapse = the sum of each alone; weight scales the drive."""
    kinetics = [synapse_kinetics("Exp2Syn", EXP2SYN)] * 2
    synapses = DriveSynapses.from_kinetics([0, 0], kinetics, [0.002, 0.006])
    both = bin_mean_conductance(synapses, [1.25, 1.75], [0, 0], 20, 1)
    single = bin_mean_conductance(synapses, [1.25], [1], 20, 1)
    np.testing.assert_allclose(both[2] * 3, single[2] + bin_mean_conductance(synapses, [1.75], [1], 20, 1)[2],
                               rtol=1e-5)
    # a single exponential's integral over all time is scale * tau
    expsyn = DriveSynapses.from_kinetics([0], [synapse_kinetics("ExpSyn", EXPSYN)], [0.01])
    total = bin_mean_conductance(expsyn, [0.3], [0], 200, 1).sum(dtype=float)
    assert total == pytest.approx(0.01 * EXPSYN["tau"], rel=1e-5)


@pytest.mark.neuron
def test_bin_mean_current_matches_neurons_iclamp(fine_fixed_step):
    h = fine_fixed_step
    section = h.Section(name="drive_iclamp")
    section.L = section.diam = 20.0
    section.insert("pas")
    clamp = h.IClamp(section(0.5))
    clamp.delay, clamp.dur, clamp.amp = 2.3, 10.55, 0.3
    current = h.Vector().record(clamp._ref_i)
    h.finitialize(-70.0)
    _run(h, N_BINS * STEPS_PER_BIN)
    neuron_means = _bin_means_of_steps(DT * _as_computed(current))  # i is constant over each step
    ours = bin_mean_current(2.3, 10.55, 0.3, N_BINS)
    assert ours.shape == (N_BINS,) and ours.dtype == np.float32
    # i is constant over each step and the pulse's edges fall on the step grid, so NEURON's bin
    # means are exact; measured: equal to float32 rounding (1e-8 nA). One sample too many or too
    # few in an edge bin (reading the samples one step off) would miss by amp * dt = 1.5e-3 nA.
    np.testing.assert_allclose(ours, neuron_means, rtol=0, atol=1e-5)
    assert ours.sum(dtype=float) == pytest.approx(0.3 * 10.55, rel=1e-6)


def test_bin_mean_current_sums_pulses_and_checks_input():
    two = bin_mean_current([0.5, 3.0], [1.0, 0.25], [1.0, -2.0], 5)
    np.testing.assert_allclose(two, [0.5, 0.5, 0.0, -0.5, 0.0])
    with pytest.raises(ValueError, match="dur_ms must be >= 0"):
        bin_mean_current(1.0, -1.0, 0.3, 5)
    with pytest.raises(ValueError, match="amp_na must be finite"):
        bin_mean_current(1.0, 1.0, np.nan, 5)


def test_bad_input_is_refused_with_a_fix():
    odd = synapse_kinetics("ExpSyn", {"e": -40.0, "tau": 2.0})
    with pytest.raises(ValueError, match="ExpSyn") as refused:
        DriveSynapses.from_kinetics([0], [odd], [0.01])
    message = str(refused.value)
    assert "-40.0" in message and "Set e to" in message
    assert f"[{EXCITATORY_REVERSAL_MV[0]}, {EXCITATORY_REVERSAL_MV[1]}]" in message
    assert f"[{INHIBITORY_REVERSAL_MV[0]}, {INHIBITORY_REVERSAL_MV[1]}]" in message

    synapses = DriveSynapses.from_kinetics([0, 1], [synapse_kinetics("GABAA", GABAA)] * 2, [1.0, 1.0])
    drive = ConductanceDrive(synapses, 2)
    with pytest.raises(ValueError, match=r"outside this block's span \[0, 10\)"):
        drive.block([10.0], [0], 0, 10)
    with pytest.raises(ValueError, match="finite"):
        drive.block([np.nan], [0], 0, 10)
    with pytest.raises(ValueError, match="must index the 2 synapses"):
        drive.block([1.0], [2], 0, 10)
    drive.block([1.0], [1], 0, 10)
    with pytest.raises(ValueError, match="expected start_bin = 10"):
        drive.block([], [], 5, 15)
    with pytest.raises(ValueError, match="outside"):
        drive.block([9.5], [0], 10, 20)
    with pytest.raises(ValueError, match="n_segments"):
        ConductanceDrive(synapses, 1)
