"""Writing output files: atomically, under a name no other writer shares, and with messages that name the path.

Every command writes through ``atomic_write``: the content goes to a unique
temporary file in the target's own folder (so two runs writing the same
``--out`` never share one), which replaces the target only once it is complete
and is removed when writing fails. A reader sees the old file or the new one,
never half of one.
"""

from __future__ import annotations

import json
import os
import tempfile
from contextlib import contextmanager
from pathlib import Path

from .records import InputError

# Kernel interfaces, not places for results.
_SYSTEM_TREES = (Path("/proc"), Path("/sys"), Path("/dev"))


def _under_system_tree(path: Path) -> bool:
    resolved = path.resolve()
    return any(resolved.is_relative_to(root) for root in _SYSTEM_TREES)


def _existing_ancestor(path: Path) -> Path:
    for parent in (path, *path.parents):
        if parent.exists():
            return parent
    return Path("/")


def output_file_problem(path: str | Path) -> str | None:
    """Why *path* cannot take an output file (None when it can): a folder, a system tree, an unwritable folder."""
    path = Path(path)
    if _under_system_tree(path):
        return f"{path}: not a place for output files"
    if path.is_dir():
        return f"{path}: is a folder; give the file's name"
    return _creatable_problem(path, path.parent)


def output_dir_problem(path: str | Path) -> str | None:
    """Why *path* cannot be (or become) an output folder, or None."""
    path = Path(path)
    if _under_system_tree(path):
        return f"{path}: not a place for output files"
    if path.exists() and not path.is_dir():
        return f"{path}: is a file; give a folder"
    return _creatable_problem(path, path)


def _creatable_problem(path: Path, within: Path) -> str | None:
    """Why *path* cannot be created in *within*: the nearest existing folder of it is a file or not writable."""
    folder = _existing_ancestor(within)
    if not folder.is_dir():
        return f"{path}: {folder} is a file, not a folder"
    if not os.access(folder, os.W_OK | os.X_OK):
        return f"{path}: {folder} is not writable"
    return None


def ensure_dir(path: str | Path) -> Path:
    """Create the output folder *path* (and its parents), or InputError naming it."""
    path = Path(path)
    problem = output_dir_problem(path)
    if problem:
        raise InputError(problem)
    try:
        path.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise InputError(f"{path}: cannot create the folder ({e.strerror or e})") from None
    return path


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


@contextmanager
def atomic_write(path: str | Path, mode: str = "w"):
    """A file object whose content replaces *path* when the block ends without an error.

    The temporary file is ``.<name>.<random>.tmp`` beside the target; it gets
    the permissions a new file would get, and is removed on any failure. A
    failure of the file system (full, read-only, permissions) is an InputError
    naming *path*.
    """
    path = Path(path)
    problem = output_file_problem(path)
    if problem:
        raise InputError(problem)
    binary = "b" in mode
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    except OSError as e:
        raise InputError(f"{path}: cannot write ({e.strerror or e})") from None
    try:
        with os.fdopen(fd, mode, **({} if binary else {"encoding": "utf-8"})) as f:
            yield f
        os.chmod(tmp, 0o666 & ~_umask())
        os.replace(tmp, path)
    except OSError as e:
        _remove(tmp)
        raise InputError(f"{path}: cannot write ({e.strerror or e})") from None
    except BaseException:
        _remove(tmp)
        raise


def _remove(tmp: str) -> None:
    try:
        os.unlink(tmp)
    except FileNotFoundError:
        pass


def write_json(path: str | Path, data, indent: int | None = 2) -> None:
    """Write *data* as JSON (UTF-8, non-ASCII kept) atomically."""
    text = json.dumps(data, indent=indent, ensure_ascii=False) + "\n"
    with atomic_write(path) as f:
        f.write(text)


def write_text(path: str | Path, text: str) -> None:
    with atomic_write(path) as f:
        f.write(text)
