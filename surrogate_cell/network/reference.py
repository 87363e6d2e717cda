"""The same network in NEURON, to validate a :class:`SurrogateNetwork` against the biophysical cells.

LFPy builds one cell per process (building a cell deletes all sections), and ``LFPy.Network``
needs a hoc template class that the project's cell builders do not have. So each population's
biophysical cell is built once with its model's recipe, described section by section
(:func:`cell_blueprint`: 3-D points, topology, passive properties, every density mechanism and
ion value per segment) and instantiated as many times as the population has cells. Clones
keep LFPy's segment order, so segment and channel indices are the surrogate's.

Everything random is taken from the surrogate network itself: the synapses of
:meth:`SurrogateNetwork.connectivity` (one ``NetCon`` from the presynaptic soma voltage, with
the population's threshold and the synapse's delay, per synapse), the drive of
:meth:`SurrogateNetwork.drive_events` and the injected spikes. As in the training data, every
input segment has one ``AMPANMDA`` and one ``GABAA`` synapse (weight 1.0), fed by all events
of its channel. Probe signals are ``probe matrix @ i_membrane_`` per cell, sampled every ms.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
from neuron import h
from tqdm.auto import tqdm

from surrogate_cell.cell import TRAINED_WEIGHT
from surrogate_cell.cells.build import build_stored_cell
from surrogate_cell.cells.layout import EVENT_KINDS, SYNAPSE_MECHANISMS, cell_layout
from surrogate_cell.cells.solver import DEFAULT_SOLVER, NeuronSolver, neuron_solver
from surrogate_cell.checkpoint import check_cell
from surrogate_cell.network.network import SurrogateNetwork
from surrogate_cell.network.recording import NetworkResult
from surrogate_cell.network.templates import CellTemplate

PROGRESS_STEP_MS = 10.0
ION_VARIABLES = ("e{ion}", "{ion}i", "{ion}o")
"""Ion values copied to clones: reversal potential and concentrations (currents are computed)."""


@dataclass
class SectionBlueprint:
    """Everything NEURON needs to rebuild one section electrically and geometrically."""

    name: str
    parent: int
    parent_x: float
    orientation: float
    points: np.ndarray
    nseg: int
    ra: float
    cm: list[float]
    mechanisms: dict[str, dict[str, list[float]]]
    ions: dict[str, dict[str, list[float]]]


def cell_blueprint(cell) -> list[SectionBlueprint]:
    """The sections of an ``LFPy.Cell`` (in LFPy's order) as blueprints."""
    sections = list(cell.allseclist)
    index_of = {section.name(): index for index, section in enumerate(sections)}
    blueprints = []
    for section in sections:  # setup only
        description = section.psection()
        parent = section.parentseg()
        ions = {ion: {name.format(ion=ion): values[name.format(ion=ion)] for name in ION_VARIABLES
                      if name.format(ion=ion) in values}
                for ion, values in description["ions"].items()}
        points = np.array([[h.x3d(i, sec=section), h.y3d(i, sec=section), h.z3d(i, sec=section),
                            h.diam3d(i, sec=section)] for i in range(int(h.n3d(sec=section)))])
        blueprints.append(SectionBlueprint(
            name=section.name(), parent=-1 if parent is None else index_of[parent.sec.name()],
            parent_x=0.0 if parent is None else parent.x, orientation=section.orientation(),
            points=points, nseg=section.nseg, ra=section.Ra, cm=list(description["cm"]),
            mechanisms=description["density_mechs"], ions=ions))
    return blueprints


def instantiate(blueprints: list[SectionBlueprint], label: str) -> list:
    """New NEURON sections built from ``blueprints``, named ``<label>_<name>``, in the same order."""
    sections = [h.Section(name=f"{label}_{blueprint.name}") for blueprint in blueprints]
    for section, blueprint in zip(sections, blueprints):
        if blueprint.parent >= 0:
            section.connect(sections[blueprint.parent](blueprint.parent_x), blueprint.orientation)
        h.pt3dclear(sec=section)
        for x, y, z, diam in blueprint.points:
            h.pt3dadd(x, y, z, diam, sec=section)
        section.nseg, section.Ra = blueprint.nseg, blueprint.ra
        for mechanism in blueprint.mechanisms:
            section.insert(mechanism)
        for segment_index, segment in enumerate(section):
            segment.cm = blueprint.cm[segment_index]
            for mechanism, variables in blueprint.mechanisms.items():
                for variable, values in variables.items():
                    setattr(segment, f"{variable}_{mechanism}", values[segment_index])
            for variables in blueprint.ions.values():
                for variable, values in variables.items():
                    setattr(segment, variable, values[segment_index])
    return sections


def template_blueprint(template: CellTemplate, dt: float) -> list[SectionBlueprint]:
    """Build ``template``'s biophysical cell with its model's recipe and describe it.

    The cell is checked against the model's segment hash. Building it deletes every NEURON
    section of this process (LFPy's rule), so blueprints are taken before any clone exists.
    """
    cell = build_stored_cell(template.recipe, {**template.cell_kwargs, "dt": dt}, biophysical=True)
    check_cell(template.cell.model_meta, cell_layout(cell, ()).segment_hash, template.model_path)
    return cell_blueprint(cell)


class NeuronNetwork:
    """A single-process :class:`SurrogateNetwork` rebuilt with NEURON cells (see the module docstring).

    ``solver`` is NEURON's integration (time step and method; default: the project's, as in the
    training data, see :mod:`surrogate_cell.cells.solver`). Build it after the surrogate network is complete; it
    deletes all NEURON sections of the process, so build the surrogate network's templates
    (its ``add_population`` calls) first, and :meth:`close` it before building other cells.
    """

    def __init__(self, network: SurrogateNetwork, solver: NeuronSolver = DEFAULT_SOLVER):
        if network.shard.is_distributed:
            raise ValueError("NeuronNetwork needs the whole network in one process; run it without torchrun.")
        self.network, self.solver, self.dt = network, solver, solver.dt
        self.templates = {name: network.template(name) for name in network.populations}
        blueprints = {id(t): template_blueprint(t, solver.dt) for t in self.templates.values()}
        self.cells = [instantiate(blueprints[id(self.templates[name])], f"cell{gid}")
                      for name in network.populations for gid in network.gids(name)]
        self.template_of_gid = [self.templates[name] for name in network.populations
                                for _ in network.gids(name)]
        self._synapses: dict[tuple[int, int], tuple] = {}
        self._segment_lists: dict[int, list] = {}
        self._netcons = self._connect()
        self._spike_times, self._spike_gids, self._detectors = self._spike_detectors()

    def close(self) -> None:
        """Release every NetCon, synapse and cloned section.

        Call it (or use the network as a context manager) before another cell is built in this
        process: NEURON crashes at the next initialisation if NetCons still target synapses on
        sections that building a cell deleted.
        """
        self._netcons, self._detectors, self._synapses, self._segment_lists = [], [], {}, {}
        for sections in self.cells:
            for section in sections:
                h.delete_section(sec=section)
        self.cells = []

    def __enter__(self) -> NeuronNetwork:
        return self

    def __exit__(self, *exc_info) -> None:
        self.close()

    # ------------------------------------------------------------------ structure

    def segment(self, gid: int, index: int):
        """Segment ``index`` (LFPy order) of cell ``gid``."""
        return self._segments(gid)[index]

    def _segments(self, gid: int) -> list:
        if gid not in self._segment_lists:
            self._segment_lists[gid] = [segment for section in self.cells[gid] for segment in section]
        return self._segment_lists[gid]

    def soma(self, gid: int):
        """The soma segment of cell ``gid``."""
        return self.segment(gid, self.template_of_gid[gid].soma_segment)

    def threshold_mv(self, gid: int) -> float:
        """Spike threshold of cell ``gid``: its population's, else its model's."""
        name = next(n for n, span in self.network.spans.items()
                    if span.first_gid <= gid < span.first_gid + span.n_cells)
        threshold = self.network.populations[name].spike_threshold_mv
        return self.template_of_gid[gid].spike_threshold_mv if threshold is None else float(threshold)

    def synapse(self, gid: int, channel: int) -> tuple:
        """(point process, source-less NetCon) of input channel ``channel`` of cell ``gid`` (made on first use)."""
        key = (gid, channel)
        if key not in self._synapses:
            template = self.template_of_gid[gid]
            n_inputs = template.input_segments.size
            kind = EVENT_KINDS[channel // n_inputs]
            segment = self.segment(gid, int(template.input_segments[channel % n_inputs]))
            point_process = getattr(h, SYNAPSE_MECHANISMS[kind])(segment)
            netcon = h.NetCon(None, point_process)
            netcon.weight[0] = TRAINED_WEIGHT
            self._synapses[key] = (point_process, netcon)
        return self._synapses[key]

    def _connect(self) -> list:
        """One NetCon per synapse of the network: presynaptic soma voltage -> synapse, with its delay."""
        table = self.network.connectivity()
        netcons = []
        for pre, post, channel, delay in zip(table.pre_gid.tolist(), table.post_gid.tolist(),
                                             table.channel.tolist(), table.delay_ms.tolist()):
            soma = self.soma(pre)
            netcon = h.NetCon(soma._ref_v, self.synapse(post, channel)[0], sec=soma.sec)
            netcon.threshold, netcon.delay, netcon.weight[0] = self.threshold_mv(pre), float(delay), TRAINED_WEIGHT
            netcons.append(netcon)
        return netcons

    def _spike_detectors(self):
        times, gids, detectors = h.Vector(), h.Vector(), []
        for gid in range(len(self.cells)):
            soma = self.soma(gid)
            detector = h.NetCon(soma._ref_v, None, sec=soma.sec)
            detector.threshold = self.threshold_mv(gid)
            detector.record(times, gids, gid)
            detectors.append(detector)
        return times, gids, detectors

    # ------------------------------------------------------------------ running

    def _input_events(self, duration_ms: int) -> list[tuple]:
        """(source-less NetCon, time) of every drive event (at whole ms) and injected spike (after
        each synapse's delay). Makes the synapses, which must exist before ``finitialize``."""
        scheduled = []
        for name in self.network.populations:
            events = self.network.drive_events(name, duration_ms)
            gids = self.network.spans[name].first_gid + events.cells
            for gid, channel, bin_ms in zip(gids.tolist(), events.channels.tolist(), events.bins.tolist()):
                scheduled.append((self.synapse(gid, channel)[1], float(bin_ms)))
        table = self.network.connectivity()
        for gid, time_ms in zip(*(values.tolist() for values in self.network.injected_spikes())):
            for row in np.flatnonzero(table.pre_gid == gid).tolist():
                netcon = self.synapse(int(table.post_gid[row]), int(table.channel[row]))[1]
                scheduled.append((netcon, time_ms + float(table.delay_ms[row])))
        return scheduled

    def run(self, duration_ms: int, record_soma: bool = True, progress: bool = True) -> NetworkResult:
        """Simulate ``duration_ms`` from rest; returns spikes, soma voltages and probe signals every ms."""
        h.load_file("stdrun.hoc")
        h.CVode().use_fast_imem(1)
        h.celsius = float(self._celsius())
        recorders = self._recorders(record_soma)
        scheduled = self._input_events(duration_ms)
        # every cell starts at its own model's v_init, set before the mechanisms' INITIAL blocks
        start_voltages = h.FInitializeHandler(0, self._set_initial_voltages)  # noqa: F841 (kept alive)
        with neuron_solver(self.solver):  # for this run only
            h.finitialize()
            for netcon, time_ms in scheduled:  # after finitialize, which empties the event queue
                netcon.event(time_ms)
            # one step past the end: NEURON takes the sample at t = duration_ms in the step after it
            stops = np.append(np.arange(PROGRESS_STEP_MS, duration_ms, PROGRESS_STEP_MS), duration_ms + self.dt)
            for stop in tqdm(stops, desc="NEURON network", unit="x10 ms", disable=not progress):
                h.continuerun(float(stop))
        return self._result(duration_ms, recorders)

    def _set_initial_voltages(self) -> None:
        for sections, template in zip(self.cells, self.template_of_gid):  # setup only: once per run
            for section in sections:
                for segment in section:
                    segment.v = template.v_init

    def _celsius(self) -> float:
        values = {t.recipe.get("cell_kwargs", {}).get("celsius") for t in self.templates.values()}
        values.discard(None)
        return values.pop() if values else 34.0

    def _recorders(self, record_soma: bool) -> dict:
        recorders = {"soma": [], "imem": []}
        for gid in range(len(self.cells)):
            if record_soma:
                recorders["soma"].append(_sampled(self.soma(gid)._ref_v))
            if self.network.probes:
                recorders["imem"].append([_sampled(segment._ref_i_membrane_) for segment in self._segments(gid)])
        return recorders

    def _result(self, duration_ms: int, recorders: dict) -> NetworkResult:
        n_columns = duration_ms + 1
        injected_gids, injected_times = self.network.injected_spikes()
        gids = np.concatenate([self._spike_gids.as_numpy().astype(np.int64), injected_gids])
        times = np.concatenate([self._spike_times.as_numpy(), injected_times])
        gids, times = gids[times <= duration_ms], times[times <= duration_ms]
        order = np.lexsort((gids, times))
        return NetworkResult(
            tvec=np.arange(n_columns, dtype=float), populations=dict(self.network.spans),
            spike_gids=gids[order], spike_times=times[order],
            population_probe_data={name: self._population_probes(name, recorders["imem"], n_columns)
                                   for name in self.network.populations} if self.network.probes else {},
            soma_v={name: np.stack([recorders["soma"][gid].as_numpy()[:n_columns]
                                    for gid in self.network.gids(name)])
                    for name in self.network.populations} if recorders["soma"] else {},
        )

    def _population_probes(self, name: str, imem_recorders: list, n_columns: int) -> dict[str, np.ndarray]:
        population, template = self.network.populations[name], self.templates[name]
        matrices = template.probe_matrices(population.positions, population.rotations, self.network.probes)
        total = np.zeros(matrices.shape[1:2] + (n_columns,))
        for matrix, gid in zip(matrices, self.network.gids(name)):  # cells, after the run
            imem = np.stack([vector.as_numpy()[:n_columns] for vector in imem_recorders[gid]])
            total += matrix @ imem
        rows = np.cumsum([0, *template.probe_rows(self.network.probes)])
        return {probe.name: total[start:stop] for probe, start, stop in zip(self.network.probes, rows[:-1], rows[1:])}


def _sampled(reference):
    """A Vector point-sampling ``reference`` at every whole ms."""
    vector = h.Vector()
    vector.record(reference, 1.0)
    return vector


# --------------------------------------------------------------------------- comparison


@dataclass
class Comparison:
    """How a surrogate network run matches the NEURON run of the same network.

    Rates are mean rates per cell (Hz) over all populations; ``spike_count_correlation`` is the
    Pearson r of the spike counts per cell (NaN if either is constant); ``lfp_pearson_r`` the
    Pearson r of every probe's network-total signal (rows minus their means, flattened).
    """

    neuron_rate_hz: float
    surrogate_rate_hz: float
    spike_count_correlation: float
    lfp_pearson_r: dict[str, float]

    @property
    def rate_relative_difference(self) -> float:
        """|surrogate - NEURON| / NEURON rate (inf if NEURON is silent and the surrogate is not)."""
        difference = abs(self.surrogate_rate_hz - self.neuron_rate_hz)
        return difference / self.neuron_rate_hz if self.neuron_rate_hz else (np.inf if difference else 0.0)


def compare_runs(neuron: NetworkResult, surrogate: NetworkResult, t_start_ms: float = 0.0) -> Comparison:
    """Rates, spike-count correlation and probe-signal correlation from ``t_start_ms`` on."""
    counts = [result.spike_counts(None, t_start_ms) for result in (neuron, surrogate)]
    columns = slice(int(np.ceil(t_start_ms)), None)
    lfp_r = {name: _pearson(neuron.probe_data[name][:, columns], surrogate.probe_data[name][:, columns])
             for name in neuron.probe_data}
    return Comparison(neuron.population_rate_hz(None, t_start_ms), surrogate.population_rate_hz(None, t_start_ms),
                      _pearson(counts[0][None].astype(float), counts[1][None].astype(float)), lfp_r)


def _pearson(a: np.ndarray, b: np.ndarray) -> float:
    """Pearson r of two (rows, samples) signals with each row's mean removed; NaN if one is flat."""
    a, b = a - a.mean(axis=1, keepdims=True), b - b.mean(axis=1, keepdims=True)
    norm = np.sqrt((a * a).sum() * (b * b).sum())
    return float((a * b).sum() / norm) if norm > 0 else float("nan")
