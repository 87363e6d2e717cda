"""LFPy's own test suite (``LFPy/test/`` in the installed package), adapted to ``SurrogateCell``.

Issue #27, point 6. Every test runs the shipped model, ``SurrogateCell(model="l5pc-default")``,
which rebuilds the Hay-biophysics cell on the package's synthetic morphology. Where LFPy's
test compares values (with hard-coded numbers for its toy morphologies, or with NEURON), the
surrogate is compared here with an ``l5pc()`` NEURON cell built with the same arguments. As in
LFPy, building a cell deletes all NEURON sections: one cell exists at a time, what is compared
is copied into numpy arrays first, and NEURON cells with synapses are stripped of their hoc
objects before the next cell is built. What ``tests/test_surrogate_cell.py`` already covers (on
a random-weight checkpoint) is not repeated.

LFPy test -> test here
----------------------
test_cell.py
    tvec_00..09, with_recextelectrode_00..03 -> test_tvec_and_electrode_data_on_lfpys_grid,
        test_negative_tstart_needs_a_power_of_two_dt
    set_pos_*, set_rotation_*, get_idx_00, get_closest_idx_00/01, get_idx_children_00,
    get_idx_parent_children_00/01, get_idx_name_00, get_rand_idx_area_norm_00,
    get_rand_prob_area_norm(_from_idx)_00, get_intersegment_vector/distance_00,
    distort_geometry_00, chiral_morphology_* (on l5pc, not LFPy's files)
        -> test_geometry_helpers_match_the_neuron_cell (values from the NEURON cell instead of
           LFPy's hard-coded ones for ball_and_sticks.hoc)
    strip_hoc_objects_00, cellpickler_00 -> test_strip_hoc_objects_and_cellpickler,
        test_cellpickler_with_a_synapse (known gap)
    set_point_process_00 -> test_clamps_are_refused
    simulate_current_dipole_moment_00..02, get_multi_current_dipole_moments_00..04,
    get_axial_currents_from_vmem_* -> test_dipoles_and_multi_dipoles
    simulate_recorder_00..05 (+ test_imem.py v_init_00..04) -> test_cold_start_*
    simulate_cvode_00, with_recextelectrode_and_cvode_00 -> test_lfpys_refused_calls
test_pointprocess.py
    PointProcess_00 -> test_point_process_positions_follow_the_cell
    Synapse_00..05 -> test_synapse_recordings_on_tvec_as_neuron_gives_them,
        test_synapse_parameters_of_lfpys_tests_are_refused
    StimIntElectrode_00..03 -> test_clamps_are_refused
test_recextelectrode.py
    method_pointsource/linesource/root_as_point, *_contact_average_r10n100, sigma_inputs,
    bad_cell_position_in_slice -> test_geometry_helpers_match_the_neuron_cell (probe matrices
        and errors) and test_probe_data_is_its_matrix_times_imem
    isotropic_version_of_anisotropic_methods, compare_anisotropic_lfp_methods
        -> test_probe_data_is_its_matrix_times_imem
    electrical_stimulation -> test_lfpys_refused_calls
test_eegmegcalc.py
    FourSphereVolumeConductor / InfiniteVolumeConductor get_transformation_matrix_00,
    InfiniteHomogeneousVolCondMEG_06 (matrices applied to a simulated dipole)
        -> test_dipole_forward_models
    InfiniteVolumeConductor get_multi_dipole_potential00..02 -> test_dipoles_and_multi_dipoles
(simulate(to_file=True) -> test_probe_files_as_lfpy_writes_them)

LFPy test groups skipped, and why
---------------------------------
- Analytic passive-stick tests (test_recextelectrode method_* against ``analytical_LFP``,
  sqeeze_cell_and_bad_position, return_comp_outside_slice, position_shifted_slice,
  slice_shift_invariance_pointsource; test_cell tstart_00; test_cell_simulate_* values):
  they drive LFPy's passive ``stick.hoc`` with a sinusoidal current (``SinSyn`` through
  ``StimIntElectrode``); neither that cell nor injected current exists for the surrogate. Their
  probe code paths are what test_probe_data_is_its_matrix_times_imem checks.
- Kirchhoff tests on hand-built sections and on LFPy's morphology files (test_cell
  get_axial_currents_from_vmem_00..16, get_imem_from_vmem_*, imem_from_vmem_13/14,
  test_morphology_import): a SurrogateCell has only its model's cell (another morphology fails
  the checkpoint's segment hash); the same identities are checked on l5pc here.
- test_cell set_synapse_00: inspects the NEURON synapse/NetCon objects, which the surrogate by
  design never creates (``SurrogateCell.set_synapse``).
- FourSphereVolumeConductor.get_dipole_potential_from_multi_dipoles (test_eegmegcalc
  get_dipole_potential_from_multi_dipoles00/01): about 13 ms per dipole, 1288 dipoles here;
  the multi-dipole decomposition itself is checked with InfiniteVolumeConductor.
- test_eegmegcalc OneSphereVolumeConductor_00..02: point sources and LFPy's stick.hoc; for
  this cell its matrix alone takes about 3 s, and it is lfpykit geometry like the probes here.
- Cell-free tests: test_lfpcalc, test_alias_method, test_tools, test_inputgenerators,
  test_misc (NEURON's own i_membrane recording), the dipole-math tests of test_eegmegcalc
  (decomposition, unit dipoles): nothing there touches a cell's simulation.
- test_templatecell, test_networkcell, test_network: TemplateCell / NetworkCell /
  LFPy.Network; a SurrogateCell is an ``LFPy.Cell``, and networks of surrogates are
  ``SurrogateNetwork`` (tests/test_network.py).
"""

