"""Two selections as compiled C loops (``kernels/nm_select.c``, ``kernels/band_select.c``), called
through ctypes.

- **N:M.** PyTorch's tensor operations rank a group's m entries with m(m−1)/2 comparisons, each one
  pass over the weight; the C loop reads every group once and ranks it in registers. For the 2:4
  mask of a 4096×4096 weight on one thread: ~64 ms → ~17 ms (``sparsitylab bench nm`` records
  both paths side by side).
- **The band of a bracketed top-k.** :func:`sparsitylab.sparsify.masks._keep_bracketed` keeps the
  scores above a bracket, lists those inside it and prunes the rest: in PyTorch two comparisons,
  two ANDs and a ``nonzero``, each a pass over all scores (and a fresh allocation, whose first
  touch costs page faults); in C one pass (``sparsitylab bench hbs``).

The loops run on one thread. The library is compiled on first use with the system C compiler
(``cc``, ``-O3``: no ``-march=native``, no fast-math) into a file cached in the temp directory
under a hash of the sources, the compiler and the flags, written atomically. Where there is no
compiler, the compilation fails, or ``SPARSITYLAB_NATIVE=0`` is set, the functions here return None
and the caller takes the PyTorch path, which computes the same result (the tests compare the two).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import hashlib
import importlib.resources
import math
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import torch

FLAGS = ("-O3", "-shared", "-fPIC", "-std=c99")  # -O3 vectorises the m = 4 loop; no fast-math
MAX_M = 16  # nm_select.c's register arrays
SOURCES = ("nm_select.c", "band_select.c")
_FUNCTIONS = {torch.float32: "nm_select_f32", torch.float64: "nm_select_f64"}
_BANDS = {
    torch.float32: ("band_select_f32", ctypes.c_float),
    torch.float64: ("band_select_f64", ctypes.c_double),
}


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
    """The compiled ``SOURCES``, or None without a compiler or when compiling fails."""
    compiler = shutil.which("cc") or shutil.which("gcc")
    if compiler is None:
        return None
    folder_in = importlib.resources.files("sparsitylab.kernels")
    texts = [(folder_in / name).read_text() for name in SOURCES]
    key = hashlib.sha256("\0".join([*texts, compiler, *FLAGS]).encode()).hexdigest()[:16]
    folder = Path(tempfile.gettempdir()) / "sparsitylab-native"
    library = folder / f"select-{key}.so"
    if not library.exists():
        folder.mkdir(exist_ok=True)
        partial = folder / f"select-{key}.{os.getpid()}.so"
        sources = []
        try:
            for text in texts:
                with tempfile.NamedTemporaryFile("w", suffix=".c", dir=folder, delete=False) as f:
                    f.write(text)
                sources.append(f.name)
            subprocess.run(
                [compiler, *FLAGS, *sources, "-o", str(partial), "-lm"],
                check=True,
                capture_output=True,
                timeout=120,
            )
            os.replace(partial, library)  # atomic: a reader never sees a half-written file
        except (OSError, subprocess.SubprocessError):
            return None
        finally:
            for name in sources:
                Path(name).unlink(missing_ok=True)
            partial.unlink(missing_ok=True)
    lib = ctypes.CDLL(str(library))
    pointer, int64 = ctypes.c_void_p, ctypes.c_int64
    for name in _FUNCTIONS.values():
        getattr(lib, name).argtypes = [pointer, int64, ctypes.c_int, ctypes.c_int, pointer]
        getattr(lib, name).restype = None
    for name, scalar in _BANDS.values():
        getattr(lib, name).argtypes = [
            pointer,
            pointer,
            int64,
            scalar,
            scalar,
            pointer,
            pointer,
            pointer,
        ]
        getattr(lib, name).restype = int64
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


def band_select(
    scores: torch.Tensor,
    alive: torch.Tensor | None,
    lo: torch.Tensor | None,
    hi: torch.Tensor | None,
) -> tuple[torch.Tensor, torch.Tensor, int] | None:
    """One pass over a 1-D CPU float32/float64 ``scores`` (no NaN): (keep, band, kept above) with
    ``keep`` True exactly where a score is above ``hi`` (and ``alive``), ``band`` the indices, in
    order, of the scores in [lo, hi] (and ``alive``), and the count of those kept above. ``lo`` or
    ``hi`` None: that side open. None when the compiled loop cannot run here."""
    entry = _BANDS.get(scores.dtype)
    if entry is None or scores.device.type != "cpu" or scores.dim() != 1 or not enabled():
        return None
    if alive is not None and (alive.device.type != "cpu" or alive.dtype != torch.bool):
        return None
    library = _library()
    if library is None:
        return None
    name, scalar = entry
    scores = scores.detach().contiguous()
    alive = None if alive is None else alive.contiguous()
    n = scores.numel()
    keep = torch.empty(n, dtype=torch.bool)
    band = torch.empty(n, dtype=torch.int64)  # pages are touched only as far as it fills
    above = ctypes.c_int64(0)
    count = getattr(library, name)(
        scores.data_ptr(),
        None if alive is None else alive.data_ptr(),
        n,
        scalar(-math.inf if lo is None else float(lo)),
        scalar(math.inf if hi is None else float(hi)),
        keep.data_ptr(),
        band.data_ptr(),
        ctypes.byref(above),
    )
    return keep, band[:count].clone(), above.value


__all__ = ["available", "band_select", "disabled", "enabled", "top_n_per_group"]
