"""SurrogateCell on a drive model (synaptic conductances and somatic current as the model input).

A tiny SRM is trained here (a few seconds of steps) on three short ``mixture`` simulations of the
built-in cell, which gives a real drive checkpoint (``input_kind == "drive"``). The tests check
what SurrogateCell feeds that model for an ordinary LFPy script: the exact 1 ms bin means of the
synapses' own conductances and of the IClamp current, against an independent computation and
against NEURON running the same synapses on the real cell; that a full simulate runs; and that
every input a drive model cannot take is refused with the fix named.
"""

from __future__ import annotations

import LFPy
import numpy as np
import pytest

from surrogate_cell.cell import (
    MAX_EVENT_PEAK_CONDUCTANCE_US,
    SurrogateCell,
    SynapseMappingError,
    UnsupportedFeatureError,
)
from surrogate_cell.synapses import (
    DRIVE_NS_PER_US,
    RECEPTORS,
    DriveSynapses,
    bin_mean_conductance,
    bin_mean_current,
    drive_channels,
    mg_block,
    synapse_kinetics,
)

pytestmark = pytest.mark.neuron  # SurrogateCell builds its LFPy/NEURON geometry

TSTOP_MS = 60.0
N_BINS = int(TSTOP_MS)
DT = 0.005  # ms, NEURON's step in the comparison; every time below is a multiple of it
STEPS_PER_BIN = round(1.0 / DT)

# the mechanisms' own defaults (surrogate_cell/cells/nmodl), written out: the expected input is
# computed here without reading anything from SurrogateCell or NEURON
AMPANMDA = dict(e=0.0, gmax_ampa=0.0004, gmax_nmda=0.0004, tau_r_ampa=0.3, tau_d_ampa=3.0, tau_r_nmda=2.0,
                tau_d_nmda=70.0, mg=1.0)
GABAA = dict(e=-80.0, gmax=0.001, tau_r=0.2, tau_d=8.0)

# (syntype, where, weight, parameters set by the script, spike times (ms)): two Exp2Syn on one
# apical segment (one excitatory, one inhibitory), two events within one ms, an AMPANMDA on the soma
SCRIPT = [
    ("Exp2Syn", "apic", 0.005, dict(tau1=0.5, tau2=5.0, e=0.0), [10.305, 10.74, 31.05]),
    ("Exp2Syn", "apic", 0.003, dict(tau1=1.0, tau2=12.0, e=-75.0), [12.5, 40.015]),
    ("AMPANMDA", "soma", 1.0, {}, [5.125, 20.5, 20.9]),
    ("GABAA", "dend", 1.5, {}, [8.21, 25.0]),
]
CLAMP = dict(amp=0.3, dur=10.55, delay=30.25)  # nA, ms, ms; on the soma


@pytest.fixture(scope="module")
def drive_checkpoint(tiny_drive_checkpoint):
    """The session's tiny drive SRM (tests/conftest.py)."""
    return tiny_drive_checkpoint


def drive_cell(checkpoint, **kwargs) -> SurrogateCell:
    return SurrogateCell(model=checkpoint, device="cpu", **{"tstop": TSTOP_MS, "dt": 0.025, **kwargs})


def script_segments(cell: SurrogateCell) -> dict[str, int]:
    """The segments the script uses (the same indices on every cell of this morphology)."""
    return {"apic": int(cell.get_closest_idx(z=400.0, section="apic")), "soma": int(cell.soma_segment),
            "dend": int(cell.get_closest_idx(z=-100.0, section="dend"))}


def attach_script(cell, segments: dict[str, int]) -> tuple[list, LFPy.StimIntElectrode]:
    """The same LFPy lines on any cell: the synapses of :data:`SCRIPT` and the somatic IClamp."""
    synapses = []
    for syntype, where, weight, parameters, times in SCRIPT:
        synapse = LFPy.Synapse(cell, idx=segments[where], syntype=syntype, weight=weight, **parameters)
        synapse.set_spike_times(np.array(times))
        synapses.append(synapse)
    clamp = LFPy.StimIntElectrode(cell, idx=segments["soma"], pptype="IClamp", **CLAMP)
    return synapses, clamp


