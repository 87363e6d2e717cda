"""Build the Hay et al. (2011) layer-5b pyramidal cell as an LFPy cell."""

from __future__ import annotations

from pathlib import Path

import LFPy
import numpy as np

from surrogate_cell.cells.biophysics import (
    HayBiophysics,
    apical_direction,
    apply_hay_biophysics,
    fix_zero_diameters,
    replace_axon,
    section_kind,
)
from surrogate_cell.cells.morphology import default_morphology_path
from surrogate_cell.cells.sections import segment_section_types
from surrogate_cell.mechanisms import load_mechanisms

SUPPORTED_SUFFIXES = (".asc", ".swc", ".hoc", ".xml")
CELL_DEFAULTS = {"v_init": -76.0, "celsius": 34.0, "dt": 0.025, "tstart": 0.0, "tstop": 100.0}
BUILDER_OWNED_KWARGS = (
    "nsegs_method", "custom_fun", "custom_fun_args", "custom_code", "passive",
    "passive_parameters", "Ra", "cm", "lambda_f", "d_lambda", "max_nsegs_length",
)


class MorphologyError(ValueError):
    """A morphology file is missing, unreadable, or lacks what the L5PC model needs."""


def resolve_morphology(morphology: str | Path | None) -> Path:
    """Return the morphology file to load: the built-in default for None, else a checked path."""
    if morphology is None:
        return default_morphology_path()
    path = Path(morphology).expanduser()
    if not path.is_file():
        raise MorphologyError(
            f"Morphology file {path} does not exist. Pass the path of a Neurolucida (.asc), "
            f"SWC (.swc), hoc (.hoc) or NeuroML (.xml) file, or morphology=None for the built-in cell."
        )
    if path.suffix.lower() not in SUPPORTED_SUFFIXES:
        raise MorphologyError(
            f"Morphology file {path} has the unsupported format '{path.suffix}'. "
            f"Convert it to one of {', '.join(SUPPORTED_SUFFIXES)}."
        )
    return path


def _check_cell_kwargs(cell_kwargs: dict) -> None:
    owned = sorted(set(cell_kwargs) & set(BUILDER_OWNED_KWARGS))
    if owned:
        raise TypeError(
            f"l5pc() sets {', '.join(owned)} itself from the Hay model; remove "
            f"{'it' if len(owned) == 1 else 'them'} from the call (change the mechanisms or "
            f"surrogate_cell.cells.biophysics.HayBiophysics instead)."
        )
    _check_time_kwargs(float(cell_kwargs.get("tstart", 0.0)), float(cell_kwargs.get("dt", CELL_DEFAULTS["dt"])))


def _check_time_kwargs(tstart: float, dt: float) -> None:
    """LFPy's rules on ``tstart`` and ``dt``, as one clear error instead of its bare assertions."""
    if tstart > 0:
        raise ValueError(f"tstart must be <= 0 ms (a negative tstart is a warm-up), got {tstart}.")
    if not dt > 0:
        raise ValueError(f"dt must be positive, got {dt} ms.")
    if tstart < 0 and dt not in 2.0 ** np.arange(-16, -1):
        raise ValueError(f"With tstart < 0 LFPy needs dt = 2**-k ms (k = 2..16, e.g. 0.125 or 0.03125), "
                         f"got dt = {dt}; choose such a dt or tstart = 0.")


def _sections_by_kind(sections, path: Path) -> dict:
    grouped: dict = {"soma": [], "axon": [], "dend": [], "apic": []}
    for sec in sections:
        grouped.setdefault(section_kind(sec), []).append(sec)
    missing = [name for name, kind in (("soma", "soma"), ("basal", "dend"), ("apical", "apic"))
               if not grouped[kind]]
    if missing:
        raise MorphologyError(
            f"Morphology {path} has no {' and no '.join(missing)} sections (section names must "
            f"start with soma, dend, apic). The L5PC model needs a soma, basal and apical dendrites."
        )
    return grouped


def _install_hay_membrane(cell, path: Path, biophysics: HayBiophysics, result: dict) -> None:
    """LFPy custom_fun: swap in the axon stub and insert the Hay biophysics."""
    grouped = _sections_by_kind(cell.allseclist, path)
    fix_zero_diameters(cell.allseclist)
    soma = grouped["soma"][0]
    grouped["axon"] = replace_axon(soma, apical_direction(soma, grouped["apic"]))
    result["max_apical_distance"] = apply_hay_biophysics(grouped, biophysics)


