"""The Hay L5PC builder against real NEURON runs, on the built-in and the reference morphology."""

import LFPy
import numpy as np
import pytest
from neuron import h

from surrogate_cell.cells import MorphologyError, l5pc, segment_path_distances
from surrogate_cell.spikes import upward_crossing_times
from tests.conftest import HAY_MORPHOLOGY, MORPHOLOGIES, requires_hay_morphology

pytestmark = pytest.mark.neuron  # every test builds the cell in NEURON

SPIKE_THRESHOLD_MV = -20.0
HOT_ZONE_UM = (685.0, 885.0)


def somatic_spikes(cell) -> np.ndarray:
    return upward_crossing_times(cell.somav, cell.dt, SPIKE_THRESHOLD_MV, refractory_ms=2.0)


def segment(cell, index):
    return [seg for sec in cell.allseclist for seg in sec][index]


def apical_index_near(cell, distance_um):
    distances = segment_path_distances(cell)
    candidates = np.flatnonzero(cell.section_types == "apical")
    return candidates[np.argmin(np.abs(distances[candidates] - distance_um))]


def play_epsc(cell, index, onset_ms, peak_na, rise_ms=0.5, decay_ms=5.0):
    """Inject a double-exponential, EPSC-shaped current into segment ``index``."""
    clamp = h.IClamp(segment(cell, index))
    clamp.delay, clamp.dur = 0.0, 1e9
    t = np.arange(0.0, cell.tstop + cell.dt, cell.dt)
    s = np.clip(t - onset_ms, 0.0, None)
    wave = np.exp(-s / decay_ms) - np.exp(-s / rise_ms)
    time_vector, amp_vector = h.Vector(t), h.Vector(wave / wave.max() * peak_na)
    amp_vector.play(clamp._ref_amp, time_vector, 1)
    return clamp, time_vector, amp_vector


@requires_hay_morphology
def test_reference_morphology_has_published_segment_counts():
    cell = l5pc(str(HAY_MORPHOLOGY))
    types = cell.section_types
    assert cell.totnsegs == 642
    assert (types == "soma").sum() == 1
    assert (types == "axon").sum() == 2
    assert (types == "basal").sum() == 262
    assert np.isin(types, ["apical", "oblique"]).sum() == 377
    assert cell.max_apical_distance == pytest.approx(1300.5, abs=1.0)


def test_default_morphology_is_a_full_pyramidal_cell():
    cell = l5pc()
    types = cell.section_types
    assert 550 <= cell.totnsegs <= 750
    assert set(types) == {"soma", "axon", "basal", "apical", "oblique"}
    distances = segment_path_distances(cell)
    assert distances[np.isin(types, ["apical", "oblique"])].max() >= 1000.0
    assert cell.recipe["morphology"] is None


@pytest.mark.slow
@pytest.mark.parametrize("morphology", MORPHOLOGIES)
def test_step_current_gives_regular_firing_and_rest_is_silent(morphology):
    cell = l5pc(morphology, tstop=1000.0)
    cell.simulate()
    assert somatic_spikes(cell).size == 0, "the cell fires without input"

    LFPy.StimIntElectrode(cell, idx=0, pptype="IClamp", amp=0.9, delay=0.0, dur=1000.0)
    cell.simulate()
    spikes = somatic_spikes(cell)
    assert 5 <= spikes.size <= 25, f"{spikes.size} Hz for a 0.9 nA step"
    intervals = np.diff(spikes[spikes > 200.0])
    assert intervals.std() / intervals.mean() < 0.3, "steady-state firing is not regular"


def run_bac(morphology, soma_na, distal_na):
    cell = l5pc(morphology, tstop=360.0)
    distal = apical_index_near(cell, 620.0)
    distances = segment_path_distances(cell)
    hot_zone = np.flatnonzero((distances > HOT_ZONE_UM[0]) & (distances < HOT_ZONE_UM[1])
                              & (cell.section_types == "apical"))
    LFPy.StimIntElectrode(cell, idx=0, pptype="IClamp", amp=soma_na, delay=295.0, dur=3.0)
    stimulus = play_epsc(cell, distal, onset_ms=300.0, peak_na=distal_na)
    cell.simulate(rec_vmem=True)
    del stimulus
    return somatic_spikes(cell), cell.vmem[hot_zone].max()


@pytest.mark.slow
@pytest.mark.parametrize("morphology", MORPHOLOGIES)
def test_bac_firing(morphology):
    distal_spikes, _ = run_bac(morphology, soma_na=0.0, distal_na=1.0)
    soma_spikes, soma_hot_zone = run_bac(morphology, soma_na=1.9, distal_na=0.0)
    bac_spikes, bac_hot_zone = run_bac(morphology, soma_na=1.9, distal_na=1.0)
    assert distal_spikes.size == 0
    assert soma_spikes.size == 1
    assert soma_hot_zone < -40.0, "a lone back-propagating spike already fires the calcium zone"
    assert bac_spikes.size >= 2
    assert bac_hot_zone > -10.0, "no calcium spike in the hot zone"