from __future__ import annotations

import pickle
import warnings

import h5py
import LFPy
import numpy as np
import pytest

from surrogate_cell.cell import SurrogateCell, SynapseMappingError, SynapseMappingWarning, UnsupportedFeatureError
from surrogate_cell.cells import l5pc

pytestmark = pytest.mark.neuron  # every cell here is built by LFPy/NEURON

MODEL = "l5pc-default"
CELL_KWARGS = dict(tstop=20.0, dt=2 ** -4)
METHODS = ("pointsource", "linesource", "root_as_point")


def neuron_cell(**kwargs) -> LFPy.Cell:
    return l5pc(**{**CELL_KWARGS, **kwargs})


def surrogate_cell(**kwargs) -> SurrogateCell:
    return SurrogateCell(model=MODEL, **{**CELL_KWARGS, **kwargs})


CELLS = {"neuron": neuron_cell, "surrogate": surrogate_cell}


def release(cell) -> None:
    """Drop a NEURON cell's hoc objects (synapses, NetCons) before the next cell deletes its sections."""
    if not isinstance(cell, SurrogateCell):
        cell.strip_hoc_objects()


def assert_same(got: dict, expected: dict) -> None:
    assert got.keys() == expected.keys()
    for name, value in expected.items():
        array = np.asarray(value)
        if array.dtype.kind == "f":
            np.testing.assert_allclose(got[name], value, rtol=1e-12, atol=1e-12, err_msg=name)
        else:
            np.testing.assert_equal(got[name], value, err_msg=name)


# ------------------------------------------------------------------ geometry (test_cell.py, probes)


def contacts() -> dict:
    z = np.linspace(-200.0, 1200.0, 8)
    return dict(x=np.full(z.size, 60.0), y=np.zeros(z.size), z=z)


AVERAGED = "RecExtElectrode contact average r10n100"
SEED = 7


def make_probes(cell) -> dict:
    """One of each probe LFPy's tests build, on a laminar set of contacts beside the cell."""
    probes = {f"RecExtElectrode {method}": LFPy.RecExtElectrode(cell, **contacts(), method=method)
              for method in METHODS}
    probes["RecExtElectrode anisotropic"] = LFPy.RecExtElectrode(cell, **contacts(), sigma=[0.3, 0.3, 0.3])
    # averaged over n random points of each contact: lfpykit draws them from numpy's global generator at
    # every get_transformation_matrix() call (its seedvalue is not used), so seed before each call
    probes[AVERAGED] = LFPy.RecExtElectrode(cell, **contacts(), N=np.tile([1.0, 0.0, 0.0], (8, 1)), r=10.0,
                                            n=100, method="root_as_point")
    probes["PointSourcePotential"] = LFPy.PointSourcePotential(cell, **contacts())
    probes["LineSourcePotential"] = LFPy.LineSourcePotential(cell, **contacts())
    probes["CurrentDipoleMoment"] = LFPy.CurrentDipoleMoment(cell)
    return probes


def error_name(call) -> str:
    try:
        call()
    except Exception as error:  # the error class is what is compared
        return type(error).__name__
    return "no error"


