"""Two selections as compiled C loops (``kernels/nm_select.c``, ``kernels/band_select.c``), called
through ctypes.

- **N:M.** PyTorch's tensor operations rank a group's m entries with m(m−1)/2 comparisons, each one
  pass over the weight; the C loop reads every group once and ranks it in registers (2:4 in
  float32: four groups at a time in vector registers). ``sparsitylab bench nm`` records both paths
  side by side. For STE / SR-STE training (:mod:`sparsitylab.reparam.nm`) the same pass also writes
  the forward's W ⊙ E (:func:`masked_product`), and SR-STE's gradient G + λ_W (W − W ⊙ E) is one
  pass (:func:`sr_ste_gradient`) instead of three PyTorch operations.
- **The band of a bracketed top-k.** :func:`sparsitylab.sparsify.masks._keep_bracketed` keeps the
  scores above a bracket, lists those inside it and prunes the rest: in PyTorch two comparisons,
  two ANDs and a ``nonzero``, each a pass over all scores (and a fresh allocation, whose first
  touch costs page faults); in C one pass (``sparsitylab bench hbs``).

The loops run on one thread. The library is compiled on first use with the system C compiler
(``cc``, ``-O3``: no ``-march=native``, no fast-math) into a file cached in the temp directory
under a hash of the sources, the compiler and the flags, written atomically
(:func:`sparsitylab.files.built_library`). Where there is no
compiler, the compilation fails, or ``SPARSITYLAB_NATIVE=0`` is set, the functions here return None
and the caller takes the PyTorch path, which computes the same result (the tests compare the two).
"""

from __future__ import annotations

import contextlib
import ctypes
import functools
import importlib.resources
import math
import os
import shutil
import subprocess
from collections.abc import Iterator

import torch

from ..files import built_library

FLAGS = ("-O3", "-shared", "-fPIC", "-std=c99")  # -O3 vectorises the m = 4 loop; no fast-math
MAX_M = 16  # nm_select.c's register arrays
SOURCES = ("nm_select.c", "band_select.c")
_FUNCTIONS = {torch.float32: "nm_select_f32", torch.float64: "nm_select_f64"}
_REFINES = {
    torch.float32: ("nm_refine_f32", ctypes.c_float),
    torch.float64: ("nm_refine_f64", ctypes.c_double),
}
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
    folder = importlib.resources.files("sparsitylab.kernels")
    sources = [(".c", (folder / name).read_text()) for name in SOURCES]
    try:
        library = built_library(
            "sparsitylab-native",
            sources,
            lambda paths, out: [compiler, *FLAGS, *paths, "-o", out, "-lm"],
        )
    except (OSError, RuntimeError, subprocess.SubprocessError):
        return None
    lib = ctypes.CDLL(str(library))
    pointer, int64 = ctypes.c_void_p, ctypes.c_int64
    for name in _FUNCTIONS.values():
        getattr(lib, name).argtypes = [pointer, int64, ctypes.c_int, ctypes.c_int, pointer, pointer]
        getattr(lib, name).restype = ctypes.c_int
    for name, scalar in _REFINES.values():
        getattr(lib, name).argtypes = [pointer, pointer, pointer, int64, scalar, pointer]
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


def _selection(groups: torch.Tensor) -> tuple[ctypes.CDLL, str] | None:
    """The library and the N:M function for ``groups``, or None where the compiled loop cannot run:
    no compiler, not enabled, not a CPU float32/float64 tensor, or more than 16 columns."""
    function = _FUNCTIONS.get(groups.dtype)
    if function is None or groups.device.type != "cpu" or groups.shape[1] > MAX_M:
        return None
    if not enabled():
        return None
    library = _library()
    return None if library is None else (library, function)


def top_n_per_group(groups: torch.Tensor, n: int) -> torch.Tensor | None:
    """The keep-mask of :func:`sparsitylab.sparsify.masks.top_n_per_group` ((G, m) groups, the n
    largest |values| of every row, ties keeping the earlier position) from the compiled loop, or
    None when it cannot run here (see :func:`_selection`). The caller checks the arguments."""
    selection = _selection(groups)
    if selection is None:
        return None
    library, function = selection
    rows = groups.detach().contiguous()
    keep = torch.empty(rows.shape, dtype=torch.bool)
    count, m = rows.shape
    if count:
        getattr(library, function)(rows.data_ptr(), count, m, n, keep.data_ptr(), None)
    return keep


def masked_product(groups: torch.Tensor, n: int) -> tuple[torch.Tensor, torch.Tensor, bool] | None:
    """(keep, groups ⊙ keep, whether ``groups`` holds a NaN) in one pass, the keep-mask as
    :func:`top_n_per_group`'s and the product as PyTorch's ``groups * keep`` (bit for bit: −0.0 for
    a pruned negative value, NaN for a pruned infinity). ``groups`` must be contiguous (no copy is
    made: the product shares its layout). None when the loop cannot run here."""
    selection = _selection(groups)
    if selection is None or not groups.is_contiguous():
        return None
    library, function = selection
    rows = groups.detach()
    keep = torch.empty(rows.shape, dtype=torch.bool)
    product = torch.empty_like(rows)
    count, m = rows.shape
    has_nan = count and getattr(library, function)(
        rows.data_ptr(), count, m, n, keep.data_ptr(), product.data_ptr()
    )
    return keep, product, bool(has_nan)


def sr_ste_gradient(
    grad: torch.Tensor, w: torch.Tensor, keep: torch.Tensor, decay: float
) -> torch.Tensor | None:
    """SR-STE's gradient G + λ_W (W − W ⊙ E) in one pass, bit for bit PyTorch's
    ``grad + decay * (w - w * keep)`` (λ_W rounded to the dtype first, as PyTorch does). None unless
    all three are contiguous CPU tensors of one shape (``keep`` boolean, the others float32 or
    float64 alike) and the loop can run here."""
    entry = _REFINES.get(w.dtype)
    if entry is None or not enabled() or grad.dtype != w.dtype or keep.dtype != torch.bool:
        return None
    if not grad.shape == w.shape == keep.shape:
        return None
    if any(t.device.type != "cpu" or not t.is_contiguous() for t in (grad, w, keep)):
        return None
    library = _library()
    if library is None:
        return None
    name, scalar = entry
    out = torch.empty_like(grad)
    getattr(library, name)(
        grad.data_ptr(), w.data_ptr(), keep.data_ptr(), w.numel(), scalar(decay), out.data_ptr()
    )
    return out


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


__all__ = [
    "available",
    "band_select",
    "disabled",
    "enabled",
    "masked_product",
    "sr_ste_gradient",
    "top_n_per_group",
]