@pytest.mark.parametrize("morphology", MORPHOLOGIES)
def test_densities_follow_distance_rules(morphology):
    cell = l5pc(morphology)
    distances = segment_path_distances(cell)
    segments = [seg for sec in cell.allseclist for seg in sec]
    apical = np.flatnonzero(np.isin(cell.section_types, ["apical", "oblique"]))
    ih = np.array([segments[i].gbar_Ih for i in apical])
    ca_lva = np.array([segments[i].gbar_Ca_LVAst for i in apical])
    x = np.minimum(distances[apical] / cell.max_apical_distance, 0.65)
    np.testing.assert_allclose(ih, 1e-4 * (-0.8696 + 2.087 * np.exp(3.6161 * x)), rtol=1e-9)
    order = np.argsort(distances[apical])
    assert np.all(np.diff(ih[order]) >= 0), "Ih does not rise along the apical path"
    in_hot_zone = (distances[apical] > 685.0) & (distances[apical] < 885.0)
    assert in_hot_zone.any()
    np.testing.assert_allclose(ca_lva[in_hot_zone], 0.2271264)
    np.testing.assert_allclose(ca_lva[~in_hot_zone], 0.002271264)
    basal = np.flatnonzero(cell.section_types == "basal")
    assert all(segments[i].gbar_Ih == pytest.approx(5e-5) for i in basal)
    assert not hasattr(segments[basal[0]], "gbar_NaTs2_t")


@pytest.mark.parametrize("morphology", MORPHOLOGIES)
def test_vmem_to_imem_matrix_reproduces_neuron_membrane_currents(morphology):
    cell = l5pc(morphology, tstop=150.0)
    rng = np.random.default_rng(1)
    for index in rng.choice(np.flatnonzero(cell.section_types != "soma"), 60, replace=False):
        synapse = LFPy.Synapse(cell, idx=int(index), syntype="AMPANMDA", weight=1.0)
        synapse.set_spike_times(np.sort(rng.uniform(10.0, 140.0, 6)))
    cell.simulate(rec_vmem=True, rec_imem=True)
    predicted = cell.get_transformation_matrix_vmem_to_imem() @ cell.vmem
    error = np.linalg.norm(predicted[:, 1:] - cell.imem[:, 1:]) / np.linalg.norm(cell.imem[:, 1:])
    assert error < 1e-3


def test_missing_morphology_is_a_clear_error(tmp_path):
    with pytest.raises(MorphologyError, match="does not exist"):
        l5pc(tmp_path / "nope.asc")


def test_unsupported_format_is_a_clear_error(tmp_path):
    path = tmp_path / "cell.txt"
    path.write_text("soma 0 0 0\n")
    with pytest.raises(MorphologyError, match="unsupported format"):
        l5pc(path)


@pytest.mark.parametrize("suffix", [".swc", ".hoc"])
def test_unreadable_morphology_is_a_clear_error(tmp_path, suffix):
    path = tmp_path / f"broken{suffix}"
    path.write_text("this is { not a morphology\n")
    with pytest.raises(MorphologyError, match="broken"):
        l5pc(path)


def test_morphology_without_apical_dendrite_is_a_clear_error(tmp_path):
    path = tmp_path / "no_apical.swc"
    path.write_text(
        "1 1 0 0 0 10 -1\n2 1 0 10 0 10 1\n3 1 0 -10 0 10 1\n"
        "4 3 0 -20 0 1 1\n5 3 0 -120 0 1 4\n"
    )
    with pytest.raises(MorphologyError, match="no apical"):
        l5pc(path)


def test_builder_owned_arguments_are_refused():
    with pytest.raises(TypeError, match="nsegs_method"):
        l5pc(nsegs_method="lambda100")


def test_time_arguments_lfpy_refuses_get_one_clear_error():
    with pytest.raises(ValueError, match=r"dt = 2\*\*-k"):
        l5pc(tstart=-10.0, dt=0.5)
    with pytest.raises(ValueError, match="tstart must be <= 0"):
        l5pc(tstart=5.0)


@pytest.mark.parametrize("morphology", MORPHOLOGIES)
def test_ca_hot_zone_segment_is_on_the_main_trunk_near_750_um(morphology):
    from surrogate_cell.cells.l5pc import CA_HOT_ZONE_DISTANCE_UM, ca_hot_zone_segment, main_trunk_sections

    cell = l5pc(morphology)
    segment = ca_hot_zone_segment(cell)
    names = [sec.name() for sec in cell.allseclist for _ in sec]
    assert names[segment] in {sec.name() for sec in main_trunk_sections(cell)}
    assert cell.section_types[segment] == "apical"
    assert abs(segment_path_distances(cell)[segment] - CA_HOT_ZONE_DISTANCE_UM) < 50.0
