"""Cell recipes: any NEURON cell a user describes in a YAML file, without touching the package.

A recipe names a morphology file, the ``LFPy.Cell`` keyword arguments (or an LFPy template, or a
Python builder ``module:function``), a folder of ``.mod`` files, which sections receive synapses
and, optionally, the default data config for ``simulate --cell``. Paths are relative to the recipe
file. Example (``training/configs/cells/basket/basket.yaml``)::

    name: basket
    morphology: basket.swc
    mechanisms: mechanisms          # compiled and cached by the project
    cell_kwargs: {passive: true, cm: 1.0, Ra: 150.0, nsegs_method: lambda_f,
                  custom_code: [biophysics.hoc]}
    synapse_sections: "soma|dend"   # regular expression on section names
    simulation: {...}               # fields of a data config (training/configs/data/*.yaml)

:func:`build_recipe_cell` builds the full biophysical cell (for data generation). Its ``recipe``
attribute, which data sets and checkpoints store, embeds the built cell's geometry and passive
properties as hoc text (:func:`geometry_hoc`), so :func:`embedded_geometry_cell` rebuilds the
same segments where the user's files are absent: what a surrogate needs to run.
"""

from __future__ import annotations

import base64
import hashlib
import importlib
import re
import sys
import zlib
from dataclasses import dataclass, field
from pathlib import Path

import LFPy
import numpy as np
import yaml

from surrogate_cell.cells.morphology import _write_atomically
from surrogate_cell.cells.sections import segment_section_types
from surrogate_cell.config import PACKAGED_CONFIGS, resolve_config
from surrogate_cell.mechanisms import cache_root, load_mechanism_folder, load_synapse_mechanisms

RECIPE_BUILDER = "recipe"
"""The ``builder`` name data sets and checkpoints carry for recipe cells."""

RECIPE_FIELDS = ("name", "morphology", "mechanisms", "cell_kwargs", "template", "builder",
                 "synapse_sections", "simulation")
TIME_KWARGS = ("v_init", "celsius", "dt", "tstart", "tstop")
"""Cell arguments a rebuilt geometry keeps (the rest shaped the biophysical cell only)."""

_PATH_KWARGS = ("custom_code",)


class CellRecipeError(ValueError):
    """A cell recipe is malformed, names files that do not exist, or gives a cell that cannot carry synapses."""


@dataclass(frozen=True)
class CellRecipe:
    """A user's NEURON cell, as a recipe file describes it (paths already resolved).

    Parameters
    ----------
    name : str
        Name of the cell (used in messages, model cards and file names).
    morphology : Path, optional
        Morphology file LFPy reads (.asc, .swc, .hoc, .xml); may be None when ``template`` or
        ``builder`` creates the sections.
    mechanisms : Path, optional
        Folder of the cell's ``.mod`` files.
    cell_kwargs : dict
        ``LFPy.Cell`` keyword arguments (``custom_code`` paths resolved).
    template : dict, optional
        ``templatefile``, ``templatename`` and ``templateargs`` for ``LFPy.TemplateCell``.
    builder : str, optional
        ``"module:function"`` returning an ``LFPy.Cell``; called as
        ``function(morphology=..., **cell_kwargs)``. The recipe's folder is importable.
    synapse_sections : str
        Regular expression; sections whose name (without any template prefix) it matches
        from the start receive synapses.
    simulation : dict, optional
        Default data config (fields of ``training/configs/data/*.yaml``) for ``simulate --cell``.
    source : Path, optional
        The recipe file.
    """

    name: str
    morphology: Path | None = None
    mechanisms: Path | None = None
    cell_kwargs: dict = field(default_factory=dict)
    template: dict | None = None
    builder: str | None = None
    synapse_sections: str = "soma|dend|apic"
    simulation: dict | None = None
    source: Path | None = None


def is_recipe_path(path: str | Path | None) -> bool:
    """Whether ``path`` names a recipe file (``.yaml``/``.yml``) rather than a morphology."""
    return path is not None and Path(path).suffix.lower() in (".yaml", ".yml")


def _existing(folder: Path, value, what: str, source: Path, directory: bool = False) -> Path:
    path = (folder / str(value)).expanduser()
    if not (path.is_dir() if directory else path.is_file()):
        raise CellRecipeError(f"{source}: {what} {path} does not exist; give a path relative to the "
                              "recipe file (or an absolute one).")
    return path.resolve()


