"""SurrogateCell as a drop-in LFPy cell: real LFPy/NEURON geometry, a random-weight MH checkpoint.

The checkpoint is built here for the built-in default cell (``l5pc()``): its cell identity and
input map come from ``cell_layout``, the model is a tiny MH at random initialisation and the
normalisation is -70 +- 5 mV on every segment. The last tower layer is scaled to zero, so
every voltage output equals its bias (|z| <= 1/sqrt(fan_in)): a free run stays within
-70 +- 5 mV and can never diverge, which keeps these tests about the LFPy plumbing.
"""

from __future__ import annotations

import json
import subprocess
import sys

import h5py
import LFPy
import numpy as np
import pytest
import torch

from surrogate_cell.cell import (
    SurrogateCell,
    SynapseMappingError,
    SynapseMappingWarning,
    UnsupportedFeatureError,
)
from surrogate_cell.cells import l5pc
from surrogate_cell.cells.layout import SYNAPSE_SECTION_TYPES, cell_layout
from surrogate_cell.checkpoint import CheckpointError, save_untrained_checkpoint
from surrogate_cell.device import DeviceError, select_device
from surrogate_cell.engine import FullWindowStepper
from surrogate_cell.spikes import upward_crossing_times
from surrogate_cell.synapses import as_recorded_by_neuron, synapse_kinetics, synaptic_current_na

pytestmark = pytest.mark.neuron  # SurrogateCell builds its LFPy/NEURON geometry

TSTOP_MS = 20.0


def write_checkpoint(path, layout, segment_hash=None) -> None:
    """A random-weight tiny MH checkpoint for ``layout`` (optionally claiming another cell's hash)."""
    save_untrained_checkpoint(path, layout)
    if segment_hash is not None:
        payload = torch.load(path, weights_only=True)
        meta = json.loads(payload["meta"])
        meta["cell"]["segment_hash"] = segment_hash
        payload["meta"] = json.dumps(meta)
        torch.save(payload, path)


@pytest.fixture(scope="module")
def reference():
    """Layout and geometry of the default l5pc, moved by ``move``."""
    cell = l5pc()
    layout = cell_layout(cell, SYNAPSE_SECTION_TYPES)
    move(cell)
    geometry = {name: getattr(cell, name).copy() for name in ("x", "y", "z", "d", "area", "length")}
    return {"layout": layout, "geometry": geometry, "totnsegs": cell.totnsegs,
            "closest": cell.get_closest_idx(x=0.0, y=100.0, z=400.0),
            "apic": cell.get_idx("apic"), "M": cell.get_transformation_matrix_vmem_to_imem()}


def move(cell) -> None:
    cell.set_rotation(x=0.3, y=-0.2, z=1.1)
    cell.set_pos(x=50.0, y=-20.0, z=10.0)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, reference):
    path = tmp_path_factory.mktemp("model") / "random.pt"
    write_checkpoint(path, reference["layout"])
    return path


@pytest.fixture
def cell(checkpoint):
    return SurrogateCell(model=checkpoint, tstop=TSTOP_MS, dt=1.0, device="cpu")


def dendrite_index(cell, kind="apic") -> int:
    return int(cell.get_idx(kind)[5])


def add_synapse(cell, idx, times, syntype="AMPANMDA", **kwargs):
    kwargs = {"weight": 1.0, **kwargs}
    synapse = LFPy.Synapse(cell, idx=idx, syntype=syntype, **kwargs)
    synapse.set_spike_times(np.asarray(times, dtype=float))
    return synapse


# ------------------------------------------------------------------ geometry and simulate


def test_geometry_and_lfpy_methods_match_the_neuron_cell(cell, reference):
    move(cell)
    assert isinstance(cell, LFPy.Cell)
    assert cell.totnsegs == reference["totnsegs"]
    for name, values in reference["geometry"].items():
        np.testing.assert_allclose(getattr(cell, name), values, err_msg=name)
    assert cell.get_closest_idx(x=0.0, y=100.0, z=400.0) == reference["closest"]
    np.testing.assert_array_equal(cell.get_idx("apic"), reference["apic"])
    np.testing.assert_allclose(cell.get_vmem_to_imem_matrix(), reference["M"])


