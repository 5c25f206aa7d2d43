"""Run the CUDA kernels of ``kernels/`` on the CPU: g++ + ``cuda_shim.h`` + ctypes.

:class:`EmulatedBackend` has the interface of :class:`sparsitylab.deploy.matmul.CupyBackend`, so
``sparsitylab.deploy.matmul.plan(fmt, n, backend=EmulatedBackend())`` runs the very launch code used
on a GPU — same kernel source text (``matmul.load_source``), same ``-D`` options, same grid and
block — with NumPy arrays standing in for CuPy arrays.

How a source becomes callable: every ``extern "C" __global__`` kernel found in the text gets a
generated wrapper ``sl_launch_<name>(grid…, block…, args…)`` that calls ``sl_emu::launch`` (see the
shim). The translation unit is compiled once into a shared library cached in the temp directory,
keyed by a hash of shim + source + options, and loaded with ctypes. Calls are type-checked against
the kernel signature (CuPy does not check: a Python int would arrive as ``long long``), and
``xp.empty`` hands out NaN-filled arrays, so an output element a kernel forgets to write shows up.
"""

from __future__ import annotations

import ctypes
import importlib.resources
import re
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import numpy as np
import torch

from ..files import built_library
from . import matmul
from .formats import from_array, to_array

SHIM = Path(str(importlib.resources.files("sparsitylab.kernels") / "cuda_shim.h"))
MAX_THREADS_PER_BLOCK = 1024
_KERNEL = re.compile(r'extern\s+"C"\s+__global__\s+void\s+(\w+)\s*\(([^)]*)\)')
_POINTEE = {"float": np.float32, "int": np.int32, "short": np.int16}
_SCALAR = {"float": (np.float32, ctypes.c_float), "int": (np.int32, ctypes.c_int32)}


def _parameters(signature: str) -> list[tuple[str, str]]:
    """``"const float* __restrict__ a, int n"`` → ``[("const float*", "a"), ("int", "n")]``."""
    params = []
    for part in signature.split(","):
        words = part.replace("*", " * ").replace("__restrict__", " ").split()
        params.append((" ".join(words[:-1]).replace(" *", "*"), words[-1]))
    return params


def _wrapper(name: str, params: list[tuple[str, str]]) -> str:
    decl = ", ".join(f"{t} {p}" for t, p in params)
    call = ", ".join(p for _, p in params)
    return (
        f'extern "C" void sl_launch_{name}(unsigned gx, unsigned gy, unsigned gz, '
        f"unsigned bx, unsigned by, unsigned bz, {decl}) {{\n"
        f"    sl_emu::launch(dim3{{gx, gy, gz}}, dim3{{bx, by, bz}}, [=] "
        f"{{ {name}({call}); }});\n}}\n"
    )


def _compile(code: str, options: tuple[str, ...]) -> Path:
    """Compile ``code`` + wrappers into a cached shared library; return its path."""
    wrappers = "".join(
        _wrapper(m.group(1), _parameters(m.group(2))) for m in _KERNEL.finditer(code)
    )
    unit = f"{code}\n// ---- generated launch wrappers ----\n{wrappers}"
    flags = ("-std=c++20", "-O1", "-shared", "-fPIC", "-pthread", "-include", str(SHIM), *options)
    try:
        return built_library(
            "sparsitylab-emulation",
            [(".cpp", unit)],
            lambda paths, out: ["g++", *flags, "-o", out, *paths],
            depends=[SHIM.read_text()],  # a changed shim rebuilds
        )
    except RuntimeError as error:
        raise RuntimeError(f"compiling the emulated kernel: {error}") from None


class EmulatedKernel:
    """A compiled kernel called like a CuPy ``RawKernel``: ``kernel(grid, block, args)``."""

    def __init__(self, library: ctypes.CDLL, name: str, params: list[tuple[str, str]]) -> None:
        self.name, self.params = name, params
        self._fn = getattr(library, f"sl_launch_{name}")
        self._fn.restype = None
        self._fn.argtypes = [ctypes.c_uint] * 6 + [
            ctypes.c_void_p if t.endswith("*") else _SCALAR[t][1] for t, _ in params
        ]

    def _convert(self, ctype: str, pname: str, value: Any) -> Any:
        if ctype.endswith("*"):
            pointee = _POINTEE[ctype.removeprefix("const ").rstrip("*").strip()]
            if (
                not isinstance(value, np.ndarray)
                or value.dtype != pointee
                or not value.flags.c_contiguous
            ):
                raise TypeError(
                    f"{self.name}: argument {pname} ({ctype}) needs a C-contiguous "
                    f"{np.dtype(pointee)} array, got {type(value).__name__} "
                    f"{getattr(value, 'dtype', '')}"
                )
            if not ctype.startswith("const") and not value.flags.writeable:
                raise TypeError(f"{self.name}: output {pname} is read-only")
            return value.ctypes.data
        expected = _SCALAR[ctype][0]
        if type(value) is not expected:
            raise TypeError(
                f"{self.name}: argument {pname} ({ctype}) needs numpy.{expected.__name__}, "
                f"got {type(value).__name__} (CuPy would pass it with the wrong width)"
            )
        return value

    def __call__(
        self, grid: tuple[int, ...], block: tuple[int, ...], args: tuple[Any, ...]
    ) -> None:
        grid, block = tuple(grid) + (1,) * (3 - len(grid)), tuple(block) + (1,) * (3 - len(block))
        if not 1 <= int(np.prod(block)) <= MAX_THREADS_PER_BLOCK or min(grid) < 1:
            raise ValueError(f"{self.name}: invalid launch grid={grid} block={block}")
        if len(args) != len(self.params):
            raise TypeError(f"{self.name} takes {len(self.params)} arguments, got {len(args)}")
        converted = [self._convert(t, p, v) for (t, p), v in zip(self.params, args)]
        self._fn(*grid, *block, *converted)


class EmulatedModule:
    """The CPU counterpart of ``cupy.RawModule(code=..., options=...)``."""

    def __init__(self, code: str, options: tuple[str, ...] = ()) -> None:
        self._library = ctypes.CDLL(str(_compile(code, options)))
        self._params = {m.group(1): _parameters(m.group(2)) for m in _KERNEL.finditer(code)}

    def get_function(self, name: str) -> EmulatedKernel:
        if name not in self._params:
            raise ValueError(
                f'no extern "C" __global__ kernel {name!r}; found {sorted(self._params)}'
            )
        return EmulatedKernel(self._library, name, self._params[name])


def _nan_empty(shape: Any, dtype: Any = np.float32) -> np.ndarray:
    return np.full(shape, np.nan, dtype=dtype)


class EmulatedBackend:
    """A :class:`sparsitylab.deploy.matmul.Backend` running the kernels through the shim."""

    xp = SimpleNamespace(zeros=np.zeros, float32=np.float32, empty=_nan_empty)  # what the plans use

    def __init__(self) -> None:
        self._modules: dict[tuple[str, tuple], EmulatedModule] = {}

    def array(self, t: torch.Tensor) -> np.ndarray:
        return to_array(t.cpu(), np)

    def tensor(self, a: np.ndarray) -> torch.Tensor:
        return from_array(a)

    def function(
        self, source: str, name: str, defines: tuple[tuple[str, int], ...] = ()
    ) -> EmulatedKernel:
        key = (source, defines)
        if key not in self._modules:
            options = tuple(f"-D{k}={v}" for k, v in defines)
            self._modules[key] = EmulatedModule(matmul.load_source(source), options)
        return self._modules[key].get_function(name)
