"""``SurrogateNetwork``: recurrent networks of surrogate cells, in one process or sharded over many.

The ideas are ``LFPy.Network``'s — populations placed in space, random connectivity, external
drive, probes — with every population that shares one model stepped as one batch::

    network = SurrogateNetwork(seed=1)
    network.add_population(Population("E", model="l5pc-default", n_cells=400, positions=xyz))
    network.add_population(Population("I", model="l5pc-default", n_cells=100, synapse_kind="inh"))
    network.connect(Connection("E", "I", probability=0.1, delay_ms=2.0, synapses_per_connection=5))
    network.add_drive(PoissonDrive("E", exc_rate_hz=10.0, inh_rate_hz=8.0))
    network.add_probe(Probe("lfp", LFPy.RecExtElectrode, dict(x=x, y=y, z=z, sigma=0.3)))
    result = network.simulate(1000, record_soma=True)

Each 1 ms step: every batch takes the events of the bin (delayed spikes from its ring buffer
plus drive), predicts its cells' voltages, and reports soma-threshold crossings; the spikes
of all ranks are gathered, and every batch schedules the events of its incoming synapses.
Probe signals are one product per population and step (see :meth:`CellTemplate.lfp_matrices`).

Under ``torchrun`` (or :func:`~surrogate_cell.network.distributed.spawn`) each rank builds the
same network and simulates its shard of every population; spikes, probe signals and soma
voltages come out identical on every rank.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np
import torch
from tqdm.auto import tqdm

from surrogate_cell.cell import MODEL_STEP_MS
from surrogate_cell.device import select_device, select_dtype
from surrogate_cell.network.batch import (
    BatchMember,
    ModelBatch,
    batch_history,
    member_history,
)
from surrogate_cell.network.config import (
    Connection,
    NetworkConfigError,
    PoissonDrive,
    Population,
    Probe,
)
from surrogate_cell.network.connectivity import (
    ConnectionTable,
    PopulationSpan,
    draw_connections,
)
from surrogate_cell.network.distributed import Shard, SpikeExchange
from surrogate_cell.network.drive import (
    DRIVE_CHUNK_MS,
    DriveEvents,
    DriveSource,
    draw_drive_chunk,
)
from surrogate_cell.network.recording import (
    HDF5Writer,
    NetworkResult,
    PopulationRecording,
    Recorder,
    RecordingOptions,
)
from surrogate_cell.network.templates import CellTemplate, TemplateCache


class SurrogateNetwork:
    """A network of surrogate-cell populations (see the module docstring).

    Build it with :meth:`add_population`, :meth:`connect`, :meth:`add_drive`,
    :meth:`add_probe` (and optionally :meth:`inject_spikes`), then :meth:`simulate`. The
    network is built at the first :meth:`simulate`; after that it cannot be changed. In a
    ``torch.distributed`` job each rank simulates its shard of the cells; results do not
    depend on the number of ranks.

    Parameters
    ----------
    seed : int, default 0
        Fixes every random draw (connectivity, delays, drive).
    device : str or torch.device, optional
        Where the models run; default CUDA if available, else CPU.
    dtype : str or torch.dtype, optional
        Model precision; default float32 (float16/bfloat16 on CUDA only).

    Attributes
    ----------
    populations : dict of str to Population
        The added populations, by name.
    spans : dict of str to PopulationSpan
        Each population's global ids: ``first_gid .. first_gid + n_cells - 1``.
    connections : list of Connection
        The connection rules.
    probes : list of Probe
        The probes.

    Examples
    --------
    >>> net = SurrogateNetwork(seed=1)  # doctest: +SKIP
    >>> net.add_population(Population("E", "l5pc-default", 80, synapse_kind="exc"))  # doctest: +SKIP
    >>> net.add_drive(PoissonDrive("E", exc_rate_hz=12.5, inh_rate_hz=10.0))  # doctest: +SKIP
    >>> result = net.simulate(1000)  # doctest: +SKIP
    """

    def __init__(self, seed: int = 0, device: str | torch.device | None = None,
                 dtype: str | torch.dtype | None = None):
        self.seed = int(seed)
        self.device = select_device(device)
        self.dtype = select_dtype(dtype, self.device)
        self.shard = Shard.current()
        self.populations: dict[str, Population] = {}
        self.spans: dict[str, PopulationSpan] = {}
        self.connections: list[Connection] = []
        self.drives: list[tuple[PoissonDrive, np.ndarray]] = []
        self.probes: list[Probe] = []
        self._templates = TemplateCache()
        self._injected: list[tuple[np.ndarray, np.ndarray]] = []
        self._batches: list[ModelBatch] | None = None
        self._synapses: ConnectionTable | None = None

    # ------------------------------------------------------------------ building

    @property
    def n_cells(self) -> int:
        """Number of cells in all populations (int)."""
        return sum(span.n_cells for span in self.spans.values())

    def add_population(self, population: Population) -> PopulationSpan:
        """Add a population; its cell is built and checked against its model now.

        Parameters
        ----------
        population : Population
            The population to add; its name must be new.

        Returns
        -------
        PopulationSpan
            Its global ids: ``first_gid .. first_gid + n_cells - 1``.

        Raises
        ------
        NetworkConfigError
            For a duplicate name or after the first :meth:`simulate`.
        PopulationMismatchError
            If the cell is not the one the model was trained on.
        """
        self._refuse_after_build("add_population")
        if population.name in self.populations:
            raise NetworkConfigError(f"A population named {population.name!r} exists already.")
        self._templates.get(population)
        span = PopulationSpan(self.n_cells, population.n_cells)
        self.populations[population.name], self.spans[population.name] = population, span
        return span

    def template(self, population: str) -> CellTemplate:
        """The cell template of a population.

        Parameters
        ----------
        population : str
            Population name.

        Returns
        -------
        CellTemplate
            One ``SurrogateCell`` of the population's model plus its input channels, target
            segments and probe matrices.
        """
        return self._templates.get(self._population(population))

    def gids(self, population: str) -> np.ndarray:
        """Global ids of a population's cells.

        Parameters
        ----------
        population : str
            Population name.

        Returns
        -------
        ndarray of int, shape (n_cells,)
        """
        span = self.spans[self._population(population).name]
        return span.first_gid + np.arange(span.n_cells)

    def connect(self, connection: Connection) -> None:
        """Add a connection rule; its targets are checked now, its synapses drawn at the first run.

        Parameters
        ----------
        connection : Connection
            The rule; ``pre`` and ``post`` must name added populations.

        Raises
        ------
        NetworkConfigError
            For an unknown population or after the first :meth:`simulate`.
        TargetError
            If the targets select no segment with input channels.
        """
        self._refuse_after_build("connect")
        self._population(connection.pre)
        label = f"Connection {connection.pre!r} -> {connection.post!r}"
        self.template(connection.post).target_segments(connection.targets, label)
        self.connections.append(connection)

    def add_drive(self, drive: PoissonDrive) -> None:
        """Add external Poisson input to a population.

        Parameters
        ----------
        drive : PoissonDrive
            The drive; ``drive.population`` must name an added population.

        Raises
        ------
        NetworkConfigError
            For an unknown population, bad rates or after the first :meth:`simulate`.
        TargetError
            If the drive's section types have no input channels.
        """
        self._refuse_after_build("add_drive")
        template = self.template(drive.population)
        rates = drive.channel_rates_hz(template.input_segments.size,
                                       template.section_types[template.input_segments])
        self.drives.append((drive, rates))

    def add_probe(self, probe: Probe) -> None:
        """Add a probe, placed on every cell; its signal is summed per population and in total.

        Parameters
        ----------
        probe : Probe
            The probe; its name must be new, and it must give the same number of rows (contacts)
            on every population's cell.

        Raises
        ------
        NetworkConfigError
            For a duplicate name, differing row counts or after the first :meth:`simulate`.
        """
        self._refuse_after_build("add_probe")
        if any(existing.name == probe.name for existing in self.probes):
            raise NetworkConfigError(f"A probe named {probe.name!r} exists already.")
        rows = {tuple(template.probe_rows([probe])) for template in self._templates.values()}
        if len(rows) > 1:
            raise NetworkConfigError(f"Probe {probe.name!r} gives different numbers of rows on the "
                                     f"populations' cells ({sorted(rows)}).")
        self.probes.append(probe)

    def inject_spikes(self, gids: Sequence[int], times_ms: Sequence[float]) -> None:
        """Make cells fire at given times, in addition to their own spikes.

        Injected spikes reach the cells' targets like their own and appear among the result's
        spikes. In a distributed run every rank must inject the same spikes.

        Parameters
        ----------
        gids : sequence of int
            Global ids of the firing cells, in ``[0, n_cells)``.
        times_ms : sequence of float
            One spike time (ms, >= 0) per gid.

        Raises
        ------
        ValueError
            For unequal lengths, unknown gids or negative or non-finite times.
        """
        gids, times = np.asarray(gids, dtype=np.int64).ravel(), np.asarray(times_ms, dtype=float).ravel()
        if gids.shape != times.shape:
            raise ValueError(f"inject_spikes needs one time per gid, got {gids.size} gids and {times.size} times.")
        if gids.size and (gids.min() < 0 or gids.max() >= self.n_cells):
            raise ValueError(f"inject_spikes: gids must be in [0, {self.n_cells}), got {gids.min()}..{gids.max()}.")
        if not np.all(np.isfinite(times) & (times >= 0)):
            raise ValueError("inject_spikes: times must be finite and >= 0 ms (the run starts at 0).")
        self._injected.append((gids, times))

    def _population(self, name: str) -> Population:
        if name not in self.populations:
            raise NetworkConfigError(f"No population named {name!r}; add it first (populations: "
                                     f"{list(self.populations)}).")
        return self.populations[name]

    def _refuse_after_build(self, method: str) -> None:
        if self._batches is not None:
            raise NetworkConfigError(f"{method}() after the first simulate(): the network is built; "
                                     "create a new SurrogateNetwork to change it.")

    # ------------------------------------------------------------------ drawn quantities

    def connectivity(self) -> ConnectionTable:
        """The synapses onto this rank's cells (all synapses in a single process), drawn once.

        Returns
        -------
        ConnectionTable
            One row per synapse: presynaptic and postsynaptic gid, segment, input channel,
            delay (whole ms) and whether it is inhibitory.
        """
        if self._synapses is None:
            tables = []
            for index, rule in enumerate(self.connections):  # once; each rule vectorised
                post = self.populations[rule.post]
                tables.append(draw_connections(
                    rule, index, self.spans[rule.pre], self.spans[rule.post],
                    self.populations[rule.pre].synapse_kind, self.template(rule.post), self.seed,
                    self.shard.cells(post.n_cells)))
            self._synapses = ConnectionTable.concatenate(tables)
        return self._synapses

    def drive_events(self, population: str, duration_ms: int) -> DriveEvents:
        """All drive events of all cells of a population in ``[0, duration_ms)``.

        Parameters
        ----------
        population : str
            Population name.
        duration_ms : int
            Length of the drawn interval (ms).

        Returns
        -------
        DriveEvents
            ``bins`` (ms), ``cells`` (indices within the population) and ``channels`` (model
            input channels) of every event.
        """
        n_cells = self._population(population).n_cells
        parts = [draw_drive_chunk(self.seed, index, rates, n_cells, range(n_cells), chunk)
                 for index, (drive, rates) in enumerate(self.drives) if drive.population == population
                 for chunk in range(math.ceil(duration_ms / DRIVE_CHUNK_MS))]
        events = DriveEvents.concatenate(parts)
        inside = events.bins < duration_ms
        return DriveEvents(events.bins[inside], events.cells[inside], events.channels[inside])

    def injected_spikes(self) -> tuple[np.ndarray, np.ndarray]:
        """All injected spikes, sorted by time.

        Returns
        -------
        gids : ndarray of int
        times : ndarray of float
            Spike times (ms).
        """
        gids = np.concatenate([g for g, _ in self._injected]) if self._injected else np.empty(0, np.int64)
        times = np.concatenate([t for _, t in self._injected]) if self._injected else np.empty(0)
        order = np.argsort(times, kind="stable")
        return gids[order], times[order]

    # ------------------------------------------------------------------ batches

    def _build(self) -> list[ModelBatch]:
        if self._batches is None:
            if not self.populations:
                raise NetworkConfigError("The network has no populations; add_population() first.")
            synapses = self.connectivity()
            self._batches = [self._batch(members, synapses) for members in self._members_by_model()]
            self._exchange = SpikeExchange(self._gids_by_rank(), self.shard, self.device)
        return self._batches

    def _gids_by_rank(self) -> list[np.ndarray]:
        """Every rank's cells in the order of its spike vector: batch by batch, population by population."""
        members = [member for batch in self._batches for member in batch.members]
        return [np.concatenate([m.span.first_gid + np.array(self.shard.cells(m.population.n_cells, rank))
                                for m in members]).astype(np.int64)
                for rank in range(self.shard.world_size)]

    def _members_by_model(self) -> list[list[BatchMember]]:
        groups: dict[str, list[BatchMember]] = {}
        for name, population in self.populations.items():
            template = self.template(name)
            members = groups.setdefault(str(template.model_path), [])
            local = self.shard.cells(population.n_cells)
            first_row = members[-1].rows.stop if members else 0
            members.append(BatchMember(population, template, self.spans[name], local,
                                       slice(first_row, first_row + len(local))))
        return list(groups.values())

    def _batch(self, members: list[BatchMember], synapses: ConnectionTable) -> ModelBatch:
        local_gids = np.concatenate([member.local_gids for member in members])
        onto_batch = synapses.select(np.isin(synapses.post_gid, local_gids))
        sources = [DriveSource(index, rates, member.population.n_cells, member.local_cells, member.rows.start)
                   for index, (drive, rates) in enumerate(self.drives)
                   for member in members if member.population.name == drive.population]
        return ModelBatch(members, onto_batch, self.n_cells, sources, self.probes, self.seed,
                          self.device, self.dtype)

    def state_bytes(self) -> int:
        """Bytes of this rank's per-run state: stepper windows, ring buffers, synapse indices, probe matrices.

        Builds the network if it is not built yet.

        Returns
        -------
        int
        """
        total = 0
        for batch in self._build():
            tensors = [batch.delivery.ring, batch.delivery.pointers, batch.delivery.rows,
                       batch.delivery.channels, batch.delivery.delays, *batch.lfp_matrices]
            total += sum(t.numel() * t.element_size() for t in tensors)
            total += batch.stepper.state_bytes() if batch.stepper is not None else 0
        return total

    # ------------------------------------------------------------------ simulation

    @torch.no_grad()
    def simulate(self, duration_ms: float, *, record_soma: bool = False, record_vmem: bool = False,
                 record_input_events: bool = False, writer: HDF5Writer | None = None,
                 keep_in_memory: bool = True, chunk_ms: int = 100,
                 history_mv: dict[str, np.ndarray] | None = None,
                 history_events: dict[str, np.ndarray] | None = None,
                 progress: bool = False) -> NetworkResult:
        """Run the network from t = 0 for ``duration_ms``, 1 ms per step.

        Every cell starts from a window at its ``v_init`` without events, unless
        ``history_mv`` / ``history_events`` give a population's start.

        Parameters
        ----------
        duration_ms : float
            Simulated time (ms); a whole number.
        record_soma : bool, default False
            Record every cell's soma voltage (mV).
        record_vmem : bool, default False
            Record every segment's voltage (mV) of this process's cells (memory: cells x
            segments x ms).
        record_input_events : bool, default False
            Record every event the models received (this process's cells).
        writer : HDF5Writer, optional
            Also write the run to a file chunk by chunk; closed at the end.
        keep_in_memory : bool, default True
            Return the time series (False for long runs written to a file; spikes are always
            returned).
        chunk_ms : int, default 100
            Columns per chunk: reductions over ranks and file writes happen once per chunk.
        history_mv : dict of str to ndarray, optional
            Per population, start voltages (mV): (S, >= W) for all its cells or
            (n_cells, S, >= W), S = segments, W = the model's window (ms).
        history_events : dict of str to ndarray, optional
            Per population, start input events: (n_event_channels, >= W) or
            (n_cells, n_event_channels, >= W).
        progress : bool, default False
            Show a progress bar (rank 0).

        Returns
        -------
        NetworkResult
            Spikes, probe signals and the requested recordings; ``tvec`` is
            ``0, 1, ..., duration_ms`` ms.

        Raises
        ------
        NetworkConfigError
            If the network has no populations.
        ValueError
            For a history of an unknown population or of the wrong shape.
        """
        n_steps = _whole_ms(duration_ms)
        batches = self._build()
        options = RecordingOptions(record_soma, record_vmem, record_input_events, chunk_ms, keep_in_memory)
        self._reset(batches, history_mv or {}, history_events or {})
        recorder = self._recorder(batches, n_steps + 1, options, writer)
        injected = _InjectedSpikes(*self.injected_spikes(), n_steps, self.device)
        steps = tqdm(range(n_steps), desc="surrogate network", unit="ms",
                     disable=not progress or self.shard.rank != 0)
        try:
            self._record_column(batches, recorder, 0)
            for t in steps:  # each step needs the previous one's spikes
                recorder.record_spikes(*self._step(batches, t, injected))
                self._record_column(batches, recorder, t + 1)
        finally:
            if writer is not None:
                writer.close()
        merged = int(sum(int(batch.delivery.merged_events) for batch in batches))
        return recorder.result(dict(self.spans), merged)

    def _step(self, batches: list[ModelBatch], t: int, injected: _InjectedSpikes) -> tuple[torch.Tensor, torch.Tensor]:
        """Advance every batch from t to t+1 and pass on the spikes; returns them (gids, times)."""
        for batch in batches:
            batch.step(t)
        gids, times = self._exchange.exchange(torch.cat([batch.detect(t) for batch in batches]))
        extra_gids, extra_times = injected.at(t)
        gids, times = torch.cat([gids, extra_gids]), torch.cat([times, extra_times])
        for batch in batches:
            batch.delivery.deliver(gids, times)
        return gids, times

    def _recorder(self, batches: list[ModelBatch], n_columns: int, options: RecordingOptions,
                  writer: HDF5Writer | None) -> Recorder:
        probe_rows = dict(zip((p.name for p in self.probes),
                              batches[0].template.probe_rows(self.probes)))
        members = [member for batch in batches for member in batch.members]
        populations = [PopulationRecording(m.population.name, m.span, m.local_gids, probe_rows) for m in members]
        return Recorder(populations, n_columns, options, writer, self.shard, self.device,
                        {m.population.name: m.template.n_segments for m in members})

    def _reset(self, batches: list[ModelBatch], history_mv: dict, history_events: dict) -> None:
        unknown = sorted((set(history_mv) | set(history_events)) - set(self.populations))
        if unknown:
            raise ValueError(f"History given for unknown population(s) {unknown}.")
        for batch in batches:
            histories = [member_history(m, history_mv.get(m.population.name),
                                        history_events.get(m.population.name)) for m in batch.members]
            batch.reset(*batch_history(batch.members, histories))

    @staticmethod
    def _record_column(batches: list[ModelBatch], recorder: Recorder, column: int) -> None:
        index = 0
        for batch in batches:
            for member_index, member in enumerate(batch.members):
                recorder.record_population(column, index, batch.voltages[member.rows],
                                           batch.member_lfp(member_index), member.template.soma_segment)
                if column > 0 and recorder.options.record_input_events:
                    recorder.record_events(index, column - 1, *batch.member_events(member_index))
                index += 1
        recorder.end_column(column)


class _InjectedSpikes:
    """Injected spikes handed out per step: step t passes on those in (t, t+1] (step 0: [0, 1]),
    the interval its own detected spikes lie in."""

    def __init__(self, gids: np.ndarray, times: np.ndarray, n_steps: int, device: torch.device):
        self.gids = torch.as_tensor(gids, dtype=torch.int64, device=device)
        self.times = torch.as_tensor(times, dtype=torch.float64, device=device)
        self.edges = np.searchsorted(times, np.arange(n_steps + 1) * MODEL_STEP_MS, side="right")
        self.edges[0] = 0

    def at(self, t: int) -> tuple[torch.Tensor, torch.Tensor]:
        """(gids, times) of the injected spikes step ``t`` passes on."""
        step = slice(self.edges[t], self.edges[t + 1])
        return self.gids[step], self.times[step]


def _whole_ms(duration_ms: float) -> int:
    n_steps = int(round(duration_ms / MODEL_STEP_MS))
    if n_steps < 1 or abs(n_steps * MODEL_STEP_MS - duration_ms) > 1e-9:
        raise ValueError(f"duration_ms must be a positive whole number of ms for the models' "
                         f"{MODEL_STEP_MS:g} ms step, got {duration_ms}.")
    return n_steps
