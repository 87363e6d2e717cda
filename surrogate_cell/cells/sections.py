"""Per-segment section types (soma, axon, basal, apical, oblique) of any LFPy cell."""

from __future__ import annotations

import numpy as np
from neuron import h

from surrogate_cell.cells.biophysics import section_kind

SECTION_TYPES = ("soma", "axon", "basal", "apical", "oblique")
_KIND_TO_TYPE = {"soma": "soma", "axon": "axon", "dend": "basal", "apic": "apical"}

# A side branch of the apical trunk is an oblique while its whole subtree is small compared
# with what the trunk still carries beyond it; the first branch that is not marks the nexus.
OBLIQUE_SIZE_RATIO = 0.25


def _subtree_lengths(sections) -> dict:
    lengths: dict = {}

    def total(sec):
        if sec not in lengths:
            lengths[sec] = sec.L + sum(total(child) for child in sec.children())
        return lengths[sec]

    for sec in sections:
        total(sec)
    return lengths


def _trunk_path(apical_sections, soma) -> list:
    """Sections from the apical root to the apical tip farthest (by path) from the soma."""
    h.distance(0, soma(0.5))
    apical = set(apical_sections)
    section = max(apical_sections, key=lambda sec: h.distance(sec(1)))
    path = [section]
    while section.parentseg() is not None and section.parentseg().sec in apical:
        section = section.parentseg().sec
        path.append(section)
    return path[::-1]


def _subtree(section) -> list:
    sections = [section]
    for child in section.children():
        sections.extend(_subtree(child))
    return sections


def oblique_sections(apical_sections, soma) -> set:
    """Apical side branches leaving the trunk before its main bifurcation (the nexus)."""
    if not apical_sections:
        return set()
    trunk = _trunk_path(apical_sections, soma)
    lengths = _subtree_lengths(apical_sections)
    obliques: set = set()
    for section, continuation in zip(trunk[:-1], trunk[1:]):
        side_branches = [child for child in section.children() if child != continuation]
        for branch in side_branches:
            if lengths[branch] >= OBLIQUE_SIZE_RATIO * lengths[continuation]:
                return obliques
            obliques.update(_subtree(branch))
    return obliques


def section_type_of_sections(sections) -> dict:
    """Map each section to one of :data:`SECTION_TYPES`."""
    sections = list(sections)
    somas = [sec for sec in sections if section_kind(sec) == "soma"]
    apical = [sec for sec in sections if section_kind(sec) == "apic"]
    obliques = oblique_sections(apical, somas[0]) if somas else set()
    types = {}
    for sec in sections:
        types[sec] = "oblique" if sec in obliques else _KIND_TO_TYPE.get(section_kind(sec), "other")
    return types


def segment_section_types(cell) -> np.ndarray:
    """Section type of every segment of an LFPy cell, in LFPy's segment order."""
    sections = list(cell.allseclist)
    types = section_type_of_sections(sections)
    return np.array([types[sec] for sec in sections for _ in range(sec.nseg)])
