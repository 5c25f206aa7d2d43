"""Writing files so that a crash never destroys the previous copy.

:func:`atomic_save` writes with ``torch.save`` to a temporary file in the target's folder, flushes
and fsyncs it, and renames it over the target (``os.replace`` is atomic on POSIX and Windows), then
fsyncs the folder. A process killed at any moment leaves either the old file or the new one, never
half of one; at worst a stale ``.<name>.*.tmp`` file remains, which the next save of the same target
removes. :func:`atomic_write_json` does the same for a JSON record (benchmark results).
:func:`built_library` builds a shared library from C/C++ text once per content, into the temp
directory, with the same rename (a concurrent loader never sees half a file).
"""

from __future__ import annotations

import contextlib
import hashlib
import json
import os
import subprocess
import tempfile
from collections.abc import Callable, Sequence
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


def built_library(
    folder: str,
    sources: Sequence[tuple[str, str]],
    command: Callable[[list[str], str], list[str]],
    depends: Sequence[str] = (),
) -> Path:
    """The shared library that ``command(source paths, output path)`` builds from ``sources``
    ((suffix, text) pairs, e.g. (".c", code)), cached in ``<temp dir>/<folder>`` under a hash of the
    texts, the command and ``depends`` (the text of files the build reads besides the sources, such
    as an included header); built once, then found. Raises RuntimeError with the compiler's
    messages when the build fails (OSError when the compiler cannot be run)."""
    place = Path(tempfile.gettempdir()) / folder
    place.mkdir(exist_ok=True)
    probe = command(["<source>"] * len(sources), "<library>")  # the command, without paths
    texts = [*(text for _, text in sources), *depends, *probe]
    key = hashlib.sha256("\0".join(texts).encode()).hexdigest()
    library = place / f"{key[:16]}.so"
    if library.exists():
        return library
    paths = []
    partial = place / f"{key[:16]}.{os.getpid()}.so"
    try:
        for suffix, text in sources:
            with tempfile.NamedTemporaryFile("w", suffix=suffix, dir=place, delete=False) as f:
                f.write(text)
            paths.append(f.name)
        argv = command(paths, str(partial))
        result = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=300)
        if result.returncode:
            raise RuntimeError(f"{argv[0]} failed:\n{' '.join(argv)}\n{result.stderr}")
        os.replace(partial, library)  # atomic: concurrent loaders never see a half-written file
    finally:
        for name in paths:
            Path(name).unlink(missing_ok=True)
        partial.unlink(missing_ok=True)
    return library


__all__ = ["atomic_save", "atomic_write_bytes", "atomic_write_json", "built_library"]
