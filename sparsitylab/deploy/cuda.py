"""The CUDA side of the sparse products: kernel sources (``sparsitylab/kernels``, local headers
inlined), the :class:`Backend` interface the launch code needs, and :class:`CupyBackend`, which
compiles the kernels with CuPy/NVRTC on the current GPU (:mod:`.emulation` offers the same
interface on the CPU)."""

from __future__ import annotations

import importlib.resources
import re
from collections.abc import Callable
from functools import cache
from typing import Any, Protocol

import torch

from .formats import from_array, to_array

_INCLUDE = re.compile(r'^#include "([\w.]+)"\s*$', re.MULTILINE)


def load_source(name: str) -> str:
    """Text of ``kernels/<name>`` with local ``#include "x.cuh"`` lines replaced by the header text.

    Inlining keeps CuPy's compile cache honest: its key ignores headers found through ``-I``.
    """
    folder = importlib.resources.files("sparsitylab.kernels")
    path = folder.joinpath(name)
    if not path.is_file():
        available = sorted(p.name for p in folder.iterdir() if p.name.endswith((".cu", ".cuh")))
        raise ValueError(f"kernel source {name!r} not found; available: {available}")
    return _INCLUDE.sub(lambda m: load_source(m.group(1)), path.read_text())


class Backend(Protocol):
    """What the launch code needs: an array module, array exchange, and compiled kernels."""

    xp: Any

    def array(self, t: torch.Tensor) -> Any: ...
    def tensor(self, a: Any) -> torch.Tensor: ...
    def function(
        self, source: str, name: str, defines: tuple[tuple[str, int], ...] = ()
    ) -> Callable: ...


class CupyBackend:
    """Kernels compiled by CuPy/NVRTC on the current GPU; arrays exchanged via DLPack."""

    def __init__(self) -> None:
        import cupy

        self.xp = cupy

    def array(self, t: torch.Tensor) -> Any:
        return to_array(t, self.xp)

    def tensor(self, a: Any) -> torch.Tensor:
        return from_array(a) if torch.cuda.is_available() else torch.from_numpy(self.xp.asnumpy(a))

    def function(
        self, source: str, name: str, defines: tuple[tuple[str, int], ...] = ()
    ) -> Callable:
        return _cupy_function(source, name, defines)


@cache
def _cupy_function(source: str, name: str, defines: tuple[tuple[str, int], ...]) -> Callable:
    import cupy

    options = ("-std=c++17", *(f"-D{k}={v}" for k, v in defines))
    return cupy.RawModule(code=load_source(source), options=options).get_function(name)


def gpu_available() -> bool:
    """True when CuPy imports and sees a CUDA device."""
    try:
        import cupy
    except ImportError:
        return False
    try:
        return bool(cupy.cuda.is_available())
    except (RuntimeError, OSError):  # a broken driver install reports as "no GPU", never as a crash
        return False


def default_backend() -> Backend | None:
    """A :class:`CupyBackend` when a GPU is usable, else ``None`` (the CPU paths)."""
    return CupyBackend() if gpu_available() else None


__all__ = ["Backend", "CupyBackend", "default_backend", "gpu_available", "load_source"]