def load_recipe(path: str | Path) -> CellRecipe:
    """Read and check a recipe file.

    Parameters
    ----------
    path : str or Path
        The YAML recipe, or the name of a packaged one (``cells/basket/basket.yaml``).

    Returns
    -------
    CellRecipe
        With every path resolved against the recipe's folder. Raises :class:`CellRecipeError`
        naming the problem (missing file, unknown field, bad builder or pattern).
    """
    path = resolve_config(Path(path).expanduser(), CellRecipeError)
    try:
        values = yaml.safe_load(path.read_text()) or {}
    except yaml.YAMLError as error:
        raise CellRecipeError(f"{path} is not valid YAML: {error}") from None
    if not isinstance(values, dict):
        raise CellRecipeError(f"{path} must hold a mapping of recipe fields ({', '.join(RECIPE_FIELDS)}).")
    unknown = sorted(set(values) - set(RECIPE_FIELDS))
    if unknown:
        raise CellRecipeError(f"{path}: unknown recipe field(s) {', '.join(unknown)}; the fields are "
                              f"{', '.join(RECIPE_FIELDS)}.")
    folder = path.resolve().parent
    kwargs = dict(values.get("cell_kwargs") or {})
    if "morphology" in kwargs:
        raise CellRecipeError(f"{path}: give the morphology as the recipe's 'morphology' field, not in cell_kwargs.")
    for name in _PATH_KWARGS:
        if name in kwargs:
            files = kwargs[name] if isinstance(kwargs[name], list) else [kwargs[name]]
            kwargs[name] = [str(_existing(folder, f, name, path)) for f in files]
    template = values.get("template")
    if template is not None:
        if not isinstance(template, dict) or not {"templatefile", "templatename"} <= set(template):
            raise CellRecipeError(f"{path}: 'template' needs templatefile and templatename "
                                  "(and optionally templateargs).")
        template = {**template, "templatefile": str(_existing(folder, template["templatefile"], "templatefile", path))}
    builder = values.get("builder")
    if builder is not None and not re.fullmatch(r"[\w.]+:\w+", str(builder)):
        raise CellRecipeError(f"{path}: builder must be 'module:function', got {builder!r}.")
    if template is not None and builder is not None:
        raise CellRecipeError(f"{path}: give either 'template' or 'builder', not both.")
    morphology = values.get("morphology")
    if morphology is None and template is None and builder is None:
        raise CellRecipeError(f"{path}: a recipe needs a 'morphology' file (or a template or builder "
                              "that makes the sections).")
    pattern = str(values.get("synapse_sections", CellRecipe.synapse_sections))
    try:
        re.compile(pattern)
    except re.error as error:
        raise CellRecipeError(f"{path}: synapse_sections {pattern!r} is not a regular expression ({error}).") from None
    simulation = values.get("simulation")
    if simulation is not None and not isinstance(simulation, dict):
        raise CellRecipeError(f"{path}: 'simulation' must be a mapping of data-config fields.")
    return CellRecipe(
        name=str(values.get("name") or path.stem),
        morphology=None if morphology is None else _existing(folder, morphology, "morphology", path),
        mechanisms=None if values.get("mechanisms") is None
        else _existing(folder, values["mechanisms"], "mechanisms folder", path, directory=True),
        cell_kwargs=kwargs, template=template, builder=None if builder is None else str(builder),
        synapse_sections=pattern, simulation=simulation, source=path.resolve(),
    )


def _call_builder(recipe: CellRecipe, kwargs: dict) -> LFPy.Cell:
    module_name, function_name = recipe.builder.split(":")
    folder = str(recipe.source.parent) if recipe.source else None
    if folder:
        sys.path.insert(0, folder)
    try:
        function = getattr(importlib.import_module(module_name), function_name)
    except (ImportError, AttributeError) as error:
        raise CellRecipeError(f"{recipe.source}: cannot import the builder {recipe.builder} ({error}).") from None
    finally:
        if folder:
            sys.path.remove(folder)
    cell = function(morphology=None if recipe.morphology is None else str(recipe.morphology), **kwargs)
    if not isinstance(cell, LFPy.Cell):
        raise CellRecipeError(f"{recipe.source}: the builder {recipe.builder} returned {type(cell).__name__}, "
                              "not an LFPy.Cell.")
    return cell


