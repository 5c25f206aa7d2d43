"""Writing files so that a crash never destroys the previous copy.

:func:`atomic_save` writes with ``torch.save`` to a temporary file in the target's folder, flushes
and fsyncs it, and renames it over the target (``os.replace`` is atomic on POSIX and Windows), then
fsyncs the folder. A process killed at any moment leaves either the old file or the new one, never
half of one; at worst a stale ``.<name>.*.tmp`` file remains, which the next save of the same target
removes. :func:`atomic_write_json` does the same for a JSON record (benchmark results).
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import IO, Any

import torch


def _fsync_folder(folder: Path) -> None:
    with contextlib.suppress(OSError):  # not every filesystem (or OS) lets a folder be fsynced
        fd = os.open(folder, os.O_RDONLY)
        try:
            os.fsync(fd)
        finally:
            os.close(fd)


def atomic_save(obj: Any, path: str | os.PathLike) -> Path:
    """``torch.save(obj, path)`` that leaves the previous ``path`` intact until the new one is
    complete."""
    return _atomic_write(path, lambda f: torch.save(obj, f))


def atomic_write_json(record: Any, path: str | os.PathLike) -> Path:
    """``record`` as indented JSON at ``path``, written like :func:`atomic_save`."""
    text = json.dumps(record, indent=1) + "\n"
    return _atomic_write(path, lambda f: f.write(text.encode()))


def atomic_write_bytes(raw: bytes, path: str | os.PathLike) -> Path:
    """``raw`` at ``path``, written like :func:`atomic_save`."""
    return _atomic_write(path, lambda f: f.write(raw))


def _atomic_write(path: str | os.PathLike, write: Callable[[IO[bytes]], object]) -> Path:
    """Write through ``write(file)`` to a temporary file, then rename it over ``path``."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    for stale in path.parent.glob(f".{path.name}.*.tmp"):  # left by a process killed mid-write
        stale.unlink(missing_ok=True)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(fd, "wb") as f:
            write(f)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _fsync_folder(path.parent)
    return path


__all__ = ["atomic_save", "atomic_write_bytes", "atomic_write_json"]