def expected_input(segments: dict[str, int], n_segments: int) -> np.ndarray:
    """The drive of :data:`SCRIPT`, (T, channels), from the synapse parameters alone."""
    parameters = {"AMPANMDA": AMPANMDA, "GABAA": GABAA}
    kinetics = [synapse_kinetics(syntype, {**parameters.get(syntype, {}), **given})
                for syntype, _, _, given, _ in SCRIPT]
    synapses = DriveSynapses.from_kinetics([segments[where] for _, where, *_ in SCRIPT], kinetics,
                                           [weight for _, _, weight, *_ in SCRIPT])
    times = np.concatenate([entry[4] for entry in SCRIPT])
    which = np.repeat(np.arange(len(SCRIPT)), [len(entry[4]) for entry in SCRIPT])
    conductance = bin_mean_conductance(synapses, times, which, N_BINS, n_segments)
    current = bin_mean_current(CLAMP["delay"], CLAMP["dur"], CLAMP["amp"], N_BINS)
    return drive_channels(conductance, current)


def neuron_bin_means(segments: dict[str, int]) -> tuple[np.ndarray, np.ndarray]:
    """NEURON's 1 ms bin means of :data:`SCRIPT` on the real cell: conductances (receptors, segments,
    bins) in uS (NMDA unblocked) and the IClamp current (bins,) in nA.

    The same LFPy lines attach the synapses to an ``l5pc()``; the events are queued on LFPy's
    NetCons and NEURON steps at DT with backward Euler (tests/test_drive.py explains the sampling:
    the recorded g or i of step n + 1 is the value computed at t_n, from v at t_n).
    """
    from neuron import h

    from surrogate_cell.cells import l5pc

    cell = l5pc(tstop=TSTOP_MS, dt=DT)
    synapses, clamp = attach_script(cell, segments)
    all_segments = [segment for section in cell.allseclist for segment in section]
    voltages = {where: h.Vector().record(all_segments[index]._ref_v) for where, index in segments.items()}
    traces = []
    for number, (syntype, *_rest) in enumerate(SCRIPT):
        point_process = cell._hoc_synlist.o(number)
        names = ("_ref_g_ampa", "_ref_g_nmda") if syntype == "AMPANMDA" else ("_ref_g",)
        traces.append([h.Vector().record(getattr(point_process, name)) for name in names])
    current = h.Vector().record(cell._hoc_stimlist.o(0)._ref_i)
    cvode = h.CVode()
    saved = (h.dt, h.secondorder, cvode.active())
    try:
        h.dt, h.secondorder = DT, 0
        cvode.active(0)
        h.finitialize(float(cell.v_init))
        for number, (*_, times) in enumerate(SCRIPT):
            for time in times:
                cell._hoc_netconlist.o(number).event(time)
        for _ in range(N_BINS * STEPS_PER_BIN + 1):  # one step more: the trapezoid's last sample
            h.fadvance()
    finally:
        h.dt, h.secondorder = saved[0], saved[1]
        cvode.active(saved[2])

    def bin_means(step_integrals):
        return step_integrals[: N_BINS * STEPS_PER_BIN].reshape(N_BINS, STEPS_PER_BIN).sum(-1)

    conductance = np.zeros((len(RECEPTORS), cell.totnsegs, N_BINS))
    for (syntype, where, _, given, _), recorded in zip(SCRIPT, traces):
        g = [np.asarray(trace)[1:] for trace in recorded]  # g at t_n, n = 0 .. N
        if syntype == "AMPANMDA":  # the drive carries NMDA unblocked
            v_at_step_start = np.asarray(voltages[where])[:-1]
            parts = [("ampa", g[0]), ("nmda", g[1] / mg_block(v_at_step_start, AMPANMDA["mg"]))]
        elif syntype == "GABAA" or given["e"] < -60:
            parts = [("gaba", g[0])]
        else:
            parts = [("ampa", g[0])]
        for receptor, values in parts:  # trapezoid over each step: ~1e-5 of the peak
            conductance[RECEPTORS.index(receptor), segments[where]] += bin_means(0.5 * DT * (values[:-1] + values[1:]))
    clamp_current = bin_means(DT * np.asarray(current)[1:])  # i is constant over each step
    del synapses, clamp
    return conductance, clamp_current


