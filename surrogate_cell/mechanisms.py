"""Compile the project's NMODL mechanisms once and load them into NEURON.

The ``.mod`` files are package data (``surrogate_cell/cells/nmodl/``). They are compiled with
``nrnivmodl`` into a cache folder keyed by a hash of their contents and of the NEURON
version, so an edited mechanism is recompiled automatically and an unchanged one never is.
Several processes may ask at once: compilation happens in a private temporary folder that
is renamed into place, so a reader never sees a half-built library.

Two packaged libraries (the synapses, which every cell gets, and the Hay cell's channels) and
any folder a cell recipe names (:func:`load_mechanism_folder`) are loaded side by side; a name
defined twice is refused with one clear error instead of NEURON's crash.
"""

from __future__ import annotations

import hashlib
import os
import platform
import re
import shutil
import subprocess
import sys
import tempfile
from collections.abc import Sequence
from pathlib import Path

import neuron
from neuron import h

MECHANISMS_ENV = "SURROGATE_CELL_MECHANISMS"
CACHE_ENV = "SURROGATE_CELL_CACHE"
NMODL_DIR = Path(__file__).resolve().parent / "cells" / "nmodl"
"""The packaged ``.mod`` files."""

_loaded_libraries: dict[str, Path] = {}
"""Libraries loaded in this process, by the hash of their .mod files."""


class MechanismError(RuntimeError):
    """The NMODL mechanisms could not be found, compiled or loaded."""


def cache_root() -> Path:
    """Return the project's cache folder (``$SURROGATE_CELL_CACHE`` or ``~/.cache/surrogate_cell``)."""
    return Path(os.environ.get(CACHE_ENV, Path.home() / ".cache" / "surrogate_cell"))


def mechanisms_source_dir() -> Path:
    """Return the folder holding the ``.mod`` files (``$SURROGATE_CELL_MECHANISMS`` overrides)."""
    override = os.environ.get(MECHANISMS_ENV)
    folder = Path(override) if override else NMODL_DIR
    if not sorted(folder.glob("*.mod")):
        where = f"the folder {MECHANISMS_ENV} names" if override else "the installed package"
        raise MechanismError(
            f"No .mod files found in {folder} ({where}). Unset {MECHANISMS_ENV} to use the packaged "
            f"mechanisms, or reinstall surrogate_cell (its wheel ships surrogate_cell/cells/nmodl/*.mod)."
        )
    return folder


SYNAPSE_MOD_FILES = ("AMPANMDA.mod", "GABAA.mod")
"""The packaged synapse mechanisms: every cell, the Hay cell or a recipe's, gets these."""

_MECHANISM_NAME = re.compile(r"^\s*(?:SUFFIX|POINT_PROCESS|ARTIFICIAL_CELL)\s+(\w+)", re.MULTILINE)


def mechanisms_hash(source: Path | Sequence[Path]) -> str:
    """Hash the names and contents of ``.mod`` files (a folder's, or a list) with the NEURON version."""
    files = sorted(Path(source).glob("*.mod")) if isinstance(source, (str, Path)) else sorted(source)
    digest = hashlib.sha256(neuron.__version__.encode())
    for mod_file in files:
        digest.update(mod_file.name.encode())
        digest.update(mod_file.read_bytes())
    return digest.hexdigest()[:16]


def mechanism_names(files: Sequence[Path]) -> dict[str, Path]:
    """The mechanisms (SUFFIX, POINT_PROCESS, ARTIFICIAL_CELL names) the ``.mod`` files define."""
    return {name: mod_file for mod_file in files
            for name in _MECHANISM_NAME.findall(Path(mod_file).read_text(errors="replace"))}


def loaded_mechanism_names() -> set[str]:
    """Names of every density mechanism and point process NEURON knows in this process."""
    names, name = set(), h.ref("")
    for kind in (0, 1):
        types = h.MechanismType(kind)
        for index in range(int(types.count())):
            types.select(index)
            types.selected(name)
            names.add(name[0])
    return names


def _library_path(build_dir: Path) -> Path:
    return build_dir / platform.machine() / "libnrnmech.so"


def _find_nrnivmodl() -> str:
    beside_python = Path(sys.executable).parent / "nrnivmodl"
    if beside_python.exists():
        return str(beside_python)
    found = shutil.which("nrnivmodl")
    if found is None:
        raise MechanismError(
            "nrnivmodl was not found. It comes with NEURON: install it with "
            "'pip install neuron' in the environment that runs surrogate_cell."
        )
    return found


def _check_compiler() -> None:
    if not any(shutil.which(name) for name in ("c++", "g++", "clang++")):
        raise MechanismError(
            "No C++ compiler found, which nrnivmodl needs to compile the mechanisms. "
            "Install one, e.g. 'apt-get install g++' (Debian/Ubuntu) or 'xcode-select --install' (macOS)."
        )


def _compile(files: Sequence[Path], target_dir: Path, options: tuple[str, ...] = (),
             library=_library_path) -> None:
    nrnivmodl = _find_nrnivmodl()
    _check_compiler()
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target_dir.parent, prefix=".build-") as tmp:
        build_dir = Path(tmp) / "build"
        build_dir.mkdir()
        for mod_file in files:
            shutil.copy2(mod_file, build_dir)
        result = subprocess.run(
            [nrnivmodl, *options, "."], cwd=build_dir, capture_output=True, text=True, check=False
        )
        if result.returncode != 0 or not library(build_dir).exists():
            log = (result.stdout + result.stderr)[-4000:]
            where = ", ".join(sorted({str(Path(f).parent) for f in files}))
            raise MechanismError(f"nrnivmodl failed to compile the .mod files of {where}; fix the NMODL "
                                 f"error it reports:\n{log}")
        try:
            os.replace(build_dir, target_dir)
        except OSError:
            if not library(target_dir).exists():  # another process did not win the race
                raise