def test_simulate_fills_lfpy_results(cell):
    move(cell)
    add_synapse(cell, dendrite_index(cell), [3.0, 7.5])
    add_synapse(cell, dendrite_index(cell, "dend"), [5.2], syntype="GABAA", e=-80.0)
    cell.simulate(rec_vmem=True, rec_imem=True)

    n_t = int(TSTOP_MS) + 1
    np.testing.assert_array_equal(cell.tvec, np.arange(n_t, dtype=float))
    assert cell.vmem.shape == cell.imem.shape == (cell.totnsegs, n_t)
    assert cell.vmem.dtype == cell.imem.dtype == np.float64
    np.testing.assert_array_equal(cell.vmem[:, 0], cell.v_init)  # default start: all at v_init
    assert np.all(np.abs(cell.vmem[:, 1:] + 70.0) <= 5.0)  # outputs = biases, see module docstring
    np.testing.assert_array_equal(cell.somav, cell.vmem[cell.soma_segment])
    np.testing.assert_allclose(cell.imem, cell.get_transformation_matrix_vmem_to_imem() @ cell.vmem)
    total = np.abs(cell.imem.sum(axis=0))
    assert np.all(total < 1e-6 * np.abs(cell.imem).max())
    np.testing.assert_array_equal(
        cell.spike_times, upward_crossing_times(cell.somav, 1.0, cell.spike_threshold, cell.spike_refractory_ms))


def test_every_probe_gets_its_matrix_times_imem(cell, tmp_path):
    cell.set_pos(z=-cell.z.min() + 50.0)  # above the MEA plane
    z_contacts = np.linspace(0.0, 1000.0, 5)
    zeros = np.zeros_like(z_contacts)
    top = cell.z.max() + 50.0
    probes = [
        LFPy.RecExtElectrode(cell, x=zeros + 30.0, y=zeros, z=z_contacts, method="linesource"),
        LFPy.CurrentDipoleMoment(cell),
        LFPy.PointSourcePotential(cell, x=zeros + 30.0, y=zeros, z=z_contacts),
        LFPy.LineSourcePotential(cell, x=zeros + 30.0, y=zeros, z=z_contacts),
        LFPy.RecMEAElectrode(cell, x=np.array([0.0, 100.0]), y=np.zeros(2), z=np.zeros(2),
                             h=top, z_shift=0.0, method="pointsource"),
        LFPy.RecExtElectrode(cell, x=np.array([60.0]), y=np.array([0.0]), z=np.array([500.0])),
    ]
    add_synapse(cell, dendrite_index(cell), [2.0])
    cell.simulate(probes=probes, rec_imem=True, to_file=True, file_name=tmp_path / "probes")

    for probe in probes:
        assert probe.data.shape[1] == cell.tvec.size
        np.testing.assert_allclose(probe.data, probe.get_transformation_matrix() @ cell.imem)
    with h5py.File(tmp_path / "probes.h5") as h5:
        assert sorted(h5) == sorted(["RecExtElectrode", "CurrentDipoleMoment", "PointSourcePotential",
                                     "LineSourcePotential", "RecMEAElectrode", "RecExtElectrode1"])
        np.testing.assert_allclose(h5["RecExtElectrode1"][()], probes[-1].data)


def test_given_history_sets_the_start_and_runs_are_deterministic(cell):
    rng = np.random.default_rng(1)
    history = -70.0 + rng.normal(0.0, 2.0, (cell.totnsegs, cell.window_ms + 30))
    add_synapse(cell, dendrite_index(cell), [1.0, 4.0])
    cell.simulate(rec_vmem=True, history_mv=history)
    first = cell.vmem.copy()
    np.testing.assert_array_equal(first[:, 0], history[:, -1])
    cell.simulate(rec_vmem=True, history_mv=history)
    np.testing.assert_array_equal(cell.vmem, first)
    with pytest.raises(ValueError, match="history_mv must have shape"):
        cell.simulate(history_mv=history[:, :10])
    with pytest.raises(ValueError, match="history_events must have shape"):
        cell.simulate(history_events=np.zeros((cell.totnsegs, cell.window_ms)))


