"""The N:M selection as one compiled C loop (``kernels/nm_select.c``), called through ctypes.

PyTorch's tensor operations rank a group's m entries with m(m−1)/2 comparisons, each one pass over
the weight; the C loop reads every group once and ranks it in registers. For the 2:4 mask of a
4096×4096 weight on one thread that is the difference between ~60 ms and ~15 ms (``sparsitylab
bench nm`` records both, side by side). The loop runs on one thread.

The library is compiled on first use with the system C compiler (``cc``, plain ``-O2``: no
``-march=native``, no fast-math) into a file cached in the temp directory under a hash of the
source, the compiler and the flags, written atomically. Where there is no compiler, the
compilation fails, or ``SPARSITYLAB_NATIVE=0`` is set, :func:`top_n_per_group` returns None and
the caller takes the PyTorch path, which computes the same mask (the tests compare the two).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import importlib.resources
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

FLAGS = ("-O2", "-shared", "-fPIC", "-std=c99")
MAX_M = 16  # nm_select.c's register arrays
_FUNCTIONS = {torch.float32: "nm_select_f32", torch.float64: "nm_select_f64"}


def enabled() -> bool:
    """False when ``SPARSITYLAB_NATIVE=0`` asks for the PyTorch path everywhere."""
    return os.environ.get("SPARSITYLAB_NATIVE", "1") != "0"


@contextlib.contextmanager
def disabled() -> Iterator[None]:
    """Inside this block the PyTorch path runs (``SPARSITYLAB_NATIVE=0``), e.g. to time it."""
    before = os.environ.get("SPARSITYLAB_NATIVE")
    os.environ["SPARSITYLAB_NATIVE"] = "0"
    try:
        yield
    finally:
        if before is None:
            del os.environ["SPARSITYLAB_NATIVE"]
        else:
            os.environ["SPARSITYLAB_NATIVE"] = before


@functools.cache
def _library() -> ctypes.CDLL | None:
    """The compiled ``nm_select.c``, or None without a compiler or when compiling fails."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    source = importlib.resources.files("sparsitylab.kernels") / "nm_select.c"
    text = source.read_text()
    key = hashlib.sha256("\0".join([text, compiler, *FLAGS]).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "sparsitylab-native"
    library = folder / f"nm_select-{key}.so"
    if not library.exists():
        folder.mkdir(exist_ok=True)
        partial = folder / f"nm_select-{key}.{os.getpid()}.so"
        with tempfile.NamedTemporaryFile("w", suffix=".c", dir=folder, delete=False) as file:
            file.write(text)
        try:
            subprocess.run(
                [compiler, *FLAGS, file.name, "-o", str(partial), "-lm"],
                check=True,
                capture_output=True,
                timeout=120,
            )
            os.replace(partial, library)  # atomic: a reader never sees a half-written file
        except (OSError, subprocess.SubprocessError):
            return None
        finally:
            Path(file.name).unlink(missing_ok=True)
            partial.unlink(missing_ok=True)
    lib = ctypes.CDLL(str(library))
    for name in _FUNCTIONS.values():
        getattr(lib, name).argtypes = [
            ctypes.c_void_p,
            ctypes.c_int64,
            ctypes.c_int,
            ctypes.c_int,
            ctypes.c_void_p,
        ]
        getattr(lib, name).restype = None
    return lib


def available() -> bool:
    """True when the compiled selection can be used (enabled, and compiled or compilable)."""
    return enabled() and _library() is not None


def top_n_per_group(groups: torch.Tensor, n: int) -> torch.Tensor | None:
    """The keep-mask of :func:`sparsitylab.sparsify.masks.top_n_per_group` ((G, m) groups, the n
    largest |values| of every row, ties keeping the earlier position) from the compiled loop, or
    None when it cannot run here: no compiler, not enabled, not a CPU float32/float64 tensor, or
    m > 16. The caller checks the arguments."""
    function = _FUNCTIONS.get(groups.dtype)
    if function is None or groups.device.type != "cpu" or groups.shape[1] > MAX_M:
        return None
    if not enabled():
        return None
    library = _library()
    if library is None:
        return None
    rows = groups.detach().contiguous()
    keep = torch.empty(rows.shape, dtype=torch.bool)
    count, m = rows.shape
    if count:
        getattr(library, function)(rows.data_ptr(), count, m, n, keep.data_ptr())
    return keep


__all__ = ["available", "disabled", "enabled", "top_n_per_group"]
