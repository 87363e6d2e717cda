"""Synthetic layer-5b pyramidal cell morphology: the built-in default cell.

The reconstruction used by Hay et al. (2011) may not be redistributed, so the
package ships a generator for a stand-in with the same section naming
(``soma[0]``, ``dend[i]``, ``apic[i]``, ``axon[i]``), the same kind of
SectionLists and literature-scale geometry:

* a soma of ~1100 um2, a 2 x 30 um axon stub and a bushy basal tree (seven
  primary dendrites, tips ~170-250 um from the soma);
* an apical trunk of ~650 um along +z: a 7 um flare at the soma narrowing to
  3.3 um within 40 um, then tapering to 2.5 um; nine bushy oblique trees with
  1.2 um roots leave it within the first ~400 um;
* at the end of the trunk (~650 um path distance from the soma centre) the
  main bifurcation, or nexus, splits it into three 1.3-1.0 um tuft branches
  that stay unbranched for 280-320 um, so the calcium hot zone of the Hay
  model (685-885 um) lies on them; beyond it they split into a small tuft
  whose tips reach ~1.2-1.3 mm.

The geometry is tuned, in aggregate only, so that the Hay biophysics on this
cell reproduce the behaviour they have on the reconstruction: a somatic
1.9 nA x 3 ms pulse gives one spike whose back-propagation stays subthreshold
for the hot zone, an EPSC-shaped 1 nA current into the trunk near 620 um
gives no spike, and both together give a calcium spike and a burst (BAC
firing). Decisive for that are the load near the soma (the thick trunk flare,
the thick and bushy proximal obliques), which damps the back-propagating
spike, and thin unbranched tuft branches through the hot zone. With the
project's nseg rule the cell has ~640 segments, like the reconstruction.

The morphology is generated deterministically (fixed random seed, coordinates
rounded as they are produced), so the hoc text is byte-identical across runs
and machines and its hash can name a cache file.
"""
from __future__ import annotations

import functools
import hashlib
import math
import os
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

Vector = tuple[float, float, float]

_SEED = 20110527
_DECIMALS = 3
_STEP_UM = 10.0
_GOLDEN_ANGLE = math.pi * (3.0 - math.sqrt(5.0))

_SOMA_LENGTH_UM = 23.0
_SOMA_DIAM_UM = 15.5

_AXON_SECTION_LENGTH_UM = 30.0
_AXON_DIAM_UM = 1.0

_BASAL_LEVELS = (3, 2, 3, 2, 3, 3, 4)  # bifurcation levels per primary dendrite
_BASAL_PRIMARY_DIAM_UM = 1.0
_BASAL_TIP_DIAM_UM = 0.35
_BASAL_PATH_RANGE_UM = (210.0, 290.0)

# Trunk section lengths; obliques leave at the ends of the first seven
# sections (all within ~400 um), the last section ends at the nexus, the
# main bifurcation into the tuft branches.
_TRUNK_SECTION_LENGTHS_UM = (40.0, 60.0, 40.0, 50.0, 60.0, 55.0, 75.0,
                             90.0, 90.0, 90.0)
_TRUNK_ROOT_DIAM_UM = 7.0      # at the soma
_TRUNK_FLARE_DIAM_UM = 3.3     # at the end of the first trunk section
_TRUNK_NEXUS_DIAM_UM = 2.5

# Bifurcation levels of the obliques leaving the end of each trunk section.
_OBLIQUE_LEVELS = ((2,), (2,), (3,), (2, 1), (2,), (1, 2), (1,))
_OBLIQUE_DIAM_UM = 1.2
_OBLIQUE_TIP_DIAM_UM = 0.45
_OBLIQUE_LENGTH_RANGE_UM = (130.0, 230.0)