def test_record_potential_gives_the_segment_voltage(cell):
    synapse = LFPy.Synapse(cell, idx=dendrite_index(cell), syntype="AMPANMDA", weight=1.0,
                           record_potential=True)
    synapse.set_spike_times(np.array([3.0]))
    cell.simulate(rec_vmem=True)
    np.testing.assert_array_equal(synapse.v, cell.vmem[synapse.idx])


@pytest.mark.parametrize("cell_kwargs", [dict(dt=2 ** -4, tstop=5.0), dict(dt=0.025, tstop=4.0),
                                         dict(dt=0.5, tstop=6.5), dict(dt=2 ** -3, tstart=-20.0, tstop=3.0)],
                         ids=["dt1/16", "dt0.025", "dt0.5", "warm-up"])
def test_recordings_come_on_the_cells_dt_grid_as_lfpy_builds_it(checkpoint, cell_kwargs):
    shapes = {}
    for label, make in (("neuron", lambda: l5pc(**cell_kwargs)),
                        ("surrogate", lambda: SurrogateCell(model=checkpoint, device="cpu", **cell_kwargs))):
        cell = make()
        probe = LFPy.RecExtElectrode(cell, x=np.array([50.0]), y=np.zeros(1), z=np.zeros(1))
        cell.simulate(probes=[probe], rec_vmem=True, rec_imem=True)
        shapes[label] = (cell.tvec.copy(), cell.somav.shape, cell.vmem.shape, cell.imem.shape, probe.data.shape)
        del cell
    np.testing.assert_allclose(shapes["surrogate"][0], shapes["neuron"][0], atol=1e-9)
    assert shapes["surrogate"][1:] == shapes["neuron"][1:]


def simulated_vmem(checkpoint, spike_times, **cell_kwargs) -> tuple[np.ndarray, np.ndarray]:
    """(tvec, vmem) of a surrogate run with one dendritic synapse (one cell at a time, as in LFPy)."""
    cell = SurrogateCell(model=checkpoint, device="cpu", **cell_kwargs)
    add_synapse(cell, dendrite_index(cell), spike_times)
    cell.simulate(rec_vmem=True)
    return cell.tvec, cell.vmem


def test_values_between_model_steps_are_interpolated_linearly(checkpoint):
    _, coarse = simulated_vmem(checkpoint, [0.5, 2.0], tstop=6.0, dt=1.0)
    _, fine = simulated_vmem(checkpoint, [0.5, 2.0], tstop=6.0, dt=0.25)
    np.testing.assert_allclose(fine[:, ::4], coarse, atol=1e-12)
    np.testing.assert_allclose(fine[:, 1::4], 0.75 * coarse[:, :-1] + 0.25 * coarse[:, 1:], atol=1e-12)


def test_a_negative_tstart_is_a_warm_up_whose_input_acts(checkpoint):
    tvec, warm = simulated_vmem(checkpoint, [-8.0, -3.0], tstart=-10.0, tstop=5.0, dt=0.25)
    _, shifted = simulated_vmem(checkpoint, [2.0, 7.0], tstop=15.0, dt=1.0)
    np.testing.assert_array_equal(tvec, np.arange(21) * 0.25)
    np.testing.assert_allclose(warm[:, ::4], shifted[:, 10:], atol=1e-12)
    with pytest.raises(SynapseMappingError, match="before tstart"):
        simulated_vmem(checkpoint, [-12.0], tstart=-10.0, tstop=5.0, dt=0.25)


# ------------------------------------------------------------------ synapse mapping


def test_excitatory_spike_lands_in_its_segment_bin(cell):
    idx = dendrite_index(cell)
    add_synapse(cell, idx, [10.3])
    sparse = cell.input_events()
    assert sparse.n_events == 1 and sparse.shape == (cell.n_event_channels, int(TSTOP_MS))
    events = sparse.toarray()
    channel = int(np.flatnonzero(cell.input_segments == idx)[0])
    assert events.shape == (cell.n_event_channels, int(TSTOP_MS))
    assert events.dtype == np.uint8
    assert events[channel, 10] == 1 and events.sum() == 1
    assert cell.event_channel(idx, "exc") == channel


