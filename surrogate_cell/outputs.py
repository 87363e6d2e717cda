"""Checks on where a command writes its results (``--out``, ``--out-dir``), made before the work.

A folder below a file, or a folder this user may not write in, is reported as one
:class:`OutputPathError` naming the path in the way and the fix, before any simulation or
training step runs (and not as a traceback after it).
"""

from __future__ import annotations

import errno
import tempfile
from pathlib import Path


class OutputPathError(OSError):
    """An output path cannot be written: it lies below a file, or in a read-only folder."""


def _existing_ancestor(path: Path) -> Path:
    """``path`` itself or its nearest ancestor that exists (as anything)."""
    for candidate in (path, *path.parents):
        if candidate.exists() or candidate.is_symlink():
            return candidate
    return Path(".")


def _file_in_the_way(folder: Path) -> Path | None:
    """The file (not folder) that ``folder`` or one of its ancestors would have to be, if any."""
    nearest = _existing_ancestor(folder)
    return None if nearest.is_dir() else nearest


def _write_error(folder: Path, given: Path, error: OSError, option: str) -> OutputPathError:
    """The one error for an ``OSError`` raised while creating ``folder`` or a file in it."""
    nearest = _existing_ancestor(folder)
    if error.errno == errno.EROFS:
        return OutputPathError(f"{option} {given}: {nearest} is on a read-only file system; "
                               f"choose another {option} on a writable disk.")
    if error.errno in (errno.EACCES, errno.EPERM):
        return OutputPathError(f"{option} {given}: permission denied writing in {nearest} "
                               f"({error.strerror}): it is read-only for this user. Make it writable "
                               f"(chmod u+w {nearest}) or choose another {option}.")
    if error.errno == errno.ENOSPC:
        return OutputPathError(f"{option} {given}: no space left on its device; free some space "
                               f"or choose another {option}.")
    return OutputPathError(f"{option} {given}: cannot write there ({error.strerror or error}); "
                           f"choose another {option}.")


def _ensure_writable(folder: Path, given: Path, option: str, create: bool = True) -> None:
    """Check that ``folder`` can be made and written in by writing (then removing) a file in it,
    or, with ``create=False``, in its nearest existing ancestor, leaving no folder behind.
    ``given``: the path the user named (``folder`` or a file in it), quoted in the message."""
    blocker = _file_in_the_way(folder)
    if blocker is not None:
        raise OutputPathError(f"{option} {given}: {blocker} is a file, not a folder; choose "
                              f"another {option} (or move {blocker} out of the way).")
    try:
        if create:
            folder.mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=folder if create else _existing_ancestor(folder),
                                         prefix=".write-check-"):
            pass
    except OSError as error:
        raise _write_error(folder, given, error, option) from None


def writable_folder(folder: str | Path, option: str = "--out-dir", create: bool = True) -> Path:
    """Create ``folder`` (with its parents) if needed and check that files can be written in it.

    Parameters
    ----------
    folder : str or Path
        Where a command is about to write.
    option : str
        The command-line option that named it, quoted in the message (e.g. ``"--out"``).
    create : bool
        False: only check, creating nothing (the folder's nearest existing ancestor must accept
        new files), so that a command failing later leaves no empty folder behind.

    Returns
    -------
    Path
        ``folder``, which (with ``create``) now exists and accepts new files.

    Raises
    ------
    OutputPathError
        If ``folder`` or an ancestor is a file, or the folder cannot be created or written in.
    """
    folder = Path(folder)
    _ensure_writable(folder, folder, option, create)
    return folder


def writable_file_folder(path: str | Path, option: str = "--out") -> Path:
    """Check that output file ``path`` can be written: its folder, or the nearest existing
    ancestor of it, accepts new files (nothing is created); returns ``path``.

    Raises
    ------
    OutputPathError
        If ``path`` is a folder, or its folder cannot be written in (see :func:`writable_folder`).
    """
    path = Path(path)
    if path.is_dir():
        raise OutputPathError(f"{option} {path} is a folder; give a file name in it instead.")
    _ensure_writable(path.parent, path, option, create=False)
    return path
