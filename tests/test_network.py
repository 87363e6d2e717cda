"""Networks of surrogate cells: delivery, drive, probes, errors, HDF5, two processes, NEURON.

Most tests use a random-weight tiny MH checkpoint of the default cell
(``save_untrained_checkpoint``): its voltages sit near their biases (about -70 mV), never
diverge and ignore the input, so no cell fires at the checkpoint's threshold. Spikes are made
two honest ways: injected through :meth:`SurrogateNetwork.inject_spikes`, and by a spike
threshold between ``v_init`` (-76 mV) and the model's first output, which every cell crosses
upwards in its first step. The network then has to carry them to the right channels after
the right delays. The comparison with NEURON on a trained model runs only where the shipped
``l5pc-default`` checkpoint exists.
"""

from __future__ import annotations

import json

import LFPy
import numpy as np
import pytest
import torch

from surrogate_cell.cell import SurrogateCell
from surrogate_cell.cells import l5pc
from surrogate_cell.cells.layout import SYNAPSE_SECTION_TYPES, cell_layout
from surrogate_cell.cells.solver import neuron_solver
from surrogate_cell.checkpoint import save_untrained_checkpoint
from surrogate_cell.network import (
    Connection,
    DelayError,
    HDF5Writer,
    NetworkConfigError,
    PoissonDrive,
    Population,
    PopulationMismatchError,
    Probe,
    Shard,
    SurrogateNetwork,
    TargetError,
    Targets,
    read_network_file,
    spawn,
)
from surrogate_cell.network.reference import (
    NeuronNetwork,
    cell_blueprint,
    compare_runs,
    instantiate,
)
from surrogate_cell.network.standard import (
    RecurrentNetworkConfig,
    build_recurrent_network,
)
from surrogate_cell.pretrained import PRETRAINED_DIR

pytestmark = pytest.mark.neuron  # cells' LFPy/NEURON geometry; NEURON reference networks

FIRST_STEP_THRESHOLD_MV = -73.0
"""Between v_init (-76 mV) and the random model's outputs (-70 +- 1.3 mV): one spike per cell in (0, 1] ms."""

CONTACTS = {"x": np.full(4, 60.0), "y": np.zeros(4), "z": np.linspace(-100.0, 900.0, 4), "sigma": 0.3}
PROBES = [Probe("lfp", LFPy.RecExtElectrode, CONTACTS), Probe("dipole", LFPy.CurrentDipoleMoment)]


@pytest.fixture(scope="module")
def layout():
    """Cell layout of the default cell."""
    return cell_layout(l5pc(), SYNAPSE_SECTION_TYPES)


@pytest.fixture(scope="module")
def checkpoint(tmp_path_factory, layout):
    """A random-weight tiny MH checkpoint for the default cell."""
    path = tmp_path_factory.mktemp("network") / "random.pt"
    save_untrained_checkpoint(path, layout)
    return path


@pytest.fixture(scope="module")
def responsive_checkpoint(tmp_path_factory, checkpoint):
    """The random model with its last tower layer switched on: voltages move with the input."""
    payload = torch.load(checkpoint, weights_only=True)
    weights = payload["model"]["towers.weights.1"]
    payload["model"]["towers.weights.1"] = 2.0 * torch.randn(weights.shape, generator=torch.Generator().manual_seed(0))
    path = tmp_path_factory.mktemp("network") / "responsive.pt"
    torch.save(payload, path)
    return path


def two_population_network(checkpoint, seed: int = 5, threshold: float | None = FIRST_STEP_THRESHOLD_MV):
    """5 excitatory + 2 inhibitory cells, recurrent both ways, Poisson drive, probes, one injected spike."""
    rng = np.random.default_rng(0)
    network = SurrogateNetwork(seed=seed, device="cpu")
    network.add_population(Population("E", checkpoint, 5, positions=rng.uniform(-200, 200, (5, 3)),
                                      rotations=rng.uniform(0, 2 * np.pi, (5, 3)), spike_threshold_mv=threshold))
    network.add_population(Population("I", checkpoint, 2, synapse_kind="inh", spike_threshold_mv=threshold))
    network.connect(Connection("E", "I", 0.6, delay_ms=2.0, synapses_per_connection=2))
    network.connect(Connection("I", "E", 0.6, delay_ms=3.0, delay_std_ms=1.5,
                               targets=Targets(("basal",), max_distance_um=150.0)))
    network.connect(Connection("E", "E", 0.3, delay_ms=1.0))
    network.add_drive(PoissonDrive("E", exc_rate_hz=20.0, inh_rate_hz=10.0))
    for probe in PROBES:
        network.add_probe(probe)
    network.inject_spikes([6], [7.4])
    return network


