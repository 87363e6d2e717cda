"""Compile the project's NMODL mechanisms once and load them into NEURON.

The ``.mod`` files are package data (``surrogate_cell/cells/nmodl/``). They are compiled with
``nrnivmodl`` into a cache folder keyed by a hash of their contents and of the NEURON
version, so an edited mechanism is recompiled automatically and an unchanged one never is.
Several processes may ask at once: compilation happens in a private temporary folder that
is renamed into place, so a reader never sees a half-built library.
"""

from __future__ import annotations

import hashlib
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from pathlib import Path

import neuron
from neuron import h

MECHANISMS_ENV = "SURROGATE_CELL_MECHANISMS"
CACHE_ENV = "SURROGATE_CELL_CACHE"
NMODL_DIR = Path(__file__).resolve().parent / "cells" / "nmodl"
"""The packaged ``.mod`` files."""

_loaded_library: Path | None = None


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


def mechanisms_hash(source_dir: Path) -> str:
    """Hash the names and contents of the ``.mod`` files together with the NEURON version."""
    digest = hashlib.sha256(neuron.__version__.encode())
    for mod_file in sorted(source_dir.glob("*.mod")):
        digest.update(mod_file.name.encode())
        digest.update(mod_file.read_bytes())
    return digest.hexdigest()[:16]


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


def _compile(source_dir: Path, target_dir: Path, options: tuple[str, ...] = (),
             library=_library_path) -> None:
    nrnivmodl = _find_nrnivmodl()
    _check_compiler()
    target_dir.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.TemporaryDirectory(dir=target_dir.parent, prefix=".build-") as tmp:
        build_dir = Path(tmp) / "build"
        build_dir.mkdir()
        for mod_file in source_dir.glob("*.mod"):
            shutil.copy2(mod_file, build_dir)
        result = subprocess.run(
            [nrnivmodl, *options, "."], cwd=build_dir, capture_output=True, text=True, check=False
        )
        if result.returncode != 0 or not library(build_dir).exists():
            log = (result.stdout + result.stderr)[-4000:]
            raise MechanismError(f"nrnivmodl failed to compile {source_dir}:\n{log}")
        try:
            os.replace(build_dir, target_dir)
        except OSError:
            if not library(target_dir).exists():  # another process did not win the race
                raise


def compiled_mechanisms_dir() -> Path:
    """Return the cache folder with the compiled mechanisms, compiling them if needed."""
    source_dir = mechanisms_source_dir()
    target_dir = cache_root() / "mechanisms" / mechanisms_hash(source_dir)
    if not _library_path(target_dir).exists():
        _compile(source_dir, target_dir)
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
        _compile(source_dir, target_dir, ("-coreneuron",), _coreneuron_library_path)
    return _coreneuron_library_path(target_dir)


def load_mechanisms() -> Path:
    """Compile (first time only) and load the project's mechanisms into this process.

    Safe to call many times: the library is loaded once per process. Returns the path of
    the loaded shared library.
    """
    global _loaded_library
    if _loaded_library is not None:
        return _loaded_library
    library = _library_path(compiled_mechanisms_dir())
    if hasattr(h, "AMPANMDA"):
        raise MechanismError(
            "Mechanisms named like surrogate_cell's (e.g. AMPANMDA) are already loaded in this "
            "process from elsewhere; NEURON cannot load two definitions. Start a fresh process "
            "or remove the other mechanism folder (e.g. an x86_64/ in the working directory)."
        )
    if not h.nrn_load_dll(str(library)):
        raise MechanismError(f"NEURON could not load {library}")
    _loaded_library = library
    return library