# Tuft: main branches leave the nexus and stay unbranched over the stem
# length (through the calcium hot zone), then split into small subtrees whose
# tips lie up to the path budget beyond the nexus.
_TUFT_BRANCHES = 3
_TUFT_STEM_LENGTH_RANGE_UM = (280.0, 320.0)
_TUFT_STEM_DIAMS_UM = (1.3, 1.0)
_TUFT_LEVELS = 2
_TUFT_SKIP_PROBABILITY = 0.25
_TUFT_TIP_DIAM_UM = 0.45
_TUFT_PATH_RANGE_UM = (620.0, 670.0)  # nexus to tuft tips


@dataclass
class _Section:
    """One unbranched cable: hoc name parts, 3-D points and its parent."""

    kind: str
    index: int
    points: list[tuple[float, float, float, float]] = field(default_factory=list)
    parent: _Section | None = None
    parent_x: float = 1.0

    @property
    def name(self) -> str:
        return f"{self.kind}[{self.index}]"

    @property
    def end(self) -> Vector:
        x, y, z, _ = self.points[-1]
        return (x, y, z)


def _quantize(value: float) -> float:
    # Rounding every coordinate as it is produced keeps later arithmetic on
    # exactly representable inputs; "+ 0.0" turns -0.0 into 0.0.
    return round(value, _DECIMALS) + 0.0


def _add(a: Vector, b: Vector) -> Vector:
    return (a[0] + b[0], a[1] + b[1], a[2] + b[2])


def _sub(a: Vector, b: Vector) -> Vector:
    return (a[0] - b[0], a[1] - b[1], a[2] - b[2])


def _scale(a: Vector, factor: float) -> Vector:
    return (a[0] * factor, a[1] * factor, a[2] * factor)


def _cross(a: Vector, b: Vector) -> Vector:
    return (a[1] * b[2] - a[2] * b[1],
            a[2] * b[0] - a[0] * b[2],
            a[0] * b[1] - a[1] * b[0])


def _normalize(a: Vector) -> Vector:
    norm = math.sqrt(a[0] ** 2 + a[1] ** 2 + a[2] ** 2)
    return _scale(a, 1.0 / norm)


def _direction(azimuth: float, elevation: float) -> Vector:
    """Unit vector from azimuth (around z) and elevation (above xy plane)."""
    return (math.cos(elevation) * math.cos(azimuth),
            math.cos(elevation) * math.sin(azimuth),
            math.sin(elevation))


def _tilt(direction: Vector, angle: float, roll: float) -> Vector:
    """Rotate ``direction`` by ``angle`` away from itself, towards ``roll``."""
    helper = (0.0, 0.0, 1.0) if abs(direction[2]) < 0.9 else (1.0, 0.0, 0.0)
    side = _normalize(_cross(direction, helper))
    up = _cross(direction, side)
    offset = _add(_scale(side, math.cos(roll)), _scale(up, math.sin(roll)))
    return _normalize(_add(_scale(direction, math.cos(angle)),
                           _scale(offset, math.sin(angle))))


