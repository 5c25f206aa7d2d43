"""Sparse × dense products, C = A · B, for every format in :mod:`sparsitylab.deploy.formats`.

One API, two kinds of engine:

* **GPU kernels** (``kernels/*.cu``), compiled by CuPy's ``RawModule`` and used whenever ``cupy``
  imports and ``cupy.cuda.is_available()``. The same launch code also drives the CPU emulation
  harness in ``sparsitylab.deploy.emulation`` (any object with the :class:`Backend` interface), so
  the tests exercise the exact grid/block configuration a GPU would get.
* **CPU paths** otherwise: torch.sparse (MKL) for CSR/BSR, batched block products for rectangular
  blocks, compacted dense GEMM (MKL's inspector-executor behind ``torch.sparse``; PyTorch PRs #68710
  and #77255).

``layer_forward(fmt, layer, x)`` computes a Linear or Conv2d layer's output with its weight packed
in ``fmt`` (the im2col patches of a conv in the format's column order).

``plan(fmt, n)`` prepares a product once (converted arrays, chosen kernel, launch shape) and
returns ``run(B) -> C`` — plans are what benchmarks time. ``spmm(fmt, B)`` is the one-shot form.
Kernel sources are package data (``sparsitylab.kernels``), read with ``importlib.resources``
so an installed package finds them too; :mod:`.cuda` loads and compiles them.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch import nn

from .._checks import check_int
from ..gemm import im2col
from .cuda import Backend, CupyBackend, default_backend, gpu_available, load_source
from .formats import BSR, CSR, HBS, Compacted, Sparse24

Format = CSR | BSR | HBS | Sparse24 | Compacted


def _blocks(total: int, per_block: int) -> int:
    return max(1, -(-total // per_block))


def _csr_plan(a: CSR, n: int, be: Backend) -> Callable[[Any], Any]:
    """Row-split kernel: subwarp of ``tpr`` threads per row, ``128 / tpr`` rows per block."""
    m = a.shape[0]
    vec = 4 if n % 4 == 0 else 2 if n % 2 == 0 else 1
    tpr = min(32, 1 << max(0, (_blocks(n, vec) - 1).bit_length()))
    rows_per_block = 128 // tpr
    fn = be.function("csr_spmm.cu", f"csr_spmm_vec{vec}")
    grid, block = (_blocks(m, rows_per_block), _blocks(n, tpr * vec), 1), (tpr, rows_per_block, 1)
    arrs = [be.array(t) for t in (a.row_ptr, a.col_idx, a.values, a.row_order)]

    def run(b: Any) -> Any:
        c = be.xp.empty((m, n), dtype=be.xp.float32)
        fn(grid, block, (*arrs, b, c, np.int32(m), np.int32(n)))
        return c

    return run


SHARED_MEMORY_BYTES = 48 * 1024  # static shared memory per thread block on every CUDA GPU
BSR_TILE_COLUMNS = 64  # output columns per thread block of bsr_spmm.cu (BSR_TN)


def bsr_shared_bytes(block: tuple[int, int]) -> int:
    """Static shared memory of ``bsr_spmm.cu`` for a block shape: the BR×BC block and a BC×64 slice
    of B."""
    br, bc = block
    return 4 * (br * bc + bc * BSR_TILE_COLUMNS)


def _bsr_plan(a: BSR, n: int, be: Backend) -> Callable[[Any], Any]:
    """Shared-memory tiled kernel, one module per block shape (``-DBSR_BR``, ``-DBSR_BC``)."""
    (m, _), (br, bc) = a.shape, a.block
    if bsr_shared_bytes(a.block) > SHARED_MEMORY_BYTES:
        raise ValueError(
            f"block={a.block} needs {bsr_shared_bytes(a.block)} bytes of shared memory per thread "
            f"block; the limit is {SHARED_MEMORY_BYTES} (4·(br·bc + 64·bc) ≤ 48 KiB: use smaller "
            "blocks)"
        )
    fn = be.function("bsr_spmm.cu", "bsr_spmm", (("BSR_BR", br), ("BSR_BC", bc)))
    grid, block = (m // br, _blocks(n, 64), 1), (32, min(br, 8), 1)  # 64 columns per block
    arrs = [be.array(t) for t in (a.row_ptr, a.col_idx, a.values)]

    def run(b: Any) -> Any:
        c = be.xp.empty((m, n), dtype=be.xp.float32)
        fn(grid, block, (*arrs, b, c, np.int32(n)))
        return c

    return run


def _sparse24_plan(a: Sparse24, n: int, be: Backend) -> Callable[[Any], Any]:
    """One thread per output element, 32 columns × 4 rows per block."""
    m, k = a.shape
    fn = be.function("sparse24_spmm.cu", "sparse24_spmm")
    grid, block = (_blocks(m, 4), _blocks(n, 32), 1), (32, 4, 1)
    values, metadata = be.array(a.values), be.array(a.metadata)

    def run(b: Any) -> Any:
        c = be.xp.empty((m, n), dtype=be.xp.float32)
        fn(grid, block, (values, metadata, b, c, np.int32(m), np.int32(k), np.int32(n)))
        return c

    return run


def _compacted_plan(a: Compacted, n: int, be: Backend, fused: bool = True) -> Callable[[Any], Any]:
    """Fused gather-GEMM kernel, or (``fused=False``) gather kernel + dense GEMM (cuBLAS).
    Pruned rows of C are zeros; with no pruned row the output needs no zero fill or scatter."""
    (m, _), (mc, kc) = a.shape, tuple(a.values.shape)
    values, rows, cols = be.array(a.values), be.array(a.rows), be.array(a.cols)
    if fused:
        fn = be.function("compact_gemm.cu", "gather_gemm")
        grid, block = (_blocks(mc, 64), _blocks(n, 64), 1), (16, 16, 1)
    else:
        fn = be.function("compact_gemm.cu", "gather_rows")
        grid, block = (max(kc, 1), _blocks(n, 256), 1), (256, 1, 1)

    all_rows = _all_rows(a)

    def run(b: Any) -> Any:
        if not fused:
            gathered = be.xp.empty((kc, n), dtype=be.xp.float32)
            fn(grid, block, (b, cols, gathered, np.int32(kc), np.int32(n)))
            if all_rows:
                return values @ gathered
            c = be.xp.zeros((m, n), dtype=be.xp.float32)
            c[rows] = values @ gathered
            return c
        c = (be.xp.empty if all_rows else be.xp.zeros)((m, n), dtype=be.xp.float32)
        fn(grid, block, (values, rows, cols, b, c, np.int32(mc), np.int32(kc), np.int32(n)))
        return c

    return run


def _torch_sparse(make: Callable[..., torch.Tensor], a: CSR | BSR) -> torch.Tensor:
    """A torch.sparse CSR/BSR tensor sharing ``a``'s arrays. Our encoder guarantees the
    invariants, so PyTorch's checks are off; its "support is in beta" notice is not actionable."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore", UserWarning)
        return make(a.row_ptr, a.col_idx, a.values, a.shape, check_invariants=False)