def geometry_facts(cell) -> dict:
    """What LFPy's geometry helpers give for ``cell`` after LFPy's placement calls (numpy copies)."""
    facts = {}
    cell.set_rotation(x=0.3, y=-0.2, z=1.1)
    cell.set_pos(x=50.0, y=-20.0, z=10.0)
    for name in ("x", "y", "z", "d", "area", "length", "somapos"):
        facts[name] = np.array(getattr(cell, name), dtype=float)
    for section in ("soma", "soma[0]", "dend", "dend[3]", "apic", "apic[10]", "axon", "allsec", "nosuch"):
        facts[f"get_idx {section}"] = cell.get_idx(section=section)
    facts["get_idx list"] = cell.get_idx(section=["soma", "dend"])
    facts["get_idx z range"] = cell.get_idx(section="apic", z_min=300.0, z_max=600.0)
    for point in ((0.0, 0.0, 0.0), (-41.7, 0.0, 156.7), (100.0, 50.0, 900.0)):
        facts[f"get_closest_idx {point}"] = cell.get_closest_idx(*point)
        facts[f"get_closest_idx {point} dend"] = cell.get_closest_idx(*point, section="dend")
    facts["get_idx_children soma[0]"] = cell.get_idx_children(parent="soma[0]")
    facts["get_idx_parent_children apic[3]"] = cell.get_idx_parent_children(parent="apic[3]")
    facts["get_idx_parent_children bad"] = error_name(lambda: cell.get_idx_parent_children(parent="no_section"))
    facts["get_idx_name"] = cell.get_idx_name(idx=np.arange(0, cell.totnsegs, 37)).tolist()
    np.random.seed(1234)
    facts["get_rand_idx_area_norm"] = cell.get_rand_idx_area_norm(section="allsec", nidx=1000)
    np.random.seed(1234)
    facts["get_rand_idx_area_and_distribution_norm"] = cell.get_rand_idx_area_and_distribution_norm(
        section="apic", nidx=200, funargs=dict(loc=500.0, scale=200.0))
    facts["get_rand_prob_area_norm"] = cell.get_rand_prob_area_norm()
    facts["get_rand_prob_area_norm_from_idx"] = cell.get_rand_prob_area_norm_from_idx(idx=cell.get_idx("dend"))
    facts["get_intersegment_vector"] = np.array(cell.get_intersegment_vector(idx0=0, idx1=100))
    facts["get_intersegment_distance"] = cell.get_intersegment_distance(idx0=0, idx1=100)
    facts["get_axial_resistance"] = np.asarray(cell.get_axial_resistance())
    facts["get_dict_of_children_idx"] = {k: np.asarray(v).tolist() for k, v in cell.get_dict_of_children_idx().items()}
    facts["get_transformation_matrix_vmem_to_imem"] = cell.get_transformation_matrix_vmem_to_imem()
    for name, probe in make_probes(cell).items():
        np.random.seed(SEED)
        facts[f"matrix {name}"] = probe.get_transformation_matrix()
    facts["RecExtElectrode 4 sigmas"] = error_name(lambda: LFPy.RecExtElectrode(cell, **contacts(),
                                                                               sigma=[0.3] * 4))
    mea = dict(x=np.linspace(0.0, 1000.0, 11), y=np.zeros(11), z=np.zeros(11), sigma_T=0.3, sigma_S=1.5,
               sigma_G=0.0, h=200.0, method="pointsource")
    cell.set_pos(z=-100.0)
    facts["RecMEAElectrode below the slice"] = error_name(LFPy.RecMEAElectrode(cell, **mea).get_transformation_matrix)
    cell.set_pos(z=cell.somapos[2] - cell.z.min() + 10.0)  # the whole cell in a slice of its height
    facts["matrix RecMEAElectrode"] = LFPy.RecMEAElectrode(
        cell, **{**mea, "h": cell.z.max() + 10.0}).get_transformation_matrix()
    cell.distort_geometry(factor=0.1, nu=0.5, axis="z")
    for name in ("x", "y", "z"):
        facts[f"distorted {name}"] = getattr(cell, name).copy()
    cell.chiral_morphology(axis="x")
    facts["chiral x"] = cell.x.copy()
    return facts


@pytest.fixture(scope="module")
def neuron_geometry() -> dict:
    return geometry_facts(neuron_cell())


