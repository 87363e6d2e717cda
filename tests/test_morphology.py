"""Tests for the synthetic layer-5b pyramidal cell morphology (real NEURON)."""

from __future__ import annotations

import multiprocessing
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path

import LFPy
import pytest
from neuron import h

from surrogate_cell.cells.morphology import (
    default_morphology_path,
    generate_l5pc_hoc,
)

pytestmark = pytest.mark.neuron  # the morphology is loaded into NEURON

HOT_ZONE_UM = (685.0, 885.0)


def nseg_by_rule(sec) -> int:
    """The project's nseg rule: odd, one segment per ~40 um; axon 1."""
    if sec.name().startswith("axon"):
        return 1
    return 1 + 2 * int(sec.L / 40.0)


def apply_nseg_rule(cell=None) -> None:
    """Set nseg on every section (usable as an LFPy ``custom_fun``)."""
    for sec in h.allsec():
        sec.nseg = nseg_by_rule(sec)


def load_hoc(path: Path) -> None:
    """Load the hoc file into a NEURON process cleared of sections."""
    for sec in list(h.allsec()):
        h.delete_section(sec=sec)
    assert h.load_file(1, str(path)) == 1


def count_segments_under_nseg_rule(path: Path) -> int:
    """Load the morphology, set nseg by the rule and sum ``sec.nseg``."""
    load_hoc(path)
    apply_nseg_rule()
    return sum(sec.nseg for sec in h.allsec())


def section_kind(sec) -> str:
    return sec.name().split("[")[0]


def subtree_reach(sec) -> float:
    """Largest path distance from the soma centre within ``sec``'s subtree."""
    return max([h.distance(sec(1))] + [subtree_reach(c) for c in sec.children()])


def apical_trunk():
    """Return (trunk sections from soma to nexus, nexus section).

    The trunk follows the child reaching farthest; the nexus is the first
    branch point where a second child reaches almost as far (the tuft),
    unlike oblique branch points whose branches stay short.
    """
    roots = [s for s in h.apic if h.SectionRef(sec=s).parent.name() == "soma[0]"]
    assert len(roots) == 1
    trunk, sec = [], roots[0]
    while True:
        trunk.append(sec)
        children = sorted(sec.children(), key=subtree_reach, reverse=True)
        assert children, "trunk ended without a tuft"
        if len(children) >= 2 and (
                subtree_reach(children[1]) >= 0.8 * subtree_reach(children[0])):
            return trunk, sec
        sec = children[0]


@pytest.fixture(scope="module")
def hoc_path(tmp_path_factory) -> Path:
    return default_morphology_path(tmp_path_factory.mktemp("morphologies"))


@pytest.fixture
def loaded_cell(hoc_path):
    """The morphology loaded into NEURON with nseg set by the rule."""
    load_hoc(hoc_path)
    apply_nseg_rule()
    h.distance(0, h.soma[0](0.5))
    yield
    for sec in list(h.allsec()):
        h.delete_section(sec=sec)


def test_text_is_deterministic():
    text = generate_l5pc_hoc()
    assert text == generate_l5pc_hoc()
    assert text == generate_l5pc_hoc.__wrapped__()  # bypass the cache


def test_default_path_writes_once(tmp_path):
    path = default_morphology_path(tmp_path)
    assert path.parent == tmp_path
    assert path.name.startswith("l5pc_synthetic_") and path.suffix == ".hoc"
    assert path.read_text() == generate_l5pc_hoc()
    mtime = path.stat().st_mtime_ns
    assert default_morphology_path(tmp_path) == path
    assert path.stat().st_mtime_ns == mtime
    assert list(tmp_path.iterdir()) == [path]  # no temp files left behind


def test_default_cache_dir_from_environment(tmp_path, monkeypatch):
    monkeypatch.setenv("SURROGATE_CELL_CACHE", str(tmp_path))
    path = default_morphology_path()
    assert path.parent == tmp_path / "morphologies"
    assert path.is_file()


def test_concurrent_processes_get_same_complete_file(tmp_path):
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(4, mp_context=context) as pool:
        paths = list(pool.map(default_morphology_path, [tmp_path] * 8))
    assert len(set(paths)) == 1
    assert paths[0].read_text() == generate_l5pc_hoc()
    assert list(tmp_path.iterdir()) == [paths[0]]


