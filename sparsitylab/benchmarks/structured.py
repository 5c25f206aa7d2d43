"""``sparsitylab bench structured``: dense vs CSR vs compacted GEMM for the paper's layers, on this
CPU.

The layers of SSL's MLP #2, LeNet #2 (filters/channels) and LeNet #4 (shapes) with random weights of
the paper's structured sparsity, timed by :func:`sparsitylab.deploy.speed.layer_speed`; the
benchmark reports compacted speedup / ideal FLOP ratio per layer and names the layers below 0.8 of
ideal. Run it with ``sparsitylab bench structured [--batch 256] [--min-run-time 0.2] [--threads 1]
[--json PATH]``.
"""

from __future__ import annotations

import argparse
import os
import platform
from datetime import UTC, datetime

import torch

from ..deploy.speed import layer_speed, speed_table, structured_weight
from ..files import atomic_write_json
from ..timing import cpu_name, threads
from . import positive_int, positive_real

# The chapter's layers (28×28 inputs) with the structured sparsity of the paper's results
# (MLP #2, LeNet #2 filters/channels and LeNet #4 shapes; Wen et al. 2016): name, N, K,
# output positions, kept rows N', kept columns K'.
PAPER_LAYERS = (
    ("MLP fc1 (784→469 in, 294 out)", 500, 784, 1, 294, 469),
    ("MLP fc2 (294 in, 166 out)", 300, 500, 1, 166, 294),
    ("LeNet conv1 #2 (5 filters)", 20, 25, 576, 5, 25),
    ("LeNet conv2 #2 (19 filters, 4 channels)", 50, 500, 64, 19, 100),
    ("LeNet conv1 #4 (21 of 25 columns)", 20, 25, 576, 20, 21),
    ("LeNet conv2 #4 (41 of 500 columns)", 50, 500, 64, 50, 41),
)


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sparsitylab bench structured",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--batch", type=positive_int, default=256)
    parser.add_argument(
        "--min-run-time",
        type=positive_real,
        default=0.2,
        help="seconds of calls per timing (torch.utils.benchmark.Timer.blocked_autorange)",
    )
    parser.add_argument(
        "--threads",
        type=positive_int,
        default=1,
        help="torch threads (default 1: stable on a shared CPU)",
    )
    parser.add_argument(
        "--json", default=None, help="write the results (and the machine) to this JSON file"
    )
    args = parser.parse_args(argv)
    with threads(args.threads):
        device = cpu_name()
        results = [
            layer_speed(
                name,
                structured_weight(n, k, n2, k2),
                positions,
                args.batch,
                min_run_time=args.min_run_time,
            )
            for name, n, k, positions, n2, k2 in PAPER_LAYERS
        ]
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
            f"{row.efficiency:.0%} of the dense GEMM's FLOP rate ({row.intensity:.1f} FLOP per "
            "byte moved; few rows or few FLOP per byte leave the vector units waiting for memory)"
        )
    if args.json:
        atomic_write_json(
            {
                "batch": args.batch,
                "threads": args.threads,
                "min_run_time": args.min_run_time,
                "torch": torch.__version__,
                "machine": platform.machine(),
                "cpu": device,
                "cpu_count": os.cpu_count(),
                "date": datetime.now(UTC).isoformat(timespec="seconds"),
                "results": [r.row() for r in results],
            },
            args.json,
        )
    return 0


__all__ = ["PAPER_LAYERS", "main"]