def test_geometry_helpers_match_the_neuron_cell(neuron_geometry):
    cell = surrogate_cell()
    assert_same(geometry_facts(cell), neuron_geometry)
    assert neuron_geometry["get_idx nosuch"].size == 0
    assert neuron_geometry["RecMEAElectrode below the slice"] == "RuntimeError"  # as LFPy's test
    assert neuron_geometry["RecExtElectrode 4 sigmas"] == "ValueError"  # as LFPy's test


def test_point_process_positions_follow_the_cell():
    cell = surrogate_cell()
    point_process = LFPy.PointProcess(cell=cell, idx=0)
    np.testing.assert_array_equal([point_process.x, point_process.y, point_process.z], cell.somapos)
    idx = cell.get_closest_idx(z=600.0, section="apic")
    synapse = LFPy.Synapse(cell, idx=idx, syntype="AMPANMDA", weight=1.0)
    cell.set_rotation(x=0.4)
    cell.set_pos(x=10.0, y=20.0, z=30.0)
    np.testing.assert_allclose([synapse.x, synapse.y, synapse.z],
                               [cell.x[idx].mean(), cell.y[idx].mean(), cell.z[idx].mean()])


@pytest.mark.slow  # the pickle holds the model (about 90 MB)
def test_strip_hoc_objects_and_cellpickler():
    cell = surrogate_cell()
    cell.simulate()
    pickled = pickle.loads(cell.cellpickler(filename=None, pickler=pickle.dumps))  # strips first
    for attribute in dir(cell):
        assert str(type(getattr(cell, attribute))) != "<class 'hoc.HocObject'>", attribute
        if not attribute.startswith("_"):
            assert type(getattr(pickled, attribute)) is type(getattr(cell, attribute)), attribute
    np.testing.assert_array_equal(pickled.somav, cell.somav)


def test_cellpickler_with_a_synapse():
    cell = surrogate_cell()
    LFPy.Synapse(cell, idx=cell.get_closest_idx(z=400.0, section="apic"), syntype="AMPANMDA",
                 weight=1.0).set_spike_times(np.array([2.0]))
    cell.cellpickler(filename=None, pickler=pickle.dumps)


# ------------------------------------------------------------------ time grid (test_cell.py tvec_*)


@pytest.mark.parametrize(("dt", "tstart"), [(2 ** -3, 0.0), (0.1, 0.0), (0.2, 0.0), (2 ** -4, -20.0)],
                         ids=["dt1/8", "dt0.1", "dt0.2", "dt1/16-warm-up"])
def test_tvec_and_electrode_data_on_lfpys_grid(dt, tstart):
    tstop = 20.0
    expected = np.linspace(0.0, tstop, int(tstop / dt) + 1)  # LFPy's test_cell_tvec_*
    tvecs = {}
    for label, make in CELLS.items():
        cell = make(dt=dt, tstart=tstart, tstop=tstop)
        electrode = LFPy.RecExtElectrode(cell, x=np.full(11, 100.0), y=np.zeros(11), z=np.linspace(1000, 0, 11),
                                         method="pointsource")
        LFPy.Synapse(cell, idx=cell.get_closest_idx(z=500.0, section="apic"), syntype="AMPANMDA",
                     weight=1.0).set_spike_times(np.array([2.0, 9.5]))
        cell.simulate(probes=[electrode], rec_imem=True)
        tvecs[label] = cell.tvec.copy()
        # test_cell_with_recextelectrode_00..03
        np.testing.assert_allclose(electrode.data, electrode.get_transformation_matrix() @ cell.imem, err_msg=label)
        assert cell.tvec.size == cell.imem.shape[1] == electrode.data.shape[1] == int(tstop / dt) + 1
        release(cell)
        del cell
    np.testing.assert_allclose(tvecs["surrogate"], expected, atol=1e-9)
    np.testing.assert_allclose(tvecs["surrogate"], tvecs["neuron"], atol=1e-9)


@pytest.mark.parametrize("dt", [0.1, 0.2])
def test_negative_tstart_needs_a_power_of_two_dt(dt):
    """LFPy's tvec_08/09 (tstart < 0 with dt 0.1 or 0.2) fail an assertion; both cells refuse at build."""
    messages = {}
    for label, make in CELLS.items():
        with pytest.raises(ValueError, match="dt = 2\\*\\*-k") as error:
            make(dt=dt, tstart=-100.0)
        messages[label] = str(error.value)
    assert messages["surrogate"] == messages["neuron"]