def compiled_mechanisms_dir(files: Sequence[Path] | None = None) -> Path:
    """Return the cache folder with ``files`` (default: all packaged ``.mod`` files) compiled,
    compiling them if needed."""
    files = sorted(mechanisms_source_dir().glob("*.mod")) if files is None else sorted(files)
    target_dir = cache_root() / "mechanisms" / mechanisms_hash(files)
    if not _library_path(target_dir).exists():
        _compile(files, target_dir)
    return target_dir


def _coreneuron_library_path(build_dir: Path) -> Path:
    return build_dir / platform.machine() / "libcorenrnmech.so"


def coreneuron_library() -> Path:
    """Return CoreNEURON's library of the mechanisms (``libcorenrnmech.so``), compiling it if needed.

    Built with ``nrnivmodl -coreneuron`` into its own cache folder (``<hash>-coreneuron``), so the
    NEURON library that :func:`load_mechanisms` loads is never rebuilt for it; CoreNEURON maps the
    mechanisms by name, and the two libraries give bit-identical results. Raises
    :class:`MechanismError` when this NEURON has no CoreNEURON or the build fails.
    """
    source_dir = mechanisms_source_dir()
    target_dir = cache_root() / "mechanisms" / f"{mechanisms_hash(source_dir)}-coreneuron"
    if not _coreneuron_library_path(target_dir).exists():
        if not (Path(_find_nrnivmodl()).parent / "nrnivmodl-core").exists() and not shutil.which("nrnivmodl-core"):
            raise MechanismError("This NEURON installation has no CoreNEURON (nrnivmodl-core not found).")
        _compile(sorted(source_dir.glob("*.mod")), target_dir, ("-coreneuron",), _coreneuron_library_path)
    return _coreneuron_library_path(target_dir)


def _load_files(files: Sequence[Path], origin: str) -> Path:
    """Compile (first time only) and load one library of ``.mod`` files, once per process."""
    key = mechanisms_hash(files)
    if key in _loaded_libraries:
        return _loaded_libraries[key]
    clashes = sorted(set(mechanism_names(files)) & loaded_mechanism_names())
    if clashes:
        raise MechanismError(
            f"{origin} defines {', '.join(clashes)}, which this process already has (from "
            "surrogate_cell's own mechanisms or another folder); NEURON cannot load two definitions of "
            "one name. Rename the SUFFIX/POINT_PROCESS in your .mod file, drop the file if it is the "
            "same model as surrogate_cell's (AMPANMDA and GABAA are always loaded), or start a fresh "
            "process."
        )
    library = _library_path(compiled_mechanisms_dir(files))
    if not h.nrn_load_dll(str(library)):
        raise MechanismError(f"NEURON could not load {library}")
    _loaded_libraries[key] = library
    return library


def _packaged_groups() -> tuple[list[Path], list[Path]]:
    """The packaged ``.mod`` files as (synapses, cell channels)."""
    files = sorted(mechanisms_source_dir().glob("*.mod"))
    synapses = [f for f in files if f.name in SYNAPSE_MOD_FILES]
    return synapses, [f for f in files if f.name not in SYNAPSE_MOD_FILES]


def load_synapse_mechanisms() -> Path:
    """Compile (first time only) and load the packaged synapse mechanisms (AMPANMDA, GABAA) alone:
    what a recipe cell (:mod:`surrogate_cell.cells.recipe`) needs besides its own mechanisms."""
    synapses, _ = _packaged_groups()
    return _load_files(synapses, "surrogate_cell's synapse mechanisms")


def load_mechanisms() -> Path:
    """Compile (first time only) and load the project's mechanisms into this process.

    Two libraries: the synapses (:func:`load_synapse_mechanisms`) and the Hay cell's channels.
    Safe to call many times: each library is loaded once per process. Returns the path of the
    channels' library.
    """
    load_synapse_mechanisms()
    _, channels = _packaged_groups()
    return _load_files(channels, "surrogate_cell's Hay-cell mechanisms")


def load_mechanism_folder(folder: str | Path) -> Path:
    """Compile (first time only, cached by content hash) and load a folder of ``.mod`` files, e.g.
    a cell recipe's, together with the project's synapse mechanisms.

    Parameters
    ----------
    folder : str or Path
        Folder holding the ``.mod`` files.

    Returns
    -------
    Path
        The loaded library. Raises :class:`MechanismError` when the folder is missing or holds
        no ``.mod`` file, when a mechanism does not compile (with nrnivmodl's message), or when
        one of its names is already loaded in this process.
    """
    folder = Path(folder).expanduser()
    files = sorted(folder.glob("*.mod")) if folder.is_dir() else []
    if not files:
        problem = "holds no .mod file" if folder.is_dir() else "does not exist"
        raise MechanismError(f"The mechanisms folder {folder} {problem}; "
                             "give the folder that holds your cell's NMODL (.mod) files.")
    load_synapse_mechanisms()
    return _load_files(files, f"The mechanisms folder {folder}")