def event_set(bins, gids, channels) -> set:
    """{(bin, gid, channel)} of parallel arrays."""
    return set(zip(np.asarray(bins).tolist(), np.asarray(gids).tolist(), np.asarray(channels).tolist()))


def recorded_events(result) -> set:
    """Every input event a run recorded, over all populations."""
    return set().union(*(event_set(*events) for events in result.input_events.values()))


# ------------------------------------------------------------------ spike delivery


def test_injected_spike_acts_on_the_targets_channels_after_the_delay(checkpoint, layout):
    network = SurrogateNetwork(seed=1, device="cpu")
    network.add_population(Population("A", checkpoint, 2))
    network.add_population(Population("B", checkpoint, 2, synapse_kind="inh"))
    network.connect(Connection("A", "B", 1.0, delay_ms=3.0, synapses_per_connection=3))
    network.connect(Connection("B", "A", 1.0, delay_ms=2.0))
    network.inject_spikes([0, 3], [5.3, 9.0])
    network.simulate(10)  # leaves the events of the spike at 9 ms pending: the next run must not see them
    result = network.simulate(20, record_input_events=True)

    synapses = network.connectivity()
    assert len(synapses) == 2 * 2 * 3 + 2 * 2
    n_inputs = layout.input_segments.size
    from_a = synapses.pre_gid == 0
    np.testing.assert_array_equal(synapses.channel[from_a],
                                  np.searchsorted(layout.input_segments, synapses.segment[from_a]))  # excitatory
    from_b = synapses.pre_gid == 3
    np.testing.assert_array_equal(synapses.channel[from_b],
                                  n_inputs + np.searchsorted(layout.input_segments, synapses.segment[from_b]))
    expected = (event_set(np.full(from_a.sum(), 8), synapses.post_gid[from_a], synapses.channel[from_a])
                | event_set(np.full(from_b.sum(), 11), synapses.post_gid[from_b], synapses.channel[from_b]))
    assert recorded_events(result) == expected  # floor(5.3 + 3) = 8, floor(9.0 + 2) = 11, nothing else
    np.testing.assert_array_equal(result.spike_gids, [0, 3])
    np.testing.assert_array_equal(result.spike_times, [5.3, 9.0])
    assert result.merged_events == 0


def test_model_spikes_are_detected_and_delivered_with_their_delays(checkpoint):
    network = two_population_network(checkpoint)
    result = network.simulate(15, record_soma=True, record_input_events=True)

    soma = np.concatenate([result.soma_v["E"], result.soma_v["I"]])
    v0, v1 = soma[:, 0], soma[:, 1]
    assert np.all(v0 < FIRST_STEP_THRESHOLD_MV) and np.all(v1 >= FIRST_STEP_THRESHOLD_MV)
    crossing = (FIRST_STEP_THRESHOLD_MV - v0) / (v1 - v0)  # linear interpolation within (0, 1]
    first = result.spike_times <= 1.0
    np.testing.assert_array_equal(np.sort(result.spike_gids[first]), np.arange(7))
    np.testing.assert_allclose(result.spike_times[first], crossing[result.spike_gids[first]], rtol=1e-5)
    assert result.spike_times[~first].tolist() == [7.4]  # the injected spike; no cell crosses again

    synapses = network.connectivity()
    times = dict(zip(result.spike_gids[first].tolist(), result.spike_times[first].tolist()))
    bins = np.floor([times[pre] + delay for pre, delay in zip(synapses.pre_gid, synapses.delay_ms)]).astype(int)
    delivered = event_set(bins, synapses.post_gid, synapses.channel)
    from_injected = synapses.pre_gid == 6
    delivered |= event_set(np.floor(7.4 + synapses.delay_ms[from_injected]).astype(int),
                           synapses.post_gid[from_injected], synapses.channel[from_injected])
    drive = network.drive_events("E", 15)
    driven = event_set(drive.bins, drive.cells, drive.channels)
    assert recorded_events(result) == delivered | driven
    assert synapses.delay_ms.min() >= 1 and np.unique(synapses.delay_ms[synapses.pre_gid >= 5]).size > 1


