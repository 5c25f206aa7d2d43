"""How fast a layer's GEMM runs dense, as unstructured CSR, and compacted — measured on this
machine.

Every layer is timed as the GEMM it lowers to (Wen et al., NIPS 2016, Table 4): Y = W · X with W the
N × K weight matrix (conv: N filters × C·kh·kw, X its im2col patches of ``batch × positions``
columns; Linear: positions = 1). Three ways to compute it:

- **dense**: ``W @ X`` with the zeros still in W;
- **CSR**: ``torch.sparse`` CSR W (MKL on CPU) times dense X — the unstructured path;
- **compacted**: the surviving rows and columns gathered into a smaller dense W' (N' × K'),
  times the matching K' rows of X (the producer emits only those), as SSL's speedups assume.

Each is timed in its own steady-state loop (:func:`sparsitylab.timing.measure`). Round-robin timing
(as ``bench spmm`` does) was tried and measured the small GEMMs 20–40 % slower: what the
neighbouring calls leave in the caches and the allocator then dominates them. The ideal speedup is
the FLOP ratio N·K / (N'·K'); measured / ideal is exactly the compacted GEMM's FLOP rate over the
dense one's. The arithmetic intensity (FLOP per byte of W', X' and Y') says whether memory traffic
*could* bound a layer: a GEMM limited by streaming X' and Y' gains at most the ratio of bytes moved,
not the FLOP ratio. It is a diagnosis to check against the measurement, not a prediction: the thin
compacted conv1 of chapter 2's LeNet (a few filters × at most 25 columns, ~2 FLOP per byte) was
measured at about its full FLOP ratio on the CPUs we tried, far above its byte ratio.
"""

from __future__ import annotations

import warnings
from dataclasses import asdict, dataclass

import torch

from ..gemm import alive_columns, alive_rows, gemm_view
from ..timing import measure


@dataclass(frozen=True)
class LayerSpeed:
    """Median latencies (ms) of one layer's GEMM and the derived ratios."""

    layer: str
    shape: str
    compact_shape: str
    sparsity_csr: float
    columns: int
    dense_ms: float
    csr_ms: float
    compact_ms: float

    @property
    def csr_speedup(self) -> float:
        return self.dense_ms / self.csr_ms

    @property
    def compact_speedup(self) -> float:
        return self.dense_ms / self.compact_ms

    @property
    def ideal(self) -> float:
        (n, k), (n2, k2) = (map(int, s.split("×")) for s in (self.shape, self.compact_shape))
        return n * k / (n2 * k2)

    @property
    def efficiency(self) -> float:
        return self.compact_speedup / self.ideal

    @property
    def intensity(self) -> float:
        """FLOP per byte (fp32) the compacted GEMM must move: 2·N'·K'·L / 4·(N'·K' + K'·L +
        N'·L)."""
        n2, k2 = map(int, self.compact_shape.split("×"))
        return 2 * n2 * k2 * self.columns / (4 * (n2 * k2 + (k2 + n2) * self.columns))

    def row(self) -> dict[str, object]:
        return {
            **asdict(self),
            "csr_speedup": self.csr_speedup,
            "compact_speedup": self.compact_speedup,
            "ideal": self.ideal,
            "efficiency": self.efficiency,
            "intensity": self.intensity,
        }


def kept_rows_cols(weight: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Indices of the alive rows and alive columns of a weight's GEMM view
    (:mod:`sparsitylab.gemm`)."""
    gemm = gemm_view(weight.detach())
    return alive_rows(gemm).nonzero().flatten(), alive_columns(gemm).nonzero().flatten()


def layer_speed(
    layer: str,
    weight: torch.Tensor,
    positions: int,
    batch: int = 256,
    unstructured: torch.Tensor | None = None,
    min_run_time: float = 0.2,
    seed: int = 0,
) -> LayerSpeed:
    """Time dense, CSR and compacted GEMMs for one layer's weight (structured zeros in ``weight``).

    ``unstructured``: the weight the CSR path uses (e.g. the same layer of an ℓ1-trained model);
    default: ``weight`` itself. X is random with batch·positions columns.
    """
    if positions < 1 or batch < 1:
        raise ValueError(f"positions={positions} and batch={batch} must be ≥ 1")
    w = gemm_view(weight.detach()).float().contiguous()
    csr_w = gemm_view((unstructured if unstructured is not None else weight).detach()).float()
    if csr_w.shape != w.shape:
        raise ValueError(
            f"unstructured weight shape {tuple(csr_w.shape)} differs from {tuple(w.shape)}"
        )
    rows, cols = kept_rows_cols(w)
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(w.shape[1], batch * positions, generator=gen)
    w_small, x_small = w[rows][:, cols].contiguous(), x[cols].contiguous()
    with warnings.catch_warnings():  # "sparse CSR support is in beta"
        warnings.simplefilter("ignore", UserWarning)
        csr = csr_w.to_sparse_csr()
    dense_t, csr_t, compact_t = (
        measure(call, min_run_time).median
        for call in (lambda: w @ x, lambda: torch.sparse.mm(csr, x), lambda: w_small @ x_small)
    )
    sparsity = 1.0 - csr_w.count_nonzero().item() / csr_w.numel()
    return LayerSpeed(
        layer,
        f"{w.shape[0]}×{w.shape[1]}",
        f"{len(rows)}×{len(cols)}",
        sparsity,
        x.shape[1],
        dense_t * 1e3,
        csr_t * 1e3,
        compact_t * 1e3,
    )


def structured_weight(
    n: int, k: int, kept_rows: int, kept_cols: int, seed: int = 0
) -> torch.Tensor:
    """A random N × K matrix whose only non-zeros are ``kept_rows`` random rows × ``kept_cols``
    random columns."""
    gen = torch.Generator().manual_seed(seed)
    w = torch.zeros(n, k)
    rows = torch.randperm(n, generator=gen)[:kept_rows]
    cols = torch.randperm(k, generator=gen)[:kept_cols]
    w[rows[:, None], cols[None, :]] = torch.randn(kept_rows, kept_cols, generator=gen)
    return w


def speed_table(results: list[LayerSpeed]):
    """The results as a pandas DataFrame, one row per layer."""
    import pandas as pd

    frame = pd.DataFrame([r.row() for r in results]).set_index("layer")
    return frame[
        [
            "shape",
            "compact_shape",
            "sparsity_csr",
            "dense_ms",
            "csr_ms",
            "compact_ms",
            "csr_speedup",
            "compact_speedup",
            "ideal",
            "efficiency",
            "intensity",
        ]
    ]


__all__ = ["LayerSpeed", "kept_rows_cols", "layer_speed", "speed_table", "structured_weight"]