# ------------------------------------------------------------------ synapses (test_pointprocess.py)


T_SPIKES = (10.0, 15.0, 12.0, 14.0)
TAU_MS = 5.0


def synapse_run(make) -> dict:
    """LFPy's test_Synapse_01..05 on dendritic segments: four ExpSyn synapses recording i and/or v,
    the first driven by a NetStim (start = t - 1: the NetCon delay), the others by spike times."""
    cell = make()
    synapses = []
    for number, (record_current, record_potential) in enumerate([(True, True), (True, False), (False, True),
                                                                 (False, False)]):
        synapses.append(LFPy.Synapse(cell, idx=cell.get_closest_idx(z=300.0 + 200.0 * number, section="apic"),
                                     syntype="ExpSyn", weight=1.0, tau=TAU_MS, e=0.0,
                                     record_current=record_current, record_potential=record_potential))
    synapses[0].set_spike_times_w_netstim(noise=0.0, start=T_SPIKES[0] - 1.0, number=1)
    for synapse, t in zip(synapses[1:], T_SPIKES[1:]):
        synapse.set_spike_times(np.array([t]))
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        cell.simulate(rec_vmem=True)
    result = {"tvec": cell.tvec.copy(), "warnings": [w.category for w in caught]}
    for number, synapse in enumerate(synapses):
        result[f"has i {number}"], result[f"has v {number}"] = hasattr(synapse, "i"), hasattr(synapse, "v")
        for name in ("i", "v"):
            if hasattr(synapse, name):
                result[f"{name} {number}"] = getattr(synapse, name).copy()
        result[f"vmem {number}"] = cell.vmem[synapse.idx].copy()
    release(cell)
    return result


@pytest.fixture(scope="module")
def neuron_synapse_run() -> dict:
    return synapse_run(neuron_cell)


def test_synapse_recordings_on_tvec_as_neuron_gives_them(neuron_synapse_run):
    expected, got = neuron_synapse_run, synapse_run(surrogate_cell)
    assert SynapseMappingWarning in got["warnings"]  # ExpSyn stands in for the trained AMPANMDA synapse
    np.testing.assert_allclose(got["tvec"], expected["tvec"], atol=1e-9)
    flags = [(got[f"has i {n}"], got[f"has v {n}"]) for n in range(4)]
    assert flags == [(True, True), (True, False), (False, True), (False, False)]  # LFPy's test_Synapse_01
    assert flags == [(expected[f"has i {n}"], expected[f"has v {n}"]) for n in range(4)]
    for number in (0, 2):  # record_potential: the voltage of the synapse's segment
        np.testing.assert_array_equal(got[f"v {number}"], got[f"vmem {number}"])
        assert got[f"v {number}"].shape == got["tvec"].shape
    for number in (0, 1):  # record_current: zero up to the spike, then i = g (v - e), g = exp(-(t - t0) / tau)
        t0, i, v = T_SPIKES[number], got[f"i {number}"], got[f"vmem {number}"]
        assert i.shape == got["tvec"].shape
        after = got["tvec"] > t0
        assert np.flatnonzero(i)[0] == np.flatnonzero(expected[f"i {number}"])[0]  # same first sample as NEURON
        assert np.all(i[~after] == 0.0) and np.all(i[after] < 0.0)
        # LFPy compares the current with the synapse's exponential within 10 %
        np.testing.assert_allclose(i[after] / (v[after] - 0.0), np.exp(-(got["tvec"][after] - t0) / TAU_MS),
                                   rtol=0.1)


@pytest.mark.parametrize(("idx", "kwargs", "message"), [
    (0, dict(syntype="ExpSyn", weight=1.0, tau=5.0, e=0.0), "no model input"),  # test_Synapse_00: on the soma
    ("axon", dict(syntype="AMPANMDA", weight=1.0), "no model input"),
    (None, dict(syntype="ExpSyn", weight=0.001, tau=5.0, e=0.0), "weight 0.001"),  # cell_w_synapse_from_sections
    (None, dict(syntype="Exp2Syn", weight=0.01, tau1=0.1, tau2=2.0, e=0.0), "weight 0.01"),  # imem_from_vmem_14
], ids=["soma", "axon", "ExpSyn-weight", "Exp2Syn-weight"])
def test_synapse_parameters_of_lfpys_tests_are_refused(idx, kwargs, message):
    cell = surrogate_cell()
    if idx is None:
        idx = cell.get_closest_idx(z=400.0, section="apic")
    elif idx == "axon":
        idx = int(cell.get_idx("axon")[0])
    with pytest.raises(SynapseMappingError, match=message):
        LFPy.Synapse(cell, idx=idx, **kwargs)


