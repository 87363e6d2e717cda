"""HDF5 storage of training-data simulations: writer helpers and a small reader API.

One file holds one data set; ``docs/data_format.md`` describes the layout. Every
simulation is a group ``sims/NNNNNN`` whose attribute ``complete`` is written last, so a
group without it is the remains of an interrupted write: readers skip such groups and
the generator deletes them before it continues. The file is opened only for the short
time of each write, which keeps the window in which a kill can damage it small.

This module needs only numpy and h5py (no NEURON), so training code can read data sets
anywhere.
"""

from __future__ import annotations

import errno
import json
import os
import time
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import h5py
import numpy as np

from surrogate_cell.cells.layout import CellLayout
from surrogate_cell.cells.solver import with_solver_fields
from surrogate_cell.data.inputs import pack_events, unpack_events
from surrogate_cell.data.stimulus import Stimulus

if TYPE_CHECKING:
    from surrogate_cell.data.simulation import SimulationResult

FORMAT_VERSION = 1
SIMS_GROUP = "sims"
CELL_GROUP = "cell"
COMPLETE_ATTR = "complete"
LOCK_WAIT_S = 60.0
"""How long to wait for another process (reader or writer) to close the file."""

_CHUNK_BYTES = 1 << 19
_JSON_ATTRS = ("config", "cell_recipe", "versions")


class DataSetError(RuntimeError):
    """A data set file cannot be used: unreadable, not a data set, or made with another setup."""


# --------------------------------------------------------------------------- opening


_DENIED = (errno.EACCES, errno.EPERM, errno.EROFS)


def unreadable_message(path: str | Path, error: BaseException) -> str:
    """The one error message for a file HDF5 cannot read (not a permission or lock problem)."""
    return (f"{path} is not a readable HDF5 data set (truncated or corrupt?): {error}. "
            f"Rerunning simulate with --overwrite deletes it and every simulation in it; to keep "
            f"them, leave the file alone (try a backup copy) and write new data to another --out.")


def denied_message(path: str | Path, error: OSError, mode: str) -> str:
    """The error message for a data set this user may not open in ``mode`` (nothing is damaged)."""
    if error.errno == errno.EROFS:
        return (f"cannot write to data set {path}: it is on a read-only file system. Copy it to a "
                f"writable place and use the copy.")
    if mode == "r":
        return (f"permission denied reading data set {path} ({error.strerror}). Make it readable "
                f"(chmod u+r {path}) or use a readable copy.")
    return (f"permission denied writing to data set {path} ({error.strerror}): the file or its folder "
            f"is read-only. Nothing in it was changed. Make it writable (chmod u+w {path}) or write "
            f"to another --out.")


def locked_message(path: str | Path) -> str:
    """The error message for a data set another process still holds open after ``LOCK_WAIT_S``."""
    return (f"data set {path} is held open by another process (HDF5 file lock, waited "
            f"{LOCK_WAIT_S:g} s): e.g. a running simulate or training, or an open h5py/HDFView "
            f"session. Close that program or wait for it to finish, then rerun.")


def _is_lock_error(error: OSError) -> bool:
    return error.errno in (errno.EAGAIN, errno.EWOULDBLOCK) or "unable to lock file" in str(error)


def data_set_error(path: str | Path, error: OSError, mode: str = "r") -> DataSetError:
    """The one :class:`DataSetError` for an ``OSError`` h5py raised on ``path`` opened in ``mode``.

    Permission problems, another process's lock, a folder in place of the file and a full disk
    each get their own message; only what remains is reported as a damaged file.
    """
    if error.errno in _DENIED:
        return DataSetError(denied_message(path, error, mode))
    if _is_lock_error(error):
        return DataSetError(locked_message(path))
    if error.errno == errno.EISDIR:
        return DataSetError(f"{path} is a folder, not a data set file; give the path of an .h5 file.")
    if error.errno == errno.ENOSPC:
        return DataSetError(f"no space left on the device holding {path}: free some space and rerun "
                            f"(finished simulations are kept).")
    return DataSetError(unreadable_message(path, error))


def _open_when_unlocked(path: str | Path, mode: str) -> h5py.File:
    """h5py.File(path, mode), waiting while another process holds the file open (HDF5 lock)."""
    deadline = time.monotonic() + LOCK_WAIT_S
    while True:
        try:
            return h5py.File(path, mode)
        except OSError as error:
            if not _is_lock_error(error) or time.monotonic() > deadline:
                raise data_set_error(path, error, mode) from None
        time.sleep(0.05)


@contextmanager
def open_h5(path: str | Path, mode: str = "r") -> Iterator[h5py.File]:
    """Open ``path`` with h5py, turning HDF5 read errors into one clear :class:`DataSetError`."""
    if mode == "r" and not Path(path).exists():
        raise DataSetError(f"data set {path} does not exist")
    handle = _open_when_unlocked(path, mode)
    try:
        with handle:
            yield handle
    except OSError as error:  # damage beyond the superblock shows up only on reading
        raise data_set_error(path, error, mode) from None


