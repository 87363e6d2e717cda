"""Biophysical cells that surrogates are distilled from (NEURON + LFPy)."""

from surrogate_cell.cells.l5pc import MorphologyError, l5pc, segment_path_distances
from surrogate_cell.cells.morphology import default_morphology_path
from surrogate_cell.cells.sections import SECTION_TYPES, segment_section_types

__all__ = [
    "MorphologyError",
    "SECTION_TYPES",
    "default_morphology_path",
    "l5pc",
    "segment_path_distances",
    "segment_section_types",
]
