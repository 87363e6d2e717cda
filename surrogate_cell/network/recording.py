"""What a network run records: spikes, probe signals, soma voltages; in memory and in HDF5 chunks.

Recordings are collected a chunk of time at a time. At the end of each chunk the probe signals
are summed over ranks and the soma voltages gathered from them (one collective call each),
then handed to the sinks: :class:`NetworkResult` in memory and, for long runs, an
:class:`HDF5Writer` (written by rank 0). Column ``k`` of every time series is ``t = k`` ms.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path

import h5py
import numpy as np
import torch

from surrogate_cell.cell import MODEL_STEP_MS
from surrogate_cell.network.connectivity import PopulationSpan
from surrogate_cell.network.distributed import Shard, all_reduce_sum, gather_rows

FILE_FORMAT = "surrogate_cell-network"
FILE_FORMAT_VERSION = 1


@dataclass
class Chunk:
    """Recordings of columns ``start .. start + n_columns - 1``, summed / gathered over ranks.

    ``lfp[population][probe]`` is (rows, n_columns), the population's sum over its cells;
    ``soma_v[population]`` is (n_cells, n_columns) or absent; spikes are global.
    """

    start: int
    n_columns: int
    lfp: dict[str, dict[str, np.ndarray]]
    soma_v: dict[str, np.ndarray]
    spike_gids: np.ndarray
    spike_times: np.ndarray


@dataclass
class NetworkResult:
    """Everything one :meth:`SurrogateNetwork.simulate` produced.

    T is the simulated time in ms; column ``k`` of every time series is ``t = k`` ms.

    Attributes
    ----------
    tvec : ndarray, shape (T+1,)
        Time (ms).
    populations : dict of str to PopulationSpan
        Each population's global ids.
    spike_gids, spike_times : ndarray
        Spikes of all cells (global id, time in ms), sorted by time then id.
    population_probe_data : dict of str to dict of str to ndarray
        ``[population][probe]``: (rows, T+1), the probe signal summed over that population's
        cells (mV for ``RecExtElectrode``, nA um for ``CurrentDipoleMoment``).
    soma_v : dict of str to ndarray
        ``[population]``: (n_cells, T+1) soma voltages (mV), when recorded.
    vmem : dict of str to ndarray
        ``[population]``: (n_local, S, T+1) segment voltages (mV) of this process's cells,
        when recorded.
    local_gids : dict of str to ndarray
        ``[population]``: this process's cells (the rows of ``vmem``).
    input_events : dict of str to tuple of ndarray
        ``[population]``: (bins in ms, gids, channels) of every event this process's cells
        received, when recorded.
    merged_events : int
        Events that fell on a bin and channel that already had one (this process's cells),
        counted once by the model.
    """

    tvec: np.ndarray
    populations: dict[str, PopulationSpan]
    spike_gids: np.ndarray
    spike_times: np.ndarray
    population_probe_data: dict[str, dict[str, np.ndarray]]
    soma_v: dict[str, np.ndarray] = field(default_factory=dict)
    vmem: dict[str, np.ndarray] = field(default_factory=dict)
    local_gids: dict[str, np.ndarray] = field(default_factory=dict)
    input_events: dict[str, tuple[np.ndarray, np.ndarray, np.ndarray]] = field(default_factory=dict)
    merged_events: int = 0

    @property
    def duration_ms(self) -> float:
        """Simulated time (ms)."""
        return float(self.tvec[-1])

    @property
    def probe_data(self) -> dict[str, np.ndarray]:
        """Every probe's signal summed over all populations.

        Returns
        -------
        dict of str to ndarray
            Probe name -> (rows, T+1) network total.
        """
        per_population = list(self.population_probe_data.values())
        return {name: sum(data[name] for data in per_population) for name in per_population[0]} \
            if per_population else {}

    def _span(self, population: str | None) -> PopulationSpan:
        if population is None:
            return PopulationSpan(0, sum(span.n_cells for span in self.populations.values()))
        if population not in self.populations:
            raise KeyError(f"No population {population!r}; populations: {list(self.populations)}.")
        return self.populations[population]

    def spike_trains(self, population: str | None = None) -> list[np.ndarray]:
        """Spike times of every cell of a population, in id order.

        Parameters
        ----------
        population : str, optional
            Population name; default all cells.

        Returns
        -------
        list of ndarray
            One array of spike times (ms) per cell.
        """
        span = self._span(population)
        order = np.lexsort((self.spike_times, self.spike_gids))
        gids, times = self.spike_gids[order], self.spike_times[order]
        edges = np.searchsorted(gids, span.first_gid + np.arange(span.n_cells + 1))
        return [times[start:stop] for start, stop in zip(edges[:-1], edges[1:])]

    def spike_counts(self, population: str | None = None, t_start: float = 0.0,
                     t_stop: float | None = None) -> np.ndarray:
        """Spikes per cell of a population in ``[t_start, t_stop)``.

        Parameters
        ----------
        population : str, optional
            Population name; default all cells.
        t_start : float, default 0
            Start of the interval (ms).
        t_stop : float, optional
            End of the interval (ms, exclusive); default the end of the run.

        Returns
        -------
        ndarray of int, shape (n_cells,)
        """
        span = self._span(population)
        t_stop = self.duration_ms + MODEL_STEP_MS if t_stop is None else t_stop
        inside = ((self.spike_gids >= span.first_gid) & (self.spike_gids < span.first_gid + span.n_cells)
                  & (self.spike_times >= t_start) & (self.spike_times < t_stop))
        return np.bincount(self.spike_gids[inside] - span.first_gid, minlength=span.n_cells)

    def population_rate_hz(self, population: str | None = None, t_start: float = 0.0,
                           t_stop: float | None = None) -> float:
        """Mean firing rate of a cell of a population in ``[t_start, t_stop)``.

        Parameters
        ----------
        population : str, optional
            Population name; default all cells.
        t_start : float, default 0
            Start of the interval (ms).
        t_stop : float, optional
            End of the interval (ms, exclusive); default the end of the run.

        Returns
        -------
        float
            Spikes per cell per second (Hz).
        """
        t_stop = self.duration_ms + MODEL_STEP_MS if t_stop is None else t_stop
        counts = self.spike_counts(population, t_start, t_stop)
        return float(counts.mean() / ((t_stop - t_start) / 1000.0))


class MemorySink:
    """Keeps every chunk and joins them into arrays."""

    def __init__(self):
        self.chunks: list[Chunk] = []

    def write(self, chunk: Chunk) -> None:
        """Keep ``chunk``."""
        self.chunks.append(chunk)

    def joined(self) -> tuple[dict, dict]:
        """(lfp per population and probe, soma_v per population), joined along time."""
        if not self.chunks:
            return {}, {}
        first = self.chunks[0]
        lfp = {population: {name: np.concatenate([c.lfp[population][name] for c in self.chunks], axis=1)
                            for name in probes} for population, probes in first.lfp.items()}
        soma = {population: np.concatenate([c.soma_v[population] for c in self.chunks], axis=1)
                for population in first.soma_v}
        return lfp, soma


class HDF5Writer:
    """Writes a run to an HDF5 file chunk by chunk (rank 0 only; other ranks do nothing).

    Layout: ``/spikes/gids``, ``/spikes/times``; ``/probes/<probe>`` (rows, T+1) network totals;
    ``/populations/<name>/probes/<probe>`` and, with ``record_soma``, ``/populations/<name>/soma_v``
    (n_cells, T+1) mV; population attributes ``first_gid`` and ``n_cells``. Every time series
    grows along its last axis as chunks arrive, so a killed run keeps what was written; the
    file attribute ``n_columns`` says how many columns are complete.
    Read it back with :func:`read_network_file`. Pass it to :meth:`SurrogateNetwork.simulate`
    (``writer=``), which opens, fills and closes it.

    Parameters
    ----------
    path : str or Path
        Output file; its folder is created, an existing file is overwritten.
    compression : str or None, default "gzip"
        HDF5 compression of the data sets (``"gzip"``, ``"lzf"`` or None).
    attributes : dict, optional
        Stored as JSON in the file attribute ``attributes`` (e.g. the run's settings).
    """

    def __init__(self, path: str | Path, compression: str | None = "gzip", attributes: dict | None = None):
        self.path, self.compression = Path(path), compression
        self.attributes = attributes or {}
        self._file: h5py.File | None = None

    def open(self, populations: dict[str, PopulationSpan], probe_rows: dict[str, int],
             record_soma: bool, shard: Shard) -> None:
        """Create the file and its growing data sets (called by the network before the first chunk).

        Parameters
        ----------
        populations : dict of str to PopulationSpan
            The populations' global ids.
        probe_rows : dict of str to int
            Rows (contacts) of every probe.
        record_soma : bool
            Whether soma voltages are written.
        shard : Shard
            This process's rank; only rank 0 writes.
        """
        if shard.rank != 0:
            return
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._file = h5py.File(self.path, "w")
        self._file.attrs.update(format=FILE_FORMAT, format_version=FILE_FORMAT_VERSION, n_columns=0,
                                dt_ms=MODEL_STEP_MS, attributes=json.dumps(self.attributes, default=str))
        self._file.require_group("probes")
        for name in ("gids", "times"):
            self._growing(f"spikes/{name}", (), np.int64 if name == "gids" else np.float64)
        for probe, rows in probe_rows.items():
            self._growing(f"probes/{probe}", (rows,), np.float64)
        for population, span in populations.items():
            group = self._file.require_group(f"populations/{population}")
            group.attrs.update(first_gid=span.first_gid, n_cells=span.n_cells)
            group.require_group("probes")
            for probe, rows in probe_rows.items():
                self._growing(f"populations/{population}/probes/{probe}", (rows,), np.float64)
            if record_soma:
                self._growing(f"populations/{population}/soma_v", (span.n_cells,), np.float32)

    def _growing(self, name: str, leading: tuple, dtype) -> None:
        self._file.create_dataset(name, shape=(*leading, 0), maxshape=(*leading, None), dtype=dtype,
                                  chunks=True, compression=self.compression)

    def write(self, chunk: Chunk) -> None:
        """Append one chunk of recordings (rank 0; elsewhere a no-op).

        Parameters
        ----------
        chunk : Chunk
            Recordings of the next columns, summed / gathered over ranks.
        """
        if self._file is None:
            return
        _append(self._file["spikes/gids"], chunk.spike_gids)
        _append(self._file["spikes/times"], chunk.spike_times)
        for population, probes in chunk.lfp.items():
            for probe, data in probes.items():
                _append(self._file[f"populations/{population}/probes/{probe}"], data)
        for probe in next(iter(chunk.lfp.values()), {}):
            _append(self._file[f"probes/{probe}"], sum(probes[probe] for probes in chunk.lfp.values()))
        for population, soma in chunk.soma_v.items():
            _append(self._file[f"populations/{population}/soma_v"], soma)
        self._file.attrs["n_columns"] = chunk.start + chunk.n_columns
        self._file.flush()

    def close(self) -> None:
        """Close the file."""
        if self._file is not None:
            self._file.close()
            self._file = None


def _append(dataset: h5py.Dataset, data: np.ndarray) -> None:
    size = dataset.shape[-1]
    dataset.resize(size + data.shape[-1], axis=dataset.ndim - 1)
    dataset[..., size:] = data


def read_network_file(path: str | Path) -> NetworkResult:
    """Read a file written by :class:`HDF5Writer`.

    Parameters
    ----------
    path : str or Path
        The network file.

    Returns
    -------
    NetworkResult
        Spikes, probe signals per population and soma voltages (if written); no ``vmem`` or
        input events.

    Raises
    ------
    ValueError
        If the file is not a surrogate_cell network file.
    """
    with h5py.File(path, "r") as h5:
        if h5.attrs.get("format") != FILE_FORMAT:
            raise ValueError(f"{path} is not a surrogate_cell network file (format {h5.attrs.get('format')!r}).")
        populations, lfp, soma = {}, {}, {}
        for name, group in h5["populations"].items():
            populations[name] = PopulationSpan(int(group.attrs["first_gid"]), int(group.attrs["n_cells"]))
            lfp[name] = {probe: data[()] for probe, data in group["probes"].items()}
            if "soma_v" in group:
                soma[name] = group["soma_v"][()]
        gids, times = h5["spikes/gids"][()], h5["spikes/times"][()]
        n_columns = int(h5.attrs["n_columns"])
    return NetworkResult(tvec=np.arange(n_columns) * MODEL_STEP_MS, populations=populations,
                         spike_gids=gids, spike_times=times, population_probe_data=lfp, soma_v=soma)


@dataclass
class RecordingOptions:
    """What :meth:`SurrogateNetwork.simulate` records besides spikes and probe signals.

    ``record_soma``: soma voltages of all cells. ``record_vmem``: every segment's voltage of
    this process's cells (memory: cells x segments x ms). ``record_input_events``: every event
    the models received (this process's cells). ``chunk_ms``: columns per chunk (reductions
    and file writes happen once per chunk). ``keep_in_memory``: return the time series (set
    False for long runs written to a file; spikes are always returned).
    """

    record_soma: bool = False
    record_vmem: bool = False
    record_input_events: bool = False
    chunk_ms: int = 100
    keep_in_memory: bool = True


@dataclass
class PopulationRecording:
    """What the recorder needs to know of one population: span, local cells, probe rows."""

    name: str
    span: PopulationSpan
    local_gids: np.ndarray
    probe_rows: dict[str, int]


class Recorder:
    """Collects one run column by column and hands full chunks to the sinks."""

    def __init__(self, populations: list[PopulationRecording], n_columns: int, options: RecordingOptions,
                 writer: HDF5Writer | None, shard: Shard, device: torch.device, n_segments: dict[str, int]):
        self.populations, self.n_columns, self.options = populations, n_columns, options
        self.shard, self.device = shard, device
        self.memory = MemorySink() if options.keep_in_memory else None
        self.sinks = [sink for sink in (self.memory, writer) if sink is not None]
        self.n_probe_rows = sum(populations[0].probe_rows.values()) if populations else 0
        self.chunk_length = max(1, int(options.chunk_ms))
        self._lfp = torch.zeros(len(populations), self.n_probe_rows, self.chunk_length, dtype=torch.float64,
                                device=device)
        self._soma = [torch.zeros(len(p.local_gids), self.chunk_length, device=device) for p in populations]
        self._spikes: list[tuple[torch.Tensor, torch.Tensor]] = []
        self._all_spikes: list[tuple[np.ndarray, np.ndarray]] = []
        self._vmem = {p.name: np.zeros((len(p.local_gids), n_segments[p.name], n_columns), np.float32)
                      for p in populations} if options.record_vmem else {}
        self._events: dict[str, list] = {p.name: [] for p in populations}
        self._chunk_start = 0
        if writer is not None:
            writer.open({p.name: p.span for p in populations}, populations[0].probe_rows if populations else {},
                        options.record_soma, shard)

    def record_population(self, column: int, index: int, voltages: torch.Tensor, lfp: torch.Tensor,
                          soma_segment: int) -> None:
        """One population's voltages (n_local, S) and summed probe signal at ``column``."""
        offset = column - self._chunk_start
        self._lfp[index, :, offset] = lfp
        self._soma[index][:, offset] = voltages[:, soma_segment]
        if self.options.record_vmem:
            self._vmem[self.populations[index].name][:, :, column] = voltages.cpu().numpy()

    def record_events(self, index: int, bin_ms: int, rows: torch.Tensor, channels: torch.Tensor) -> None:
        """Input events (population rows, channels) of bin ``bin_ms`` of one population."""
        if self.options.record_input_events:
            gids = self.populations[index].local_gids[rows.cpu().numpy()]
            self._events[self.populations[index].name].append(
                (np.full(gids.size, bin_ms), gids, channels.cpu().numpy()))

    def record_spikes(self, gids: torch.Tensor, times: torch.Tensor) -> None:
        """Spikes (global) of one step."""
        if gids.numel():
            self._spikes.append((gids, times))

    def end_column(self, column: int) -> None:
        """Flush the chunk when ``column`` completes it or is the last one."""
        if column + 1 - self._chunk_start == self.chunk_length or column + 1 == self.n_columns:
            self._flush(column + 1 - self._chunk_start)

    def _flush(self, n_columns: int) -> None:
        # clones: the buffers are reused for the next chunk
        lfp = all_reduce_sum(self._lfp[:, :, :n_columns].clone(), self.shard).cpu().numpy()
        soma = {}
        if self.options.record_soma:
            soma = {p.name: gather_rows(self._soma[i][:, :n_columns].clone(), p.span.n_cells,
                                        self.shard).cpu().numpy() for i, p in enumerate(self.populations)}
        gids = torch.cat([g for g, _ in self._spikes]).cpu().numpy() if self._spikes else np.empty(0, np.int64)
        times = torch.cat([t for _, t in self._spikes]).cpu().numpy() if self._spikes else np.empty(0)
        order = np.lexsort((gids, times))
        chunk = Chunk(self._chunk_start, n_columns, {p.name: _split_rows(lfp[i], p.probe_rows)
                                                     for i, p in enumerate(self.populations)},
                      soma, gids[order], times[order])
        for sink in self.sinks:
            sink.write(chunk)
        self._all_spikes.append((chunk.spike_gids, chunk.spike_times))
        self._spikes = []
        self._chunk_start += n_columns

    def result(self, populations: dict[str, PopulationSpan], merged_events: int) -> NetworkResult:
        """The run as a :class:`NetworkResult` (time series empty unless kept in memory)."""
        lfp, soma = self.memory.joined() if self.memory is not None else ({}, {})
        gids = np.concatenate([g for g, _ in self._all_spikes]) if self._all_spikes else np.empty(0, np.int64)
        times = np.concatenate([t for _, t in self._all_spikes]) if self._all_spikes else np.empty(0)
        events = {name: tuple(np.concatenate([part[k] for part in parts]) if parts else np.empty(0, np.int64)
                              for k in range(3)) for name, parts in self._events.items()} \
            if self.options.record_input_events else {}
        return NetworkResult(
            tvec=np.arange(self.n_columns) * MODEL_STEP_MS, populations=populations, spike_gids=gids,
            spike_times=times, population_probe_data=lfp, soma_v=soma, vmem=self._vmem,
            local_gids={p.name: p.local_gids for p in self.populations}, input_events=events,
            merged_events=merged_events,
        )


def _split_rows(data: np.ndarray, probe_rows: dict[str, int]) -> dict[str, np.ndarray]:
    """Stacked probe rows -> {probe: its rows}."""
    edges = np.cumsum([0, *probe_rows.values()])
    return {name: data[start:stop] for name, start, stop in zip(probe_rows, edges[:-1], edges[1:])}