# --------------------------------------------------------------------------- cell layout




_STRING_FIELDS = ("segment_names", "section_types", "synapse_kinds")
_ARRAY_FIELDS = ("x", "y", "z", "diam", "area", "length", "input_segments", "synapse_segments",
                 "synapse_event_rows")


def _write_layout(h5: h5py.File, layout: CellLayout) -> None:
    group = h5.create_group(CELL_GROUP)
    for name in _STRING_FIELDS:
        group.create_dataset(name, data=np.asarray(getattr(layout, name), dtype=object),
                             dtype=h5py.string_dtype())
    for name in _ARRAY_FIELDS:
        group.create_dataset(name, data=np.asarray(getattr(layout, name)))
    group.attrs["soma_segment"] = layout.soma_segment
    group.attrs["recipe"] = json.dumps(layout.recipe, sort_keys=True)
    group.attrs["segment_hash"] = layout.segment_hash


def _check_layout_group(path, h5: h5py.File) -> None:
    """Refuse a file without a complete ``/cell`` group (the layout ``simulate`` writes)."""
    fix = "make the data set with `python -m surrogate_cell.training simulate`"
    if not isinstance(h5.get(CELL_GROUP), h5py.Group):
        raise DataSetError(f"{path} has no /{CELL_GROUP} group (the cell layout a data set made by "
                           f"simulate holds): it was written by other software or is damaged; {fix}.")
    group = h5[CELL_GROUP]
    missing = [name for name in (*_STRING_FIELDS, *_ARRAY_FIELDS) if name not in group]
    missing += [name for name in ("soma_segment", "recipe") if name not in group.attrs]
    if missing:
        raise DataSetError(f"{path}: its /{CELL_GROUP} group lacks {missing}, so the cell layout "
                           f"cannot be read; {fix}.")


def _read_layout(h5: h5py.File, path="data set") -> CellLayout:
    _check_layout_group(path, h5)
    group = h5[CELL_GROUP]
    values = {name: np.array(group[name].asstr()[()], dtype=str) for name in _STRING_FIELDS}
    values.update({name: group[name][()] for name in _ARRAY_FIELDS})
    return CellLayout(soma_segment=int(group.attrs["soma_segment"]),
                      recipe=json.loads(group.attrs["recipe"]), **values)


# --------------------------------------------------------------------------- writing


def sim_group_name(index: int) -> str:
    """Name of simulation ``index``'s group below ``sims/`` (zero-padded to six digits)."""
    return f"{int(index):06d}"


def _encode_attr(name: str, value):
    return json.dumps(value, sort_keys=True) if name in _JSON_ATTRS else value


def create_data_set(path: str | Path, layout: CellLayout, attrs: Mapping) -> None:
    """Create a new data set file holding only metadata.

    The file is written under a temporary name and renamed into place, so ``path`` either
    does not exist or is a complete, empty data set. ``attrs`` become root attributes
    (``config``, ``cell_recipe`` and ``versions`` as JSON); ``format_version`` is added.
    """
    path = Path(path)
    partial = path.with_name(path.name + ".partial")
    with h5py.File(partial, "w") as h5:
        _write_layout(h5, layout)
        for name, value in attrs.items():
            h5.attrs[name] = _encode_attr(name, value)
        h5.create_group(SIMS_GROUP)
        h5.attrs["format_version"] = FORMAT_VERSION
    os.replace(partial, path)


def _compression_options(compression: str) -> dict:
    if compression == "gzip":
        return {"compression": "gzip", "compression_opts": 4, "shuffle": True}
    if compression == "lzf":
        return {"compression": "lzf", "shuffle": True}
    return {}


