"""The cell layout a surrogate is tied to: segment geometry, its hash, and where synapses go.

A data set stores the layout of the cell it simulated; a checkpoint stores the parts of it
a model needs (the segment hash, section types, soma and input segments). Both the data
generation and the runtime (``SurrogateCell``, networks) build it from an ``LFPy.Cell`` with
:func:`cell_layout`, so a model refuses any cell whose segments differ from its training cell.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence
from dataclasses import dataclass, field

import numpy as np

HASH_DECIMALS = 3
"""Coordinates and diameters (um) are rounded to this many decimals before hashing."""

SYNAPSE_SECTION_TYPES = ("basal", "apical", "oblique")
"""Section types that carry synapses (input channels) by default."""

SYNAPSE_MECHANISMS = {"exc": "AMPANMDA", "inh": "GABAA"}
"""NEURON point process of each synapse kind."""

EVENT_KINDS = tuple(SYNAPSE_MECHANISMS)
"""Order of the input event channel blocks: excitatory rows, then inhibitory rows."""


def segment_geometry_hash(names, x: np.ndarray, y: np.ndarray, z: np.ndarray, diam: np.ndarray) -> str:
    """sha256 (hex) of the segment names and their start/mid/end coordinates and diameters.

    Numbers are rounded to :data:`HASH_DECIMALS` decimals (um) and hashed as little-endian
    float64, so the hash survives rebuilding the cell but changes with any geometry edit.
    """
    digest = hashlib.sha256("\n".join(str(name) for name in names).encode())
    numbers = np.column_stack([np.asarray(a, dtype=float).reshape(len(names), -1) for a in (x, y, z, diam)])
    # adding 0.0 turns -0.0 into 0.0, whose bytes differ
    digest.update((np.round(numbers, HASH_DECIMALS) + 0.0).astype("<f8").tobytes())
    return digest.hexdigest()


@dataclass(frozen=True)
class CellLayout:
    """Per-segment geometry of the simulated cell and the placement of its synapses.

    Segments are in LFPy order. ``x``, ``y``, ``z`` are (n_segments, 3) start/mid/end
    coordinates (um); ``diam``, ``area`` and ``length`` are in um, um2, um.
    ``input_segments[j]`` is the segment of row ``j`` of the input event matrices;
    synapse ``s`` sits on ``synapse_segments[s]``, is of kind ``synapse_kinds[s]``
    ("exc" or "inh") and receives row ``synapse_event_rows[s]`` of that kind's events.
    ``recipe`` holds the cell builder's arguments.
    """

    segment_names: np.ndarray
    section_types: np.ndarray
    x: np.ndarray
    y: np.ndarray
    z: np.ndarray
    diam: np.ndarray
    area: np.ndarray
    length: np.ndarray
    soma_segment: int
    input_segments: np.ndarray
    synapse_segments: np.ndarray
    synapse_kinds: np.ndarray
    synapse_event_rows: np.ndarray
    recipe: dict = field(default_factory=dict)

    @property
    def n_segments(self) -> int:
        """Number of segments (voltage traces)."""
        return len(self.segment_names)

    @property
    def segment_hash(self) -> str:
        """:func:`segment_geometry_hash` of this layout."""
        return segment_geometry_hash(self.segment_names, self.x, self.y, self.z, self.diam)


def _segment_names(cell) -> list[str]:
    # without any template prefix, so a cell rebuilt from its embedded geometry has the same names
    return [f"{sec.name().split('.')[-1]}({seg.x:.6g})" for sec in cell.allseclist for seg in sec]


def _start_mid_end(coordinates: np.ndarray) -> np.ndarray:
    """(n, 3) start/mid/end from LFPy's (n, 2) start/end coordinates."""
    return np.column_stack([coordinates[:, 0], coordinates.mean(axis=1), coordinates[:, 1]])


def cell_layout(cell, synapse_section_types: Sequence[str]) -> CellLayout:
    """Segment geometry of a cell (``l5pc`` or a recipe's) and where its synapses go.

    Synapse-carrying segments (``input_segments``) are those whose section type is in
    ``synapse_section_types`` (and, for a recipe cell, that its ``synapse_mask`` allows), in
    LFPy order; row ``j`` of the input event matrices is segment ``input_segments[j]``.
    Synapses are all excitatory ones, then all inhibitory.
    """
    types = np.asarray(cell.section_types)
    may_carry = np.isin(types, list(synapse_section_types))
    if getattr(cell, "synapse_mask", None) is not None:  # a recipe cell's synapse_sections
        may_carry &= np.asarray(cell.synapse_mask, dtype=bool)
    input_segments = np.flatnonzero(may_carry)
    n_inputs = input_segments.size
    return CellLayout(
        segment_names=np.array(_segment_names(cell)),
        section_types=types.astype(str),
        x=_start_mid_end(cell.x), y=_start_mid_end(cell.y), z=_start_mid_end(cell.z),
        diam=np.asarray(cell.d, dtype=float),
        area=np.asarray(cell.area, dtype=float),
        length=np.asarray(cell.length, dtype=float),
        soma_segment=int(np.flatnonzero(types == "soma")[0]),
        input_segments=input_segments,
        synapse_segments=np.concatenate([input_segments, input_segments]),
        synapse_kinds=np.array(["exc"] * n_inputs + ["inh"] * n_inputs),
        synapse_event_rows=np.concatenate([np.arange(n_inputs), np.arange(n_inputs)]),
        recipe=cell.recipe,
    )