class RecordingStepper(FullWindowStepper):
    """The reference stepper, remembering the events it was given at each step."""

    def __init__(self, *args, **kwargs):
        super().__init__(*args, **kwargs)
        self.received = []

    def step(self, events):
        self.received.append(events.cpu().numpy()[0].copy())
        return super().step(events)


def test_events_of_bin_k_drive_step_k(checkpoint):
    steppers = []

    def recording_stepper(*args):
        steppers.append(RecordingStepper(*args))
        return steppers[-1]

    cell = SurrogateCell(model=checkpoint, tstop=TSTOP_MS, device="cpu", stepper=recording_stepper)
    idx = dendrite_index(cell)
    add_synapse(cell, idx, [10.3])
    cell.simulate()
    received = np.array(steppers[0].received)
    assert received.shape == (int(TSTOP_MS), cell.n_event_channels)
    np.testing.assert_array_equal(np.argwhere(received), [[10, cell.event_channel(idx, "exc")]])


def test_inhibitory_and_foreign_synapses_by_reversal_potential(cell):
    idx = dendrite_index(cell, "dend")
    n_inputs = cell.input_segments.size
    add_synapse(cell, idx, [1.0], syntype="GABAA")
    add_synapse(cell, idx, [2.0], syntype="Exp2Syn", e=0.0)
    add_synapse(cell, idx, [3.0], syntype="ExpSyn", e=-75.0)
    add_synapse(cell, idx, [4.0], syntype="ExpSyn")  # NEURON's default e = 0 mV
    with pytest.warns(SynapseMappingWarning, match="Exp2Syn, ExpSyn"):
        events = cell.input_events().toarray()
    row = int(np.flatnonzero(cell.input_segments == idx)[0])
    assert events[n_inputs + row, 1] == 1 and events[row, 2] == 1
    assert events[n_inputs + row, 3] == 1 and events[row, 4] == 1
    assert events.sum() == 4


def test_several_events_in_one_bin_count_once_with_a_warning(cell):
    idx = dendrite_index(cell)
    add_synapse(cell, idx, [5.1, 5.8, 6.0])
    add_synapse(cell, idx, [6.4])  # second synapse on the same segment: same channel
    with pytest.warns(SynapseMappingWarning, match="more than one"):
        events = cell.input_events().toarray()
    channel = cell.event_channel(idx, "exc")
    np.testing.assert_array_equal(np.flatnonzero(events[channel]), [5, 6])
    assert events.max() == 1


def test_spikes_after_tstop_never_act(cell):
    add_synapse(cell, dendrite_index(cell), [TSTOP_MS - 0.5, TSTOP_MS, TSTOP_MS + 3.0])
    events = cell.input_events().toarray()
    assert events.sum() == 1 and events[:, -1].sum() == 1


@pytest.mark.parametrize(("syntype", "kwargs", "on_soma", "message"), [
    ("AMPANMDA", {"weight": 0.5}, False, "weight 0.5"),
    ("Exp2Syn", {"e": -50.0}, False, "neither excitatory"),
    ("AMPANMDA", {"e": -80.0}, False, "trained with AMPANMDA"),
    ("AMPANMDA", {}, True, "has no model input"),
    ("NoSuchSynapse", {}, False, "not a NEURON point process"),
])
def test_synapses_the_model_never_saw_are_refused(cell, syntype, kwargs, on_soma, message):
    idx = cell.soma_segment if on_soma else dendrite_index(cell)
    with pytest.raises(SynapseMappingError, match=message):
        add_synapse(cell, idx, [2.0], syntype=syntype, **kwargs)


@pytest.mark.neuron
@pytest.mark.parametrize("syntype, weight, kwargs", [
    ("AMPANMDA", 1.0, {}), ("GABAA", 1.0, {}), ("ExpSyn", 0.004, dict(e=0.0, tau=2.0)),
    ("Exp2Syn", 0.003, dict(e=-80.0, tau1=0.5, tau2=5.0))])