class _MorphologyBuilder:
    """Grows the sections of the synthetic cell from seeded random streams."""

    def __init__(self, seed: int) -> None:
        self.seed = seed
        self.rng = np.random.default_rng(seed)
        self.sections: dict[str, list[_Section]] = {
            "soma": [], "dend": [], "apic": [], "axon": []}

    def switch_stream(self, stream: int) -> None:
        """Draw from an independent random stream for the next subtree.

        Separate streams keep each part of the cell unchanged when another
        part's parameters are tuned.
        """
        self.rng = np.random.default_rng([self.seed, stream])

    def uniform(self, low: float, high: float) -> float:
        return float(self.rng.uniform(low, high))

    def new_section(self, kind: str, parent: _Section | None,
                    parent_x: float = 1.0) -> _Section:
        section = _Section(kind, len(self.sections[kind]),
                           parent=parent, parent_x=parent_x)
        self.sections[kind].append(section)
        return section

    def add_point(self, section: _Section, position: Vector,
                  diam: float) -> None:
        x, y, z = (_quantize(c) for c in position)
        section.points.append((x, y, z, _quantize(diam)))

    def grow_cable(self, kind: str, parent: _Section, start: Vector,
                   heading: Vector, length: float, diam_start: float,
                   diam_end: float, parent_x: float = 1.0,
                   wiggle: float = 0.12) -> _Section:
        """Add a section of path length ``length`` following ``heading``.

        Each ~10 um step turns the local direction by a small random amount
        and pulls it back towards ``heading``, giving a tortuous cable that
        does not drift away from its overall direction.
        """
        section = self.new_section(kind, parent, parent_x)
        self.add_point(section, start, diam_start)
        n_steps = max(2, math.ceil(length / _STEP_UM))
        step = length / n_steps
        local = heading
        position = section.end
        for k in range(1, n_steps + 1):
            jitter = tuple(self.rng.uniform(-1.0, 1.0, size=3).tolist())
            pull_back = _scale(_sub(heading, local), 0.3)
            local = _normalize(_add(_add(local, _scale(jitter, wiggle)),
                                    pull_back))
            position = _add(position, _scale(local, step))
            diam = diam_start + (diam_end - diam_start) * k / n_steps
            self.add_point(section, position, diam)
            position = section.end
        return section

    def grow_tree(self, kind: str, parent: _Section, start: Vector,
                  heading: Vector, path_budget: float, levels: int,
                  diams: tuple[float, float], parent_x: float = 1.0,
                  skip_probability: float = 0.25) -> None:
        """Grow a subtree of ``levels`` bifurcations, tips ``path_budget`` away.

        ``diams`` is (diameter at the subtree root, diameter at its tips);
        along every root-to-tip path the diameter falls linearly.
        """
        if levels == 0:
            length = path_budget
        else:
            length = path_budget * self.uniform(0.25, 0.45) / math.sqrt(levels)
        diam_start, tip_diam = diams
        diam_end = diam_start + (tip_diam - diam_start) * length / path_budget
        section = self.grow_cable(kind, parent, start, heading, length,
                                  diam_start, diam_end, parent_x)
        if levels == 0:
            return
        roll = self.uniform(0.0, 2.0 * math.pi)
        for side in (0.0, math.pi):
            child_heading = _tilt(heading, self.uniform(0.35, 0.6), roll + side)
            # Asymmetric trees: a child sometimes skips a bifurcation level.
            child_levels = levels - 1
            if child_levels > 0 and self.uniform(0.0, 1.0) < skip_probability:
                child_levels -= 1
            child_budget = (path_budget - length) * self.uniform(0.8, 1.0)
            self.grow_tree(kind, section, section.end, child_heading,
                           child_budget, child_levels, (diam_end, tip_diam),
                           skip_probability=skip_probability)

    def build(self) -> None:
        soma = self.build_soma()
        self.build_axon(soma)
        self.switch_stream(1)
        self.build_basal_tree(soma)
        self.build_apical_tree(soma)

    def build_soma(self) -> _Section:
        soma = self.new_section("soma", None)
        half = _SOMA_LENGTH_UM / 2.0
        for z in (-half, 0.0, half):
            self.add_point(soma, (0.0, 0.0, z), _SOMA_DIAM_UM)
        return soma

    def build_axon(self, soma: _Section) -> None:
        parent, parent_x = soma, 0.5
        z = -_SOMA_LENGTH_UM / 2.0
        for _ in range(2):
            axon = self.new_section("axon", parent, parent_x)
            self.add_point(axon, (0.0, 0.0, z), _AXON_DIAM_UM)
            z -= _AXON_SECTION_LENGTH_UM
            self.add_point(axon, (0.0, 0.0, z), _AXON_DIAM_UM)
            parent, parent_x = axon, 1.0

    def build_basal_tree(self, soma: _Section) -> None:
        radius = _SOMA_DIAM_UM / 2.0
        for i, levels in enumerate(_BASAL_LEVELS):
            azimuth = i * _GOLDEN_ANGLE
            # Mostly downwards and sideways: elevations between -70 and +10 deg.
            elevation = math.radians(-70.0 + 80.0 * i / (len(_BASAL_LEVELS) - 1))
            heading = _direction(azimuth, elevation)
            start = (radius * math.cos(azimuth), radius * math.sin(azimuth),
                     _SOMA_LENGTH_UM / 2.0 * math.sin(elevation))
            path = self.uniform(*_BASAL_PATH_RANGE_UM)
            diams = (_BASAL_PRIMARY_DIAM_UM, _BASAL_TIP_DIAM_UM)
            self.grow_tree("dend", soma, start, heading, path, levels, diams,
                           parent_x=0.5)

    def build_apical_tree(self, soma: _Section) -> None:
        self.switch_stream(2)
        trunk = self.build_trunk(soma)
        self.switch_stream(3)
        oblique_count = 0
        for section, levels in zip(trunk, _OBLIQUE_LEVELS):
            for oblique_levels in levels:
                self.build_oblique(section, oblique_count, oblique_levels)
                oblique_count += 1
        self.switch_stream(4)
        self.build_tuft(trunk[-1])

    def build_trunk(self, soma: _Section) -> list[_Section]:
        nexus_path = sum(_TRUNK_SECTION_LENGTHS_UM)
        flare_path = _TRUNK_SECTION_LENGTHS_UM[0]

        def diam_at(path: float) -> float:
            # A thick flare over the first section, then a linear taper.
            if path <= flare_path:
                return _TRUNK_ROOT_DIAM_UM + (
                    _TRUNK_FLARE_DIAM_UM - _TRUNK_ROOT_DIAM_UM) * path / flare_path
            return _TRUNK_FLARE_DIAM_UM + (
                _TRUNK_NEXUS_DIAM_UM - _TRUNK_FLARE_DIAM_UM) * (
                    path - flare_path) / (nexus_path - flare_path)

        trunk: list[_Section] = []
        parent, parent_x = soma, 0.5
        start: Vector = (0.0, 0.0, _SOMA_LENGTH_UM / 2.0)
        path = 0.0
        for length in _TRUNK_SECTION_LENGTHS_UM:
            section = self.grow_cable("apic", parent, start, (0.0, 0.0, 1.0),
                                      length, diam_at(path),
                                      diam_at(path + length), parent_x,
                                      wiggle=0.06)
            trunk.append(section)
            parent, parent_x, start = section, 1.0, section.end
            path += length
        return trunk

    def build_oblique(self, trunk_section: _Section, number: int,
                      levels: int) -> None:
        azimuth = number * _GOLDEN_ANGLE + self.uniform(-0.3, 0.3)
        heading = _direction(azimuth, math.radians(self.uniform(20.0, 50.0)))
        length = self.uniform(*_OBLIQUE_LENGTH_RANGE_UM)
        self.grow_tree("apic", trunk_section, trunk_section.end, heading,
                       length, levels,
                       (_OBLIQUE_DIAM_UM, _OBLIQUE_TIP_DIAM_UM))

    def build_tuft(self, nexus_section: _Section) -> None:
        for i in range(_TUFT_BRANCHES):
            azimuth = (2.0 * math.pi * i / _TUFT_BRANCHES
                       + self.uniform(-0.3, 0.3))
            heading = _direction(azimuth, math.radians(self.uniform(55.0, 70.0)))
            stem_length = self.uniform(*_TUFT_STEM_LENGTH_RANGE_UM)
            path = self.uniform(*_TUFT_PATH_RANGE_UM)
            stem = self.grow_cable("apic", nexus_section, nexus_section.end,
                                   heading, stem_length, *_TUFT_STEM_DIAMS_UM)
            self.grow_tree("apic", stem, stem.end, heading, path - stem_length,
                           _TUFT_LEVELS, (_TUFT_STEM_DIAMS_UM[1], _TUFT_TIP_DIAM_UM),
                           skip_probability=_TUFT_SKIP_PROBABILITY)


