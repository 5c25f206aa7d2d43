"""The HBsNN performance model (Vooturi et al., §2.4): sparse FLOPs discounted by a measured
irregularity factor.

For a layer with levels L₁ … L_N (:mod:`sparsitylab.sparsify.hierarchical`), F_dense is the dense
GEMM's FLOPs and F_sparse^{L_i} those of level i (its kept fraction of F_dense). Sparse kernels do
not reach the dense rate, so the paper discounts each level by an irregularity factor measured on
the target machine::

    C_dense  = F_dense
    C_sparse = Σ_i F_sparse^{L_i} / irf(Sparsity(L_i), BlockDims(L_i))
    speedup  = C_dense / C_sparse

where Sparsity(L_i) is the sparsity of level i's own matrix (1 − its kept fraction). Here
irf(s, block) is *defined* by a micro-benchmark (:func:`measure_irf`): a random block-sparse matrix
of sparsity s, multiplied by this library's kernel for that block shape (the one an HBS level
uses), against the dense GEMM of the same shape:

    irf(s, block) = (t_dense / t_sparse) · (1 − s)     — the sparse kernel's FLOP rate / dense's.

irf = 1 means the kernel runs its useful FLOPs as fast as dense GEMM; 0.1 means ten times slower.
:func:`predict` interpolates irf linearly in s between measured sparsities (never outside them) and
returns the predicted speedup.
"""

from __future__ import annotations

import platform
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from typing import Any

import torch

from .._checks import check_int, check_pair, check_sparsity
from ..timing import cpu_name, interleaved
from .formats import BSR
from .matmul import plan


@dataclass(frozen=True)
class IrfPoint:
    """One micro-benchmark point: block shape, sparsity, the two medians and irf."""

    block: tuple[int, int]
    sparsity: float
    dense_ms: float
    sparse_ms: float

    @property
    def speedup(self) -> float:
        return self.dense_ms / self.sparse_ms

    @property
    def irf(self) -> float:
        return self.speedup * (1.0 - self.sparsity)


def random_block_sparse(
    shape: tuple[int, int], block: tuple[int, int], sparsity: float, seed: int = 0
) -> torch.Tensor:
    """A Gaussian matrix with exactly ⌊s·B + ½⌋ of its B blocks zeroed, chosen at random."""
    from ..sparsify.masks import mask_from_scores

    rows, cols = shape
    bh, bw = block
    g = torch.Generator().manual_seed(seed)
    keep_blocks = mask_from_scores(torch.rand(rows // bh, cols // bw, generator=g), sparsity)
    keep = keep_blocks.repeat_interleave(bh, 0).repeat_interleave(bw, 1)
    return torch.randn(rows, cols, generator=g) * keep


def measure_irf(
    blocks: Sequence[tuple[int, int]],
    sparsities: Sequence[float],
    shape: tuple[int, int] = (1024, 1024),
    n: int = 256,
    repeats: int = 15,
) -> list[IrfPoint]:
    """irf over a grid of block shapes × sparsities on this machine's CPU paths (fp32, the current
    torch thread count). Each point times the dense GEMM and the sparse product round-robin."""
    shape = check_pair(shape, "shape")
    n, repeats = check_int(n, "n", minimum=1), check_int(repeats, "repeats", minimum=1)
    b = torch.randn(shape[1], n, generator=torch.Generator().manual_seed(1))
    points = []
    for block in blocks:
        block = check_pair(block, "block")
        for sparsity in sparsities:
            matrix = random_block_sparse(shape, block, check_sparsity(sparsity))
            points.append(time_point(matrix, block, sparsity, b, repeats))
    return points


def time_point(
    matrix: torch.Tensor, block: tuple[int, int], sparsity: float, b: torch.Tensor, repeats: int
) -> IrfPoint:
    """Dense ``matrix @ b`` vs the product of ``matrix`` stored as an HBS level with ``block``."""
    run = plan(BSR.from_dense(matrix, block), b.shape[1], backend="cpu")
    times = interleaved({"dense": lambda: matrix @ b, "sparse": lambda: run(b)}, repeats)
    return IrfPoint(block, sparsity, times["dense"].median * 1e3, times["sparse"].median * 1e3)


def irf_record(points: list[IrfPoint], shape: tuple[int, int], n: int) -> dict[str, Any]:
    """The points as JSON-ready data with where and how they were measured."""
    return {
        "benchmark": "irf",
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "cpu": cpu_name(),
        "machine": platform.machine(),
        "threads": torch.get_num_threads(),
        "torch": torch.__version__,
        "shape": list(shape),
        "n": n,
        "clock": "wall",
        "points": [{**asdict(p), "block": list(p.block), "irf": p.irf} for p in points],
    }


def points_from_record(record: dict[str, Any]) -> list[IrfPoint]:
    return [
        IrfPoint(tuple(p["block"]), p["sparsity"], p["dense_ms"], p["sparse_ms"])
        for p in record["points"]
    ]


def irf(points: list[IrfPoint], sparsity: float, block: tuple[int, int]) -> float:
    """irf at ``sparsity`` for ``block``, linear between the two nearest measured sparsities."""
    block = check_pair(block, "block")
    curve = sorted((p.sparsity, p.irf) for p in points if p.block == block)
    if not curve:
        measured = sorted({p.block for p in points})
        raise ValueError(f"block={block} was not measured; measured blocks: {measured}")
    lo, hi = curve[0][0], curve[-1][0]
    if not lo - 1e-9 <= sparsity <= hi + 1e-9:
        raise ValueError(
            f"sparsity={sparsity} is outside the measured range [{lo}, {hi}] for block={block}; "
            "measure irf there instead of extrapolating"
        )
    for (s0, f0), (s1, f1) in zip(curve, curve[1:]):
        if s0 - 1e-9 <= sparsity <= s1 + 1e-9:
            t = 0.0 if s1 == s0 else (sparsity - s0) / (s1 - s0)
            return f0 + t * (f1 - f0)
    return curve[0][1]  # a single measured point equal to sparsity


def predict(points: list[IrfPoint], levels: Sequence[tuple[tuple[int, int], float]]) -> float:
    """Predicted speedup over dense of a layer whose level i keeps ``kept_i`` of the entries.

    ``levels`` = [((bh, bw), kept_fraction), …] — kept fractions of the whole matrix (e.g. 0.37 and
    0.03 for 4x1/63 + 1x1/97), so F_sparse^{L_i} = kept_i · F_dense and Sparsity(L_i) = 1 − kept_i.
    """
    cost = sum(kept / irf(points, 1.0 - kept, block) for block, kept in levels if kept > 0)
    if cost == 0:
        raise ValueError("every level is empty: the speedup of an all-zero layer is undefined")
    return 1.0 / cost


__all__ = [
    "IrfPoint",
    "irf",
    "irf_record",
    "measure_irf",
    "points_from_record",
    "predict",
    "time_point",
    "random_block_sparse",
]