# ------------------------------------------------------------------ probes (test_recextelectrode.py, eegmegcalc)


def simulated_with_probes(**cell_kwargs):
    cell = surrogate_cell(**cell_kwargs)
    LFPy.Synapse(cell, idx=cell.get_closest_idx(z=400.0, section="apic"), syntype="AMPANMDA",
                 weight=1.0).set_spike_times(np.array([2.0, 5.0]))
    LFPy.Synapse(cell, idx=cell.get_closest_idx(z=100.0, section="dend"), syntype="GABAA",
                 weight=1.0).set_spike_times(np.array([3.0]))
    probes = make_probes(cell)
    np.random.seed(SEED)  # the averaged contacts' random points (the only random draw in simulate)
    cell.simulate(probes=list(probes.values()), rec_imem=True, rec_vmem=True)
    return cell, probes


def test_probe_data_is_its_matrix_times_imem():
    cell, probes = simulated_with_probes()
    for name, probe in probes.items():
        np.random.seed(SEED)
        matrix = probe.get_transformation_matrix()
        assert probe.data.shape == (matrix.shape[0], cell.tvec.size), name
        assert np.isfinite(probe.data).all(), name
        np.testing.assert_allclose(probe.data, matrix @ cell.imem, err_msg=name)
    lfp = {method: probes[f"RecExtElectrode {method}"].data for method in METHODS}
    assert np.abs(lfp["linesource"]).max() > 0.0
    # test_isotropic_version_of_anisotropic_methods: sigma [s, s, s] gives the isotropic linesource LFP
    np.testing.assert_allclose(probes["RecExtElectrode anisotropic"].data, lfp["linesource"], rtol=1e-7)
    # test_compare_anisotropic_lfp_methods: the methods differ near the cell, agree far from it
    assert not np.array_equal(lfp["pointsource"], lfp["linesource"])
    assert not np.array_equal(lfp["pointsource"], lfp["root_as_point"])
    far = LFPy.RecExtElectrode(cell, x=np.array([1e5]), y=np.zeros(1), z=np.zeros(1), method="pointsource")
    far_ls = LFPy.RecExtElectrode(cell, x=np.array([1e5]), y=np.zeros(1), z=np.zeros(1), method="linesource")
    np.testing.assert_allclose(far.get_transformation_matrix() @ cell.imem,
                               far_ls.get_transformation_matrix() @ cell.imem, rtol=1e-4, atol=1e-15)
    # test_cell_simulate_current_dipole_moment_00..02: P = r_mid^T imem
    midpoints = np.c_[cell.x.mean(axis=-1), cell.y.mean(axis=-1), cell.z.mean(axis=-1)].T
    np.testing.assert_allclose(probes["CurrentDipoleMoment"].data, midpoints @ cell.imem, rtol=1e-10, atol=1e-9)


@pytest.mark.slow
def test_dipoles_and_multi_dipoles():
    cell, probes = simulated_with_probes(tstop=10.0)
    dipole = probes["CurrentDipoleMoment"].data
    # test_get_multi_current_dipole_moments_00..04: the axial-current dipoles sum to P
    multi_dipoles, locations = cell.get_multi_current_dipole_moments()
    assert multi_dipoles.shape[1:] == (3, cell.tvec.size) and locations.shape == (multi_dipoles.shape[0], 3)
    np.testing.assert_allclose(multi_dipoles.sum(axis=0), dipole, rtol=1e-5, atol=1e-9 * np.abs(dipole).max())
    axial, _, _ = cell.get_axial_currents_from_vmem()
    assert axial.shape == (multi_dipoles.shape[0], cell.tvec.size)
    # test_get_multi_dipole_potential00..02: far away, the multi-dipole potential is the electrode's
    far = np.array([[0.0, 0.0, 10000.0]])
    electrode = LFPy.RecExtElectrode(cell, x=far[:, 0], y=far[:, 1], z=far[:, 2])
    potential = LFPy.InfiniteVolumeConductor(sigma=0.3).get_multi_dipole_potential(cell, far)
    np.testing.assert_allclose(potential, electrode.get_transformation_matrix() @ cell.imem, rtol=1e-3,
                               atol=1e-3 * np.abs(potential).max())