def test_drive_is_seeded_binary_and_at_the_requested_rate(checkpoint, layout):
    network = SurrogateNetwork(seed=11, device="cpu")
    network.add_population(Population("E", checkpoint, 3))
    network.add_drive(PoissonDrive("E", exc_rate_hz=40.0, section_types=("apical",)))
    result = network.simulate(250, record_input_events=True)

    bins, gids, channels = result.input_events["E"]
    drive = network.drive_events("E", 250)
    assert event_set(bins, gids, channels) == event_set(drive.bins, drive.cells, drive.channels)
    assert len(event_set(bins, gids, channels)) == bins.size  # binary: one event per bin and channel
    apical = np.flatnonzero(layout.section_types[layout.input_segments] == "apical")
    assert set(np.unique(channels)) <= set(apical.tolist())
    expected = 3 * apical.size * 250 * (1 - np.exp(-40.0e-3))
    assert abs(bins.size - expected) < 5 * np.sqrt(expected)
    again = SurrogateNetwork(seed=11, device="cpu")
    again.add_population(Population("E", checkpoint, 3))
    again.add_drive(PoissonDrive("E", exc_rate_hz=40.0, section_types=("apical",)))
    longer = again.drive_events("E", 400)
    assert event_set(*(a[longer.bins < 250] for a in (longer.bins, longer.cells, longer.channels))) == \
        event_set(drive.bins, drive.cells, drive.channels)


# ------------------------------------------------------------------ probes


def test_probe_signals_are_sums_of_lfpy_matrices_times_imem(responsive_checkpoint):
    rng = np.random.default_rng(3)
    positions, rotations = rng.uniform(-300, 300, (3, 3)), rng.uniform(0, 2 * np.pi, (3, 3))
    network = SurrogateNetwork(seed=2, device="cpu")
    network.add_population(Population("E", responsive_checkpoint, 3, positions=positions, rotations=rotations))
    network.add_drive(PoissonDrive("E", exc_rate_hz=50.0, inh_rate_hz=20.0))
    for probe in PROBES:
        network.add_probe(probe)
    result = network.simulate(12, record_vmem=True)

    expected = {probe.name: 0.0 for probe in PROBES}
    for index in range(3):
        cell = SurrogateCell(model=responsive_checkpoint, tstop=12.0, device="cpu")
        cell.set_pos(*positions[index])
        cell.set_rotation(*rotations[index])
        imem = cell.get_transformation_matrix_vmem_to_imem() @ result.vmem["E"][index].astype(float)
        for probe in PROBES:
            expected[probe.name] = expected[probe.name] + \
                probe.probe_class(cell, **probe.kwargs).get_transformation_matrix() @ imem
    assert np.ptp(result.vmem["E"][:, :, 2:], axis=2).max() > 0  # the voltages do move
    for name, data in expected.items():
        assert result.probe_data[name].shape == data.shape
        np.testing.assert_allclose(result.probe_data[name], data, rtol=1e-4, atol=1e-5 * np.abs(data).max())
        np.testing.assert_allclose(result.population_probe_data["E"][name], result.probe_data[name])


# ------------------------------------------------------------------ errors


def test_bad_networks_raise_one_clear_error_each(checkpoint, layout, tmp_path):
    with pytest.raises(DelayError, match="below the model's 1 ms step.*delay_ms >= 1"):
        Connection("E", "E", 0.1, delay_ms=0.5)
    with pytest.raises(NetworkConfigError, match="synapses_per_connection"):
        Connection("E", "E", 0.1, weight=2.0)
    network = SurrogateNetwork(device="cpu")
    network.add_population(Population("E", checkpoint, 2))
    with pytest.raises(TargetError, match=r"\['soma'\], which have no model input channels.*Choose"):
        network.connect(Connection("E", "E", 0.1, targets=Targets(("soma", "basal"))))
    with pytest.raises(TargetError, match="Widen the distance range"):
        network.connect(Connection("E", "E", 0.1, targets=Targets(("basal",), min_distance_um=5000.0)))
    with pytest.raises(TargetError, match="axon"):
        network.add_drive(PoissonDrive("E", exc_rate_hz=1.0, section_types=("axon",)))
    with pytest.raises(NetworkConfigError, match="No population named 'X'"):
        network.connect(Connection("X", "E", 0.1))
    with pytest.raises(NetworkConfigError, match="exists already"):
        network.add_population(Population("E", checkpoint, 1))

    other_cell = tmp_path / "other_cell.pt"
    save_untrained_checkpoint(other_cell, layout)
    payload = torch.load(other_cell, weights_only=True)
    meta = json.loads(payload["meta"])
    meta["cell"]["segment_hash"] = "0" * 64
    payload["meta"] = json.dumps(meta)
    torch.save(payload, other_cell)
    with pytest.raises(PopulationMismatchError, match="Population 'F'.*do not match the model.*trained on a"):
        network.add_population(Population("F", other_cell, 2))