def test_synaptic_currents_follow_neurons_kinetics(syntype, weight, kwargs):
    """The current formula, fed NEURON's own segment voltage, gives NEURON's recorded current."""
    cell = l5pc(tstop=80.0, dt=2 ** -5)
    times = np.array([5.0, 12.3, 12.9, 40.0])
    synapse = LFPy.Synapse(cell, idx=cell.get_closest_idx(z=400.0, section="apic"), syntype=syntype,
                           weight=weight, record_current=True, record_potential=True, **kwargs)
    synapse.set_spike_times(times)
    mechanism = cell._hoc_synlist[0]
    parameters = {name: getattr(mechanism, name) for name in dir(mechanism)
                  if not name.startswith("_") and isinstance(getattr(mechanism, name), float)}
    del mechanism  # no reference may outlive the cell's sections
    cell.simulate()
    expected = as_recorded_by_neuron(
        synaptic_current_na(synapse_kinetics(syntype, parameters), times, weight, cell.tvec, synapse.v))
    assert np.abs(synapse.i).max() > 1e-4
    # NEURON evaluates v on its staggered fixed-step grid: within a few % of the peak current
    assert np.abs(expected - synapse.i).max() <= 0.04 * np.abs(synapse.i).max()
    cell.strip_hoc_objects()


def test_synaptic_currents_are_recorded_on_tvec(cell):
    synapse = add_synapse(cell, dendrite_index(cell), [3.0, 9.0], record_current=True)
    cell.simulate()
    assert synapse.i.shape == cell.tvec.shape
    assert np.all(synapse.i[cell.tvec < 3.0] == 0.0) and synapse.i[cell.tvec > 4.0].min() < 0.0  # inward
    with pytest.raises(UnsupportedFeatureError, match="record_current"):
        LFPy.Synapse(cell, idx=dendrite_index(cell), syntype="AlphaSynapse", e=0.0, weight=1.0, record_current=True)


def test_negative_spike_times_are_refused(cell):
    add_synapse(cell, dendrite_index(cell), [-1.0, 2.0])
    with pytest.raises(SynapseMappingError, match="before tstart"):
        cell.input_events()


NETSTIM_SCRIPT = """
import json, sys
import LFPy
from neuron import h
from surrogate_cell import SurrogateCell
from surrogate_cell.cells import l5pc
cell = l5pc(tstop=200.0) if sys.argv[1] == "neuron" else SurrogateCell(model=sys.argv[1], tstop=200.0)
settings = [("AMPANMDA", 300.0, dict(noise=1.0, start=10.0, number=20, interval=8.0, seed=3)),
            ("GABAA", 600.0, dict(noise=0.5, start=0.0, number=5, interval=20.0, seed=4)),
            ("AMPANMDA", 200.0, None)]
recorders, connections = [], []
for syntype, z, netstim in settings:
    synapse = LFPy.Synapse(cell, idx=cell.get_closest_idx(z=z, section="apic"), syntype=syntype, weight=1.0)
    if netstim is None:
        synapse.set_spike_times(__import__("numpy").array([5.0, 50.0]))
    else:
        synapse.set_spike_times_w_netstim(**netstim)
if sys.argv[1] == "neuron":
    for netstim in cell._hoc_netstimlist:
        recorders.append(h.Vector())
        connections.append(h.NetCon(netstim, None))
        connections[-1].record(recorders[-1])
    cell.simulate()
    trains = [list(1.0 + times.as_numpy()) for times in recorders[:2]] + [[5.0, 50.0]]  # NetCon delay 1 ms
else:
    trains = [list(times) for times in cell.input_spike_times()]
print("TRAINS", json.dumps(trains))
"""


def spike_trains_of_script(which: str) -> list:
    result = subprocess.run([sys.executable, "-c", NETSTIM_SCRIPT, which], capture_output=True, text=True,
                            timeout=600)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.split("TRAINS", 1)[1])


@pytest.mark.neuron
def test_netstim_spike_trains_are_the_ones_neuron_gives(checkpoint):
    expected, got = spike_trains_of_script("neuron"), spike_trains_of_script(str(checkpoint))
    assert len(expected[0]) > 5 and len(expected[1]) > 2  # the noisy trains did fire
    for times_neuron, times_surrogate in zip(expected, got):
        np.testing.assert_allclose(times_surrogate, times_neuron, atol=1e-9)


# ------------------------------------------------------------------ refusals