def _format_hoc(sections: dict[str, list[_Section]]) -> str:
    """Render the sections as a Hay-style hoc morphology file."""
    lines = [
        "// Synthetic layer-5b pyramidal cell morphology (surrogate_cell).",
        "// Generated deterministically by surrogate_cell.cells.morphology;",
        "// a stand-in for the Hay et al. (2011) L5PC reconstruction.",
        "",
    ]
    lines += [f"create {kind}[{len(secs)}]" for kind, secs in sections.items()]
    lines += ["", "objref all, somatic, axonal, basal, apical"]
    lines += [f"{name} = new SectionList()"
              for name in ("all", "somatic", "axonal", "basal", "apical")]
    lines.append("")
    for secs in sections.values():
        for sec in secs:
            if sec.parent is not None:
                lines.append(f"connect {sec.name}(0), "
                             f"{sec.parent.name}({sec.parent_x:g})")
    section_list = {"soma": "somatic", "axon": "axonal",
                    "dend": "basal", "apic": "apical"}
    for kind, secs in sections.items():
        for sec in secs:
            lines += ["", f"{sec.name} {{", "  pt3dclear()"]
            lines += [f"  pt3dadd({x:.3f}, {y:.3f}, {z:.3f}, {d:.3f})"
                      for x, y, z, d in sec.points]
            lines += ["  all.append()", f"  {section_list[kind]}.append()", "}"]
    return "\n".join(lines) + "\n"