def test_model_input_is_the_exact_drive_and_matches_neuron(drive_checkpoint):
    cell = drive_cell(drive_checkpoint)
    assert cell.input_kind == "drive" and cell.n_event_channels == 3 * cell.totnsegs + 1
    segments = script_segments(cell)
    assert len(set(segments.values())) == 3
    attach_script(cell, segments)
    fed = cell.model_input()
    assert fed.shape == (3 * cell.totnsegs + 1, N_BINS) and fed.dtype == np.float32

    expected = expected_input(segments, cell.totnsegs)  # (T, channels)
    np.testing.assert_allclose(fed.T, expected, rtol=1e-6, atol=1e-9)
    used = [RECEPTORS.index(r) * cell.totnsegs + segments[w]
            for r, w in (("ampa", "apic"), ("gaba", "apic"), ("ampa", "soma"), ("nmda", "soma"), ("gaba", "dend"))]
    assert np.all(fed[used].max(axis=1) > 0)
    others = np.ones(fed.shape[0] - 1, dtype=bool)
    others[used] = False
    assert not np.any(fed[:-1][others])

    # streamed in blocks of any size, as simulate() reads it, it is the same input
    source = cell._input_source(cell.input_spike_times())
    edges = [0, 7, 7, 20, 33, 59, N_BINS]
    streamed = np.concatenate([source.block(a, b) for a, b in zip(edges[:-1], edges[1:])])
    np.testing.assert_allclose(streamed, fed.T, rtol=1e-5, atol=1e-6 * np.abs(fed).max())

    n_segments = cell.totnsegs
    neuron_g, neuron_i = neuron_bin_means(segments)  # deletes the surrogate's sections: last
    ours = fed[:-1].reshape(len(RECEPTORS), n_segments, N_BINS) / DRIVE_NS_PER_US
    worst = 0.0
    for receptor, segment in ((RECEPTORS.index(r), segments[w]) for r, w in
                              (("ampa", "apic"), ("gaba", "apic"), ("ampa", "soma"), ("nmda", "soma"),
                               ("gaba", "dend"))):
        peak = np.abs(neuron_g[receptor, segment]).max()
        error = np.abs(ours[receptor, segment] - neuron_g[receptor, segment]).max() / peak
        print(f"{RECEPTORS[receptor]} on segment {segment}: max |drive - NEURON| = {error:.2e} of the peak bin mean")
        worst = max(worst, error)
    # tests/test_drive.py: exact up to the trapezoid rule (~1e-5 of the peak) and float32
    assert worst < 2e-4
    assert not np.any(neuron_g[:, np.setdiff1d(np.arange(n_segments), list(segments.values()))])
    print(f"IClamp: max |drive - NEURON| = {np.abs(fed[-1] - neuron_i).max():.2e} nA")
    np.testing.assert_allclose(fed[-1], neuron_i, rtol=0, atol=1e-5)
    assert fed[-1].sum(dtype=float) == pytest.approx(CLAMP["amp"] * CLAMP["dur"], rel=1e-6)