def _time_chunk(n_rows: int, n_cols: int, itemsize: int) -> int:
    """Columns per chunk so that a chunk of all rows is about half a MiB."""
    return int(np.clip(_CHUNK_BYTES // max(1, n_rows * itemsize), 1, max(1, n_cols)))


def _write_matrix(group: h5py.Group, name: str, data: np.ndarray, compression: str) -> h5py.Dataset:
    options = _compression_options(compression)
    if options and data.size:
        options["chunks"] = (data.shape[0], _time_chunk(*data.shape, data.dtype.itemsize))
    return group.create_dataset(name, data=data, **options)


def _write_events(group: h5py.Group, name: str, events: np.ndarray, warmup_ms: int,
                  compression: str) -> None:
    dataset = _write_matrix(group, name, pack_events(events), compression)
    dataset.attrs["n_ms"] = events.shape[1]
    dataset.attrs["warmup_ms"] = warmup_ms


def _simulation_attrs(result: SimulationResult) -> dict:
    attrs = {
        "index": result.index,
        "base_seed": result.base_seed,
        "spawn_key": result.index,
        "warmup_ms": result.warmup_ms,
        "duration_ms": result.duration_ms,
        "n_spikes": len(result.spike_times),
        "wall_time_s": result.wall_time_s,
        "engine": result.engine,
    }
    optional = {"inputs_interval_ms": result.inputs_interval_ms,
                "inputs_smoothing_sigma_ms": result.inputs_smoothing_sigma_ms}
    if result.stimulus is not None:
        optional["input_family"] = result.stimulus.family
    attrs.update({name: value for name, value in optional.items() if value is not None})
    return attrs


def _write_simulation_group(group: h5py.Group, result: SimulationResult, compression: str) -> None:
    _write_matrix(group, "vmem", result.vmem, compression).attrs["units"] = "mV"
    soma = group.create_dataset("soma_v", data=result.soma_v, **_compression_options(compression))
    soma.attrs["units"] = "mV"
    group.create_dataset("spike_times", data=np.asarray(result.spike_times, dtype=np.float64))
    if result.stimulus is not None:
        _write_stimulus(group, result.stimulus, compression)
    else:
        _write_events(group, "exc", result.exc, result.warmup_ms, compression)
        _write_events(group, "inh", result.inh, result.warmup_ms, compression)
    for name in ("inputs_exc_totals", "inputs_inh_totals"):
        if getattr(result, name) is not None:
            group.create_dataset(name, data=getattr(result, name))
    for name, value in _simulation_attrs(result).items():
        group.attrs[name] = value


def _write_stimulus(group: h5py.Group, stimulus: Stimulus, compression: str) -> None:
    """The stimulus of a ``mixture`` simulation as group ``stimulus`` (whole simulated time)."""
    target = group.create_group("stimulus")
    options = _compression_options(compression)
    for name in Stimulus.ARRAYS:
        values = getattr(stimulus, name)
        target.create_dataset(name, data=values, **(options if values.size else {}))
    target.attrs["family"] = stimulus.family


def _read_stimulus(group: h5py.Group) -> Stimulus:
    return Stimulus(**{name: group[name][()] for name in Stimulus.ARRAYS}, family=str(group.attrs["family"]))


def write_simulation(path: str | Path, result: SimulationResult, compression: str) -> None:
    """Append one finished simulation as ``sims/NNNNNN``; ``complete`` is set last.

    The file is opened for this write only and closed (flushed) before returning.
    A complete group of the same index is never overwritten.
    """
    with open_h5(path, "a") as h5:
        sims = h5[SIMS_GROUP]
        name = sim_group_name(result.index)
        if name in sims:
            if sims[name].attrs.get(COMPLETE_ATTR, False):
                raise DataSetError(f"{path} already holds simulation {result.index}")
            del sims[name]
        group = sims.create_group(name)
        _write_simulation_group(group, result, compression)
        group.attrs[COMPLETE_ATTR] = True


def _is_complete(group: h5py.Group) -> bool:
    return bool(group.attrs.get(COMPLETE_ATTR, False))


def drop_incomplete_simulations(path: str | Path) -> list[int]:
    """Delete simulation groups left without ``complete`` by a crash; returns their indices.

    HDF5 does not reuse the freed space; ``h5repack`` shrinks such a file.
    """
    with open_h5(path, "a") as h5:
        sims = h5[SIMS_GROUP]
        incomplete = [name for name in sims if not _is_complete(sims[name])]
        for name in incomplete:
            del sims[name]
    return [int(name) for name in incomplete]


def read_root_attrs(path: str | Path) -> dict:
    """Root attributes of a data set, JSON ones decoded; checks that it is a data set."""
    with open_h5(path) as h5:
        return _root_attrs(path, h5)


def _root_attrs(path, h5: h5py.File) -> dict:
    if "format_version" not in h5.attrs or SIMS_GROUP not in h5:
        raise DataSetError(f"{path} is not a surrogate_cell data set (no format_version or sims/). "
                           f"Give the path of a data set made by simulate; rerunning simulate with "
                           f"--overwrite would delete this file and everything in it.")
    attrs = {}
    for name, value in h5.attrs.items():
        attrs[name] = json.loads(value) if name in _JSON_ATTRS else _plain(value)
    if attrs["format_version"] != FORMAT_VERSION:
        raise DataSetError(f"{path} has data format version {attrs['format_version']}, this "
                           f"surrogate_cell reads version {FORMAT_VERSION}")
    if isinstance(attrs.get("config"), dict):  # files from before 'secondorder': backward Euler
        attrs["config"] = with_solver_fields(attrs["config"])
    return attrs


def _plain(value):
    """numpy scalars to Python scalars, so attributes compare and print cleanly."""
    return value.item() if isinstance(value, np.generic) else value


def _complete_indices(h5: h5py.File) -> list[int]:
    sims = h5[SIMS_GROUP]
    return sorted(int(name) for name in sims if _is_complete(sims[name]))


# --------------------------------------------------------------------------- reading


@dataclass
class SimulationRecord:
    """One stored simulation.

    ``vmem`` (n_segments, duration_ms): voltage of every segment at whole ms (sample
    ``k`` at ``k`` ms after the warm-up). ``soma_v``: soma voltage at
    ``soma_samples_per_ms`` samples per ms over the same window. ``spike_times``: somatic
    spike peaks (ms from the window start). ``exc``/``inh`` (n_input_segments,
    duration_ms) bool events aligned with ``vmem``; ``warmup_exc``/``warmup_inh`` the
    events of the discarded warm-up (all four None for a ``mixture`` simulation, which has a
    ``stimulus`` instead, spanning the warm-up too). ``attrs``: seeds and diagnostics.
    """

    index: int
    vmem: np.ndarray
    soma_v: np.ndarray
    spike_times: np.ndarray
    exc: np.ndarray | None
    inh: np.ndarray | None
    warmup_exc: np.ndarray | None
    warmup_inh: np.ndarray | None
    attrs: dict
    stimulus: Stimulus | None = None

    def all_events(self, kind: str) -> np.ndarray:
        """Events of ``kind`` ("exc" or "inh") over the whole simulated time, warm-up first."""
        warmup, window = (self.warmup_exc, self.exc) if kind == "exc" else (self.warmup_inh, self.inh)
        return np.concatenate([warmup, window], axis=1)


def _read_events(dataset: h5py.Dataset) -> tuple[np.ndarray, np.ndarray]:
    events = unpack_events(dataset[()], int(dataset.attrs["n_ms"]))
    warmup = int(dataset.attrs["warmup_ms"])
    return events[:, :warmup], events[:, warmup:]


class DataSet:
    """Read access to one data set file (opened per call, so a running generator can append)."""

    def __init__(self, path: str | Path):
        self.path = Path(path)
        with open_h5(self.path) as h5:
            self.attrs = _root_attrs(self.path, h5)
            self.layout = _read_layout(h5, self.path)

    @property
    def config(self) -> dict:
        """The simulation configuration (plain data, see ``SimulationConfig``)."""
        return self.attrs["config"]

    @property
    def duration_ms(self) -> int:
        """Recorded length of every simulation (ms)."""
        return int(self.attrs["duration_ms"])

    @property
    def versions(self) -> dict:
        """Versions of surrogate_cell, NEURON, LFPy, ... that wrote the file."""
        return self.attrs["versions"]

    def simulation_indices(self) -> list[int]:
        """Indices of the complete simulations, ascending (incomplete groups are ignored)."""
        with open_h5(self.path) as h5:
            return _complete_indices(h5)

    def __len__(self) -> int:
        return len(self.simulation_indices())

    def _group(self, h5: h5py.File, index: int) -> h5py.Group:
        name = sim_group_name(index)
        sims = h5[SIMS_GROUP]
        if name not in sims or not _is_complete(sims[name]):
            raise KeyError(f"{self.path} has no complete simulation {index}")
        return sims[name]

    def load_voltages(self, index: int) -> np.ndarray:
        """(n_segments, duration_ms) voltages of simulation ``index`` (stored dtype)."""
        with open_h5(self.path) as h5:
            return self._group(h5, index)["vmem"][()]

    def simulation_attrs(self, index: int) -> dict:
        """The attributes (seeds, diagnostics, ``input_family``) of simulation ``index``, without its data."""
        with open_h5(self.path) as h5:
            return {name: _plain(value) for name, value in self._group(h5, index).attrs.items()}

    def load_simulation(self, index: int) -> SimulationRecord:
        """Everything stored for simulation ``index``."""
        with open_h5(self.path) as h5:
            group = self._group(h5, index)
            stimulus = _read_stimulus(group["stimulus"]) if "stimulus" in group else None
            warmup_exc, exc = _read_events(group["exc"]) if stimulus is None else (None, None)
            warmup_inh, inh = _read_events(group["inh"]) if stimulus is None else (None, None)
            return SimulationRecord(
                index=int(index),
                vmem=group["vmem"][()],
                soma_v=group["soma_v"][()],
                spike_times=group["spike_times"][()],
                exc=exc, inh=inh, warmup_exc=warmup_exc, warmup_inh=warmup_inh,
                attrs={name: _plain(value) for name, value in group.attrs.items()},
                stimulus=stimulus,
            )


def open_data_set(path: str | Path) -> DataSet:
    """Open a data set for reading; raises :class:`DataSetError` if it is unusable."""
    return DataSet(path)