@functools.lru_cache(maxsize=1)
def generate_l5pc_hoc() -> str:
    """Return the hoc text of the synthetic layer-5b pyramidal cell.

    The text declares ``soma[1]``, ``dend[..]``, ``apic[..]`` and ``axon[2]``
    with 3-D points and connections, plus the SectionLists ``all``,
    ``somatic``, ``axonal``, ``basal`` and ``apical``. It is byte-identical
    on every call, run and machine.
    """
    builder = _MorphologyBuilder(_SEED)
    builder.build()
    return _format_hoc(builder.sections)


def _default_cache_dir() -> Path:
    from surrogate_cell.mechanisms import cache_root  # imports NEURON: only when a file is written

    return cache_root() / "morphologies"


def _write_atomically(path: Path, text: str) -> None:
    """Write via a temporary file in the same folder and ``os.replace``.

    Concurrent writers each replace the target with a complete, identical
    file, so readers never see a partial one.
    """
    fd, tmp_name = tempfile.mkstemp(dir=path.parent, prefix=path.name + ".",
                                    suffix=".tmp")
    try:
        with os.fdopen(fd, "w", encoding="ascii", newline="\n") as handle:
            handle.write(text)
            handle.flush()
            os.fsync(handle.fileno())
        os.chmod(tmp_name, 0o644)  # mkstemp creates 0600; let others read
        os.replace(tmp_name, path)
    except BaseException:
        try:
            os.unlink(tmp_name)
        except FileNotFoundError:
            pass
        raise


def default_morphology_path(cache_dir: str | os.PathLike | None = None) -> Path:
    """Return the path of the synthetic L5PC hoc file, writing it if needed.

    The file is ``<cache_dir>/l5pc_synthetic_<sha256 prefix>.hoc``; by default
    ``cache_dir`` is ``$SURROGATE_CELL_CACHE/morphologies`` or
    ``~/.cache/surrogate_cell/morphologies``. An existing file with the right
    content is left untouched; otherwise it is written atomically, so several
    processes may call this at once.
    """
    text = generate_l5pc_hoc()
    digest = hashlib.sha256(text.encode("ascii")).hexdigest()[:12]
    folder = Path(cache_dir) if cache_dir is not None else _default_cache_dir()
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"l5pc_synthetic_{digest}.hoc"
    try:
        if path.read_text(encoding="ascii") == text:
            return path
    except (FileNotFoundError, UnicodeDecodeError):
        pass
    _write_atomically(path, text)
    return path