def test_sections_and_section_lists(loaded_cell):
    kinds = [section_kind(sec) for sec in h.allsec()]
    assert kinds.count("soma") == 1 and kinds.count("axon") == 2
    for list_name, kind in [("somatic", "soma"), ("axonal", "axon"),
                            ("basal", "dend"), ("apical", "apic")]:
        members = [section_kind(sec) for sec in getattr(h, list_name)]
        assert members == [kind] * kinds.count(kind)
    assert sum(1 for _ in h.all) == len(kinds)


def test_segment_count_under_nseg_rule(hoc_path):
    assert 580 <= count_segments_under_nseg_rule(hoc_path) <= 720


def test_soma_and_axon_geometry(loaded_cell):
    soma = h.soma[0]
    assert 20.0 <= soma.L <= 25.0 and 14.0 <= soma.diam <= 17.0
    assert abs(soma.x3d(0) + soma.x3d(soma.n3d() - 1)) < 1e-3
    assert abs(soma.z3d(0) + soma.z3d(soma.n3d() - 1)) < 1e-3
    for axon in h.axon:
        assert axon.L == pytest.approx(30.0, abs=1e-3)
        assert axon.diam == pytest.approx(1.0)
        assert axon.z3d(axon.n3d() - 1) < axon.z3d(0)


def test_apical_tree_shape(loaded_cell):
    tip_distances = [h.distance(s(1)) for s in h.apic if not s.children()]
    assert 1250.0 <= max(tip_distances) <= 1350.0

    trunk, nexus = apical_trunk()
    nexus_distance = h.distance(nexus(1))
    assert 600.0 <= nexus_distance <= 700.0  # main bifurcation before the hot zone
    assert nexus.z3d(nexus.n3d() - 1) > 600.0  # trunk points to +z
    assert trunk[0].diam3d(0) == pytest.approx(7.0)  # thick flare at the soma
    assert 3.0 <= trunk[1](0.0).diam <= 3.5
    assert 2.0 <= nexus(1.0).diam <= 3.0
    assert len(nexus.children()) in (2, 3)

    oblique_branch_points = [h.distance(sec(1)) for sec in trunk[:-1]
                             for _ in sec.children()[1:]]
    assert 8 <= len(oblique_branch_points) <= 12
    assert max(oblique_branch_points) <= 500.0


def test_hot_zone_lies_on_unbranched_tuft_branches(loaded_cell):
    _, nexus = apical_trunk()
    tuft_branches = {sec.name() for sec in nexus.children()}
    in_hot_zone = [(sec.name(), seg) for sec in h.apic for seg in sec
                   if HOT_ZONE_UM[0] <= h.distance(seg) <= HOT_ZONE_UM[1]]
    assert {name for name, _ in in_hot_zone} == tuft_branches
    assert len(in_hot_zone) >= 15  # covered by several segments per branch
    assert all(0.9 <= seg.diam <= 1.4 for _, seg in in_hot_zone)
    for branch in nexus.children():
        assert h.distance(branch(1)) > HOT_ZONE_UM[1]


def test_basal_tree_shape(loaded_cell):
    roots = [s for s in h.dend if h.SectionRef(sec=s).parent.name() == "soma[0]"]
    assert 6 <= len(roots) <= 8
    assert all(0.8 <= root(0.0).diam <= 1.5 for root in roots)
    tips = [s for s in h.dend if not s.children()]
    assert all(150.0 <= h.distance(tip(1)) <= 300.0 for tip in tips)
    assert all(tip.diam3d(tip.n3d() - 1) == pytest.approx(0.35, abs=0.01)
               for tip in tips)
    assert sum(tip.z3d(tip.n3d() - 1) < 0.0 for tip in tips) > len(tips) / 2


def test_loads_as_lfpy_cell(hoc_path):
    expected = count_segments_under_nseg_rule(hoc_path)
    cell = LFPy.Cell(morphology=str(hoc_path), delete_sections=True,
                     passive=True, cm=1.0, Ra=100.0, nsegs_method=None,
                     custom_fun=[apply_nseg_rule], custom_fun_args=[{}])
    try:
        assert cell.totnsegs == expected
        assert cell.nsomasec == 1
        assert cell.z.max() > 1200.0  # apical dendrite along +z
    finally:
        cell.strip_hoc_objects()
        for sec in list(h.allsec()):
            h.delete_section(sec=sec)