def test_simulate_with_probes_on_a_drive_model(drive_checkpoint):
    cell = drive_cell(drive_checkpoint, tstop=80.0)
    segments = script_segments(cell)
    synapses, clamp = attach_script(cell, segments)
    recorded = LFPy.Synapse(cell, idx=segments["apic"], syntype="ExpSyn", weight=0.01, tau=2.0, e=0.0,
                            record_current=True, record_potential=True)
    recorded.set_spike_times(np.array([3.3, 50.05]))
    background = LFPy.Synapse(cell, idx=segments["dend"], syntype="GABAA", weight=1.0)
    background.set_spike_times_w_netstim(noise=1.0, start=0.0, number=20, interval=5.0, seed=3)
    watched = LFPy.StimIntElectrode(cell, idx=cell.soma_segment, pptype="IClamp", amp=0.2, dur=5.0, delay=60.0,
                                    record_current=True, record_potential=True)
    electrode = LFPy.RecExtElectrode(cell, x=np.array([30.0, -40.0]), y=np.zeros(2), z=np.array([0.0, 300.0]))
    cell.simulate(probes=[electrode], rec_vmem=True, rec_imem=True)

    n_times = int(round(80.0 / 0.025)) + 1
    np.testing.assert_allclose(cell.tvec, np.arange(n_times) * 0.025)
    for name, values in (("vmem", cell.vmem), ("imem", cell.imem)):
        assert values.shape == (cell.totnsegs, n_times) and np.all(np.isfinite(values)), name
    assert electrode.data.shape == (2, n_times) and np.all(np.isfinite(electrode.data))
    assert np.allclose(electrode.data, electrode.get_transformation_matrix() @ cell.imem, rtol=1e-6, atol=1e-12)
    assert np.array_equal(cell.somav, cell.vmem[cell.soma_segment])
    assert np.all((cell.vmem > -150) & (cell.vmem < 100))
    assert recorded.i.shape == recorded.v.shape == (n_times,) and np.all(np.isfinite(recorded.i))
    assert np.abs(recorded.i).max() > 0 and np.array_equal(recorded.v, cell.vmem[segments["apic"]])
    assert watched.i.max() == pytest.approx(0.2) and watched.i[cell.tvec < 60.0].max() == 0
    assert np.array_equal(watched.v, cell.somav)

    # simulate fed the model exactly model_input(), from the default start (v_init, no drive)
    voltages_mv, history = cell.resting_history()
    assert history.dtype == np.float32 and not history.any()
    whole_ms = cell._free_run(cell.model_input(), voltages_mv, history)
    np.testing.assert_allclose(cell.vmem[:, ::40], whole_ms, rtol=0, atol=1e-4)


def test_drive_input_memory_does_not_grow_with_tstop(drive_checkpoint):
    cell = drive_cell(drive_checkpoint, tstop=1_000_000.0)
    synapse = LFPy.Synapse(cell, idx=cell.soma_segment, syntype="AMPANMDA", weight=1.0)
    synapse.set_spike_times(np.array([0.5, 999_990.25]))
    source = cell._input_source(cell.input_spike_times())
    assert source.n_steps == 1_000_000 and source.n_events == 2
    assert sum(np.asarray(v).nbytes for v in vars(source).values() if isinstance(v, np.ndarray)) < 1000
    assert source.block(0, 3).shape == (3, cell.n_event_channels)