# ------------------------------------------------------------------ HDF5 and processes


def test_hdf5_writer_stores_what_the_run_returns(checkpoint, tmp_path):
    network = two_population_network(checkpoint)
    result = network.simulate(23, record_soma=True, chunk_ms=7, writer=HDF5Writer(tmp_path / "run.h5"))
    stored = read_network_file(tmp_path / "run.h5")
    np.testing.assert_array_equal(stored.tvec, result.tvec)
    np.testing.assert_array_equal(stored.spike_gids, result.spike_gids)
    np.testing.assert_array_equal(stored.spike_times, result.spike_times)
    for name in ("lfp", "dipole"):
        np.testing.assert_allclose(stored.probe_data[name], result.probe_data[name])
    for population in ("E", "I"):
        np.testing.assert_allclose(stored.soma_v[population], result.soma_v[population], rtol=1e-6)
    assert stored.population_rate_hz("I") == result.population_rate_hz("I")


def test_shards_split_every_population_into_contiguous_parts():
    for world_size in (1, 2, 3, 8):
        parts = [Shard(rank, world_size).cells(7) for rank in range(world_size)]
        assert [i for part in parts for i in part] == list(range(7))


def run_rank(rank: int, checkpoint, out_dir) -> None:
    """One rank of the two-process test (module level, so torch.multiprocessing can import it)."""
    network = two_population_network(checkpoint)
    result = network.simulate(25, record_soma=True, record_input_events=True, chunk_ms=10,
                              writer=HDF5Writer(out_dir / "sharded.h5"))
    synapses = network.connectivity()
    events = np.array(sorted(recorded_events(result)), dtype=np.int64).reshape(-1, 3)
    np.savez(out_dir / f"synapses{rank}.npz", pre=synapses.pre_gid, post=synapses.post_gid,
             channel=synapses.channel, delay=synapses.delay_ms, events=events)


@pytest.mark.slow
def test_two_processes_give_the_spikes_and_signals_of_one(checkpoint, tmp_path):
    spawn(run_rank, 2, checkpoint, tmp_path)
    sharded = read_network_file(tmp_path / "sharded.h5")
    network = two_population_network(checkpoint)
    single = network.simulate(25, record_soma=True, record_input_events=True)

    np.testing.assert_array_equal(sharded.spike_gids, single.spike_gids)
    np.testing.assert_allclose(sharded.spike_times, single.spike_times, rtol=1e-6)
    for name in ("lfp", "dipole"):
        np.testing.assert_allclose(sharded.probe_data[name], single.probe_data[name], rtol=1e-5,
                                   atol=1e-6 * np.abs(single.probe_data[name]).max())
    for population in ("E", "I"):
        np.testing.assert_allclose(sharded.soma_v[population], single.soma_v[population], atol=1e-4)
    ranks = [np.load(tmp_path / f"synapses{rank}.npz") for rank in range(2)]
    synapses = network.connectivity()
    joined = sorted(zip(*(np.concatenate([part[f] for part in ranks]).tolist()
                          for f in ("pre", "post", "channel", "delay"))))
    assert joined == sorted(zip(*(values.tolist() for values in (synapses.pre_gid, synapses.post_gid,
                                                                  synapses.channel, synapses.delay_ms))))
    for rank, part in enumerate(ranks):
        owned = [network.gids(name)[list(Shard(rank, 2).cells(len(network.gids(name))))] for name in ("E", "I")]
        assert set(part["post"].tolist()) <= set(np.concatenate(owned).tolist())
    # the same drive and the same delivered spikes reach every cell, wherever it is simulated
    assert set().union(*(map(tuple, part["events"].tolist()) for part in ranks)) == recorded_events(single)


# ------------------------------------------------------------------ NEURON