@pytest.mark.parametrize(("arguments", "feature"), [
    ({"rec_ipas": True}, "rec_ipas"),
    ({"rec_icap": True}, "rec_icap"),
    ({"rec_variables": ["cai"]}, "rec_variables"),
    ({"variable_dt": True}, "variable_dt"),
])
def test_unsupported_simulate_options_are_refused(cell, arguments, feature):
    with pytest.raises(UnsupportedFeatureError, match=feature):
        cell.simulate(**arguments)


def test_current_clamp_is_refused(cell):
    with pytest.raises(UnsupportedFeatureError, match="StimIntElectrode, pptype IClamp"):
        LFPy.StimIntElectrode(cell, idx=cell.soma_segment, pptype="IClamp", amp=0.5, dur=10.0, delay=1.0)


def test_extracellular_features_are_refused(checkpoint):
    cell = SurrogateCell(model=checkpoint, tstop=TSTOP_MS, device="cpu", extracellular=True)
    t_ext = np.arange(3.0)
    with pytest.raises(UnsupportedFeatureError, match="insert_v_ext"):
        cell.insert_v_ext(np.zeros((cell.totnsegs, 3)), t_ext)
    electrode = LFPy.RecExtElectrode(cell, x=np.zeros(1), y=np.zeros(1), z=np.zeros(1))
    with pytest.raises(UnsupportedFeatureError, match="extracellular stimulation"):
        cell.enable_extracellular_stimulation(electrode)


def test_a_model_of_another_cell_is_refused(tmp_path, reference):
    path = tmp_path / "other.pt"
    write_checkpoint(path, reference["layout"], segment_hash="f" * 64)
    with pytest.raises(CheckpointError, match="trained on a different cell.*'builder': 'l5pc'"):
        SurrogateCell(model=path, device="cpu")


def test_unknown_model_name_lists_the_shipped_models():
    with pytest.raises(CheckpointError,
                       match="Unknown model 'l5pc-huge'.*Shipped model names: basket-default, l5pc-default"):
        SurrogateCell(model="l5pc-huge")


def test_other_temperature_is_refused(checkpoint):
    with pytest.raises(UnsupportedFeatureError, match="celsius=20"):
        SurrogateCell(model=checkpoint, celsius=20.0, device="cpu")


@pytest.mark.skipif(torch.cuda.is_available(), reason="needs a machine without CUDA")
def test_cuda_without_cuda_is_refused(checkpoint):
    with pytest.raises(DeviceError, match="CUDA is not available"):
        SurrogateCell(model=checkpoint, device="cuda")


def test_default_device_is_cuda_when_available():
    assert select_device(None).type == ("cuda" if torch.cuda.is_available() else "cpu")


def test_low_precision_is_cuda_only(checkpoint):
    with pytest.raises(DeviceError, match="only supported on CUDA"):
        SurrogateCell(model=checkpoint, device="cpu", dtype="float16")


def test_probe_files_use_lfpys_data_set_names(tmp_path):
    names = {}
    for label, make in (("neuron", lambda: l5pc(tstop=2.0)),
                        ("surrogate", lambda: SurrogateCell(model="l5pc-default", tstop=2.0))):
        cell = make()
        probes = [LFPy.RecExtElectrode(cell, x=np.array([50.0]), y=np.zeros(1), z=np.zeros(1)),
                  LFPy.CurrentDipoleMoment(cell)]
        cell.simulate(probes=probes, to_file=True, file_name=tmp_path / label)
        with h5py.File(tmp_path / f"{label}.h5") as h5:
            names[label] = sorted(h5)
        del cell
    assert names["surrogate"] == names["neuron"]


def test_synapse_index_may_be_a_one_element_array_as_lfpy_helpers_return(cell):
    idx = cell.get_rand_idx_area_norm(section="dend", nidx=1)
    assert isinstance(idx, np.ndarray) and idx.size == 1
    synapse = LFPy.Synapse(cell, idx=idx, syntype="AMPANMDA", weight=1.0, record_potential=True)
    synapse.set_spike_times(np.array([2.0]))
    cell.simulate(rec_vmem=True)
    np.testing.assert_array_equal(synapse.v, cell.vmem[int(idx[0])])
    with pytest.raises(SynapseMappingError, match="one segment index"):
        LFPy.Synapse(cell, idx=np.array([1, 2]), syntype="AMPANMDA", weight=1.0)