def test_inputs_a_drive_model_cannot_take_are_refused_with_the_fix(drive_checkpoint):
    cell = drive_cell(drive_checkpoint)
    soma, apic = cell.soma_segment, int(cell.get_closest_idx(z=400.0, section="apic"))
    axon = int(cell.get_idx("axon")[0])

    def refused(error, match, **synapse):
        with pytest.raises(error, match=match):
            LFPy.Synapse(cell, **{"idx": apic, "weight": 0.005, **synapse})

    refused(SynapseMappingError, r"mg = 2 mM.*Remove mg \(or set mg=1\)", syntype="AMPANMDA", weight=1.0, mg=2.0)
    refused(SynapseMappingError, r"e = -40 mV.*\[-10, 10\] mV.*\[-90, -65\] mV.*Set e within", syntype="ExpSyn",
            e=-40.0)
    refused(SynapseMappingError, r"GABAA.*e = -50 mV.*inhibitory range \[-90, -65\] mV.*Set e", syntype="GABAA",
            weight=1.0, e=-50.0)
    refused(SynapseMappingError, r"AMPANMDA.*e = -70 mV.*excitatory range", syntype="AMPANMDA", weight=1.0,
            e=-70.0)
    refused(SynapseMappingError, r"AlphaSynapse.*AMPANMDA, GABAA, ExpSyn, Exp2Syn only\. Use one of these",
            syntype="AlphaSynapse")
    refused(SynapseMappingError, r"segment \d+ \(axon\).*every segment but the axon.*Choose idx",
            syntype="ExpSyn", idx=axon)
    refused(SynapseMappingError, r"weight -0\.005 < 0.*Give weight >= 0", syntype="Exp2Syn", weight=-0.005)
    refused(SynapseMappingError, r"weight None.*give a finite weight >= 0", syntype="Exp2Syn", weight=None)
    limit = MAX_EVENT_PEAK_CONDUCTANCE_US["ampa"]
    refused(SynapseMappingError, rf"peak ampa conductance \(weight\) of 0\.06 uS, more than the {limit:g} uS.*"
            rf"Use weight <= {limit:g}", syntype="Exp2Syn", weight=0.06)
    refused(SynapseMappingError, r"peak nmda conductance \(weight \* gmax\) of 0\.008 uS.*Use weight <= 12\.5",
            syntype="AMPANMDA", weight=20.0)
    refused(SynapseMappingError, r"rise 8 ms, decay 2 ms; set tau1 < tau2", syntype="Exp2Syn", tau1=8.0,
            tau2=2.0)
    assert not cell.synapses  # nothing was attached

    with pytest.raises(UnsupportedFeatureError, match=r"pptype='SEClamp'.*pptype='IClamp' on the soma"):
        LFPy.StimIntElectrode(cell, idx=soma, pptype="SEClamp", amp1=-70.0, dur1=10.0)
    with pytest.raises(UnsupportedFeatureError, match=r"IClamp on segment \d+ \(apical\).*idx=cell.soma_segment"):
        LFPy.StimIntElectrode(cell, idx=apic, pptype="IClamp", amp=0.1, dur=1.0, delay=1.0)
    with pytest.raises(ValueError, match=r"no parameter 'amplitude'.*\['amp', 'delay', 'dur'\]"):
        LFPy.StimIntElectrode(cell, idx=soma, pptype="IClamp", amplitude=0.1)
    with pytest.raises(ValueError, match=r"dur = -1 ms; give dur >= 0"):
        LFPy.StimIntElectrode(cell, idx=soma, pptype="IClamp", amp=0.1, dur=-1.0)
    assert not cell.pointprocesses

    with pytest.raises(UnsupportedFeatureError, match="use model_input"):
        cell.input_events()
    with pytest.raises(ValueError, match="negative conductances"):
        cell.simulate(history_events=-np.ones((cell.n_event_channels, cell.window_ms)))


def test_surrogate_network_refuses_a_drive_model(drive_checkpoint):
    from surrogate_cell.network.templates import CellTemplate

    with pytest.raises(UnsupportedFeatureError, match="drive models are not supported in SurrogateNetwork yet"):
        CellTemplate(drive_checkpoint, {}, "Population 'E'")


def test_a_drive_checkpoint_must_read_the_drive_channels(tmp_path):
    """A checkpoint that says ``input_kind: drive`` but has an event model's channels is refused."""
    import json

    import torch

    from surrogate_cell.cells import l5pc
    from surrogate_cell.cells.layout import SYNAPSE_SECTION_TYPES, cell_layout
    from surrogate_cell.checkpoint import CheckpointError, save_untrained_checkpoint

    path = tmp_path / "mislabelled.pt"
    save_untrained_checkpoint(path, cell_layout(l5pc(), SYNAPSE_SECTION_TYPES))
    payload = torch.load(path, weights_only=True)
    meta = json.loads(payload["meta"])
    meta["cell"]["input_kind"] = "drive"
    payload["meta"] = json.dumps(meta)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"input_kind is 'drive'.*1936 channels.*inconsistent"):
        SurrogateCell(model=path, tstop=10.0, device="cpu")
    meta["cell"]["input_kind"] = "spikes"
    payload["meta"] = json.dumps(meta)
    torch.save(payload, path)
    with pytest.raises(CheckpointError, match=r"input_kind is 'spikes'.*\['events', 'drive'\]"):
        SurrogateCell(model=path, tstop=10.0, device="cpu")