def _load_cell(path: Path, biophysics: HayBiophysics, cell_kwargs: dict):
    result: dict = {}
    kwargs = {**CELL_DEFAULTS, **cell_kwargs}
    try:
        cell = LFPy.Cell(
            morphology=str(path),
            nsegs_method=None,
            custom_fun=[_install_hay_membrane],
            custom_fun_args=[{"path": path, "biophysics": biophysics, "result": result}],
            **kwargs,
        )
    except MorphologyError:
        raise
    except (ValueError, TypeError) as error:
        if "is invalid input to class LFPy.Cell" in str(error):
            raise TypeError(f"l5pc() got an argument LFPy.Cell does not take: {error.args[0]}") from None
        raise MorphologyError(f"Could not read morphology {path}: {error}") from error
    except Exception as error:  # NEURON and Import3d raise bare Exceptions and RuntimeErrors
        raise MorphologyError(
            f"Could not read morphology {path} ({error}). Check that it is a valid "
            f"{path.suffix} file, e.g. by opening it in NEURON's Import3d."
        ) from error
    return cell, result


def l5pc(morphology: str | Path | None = None, biophysics: HayBiophysics | None = None,
         **cell_kwargs) -> LFPy.Cell:
    """Return an ``LFPy.Cell`` with the Hay et al. (2011) layer-5b pyramidal cell biophysics.

    Section-wise channel densities, the apical Ih gradient and the Ca_LVAst hot zone, the
    2 x 30 um axon stub, ``nseg = 1 + 2 int(L / 40 um)`` and the published passive
    properties. The NMODL mechanisms are compiled and loaded on first use.

    Parameters
    ----------
    morphology : str or Path, optional
        Morphology file LFPy reads (.asc, .swc, .hoc, .xml). Default: the project's built-in
        synthetic L5 pyramidal morphology (645 segments).
    biophysics : HayBiophysics, optional
        Biophysical parameters (:class:`surrogate_cell.cells.biophysics.HayBiophysics`);
        default: the published values.
    **cell_kwargs
        Passed to ``LFPy.Cell``: ``tstop`` (ms, default 100), ``dt`` (ms, default 0.025),
        ``v_init`` (mV, default -76), ``celsius`` (degC, default 34), ``tstart`` (ms,
        default 0), ... The keywords that set segmentation and passive properties
        (``nsegs_method``, ``passive``, ``Ra``, ``cm``, ``custom_fun``, ...) belong to the
        builder and raise :class:`TypeError`.

    Returns
    -------
    LFPy.Cell
        The cell, carrying also ``section_types`` (ndarray of str, one of
        soma/axon/basal/apical/oblique per segment), ``max_apical_distance`` (um) and
        ``recipe`` (dict of the builder arguments, stored in surrogate checkpoints).

    Examples
    --------
    >>> cell = l5pc(tstop=1000.0)  # doctest: +SKIP
    >>> cell = l5pc("cell1.asc", tstop=1000.0)  # the Hay reconstruction  # doctest: +SKIP
    """
    _check_cell_kwargs(cell_kwargs)
    load_mechanisms()
    path = resolve_morphology(morphology)
    cell, result = _load_cell(path, biophysics or HayBiophysics(), cell_kwargs)
    cell.section_types = segment_section_types(cell)
    cell.max_apical_distance = result["max_apical_distance"]
    cell.recipe = {
        "builder": "l5pc",
        "morphology": None if morphology is None else str(path),
        "cell_kwargs": {**CELL_DEFAULTS, **cell_kwargs},
    }
    return cell


def segment_path_distances(cell) -> np.ndarray:
    """Path distance (um) of every segment's centre from the soma centre, in LFPy's order."""
    from neuron import h

    soma = next(sec for sec in cell.allseclist if section_kind(sec) == "soma")
    h.distance(0, soma(0.5))
    return np.array([h.distance(seg) for sec in cell.allseclist for seg in sec])


CA_HOT_ZONE_DISTANCE_UM = 750.0
"""Path distance (um) from the soma of the apical Ca hot zone (Hay et al. 2011: ~685-885 um)."""


def main_trunk_sections(cell) -> list:
    """Apical sections from the root to the apical tip farthest (path) from the soma: the main
    trunk and, beyond the nexus, the tuft branch it continues into."""
    from neuron import h

    sections = list(cell.allseclist)
    soma = next(sec for sec in sections if section_kind(sec) == "soma")
    apical = [sec for sec in sections if section_kind(sec) == "apic"]
    h.distance(0, soma(0.5))
    section = max(apical, key=lambda sec: h.distance(sec(1)))
    path, apical_set = [section], set(apical)
    while section.parentseg() is not None and section.parentseg().sec in apical_set:
        section = section.parentseg().sec
        path.append(section)
    return path[::-1]


def ca_hot_zone_segment(cell) -> int:
    """Index (LFPy order) of the main-trunk segment nearest :data:`CA_HOT_ZONE_DISTANCE_UM` path
    distance from the soma: where apical Ca spikes are read."""
    distance = segment_path_distances(cell)
    trunk = {sec.name() for sec in main_trunk_sections(cell)}
    on_trunk = np.array([sec.name() in trunk for sec in cell.allseclist for _ in sec])
    candidates = np.flatnonzero(on_trunk)
    return int(candidates[np.argmin(np.abs(distance[candidates] - CA_HOT_ZONE_DISTANCE_UM))])