def test_cloned_neuron_cell_behaves_like_the_built_one():
    from neuron import h

    cell = l5pc()
    original = list(cell.allseclist)
    clone = instantiate(cell_blueprint(cell), "clone")
    segments = [[segment for section in sections for segment in section] for sections in (original, clone)]
    assert len(segments[0]) == len(segments[1]) == cell.totnsegs
    np.testing.assert_allclose([s.area() for s in segments[1]], [s.area() for s in segments[0]], rtol=1e-6)
    keep, rng = [], np.random.default_rng(0)
    for index, time_ms in zip(rng.choice(np.arange(5, cell.totnsegs), 40), rng.uniform(2, 20, 40)):
        for cell_segments in segments:
            synapse = h.AMPANMDA(cell_segments[index])
            netcon = h.NetCon(None, synapse)
            netcon.weight[0] = 1.0
            keep.append((synapse, netcon, time_ms))
    recordings = [h.Vector().record(cell_segments[0]._ref_v, 1.0) for cell_segments in segments]
    h.celsius = 34.0
    with neuron_solver():  # the project's NEURON settings
        h.finitialize(-76.0)
        for _, netcon, time_ms in keep:
            netcon.event(time_ms)
        h.continuerun(30.0)
    assert np.ptp(recordings[0].as_numpy()) > 1.0
    np.testing.assert_allclose(recordings[1].as_numpy(), recordings[0].as_numpy(), atol=1e-6)


def test_neuron_reference_has_the_surrogate_networks_wiring_and_input(checkpoint):
    network = two_population_network(checkpoint, threshold=None)
    synapses = network.connectivity()
    with NeuronNetwork(network) as reference:
        result = reference.run(12, progress=False)
        assert len(reference._netcons) == len(synapses)
        for netcon, pre, delay in zip(reference._netcons, synapses.pre_gid, synapses.delay_ms):
            assert netcon.delay == delay and netcon.preseg() == reference.soma(int(pre))
        drive = network.drive_events("E", 12)
        assert set(reference._synapses) >= set(zip(drive.cells.tolist(), drive.channels.tolist()))
    assert result.soma_v["E"].shape == (5, 13) and result.probe_data["lfp"].shape == (4, 13)
    np.testing.assert_array_equal(result.soma_v["E"][:, 0], -76.0)
    assert 7.4 in result.spike_times.tolist()
    assert np.ptp(result.soma_v["E"][:, 5:]) > 0.5  # the drive moves the NEURON cells


@pytest.mark.slow
@pytest.mark.skipif(not (PRETRAINED_DIR / "l5pc-default.pt").is_file(),
                    reason="needs the trained default model surrogate_cell/pretrained/l5pc-default.pt")
def test_trained_surrogate_network_fires_like_the_neuron_network():
    """10 cells x 300 ms, drive strong enough that NEURON fires: rate within 20 % (or 1 Hz) after 50 ms,
    spike counts per cell positively correlated."""
    config = RecurrentNetworkConfig(n_cells=10, n_contacts=4, exc_rate_hz=20.0)
    network = build_recurrent_network("l5pc-default", config, device="cpu")
    surrogate = network.simulate(300)
    with NeuronNetwork(network) as reference:
        neuron = reference.run(300, record_soma=False, progress=False)
    comparison = compare_runs(neuron, surrogate, t_start_ms=50.0)
    assert comparison.neuron_rate_hz > 2.0, "the drive no longer makes the NEURON network fire"
    tolerance = max(0.2 * comparison.neuron_rate_hz, 1.0)
    assert abs(comparison.surrogate_rate_hz - comparison.neuron_rate_hz) <= tolerance, comparison
    assert comparison.spike_count_correlation > 0, comparison


@pytest.mark.slow
@pytest.mark.skipif(not all((PRETRAINED_DIR / f"{name}.pt").is_file() for name in ("l5pc-default", "basket-default")),
                    reason="needs the shipped l5pc-default and basket-default models")
def test_e_i_network_of_pyramidal_and_basket_surrogates_fires_like_neuron():
    """8 L5 pyramidal + 2 basket cells x 300 ms: each NEURON cell starts at its own model's v_init, and
    both populations' rates agree within 25 % (or 2 Hz) after 50 ms."""
    config = RecurrentNetworkConfig(n_cells=10, n_contacts=4, exc_rate_hz=20.0,
                                    inhibitory_exc_rate_hz=8.0, inhibitory_inh_rate_hz=8.0)
    network = build_recurrent_network("l5pc-default", config, device="cpu", inhibitory_model="basket-default")
    assert network.template("I").cell.totnsegs == 114
    surrogate = network.simulate(300)
    with NeuronNetwork(network) as reference:
        neuron = reference.run(300, progress=False)
    np.testing.assert_array_equal(neuron.soma_v["E"][:, 0], -76.0)
    np.testing.assert_array_equal(neuron.soma_v["I"][:, 0], -65.0)
    for population in ("E", "I"):
        rates = [run.population_rate_hz(population, 50.0) for run in (neuron, surrogate)]
        assert rates[0] > 2.0, f"the drive no longer makes NEURON's {population} cells fire"
        assert abs(rates[1] - rates[0]) <= max(0.25 * rates[0], 2.0), (population, rates)
