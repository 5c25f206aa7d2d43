"""Dense vs unstructured CSR vs compacted GEMM, per layer, measured side by side on this CPU.

Every layer is timed as the GEMM it lowers to (Wen et al. 2016, Table 4; REFERENCE §2.5, §2.7):
Y = W · X with W the N × K weight matrix (conv: N filters × C·kh·kw, X its im2col patches of
``batch × positions`` columns; Linear: positions = 1). Three ways to compute it:

- **dense**: ``W @ X`` with the zeros still in W;
- **CSR**: ``torch.sparse`` CSR W (MKL on CPU) times dense X — the unstructured path;
- **compacted**: the surviving rows and columns gathered into a smaller dense W' (N' × K'),
  times the matching K' rows of X (the producer emits only those), as SSL's speedups assume.

Each is timed in its own loop (warm-up, then the median of ``repeats`` calls): steady-state
throughput. Round-robin timing (as ``bench spmm`` does) was tried and measured the small GEMMs 20–40
% slower: what the neighbouring calls leave in the caches and the allocator then dominates them. The
ideal speedup is the FLOP ratio N·K / (N'·K'); the benchmark reports measured / ideal. It also
reports the compacted GEMM's arithmetic intensity (FLOP per byte of W', X' and Y'). measured / ideal
is exactly the compacted GEMM's FLOP rate over the dense one's: a GEMM with few rows (LeNet conv1
keeping 5 filters × 25 columns does ~2 FLOP per byte) is bound by streaming X', which dropping
filters does not shrink, so its speedup stays below the FLOP ratio. Run it with ``sparsitylab bench
structured [--batch 256] [--repeats 30] [--threads 1] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import warnings
from dataclasses import asdict, dataclass
from datetime import UTC, datetime

import torch

from ..metrics import measure_latency
from ..sparsify.groups import gemm_view
from ..timing import cpu_name

# The chapter's layers (28×28 inputs) with the structured sparsity of the paper's results
# (MLP #2, LeNet #2 filters/channels and LeNet #4 shapes; REFERENCE §1.4): name, N, K,
# output positions, kept rows N', kept columns K'.
PAPER_LAYERS = (
    ("MLP fc1 (784→469 in, 294 out)", 500, 784, 1, 294, 469),
    ("MLP fc2 (294 in, 166 out)", 300, 500, 1, 166, 294),
    ("LeNet conv1 #2 (5 filters)", 20, 25, 576, 5, 25),
    ("LeNet conv2 #2 (19 filters, 4 channels)", 50, 500, 64, 19, 100),
    ("LeNet conv1 #4 (21 of 25 columns)", 20, 25, 576, 20, 21),
    ("LeNet conv2 #4 (41 of 500 columns)", 50, 500, 64, 50, 41),
)


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
    """Indices of the non-zero rows and non-zero columns of a weight's GEMM view."""
    gemm = gemm_view(weight.detach())
    return gemm.any(1).nonzero().flatten(), gemm.any(0).nonzero().flatten()


def layer_speed(
    layer: str,
    weight: torch.Tensor,
    positions: int,
    batch: int = 256,
    unstructured: torch.Tensor | None = None,
    repeats: int = 20,
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
        measure_latency(call, repeats=repeats, cuda=False).median
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


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sparsitylab bench structured",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--batch", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=30)
    parser.add_argument(
        "--threads", type=int, default=1, help="torch threads (default 1: stable on a shared CPU)"
    )
    parser.add_argument(
        "--json", default=None, help="write the results (and the machine) to this JSON file"
    )
    args = parser.parse_args(argv)
    if args.threads < 1:
        raise ValueError(f"--threads={args.threads} must be ≥ 1")
    previous = torch.get_num_threads()
    torch.set_num_threads(args.threads)
    try:
        device = cpu_name()
        results = [
            layer_speed(
                name, structured_weight(n, k, n2, k2), positions, args.batch, repeats=args.repeats
            )
            for name, n, k, positions, n2, k2 in PAPER_LAYERS
        ]
    finally:
        torch.set_num_threads(previous)
    table = speed_table(results)
    print(
        f"batch {args.batch}, torch {torch.__version__}, {device}; CSR holds the same non-zeros as "
        f"the structured weight"
    )
    print(table.round(3).to_string())
    print(
        f"compacted speedup / ideal FLOP ratio: min {table.efficiency.min():.2f}, "
        f"median {table.efficiency.median():.2f} (target ≥ 0.8)"
    )
    missed = table[table.efficiency < 0.8]
    for name, row in missed.iterrows():
        print(
            f"  below target: {name}: the compacted {row.compact_shape} GEMM runs at "
            f"{row.efficiency:.0%} of the dense "
            f"GEMM's FLOP rate ({row.intensity:.1f} FLOP per byte moved; few rows or few FLOP per "
            f"byte "
            f"leave the vector units waiting for memory)"
        )
    if args.json:
        with open(args.json, "w") as f:
            json.dump(
                {
                    "batch": args.batch,
                    "threads": args.threads,
                    "torch": torch.__version__,
                    "machine": platform.machine(),
                    "cpu": device,
                    "cpu_count": os.cpu_count(),
                    "date": datetime.now(UTC).isoformat(timespec="seconds"),
                    "results": [r.row() for r in results],
                },
                f,
                indent=1,
            )
    return 0


__all__ = [
    "PAPER_LAYERS",
    "LayerSpeed",
    "kept_rows_cols",
    "layer_speed",
    "structured_weight",
    "speed_table",
    "main",
]
