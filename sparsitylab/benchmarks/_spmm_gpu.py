"""GPU half of ``sparsitylab bench spmm``: our CUDA kernels vs cuSPARSE vs cuBLAS (CuPy).

Timed with ``cupyx.profiler.benchmark`` (CUDA events, warm-up outside the timed region; compile
happens in the plan, before timing), medians reported (CuPy's ``cupyx.profiler.benchmark``).
Operands are copied to the GPU once; plans are built once per matrix, as a layer would cache them.
PyTorch's semi-structured 2:4 (fp16, cuSPARSELt/CUTLASS) is timed against torch fp16 dense when
PyTorch has CUDA.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch

from ..deploy import matmul
from ..deploy.formats import BSR, CSR, Compacted, Sparse24
from .spmm import Config, pruned, row


def device_name() -> str:
    import cupy

    props = cupy.cuda.runtime.getDeviceProperties(cupy.cuda.Device().id)
    return f"{props['name'].decode()}, sm_{props['major']}{props['minor']}"


def _timer(repeats: int) -> Callable[[Callable[[], object]], float]:
    import numpy as np
    from cupyx.profiler import benchmark

    return lambda fn: float(np.median(benchmark(fn, n_repeat=repeats, n_warmup=10).gpu_times[0]))


def _semi_structured_rows(
    w24: torch.Tensor, b: torch.Tensor, timed: Callable
) -> list[dict[str, Any]]:
    """PyTorch's 2:4 (fp16) vs PyTorch dense fp16, or a row saying why it could not run."""
    if not torch.cuda.is_available():
        return [
            {
                "format": "2:4",
                "impl": "PyTorch semi-structured fp16",
                "unsupported": "PyTorch has no CUDA",
            }
        ]
    try:
        from torch.sparse import to_sparse_semi_structured

        a = w24.half().cuda()
        bh = b.half().cuda()
        a_sparse = to_sparse_semi_structured(a)
        dense = timed(lambda: a @ bh)
        return [
            row(
                "2:4",
                "PyTorch semi-structured fp16 (vs torch fp16 dense)",
                0.5,
                timed(lambda: a_sparse @ bh),
                dense,
            )
        ]
    except (RuntimeError, ValueError, NotImplementedError) as error:
        return [
            {
                "format": "2:4",
                "impl": "PyTorch semi-structured fp16",
                "unsupported": str(error)[:200],
            }
        ]


def _cusparse(a: torch.Tensor) -> Callable[[Any], Any]:
    """cuSPARSE SpMM through ``cupyx.scipy.sparse`` for the dense matrix ``a``."""
    import cupy
    import cupyx.scipy.sparse as cusparse

    matrix = cusparse.csr_matrix(cupy.asarray(a.numpy()))
    return lambda b: matrix @ b


def gpu_rows(
    cfg: Config, w: torch.Tensor, b: torch.Tensor, be: matmul.Backend | None = None
) -> list[dict[str, Any]]:
    """Every GPU contender for ``cfg`` (``be``: the CuPy backend unless given)."""
    be = be or matmul.CupyBackend()
    timed = _timer(cfg.repeats)
    b_gpu = be.array(b)

    def ours(fmt: Any, fused: bool = True) -> float:
        run = matmul.plan(fmt, cfg.n, be, fused=fused)
        return timed(lambda: run(b_gpu))

    w_gpu = be.array(w)
    dense = timed(lambda: w_gpu @ b_gpu)
    rows = [row("dense", "cuBLAS fp32 (cupy.matmul)", 0.0, dense, dense)]
    for s in cfg.sparsities:
        ws = pruned(w, "csr", s)
        rows.append(row("csr", "ours: csr_spmm", s, ours(CSR.from_dense(ws)), dense))
        spmm = _cusparse(ws)
        rows.append(
            row(
                "csr",
                "cuSPARSE (cupyx.scipy.sparse)",
                s,
                timed(lambda spmm=spmm: spmm(b_gpu)),
                dense,
            )
        )
        for blk in cfg.blocks:
            rows.append(
                row(
                    "bsr",
                    "ours: bsr_spmm",
                    s,
                    ours(BSR.from_dense(pruned(w, "bsr", s, blk), blk)),
                    dense,
                    blk,
                )
            )
        comp = Compacted.from_dense(pruned(w, "compacted", s))
        rows.append(row("compacted", "ours: fused gather-GEMM", s, ours(comp), dense))
        rows.append(row("compacted", "ours: gather + cuBLAS", s, ours(comp, fused=False), dense))
        reduced, head = be.array(comp.values), b_gpu[: comp.values.shape[1]].copy()
        rows.append(
            row(
                "compacted",
                "reduced cuBLAS (no gather)",
                s,
                timed(lambda r=reduced, h=head: r @ h),
                dense,
            )
        )
    w24 = pruned(w, "2:4", 0.5)
    rows.append(
        row("2:4", "ours: sparse24_spmm (CUDA cores)", 0.5, ours(Sparse24.from_dense(w24)), dense)
    )
    return rows + _semi_structured_rows(w24, b, timed)


def goals(rows: list[dict[str, Any]]) -> dict[str, Any]:
    """The issue's GPU goals, evaluated on the measured medians (True = met)."""

    def ms(fmt: str, impl: str, s: float, block=None) -> float | None:
        hit = [
            r["median_ms"]
            for r in rows
            if r["format"] == fmt
            and r["impl"] == impl
            and r.get("sparsity") == s
            and r.get("block") == block
        ]
        return hit[0] if hit else None

    csr = {
        f"{s:g}": (ms("csr", "cuSPARSE (cupyx.scipy.sparse)", s) or 0)
        / ms("csr", "ours: csr_spmm", s)
        for s in (0.9, 0.95, 0.98, 0.99)
        if ms("csr", "ours: csr_spmm", s)
    }
    bsr32 = [
        r["speedup"]
        for r in rows
        if r["format"] == "bsr" and r["block"] == [32, 32] and r["sparsity"] == 0.9
    ]
    fused = {
        f"{r['sparsity']:g}": r["speedup"] * (1 - r["sparsity"])
        for r in rows
        if r["format"] == "compacted" and r["impl"] == "ours: fused gather-GEMM"
    }
    return {
        "csr_speedup_over_cusparse_90_99": csr,
        "csr_goal_met": bool(csr) and min(csr.values()) >= 1,
        "bsr32_speedup_over_cublas_at_90": bsr32[0] if bsr32 else None,
        "bsr32_goal_met": bool(bsr32) and bsr32[0] >= 3,
        "compacted_fused_over_ideal": fused,
        "compacted_goal_met": bool(fused) and min(fused.values()) >= 0.9,
    }