def test_dipole_forward_models():
    """Four-sphere EEG, infinite-medium potential and MEG applied to the simulated dipole moment."""
    cell, probes = simulated_with_probes(tstop=10.0)
    dipole = probes["CurrentDipoleMoment"].data
    n_t = cell.tvec.size
    location = np.array([0.0, 0.0, 78000.0])
    four_sphere = LFPy.FourSphereVolumeConductor(np.array([[0.0, 0.0, 90000.0], [0.0, 85000.0, 0.0]]))
    eeg = four_sphere.get_transformation_matrix(location) @ dipole
    assert eeg.shape == (2, n_t)
    np.testing.assert_allclose(eeg, four_sphere.get_dipole_potential(dipole, location), rtol=1e-10)
    sites = np.array([[0.0, 0.0, 1000.0], [500.0, 0.0, 0.0]])
    infinite = LFPy.InfiniteVolumeConductor(sigma=0.3)
    phi = infinite.get_transformation_matrix(sites) @ dipole
    assert phi.shape == (2, n_t)
    np.testing.assert_allclose(phi, infinite.get_dipole_potential(dipole, sites), rtol=1e-10)
    sensors = np.array([[0.0, 0.0, 10000.0], [10000.0, 0.0, 0.0]])
    meg = LFPy.InfiniteHomogeneousVolCondMEG(sensors)
    field = meg.get_transformation_matrix(cell.somapos) @ dipole
    assert field.shape == (2, 3, n_t)
    np.testing.assert_allclose(field, meg.calculate_H(dipole, cell.somapos), rtol=1e-10)
    spherical = LFPy.SphericallySymmetricVolCondMEG(r=sensors + location)
    field = spherical.get_transformation_matrix(location) @ dipole
    assert field.shape == (2, 3, n_t)
    np.testing.assert_allclose(field, spherical.calculate_H(dipole, location), rtol=1e-10)


PROBE_CLASSES = ("RecExtElectrode", "RecMEAElectrode", "PointSourcePotential", "LineSourcePotential",
                 "CurrentDipoleMoment")


def probe_file(make, path) -> dict:
    cell = make(tstop=5.0)
    cell.set_pos(z=cell.somapos[2] - cell.z.min() + 10.0)  # inside the MEA slice
    LFPy.Synapse(cell, idx=cell.get_closest_idx(z=400.0, section="apic"), syntype="AMPANMDA",
                 weight=1.0).set_spike_times(np.array([1.0]))
    probes = [LFPy.RecExtElectrode(cell, **contacts()),
              LFPy.RecMEAElectrode(cell, x=np.array([20.0, 100.0]), y=np.zeros(2), z=np.zeros(2),
                                   h=cell.z.max() + 10.0, method="pointsource"),
              LFPy.PointSourcePotential(cell, **contacts()), LFPy.LineSourcePotential(cell, **contacts()),
              LFPy.CurrentDipoleMoment(cell)]
    cell.simulate(probes=probes, rec_imem=True, to_file=True, file_name=path)
    with h5py.File(f"{path}.h5") as h5:
        written = {name: h5[name][()] for name in h5}
    products = [probe.get_transformation_matrix() @ cell.imem for probe in probes]
    release(cell)
    return {"written": written, "products": products}


def test_probe_files_as_lfpy_writes_them(tmp_path):
    """simulate(to_file=True): one data set per probe, named by its class (LFPy's names), holding probe.data."""
    files = {label: probe_file(make, tmp_path / label) for label, make in CELLS.items()}
    for label, file in files.items():
        assert sorted(file["written"]) == sorted(PROBE_CLASSES), label
        for name, product in zip(PROBE_CLASSES, file["products"]):
            assert np.isfinite(file["written"][name]).all(), f"{label} {name}"
            np.testing.assert_allclose(file["written"][name], product, err_msg=f"{label} {name}")
    for name in PROBE_CLASSES:
        assert files["surrogate"]["written"][name].shape == files["neuron"]["written"][name].shape


# ------------------------------------------------------------------ what a surrogate cannot do