def _short_name(section) -> str:
    return section.name().split(".")[-1]


def segments_matching(cell, synapse_sections: str) -> np.ndarray:
    """Bool per segment (LFPy order): its section's name matches ``synapse_sections`` from the start."""
    pattern = re.compile(synapse_sections)
    return np.array([bool(pattern.match(_short_name(sec))) for sec in cell.allseclist for _ in sec])


def _synapse_mask(cell, recipe: CellRecipe) -> np.ndarray:
    mask = segments_matching(cell, recipe.synapse_sections)
    if not mask.any():
        names = sorted({re.sub(r"\[\d+\]$", "[..]", _short_name(sec)) for sec in cell.allseclist})
        raise CellRecipeError(f"{recipe.source}: no section matches synapse_sections {recipe.synapse_sections!r}; "
                              f"the cell's sections are {', '.join(names)}.")
    return mask


def _check_soma(cell, recipe: CellRecipe) -> None:
    if not any(_short_name(sec).startswith("soma") for sec in cell.allseclist):
        raise CellRecipeError(f"{recipe.source}: the cell has no section named soma*; name the somatic "
                              "section soma (or soma[0]), as LFPy expects.")


def build_recipe_cell(recipe: CellRecipe | str | Path, **cell_kwargs) -> LFPy.Cell:
    """Build a recipe's biophysical cell (its mechanisms compiled and loaded on first use).

    Parameters
    ----------
    recipe : CellRecipe or str or Path
        The recipe or its file.
    **cell_kwargs
        ``LFPy.Cell`` arguments that override the recipe's (``dt``, ``tstop``, ``v_init``, ...).

    Returns
    -------
    LFPy.Cell
        Carrying ``section_types``, ``synapse_mask`` (bool per segment: may receive synapses) and
        ``recipe`` (dict stored in data sets and checkpoints, with the embedded geometry).
    """
    if not isinstance(recipe, CellRecipe):
        recipe = load_recipe(recipe)
    if recipe.mechanisms is not None:
        load_mechanism_folder(recipe.mechanisms)
    else:
        load_synapse_mechanisms()
    kwargs = {**recipe.cell_kwargs, **cell_kwargs}
    try:
        if recipe.builder is not None:
            cell = _call_builder(recipe, kwargs)
        elif recipe.template is not None:
            cell = LFPy.TemplateCell(morphology=str(recipe.morphology), **recipe.template, **kwargs)
        else:
            cell = LFPy.Cell(morphology=str(recipe.morphology), **kwargs)
    except CellRecipeError:
        raise
    except Exception as error:  # LFPy, NEURON and Import3d raise bare Exceptions and RuntimeErrors
        raise CellRecipeError(f"{recipe.source}: LFPy could not build the cell ({type(error).__name__}: {error}). "
                              "Check the morphology file and cell_kwargs.") from error
    _check_soma(cell, recipe)
    cell.section_types = segment_section_types(cell)
    cell.synapse_mask = _synapse_mask(cell, recipe)
    cell.recipe = {
        "builder": RECIPE_BUILDER,
        "name": recipe.name,
        "source": _source_name(recipe.source),
        "synapse_sections": recipe.synapse_sections,
        "geometry": pack_text(geometry_hoc(cell)),
        "cell_kwargs": {name: kwargs[name] for name in TIME_KWARGS if name in kwargs},
    }
    return cell


def _source_name(source: Path | None) -> str | None:
    """A packaged recipe by its name (``cells/basket/basket.yaml``: found on any machine), else its path."""
    if source is None:
        return None
    try:
        return source.relative_to(PACKAGED_CONFIGS.resolve()).as_posix()
    except ValueError:
        return str(source)


def _array_name(name: str) -> tuple[str, int | None]:
    match = re.fullmatch(r"(\w+)\[(\d+)\]", name)
    return (match[1], int(match[2])) if match else (name, None)


def _create_statements(names: list[str]) -> list[str]:
    """``create`` statements that make the sections in ``names`` in exactly that order."""
    sizes: dict[str, int | None] = {}
    for base, index in map(_array_name, names):
        sizes[base] = None if index is None else max(sizes.get(base) or 0, index + 1)
    order = [name for base, size in sizes.items()
             for name in ([base] if size is None else [f"{base}[{i}]" for i in range(size)])]
    if order != names:
        raise CellRecipeError("The cell's sections are not in creation order (arrays in blocks, indices "
                              "ascending), so its geometry cannot be embedded in a checkpoint.")
    return [f"create {base}" if size is None else f"create {base}[{size}]" for base, size in sizes.items()]