def _csr_cpu(a: CSR) -> Callable[[torch.Tensor], torch.Tensor]:
    s = _torch_sparse(torch.sparse_csr_tensor, a)
    return lambda b: s @ b


def _bsr_cpu(a: BSR) -> Callable[[torch.Tensor], torch.Tensor]:
    """torch.sparse BSR (MKL) for square blocks. MKL rejects rectangular blocks ("non-square
    blocks"), so those run as MKL CSR over the same non-zeros: on the CPU the block structure of,
    say, 4×1 blocks buys nothing beyond CSR. 1×1 blocks are CSR."""
    if a.block[0] != a.block[1] or a.block == (1, 1):
        return _csr_cpu(CSR.from_dense(a.to_dense()))
    s = _torch_sparse(torch.sparse_bsr_tensor, a)
    return lambda b: s @ b


def sparse24_as_csr(a: Sparse24) -> CSR:
    """The 2:4 matrix as CSR with k/2 entries per row (explicit zeros kept): the CPU path."""
    m, k = a.shape
    groups = torch.arange(k // 4).repeat_interleave(2).expand(m, -1)
    col_idx = (4 * groups + a.positions().reshape(m, -1)).flatten().to(torch.int32)
    row_ptr = torch.arange(0, m * (k // 2) + 1, k // 2, dtype=torch.int32)
    return CSR(a.shape, row_ptr, col_idx, a.values.flatten(), torch.arange(m, dtype=torch.int32))


def _compacted_cpu(a: Compacted) -> Callable[[torch.Tensor], torch.Tensor]:
    rows, cols, values, all_rows = a.rows.long(), a.cols.long(), a.values, _all_rows(a)

    def run(b: torch.Tensor) -> torch.Tensor:
        product = values @ b.index_select(0, cols)
        if all_rows:
            return product
        return torch.zeros(a.shape[0], b.shape[1], dtype=b.dtype).index_copy_(0, rows, product)

    return run


def _all_rows(a: Compacted) -> bool:
    """True when no row is pruned (column compaction only): the output needs no scatter."""
    return a.rows.numel() == a.shape[0] and torch.equal(
        a.rows.cpu().long(), torch.arange(a.shape[0])
    )


CPU_DTYPES = (torch.float32, torch.float64)  # what MKL's sparse routines behind torch.sparse take
BACKENDS = ("auto", "cpu", "gpu")


def resolve_backend(backend: Backend | None | str) -> Backend | None:
    """``"auto"`` (the GPU when CuPy sees one, else the CPU), ``"cpu"`` or None (the CPU paths),
    ``"gpu"`` (CuPy; an error without a device), or a :class:`Backend` object."""
    if backend is None or backend == "cpu":
        return None
    if backend == "auto":
        return default_backend()
    if backend == "gpu":
        if not gpu_available():
            raise ValueError("backend='gpu' was asked for, but CuPy sees no CUDA device here")
        return CupyBackend()
    if isinstance(backend, str) or not all(
        hasattr(backend, f) for f in ("xp", "array", "function")
    ):
        raise ValueError(f"backend={backend!r} is not one of {BACKENDS}, None or a Backend object")
    return backend


def _check_b(b: Any, rows: int, n: int, dtypes: tuple, contiguous: bool) -> None:
    """B must be (rows × n) of an allowed dtype (and C-contiguous for the CUDA kernels, which ignore
    strides)."""
    shape = tuple(getattr(b, "shape", ()))
    if len(shape) != 2 or shape != (rows, n):
        raise ValueError(f"B has shape {shape}; this plan multiplies a B of shape ({rows}, {n})")
    if getattr(b, "dtype", None) not in dtypes:
        raise TypeError(
            f"B has dtype {getattr(b, 'dtype', None)}; allowed: {list(map(str, dtypes))}"
        )
    c_contiguous = b.is_contiguous() if isinstance(b, torch.Tensor) else bool(b.flags.c_contiguous)
    if contiguous and not c_contiguous:
        raise ValueError(
            "B must be C-contiguous (row-major) for the CUDA kernels; pass b.contiguous()"
        )


def _check_values_dtype(a: Format, allowed: tuple[torch.dtype, ...], rule: str) -> None:
    if a.values.dtype not in allowed:
        raise TypeError(
            f"{rule}: a.values has dtype {a.values.dtype}; convert with "
            "a.map(lambda t: t.float() if t.is_floating_point() else t)"
        )


def plan(a: Format, n: int, backend: Backend | None | str = "auto", fused: bool = True) -> Callable:
    """Prepare C = A · B for a B with ``n`` columns; returns ``run(B) -> C``, which checks B's
    shape, dtype and layout on every call (a wrong B would give wrong numbers, or on a GPU read past
    its end).

    backend: ``"auto"`` (GPU if available, else CPU), ``"cpu"`` or ``None`` (CPU, torch tensors in
    and out; fp32 or fp64), ``"gpu"``, or a :class:`Backend` (backend arrays in and out; fp32 only).
    ``fused`` picks the fused gather-GEMM kernel for :class:`Compacted` on a backend.
    """
    if not isinstance(a, (CSR, BSR, HBS, Sparse24, Compacted)):
        raise TypeError(
            f"a must be a CSR, BSR, HBS, Sparse24 or Compacted matrix, got {type(a).__name__}"
        )
    n = check_int(n, "n", minimum=1)  # the columns of B
    if isinstance(a, HBS):  # Σ_k A_k · B: one BSR product per level, summed
        runs = [plan(level, n, backend, fused) for level in a.levels]

        def run_levels(b: Any) -> Any:
            out = runs[0](b)
            for run_level in runs[1:]:
                out = out + run_level(b)
            return out

        return run_levels
    be = resolve_backend(backend)
    if be is None:
        _check_values_dtype(a, CPU_DTYPES, "the CPU paths take fp32 or fp64")
        cpu = {
            CSR: _csr_cpu,
            BSR: _bsr_cpu,
            Compacted: _compacted_cpu,
            Sparse24: lambda s: _csr_cpu(sparse24_as_csr(s)),
        }[type(a)]
        run, b_dtypes, contiguous = cpu(a.map(lambda t: t.cpu())), (a.values.dtype,), False
    else:
        _check_values_dtype(a, (torch.float32,), "the GPU kernels are fp32")
        if isinstance(a, Compacted):
            run = _compacted_plan(a, n, be, fused)
        else:
            run = {CSR: _csr_plan, BSR: _bsr_plan, Sparse24: _sparse24_plan}[type(a)](a, n, be)
        b_dtypes, contiguous = (np.dtype(np.float32),), True

    def checked(b: Any) -> Any:
        _check_b(b, a.shape[1], n, b_dtypes, contiguous)
        return run(b)

    return checked


def spmm(a: Format, b: torch.Tensor, backend: Backend | None | str = "auto") -> torch.Tensor:
    """C = A · B for a sparse ``a`` and a dense 2-D tensor ``b`` (rows of b = columns of a)."""
    if not isinstance(b, torch.Tensor) or b.dim() != 2:
        raise TypeError(
            f"b must be a 2-D torch.Tensor, got {type(b).__name__} {getattr(b, 'shape', '')}"
        )
    if b.shape[0] != a.shape[1]:
        raise ValueError(f"b has {b.shape[0]} rows but a has {a.shape[1]} columns; they must match")
    if not b.is_floating_point():
        raise TypeError(f"b has dtype {b.dtype}; a floating-point B is required")
    be = resolve_backend(backend)
    values = a.levels[0].values if isinstance(a, HBS) else a.values
    computes = values.dtype if be is None else torch.float32  # the GPU kernels are fp32
    if torch.promote_types(b.dtype, computes) != computes:
        raise TypeError(
            f"b has dtype {b.dtype} but this product computes in {computes}: b would lose "
            f"precision silently; cast it (b.to({computes})) or build the format in {b.dtype}"
        )
    run = plan(a, b.shape[1], be)
    if be is None:
        return run(b.to(values.dtype).cpu())
    return be.tensor(run(be.array(b.to(torch.float32).contiguous())))


def layer_forward(
    a: Format, layer: nn.Module, x: torch.Tensor, backend: Backend | None | str = "auto"
) -> torch.Tensor:
    """``layer(x)`` computed as a sparse product: ``a`` holds the layer's weight (its GEMM view in
    ``a.order``, e.g. ``Sparse24.from_weight(layer.weight)``), the bias is added after.

    Linear: Y = (A · Xᵀ)ᵀ + b. Conv2d (no groups): the im2col patches of x in ``a.order``, one
    product over all images and positions, reshaped to (B, O, H', W').
    """
    if isinstance(layer, nn.Linear):
        out = spmm(a, x.reshape(-1, x.shape[-1]).t(), backend).t().to(x.device)
        out = out.reshape(*x.shape[:-1], out.shape[-1])
        return out if layer.bias is None else out + layer.bias.detach()
    if not isinstance(layer, nn.Conv2d) or layer.groups != 1 or isinstance(layer.padding, str):
        raise TypeError(
            f"layer must be an nn.Linear or an nn.Conv2d with groups=1 and numeric padding, got "
            f"{layer!r}"
        )
    patches = im2col(x, layer.kernel_size, layer.stride, layer.padding, layer.dilation, a.order)
    batch, rows, positions = patches.shape
    product = spmm(a, patches.transpose(0, 1).reshape(rows, batch * positions), backend)
    out = product.to(x.device).reshape(-1, batch, positions).transpose(0, 1)
    side = [
        (size + 2 * pad - dil * (k - 1) - 1) // step + 1
        for size, pad, dil, k, step in zip(
            x.shape[2:], layer.padding, layer.dilation, layer.kernel_size, layer.stride
        )
    ]
    out = out.reshape(batch, -1, *side)
    return out if layer.bias is None else out + layer.bias.detach().reshape(1, -1, 1, 1)


__all__ = [
    "BACKENDS",
    "Backend",
    "CupyBackend",
    "bsr_shared_bytes",
    "resolve_backend",
    "default_backend",
    "gpu_available",
    "layer_forward",
    "load_source",
    "plan",
    "sparse24_as_csr",
    "spmm",
]