@pytest.mark.parametrize(("pptype", "kwargs"), [
    ("IClamp", dict(amp=1.0, dur=20.0, delay=10.0)),  # test_StimIntElectrode_00/03
    ("VClamp", dict(amp=[-65, -55, -65], dur=[10, 20, 10])),  # test_StimIntElectrode_01
    ("SEClamp", dict(amp1=-65, dur1=10, amp2=-55.0, dur2=20, amp3=-65, dur3=10)),  # test_StimIntElectrode_02
    ("SinSyn", dict(delay=0.0, dur=1000.0, pkamp=1.0, freq=100.0, phase=0, bias=0.0)),  # the stick tests
])
def test_clamps_are_refused(pptype, kwargs):
    cell = surrogate_cell()
    with pytest.raises(UnsupportedFeatureError, match=f"StimIntElectrode, pptype {pptype}"):
        LFPy.StimIntElectrode(cell=cell, idx=0, pptype=pptype, record_potential=True, **kwargs)
    with pytest.raises(UnsupportedFeatureError, match="injected currents"):  # test_cell_set_point_process_00
        cell.set_point_process(idx=0, pptype=pptype, record_current=False, **kwargs)


def test_lfpys_refused_calls():
    """LFPy's cvode and electrical-stimulation tests, called as LFPy's tests call them."""
    cell = surrogate_cell()
    electrode = LFPy.RecExtElectrode(cell, sigma=0.3, x=np.array([0.0, 1000.0]), y=np.zeros(2), z=np.zeros(2))
    with pytest.raises(UnsupportedFeatureError, match="variable_dt"):
        cell.simulate(probes=[electrode], rec_imem=True, rec_vmem=True, variable_dt=True)
    _, t_ext = electrode.probe.set_current_pulses(0, width1=0.1, amp1=10000, dt=cell.dt, t_stop=cell.tstop,
                                                  interpulse=0.2)
    with pytest.raises(UnsupportedFeatureError, match="enable_extracellular_stimulation"):
        cell.enable_extracellular_stimulation(electrode, t_ext=t_ext, n=10)
    for rec in ("rec_ipas", "rec_icap"):
        with pytest.raises(UnsupportedFeatureError, match=rec):
            cell.simulate(rec_imem=True, **{rec: True})
    with pytest.raises(UnsupportedFeatureError, match="rec_variables"):
        cell.simulate(rec_variables=["v"])
    with pytest.raises(UnsupportedFeatureError, match="insert_v_ext"):
        cell.insert_v_ext(np.zeros((cell.totnsegs, 2)), np.array([0.0, cell.tstop]))


# ------------------------------------------------------------------ cold start (test_imem.py, simulate_recorder_*)


def resting_run(make) -> dict:
    cell = make(tstop=100.0, dt=2 ** -3)
    cell.simulate(rec_vmem=True, rec_imem=True)
    result = {"tvec": cell.tvec.copy(), "vmem": cell.vmem.copy(), "imem": cell.imem.copy(),
              "somav": cell.somav.copy(), "v_init": float(cell.v_init)}
    release(cell)
    return result


@pytest.fixture(scope="module")
def surrogate_rest() -> dict:
    return resting_run(surrogate_cell)


def test_cold_start_begins_at_v_init_and_rests_at_the_models_own_rest(surrogate_rest):
    rest = surrogate_rest
    n_t = rest["tvec"].size
    assert rest["vmem"].shape == rest["imem"].shape == (rest["vmem"].shape[0], n_t)  # simulate_recorder_*
    # test_imem.py: at v_init everywhere, no membrane current (LFPy's passive cells stay there)
    np.testing.assert_array_equal(rest["vmem"][:, 0], rest["v_init"])
    np.testing.assert_allclose(rest["imem"][:, 0], 0.0, atol=1e-10)
    # without input the model settles within its first step and stays: its own resting state
    settled = rest["tvec"] >= 1.0
    np.testing.assert_allclose(rest["vmem"][:, settled], rest["vmem"][:, -1:].repeat(settled.sum(), axis=1),
                               atol=1e-9)
    assert abs(rest["somav"][-1] - rest["v_init"]) > 1.0


@pytest.mark.xfail(strict=True, raises=AssertionError,
                   reason="known shortfall: without input the surrogate rests at its own rest, not NEURON's "
                          "(README, 'LFPy features on SurrogateCell')")
def test_cold_start_rests_where_neuron_rests(surrogate_rest):
    expected = resting_run(neuron_cell)
    assert abs(surrogate_rest["somav"][-1] - expected["somav"][-1]) < 1.0