def _logical_connection(section) -> list[str]:
    """``pt3dstyle`` of a section with a logical connection point (Import3d gives them to the
    soma's children), without which NEURON would move the section onto its parent's point."""
    from neuron import h

    if not h.pt3dstyle(sec=section):
        return []
    point = [h.ref(0.0) for _ in range(3)]
    h.pt3dstyle(1, *point, sec=section)
    return [f"  pt3dstyle(1, {point[0][0]!r}, {point[1][0]!r}, {point[2][0]!r})"]


def geometry_hoc(cell) -> str:
    """The geometry and passive properties of a built cell as hoc text.

    Sections keep their names (without template prefix), order, 3-D points and logical
    connection points, ``nseg``, ``Ra``,
    ``cm`` and, where inserted, ``pas`` per segment, and their connections: what LFPy needs for
    segment positions and the vmem -> imem matrix.
    """
    from neuron import h

    sections = list(cell.allseclist)
    names = [_short_name(sec) for sec in sections]
    lines = ["// geometry and passive properties embedded by surrogate_cell", *_create_statements(names)]
    index = {sec: name for sec, name in zip(sections, names)}
    for sec, name in zip(sections, names):
        parent = sec.parentseg()
        if parent is not None and parent.sec in index:
            lines.append(f"connect {name}({h.section_orientation(sec=sec)!r}), {index[parent.sec]}({parent.x!r})")
    for sec, name in zip(sections, names):
        lines += [f"{name} {{", "  pt3dclear()"]
        lines += [f"  pt3dadd({h.x3d(i, sec=sec)!r}, {h.y3d(i, sec=sec)!r}, {h.z3d(i, sec=sec)!r}, "
                  f"{h.diam3d(i, sec=sec)!r})" for i in range(int(h.n3d(sec=sec)))]
        lines += _logical_connection(sec)
        lines += [f"  nseg = {sec.nseg}", f"  Ra = {sec.Ra!r}"]
        lines += [f"  cm({seg.x!r}) = {seg.cm!r}" for seg in sec]
        if h.ismembrane("pas", sec=sec):
            lines.append("  insert pas")
            lines += [f"  g_pas({seg.x!r}) = {seg.g_pas!r}\n  e_pas({seg.x!r}) = {seg.e_pas!r}" for seg in sec]
        lines.append("}")
    return "\n".join(lines) + "\n"


def pack_text(text: str) -> str:
    """zlib + base64 of a text (embedded geometries stay well under HDF5's 64 kB attribute limit)."""
    return base64.b64encode(zlib.compress(text.encode(), 9)).decode("ascii")


def unpack_text(packed: str) -> str:
    """Inverse of :func:`pack_text`."""
    return zlib.decompress(base64.b64decode(packed)).decode()


def embedded_geometry_cell(recipe: dict, **cell_kwargs) -> LFPy.Cell:
    """Rebuild a recipe cell's segments from the geometry its ``recipe`` dict embeds.

    No user file and no user mechanism is needed: the cell is passive geometry (with ``Ra``,
    ``cm`` and ``pas`` as built), which is all a surrogate uses. ``cell_kwargs`` override the
    recipe's time arguments (``dt``, ``tstop``, ``v_init``, ...).
    """
    text = unpack_text(recipe["geometry"])
    folder = cache_root() / "geometries"
    folder.mkdir(parents=True, exist_ok=True)
    path = folder / f"{recipe.get('name', 'cell')}_{hashlib.sha256(text.encode()).hexdigest()[:12]}.hoc"
    if not path.is_file() or path.read_text() != text:
        _write_atomically(path, text)
    load_synapse_mechanisms()
    kwargs = {**recipe.get("cell_kwargs", {}), **cell_kwargs}
    cell = LFPy.Cell(morphology=str(path), nsegs_method=None, **kwargs)
    cell.section_types = segment_section_types(cell)
    cell.synapse_mask = segments_matching(cell, recipe.get("synapse_sections", CellRecipe.synapse_sections))
    cell.recipe = dict(recipe)
    return cell
