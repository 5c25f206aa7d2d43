"""``sparsitylab bench hbs``: the irregularity factor of the HBsNN performance model, and the cost
of hierarchical masks.

1. irf(sparsity, block) (:mod:`sparsitylab.deploy.perfmodel`) over a grid of block shapes and
   sparsities: a random block-sparse ``--size``² matrix times a ``--size``×``--n`` one, the
   library's CPU product for that block shape (the one an HBS level uses) against the dense GEMM,
   timed round-robin. Written to ``--json`` (default ``data/irf_cpu.json``) with CPU name, threads,
   torch version and date, for the chapter's predictions.
2. The two-level mask 4x1/63 + 1x1/97 of a 4096×4096 weight against one ``block_mask`` call with
   the first level's and with the last level's block shape.
"""

from __future__ import annotations

import argparse
from pathlib import Path

import torch

from ..deploy.perfmodel import irf_record, measure_irf
from ..files import atomic_write_json
from ..sparsify.hierarchical import hierarchical_masks, parse_config
from ..sparsify.masks import block_mask
from ..timing import cpu_name, interleaved, threads
from . import positive_int

BLOCKS = [(1, 1), (4, 1), (2, 2), (4, 4), (8, 8), (16, 16)]
SPARSITIES = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99]


def mask_task(size: int, repeats: int) -> dict[str, float]:
    """Median ms: the two-level HBS mask vs single block_mask calls on a size×size weight."""
    torch.manual_seed(0)
    w = torch.randn(size, size)
    levels = parse_config("4x1/63+1x1/97")
    calls = {
        "hierarchical_masks 4x1/63 + 1x1/97": lambda: hierarchical_masks(w, levels),
        "block_mask 4x1/60 (one level)": lambda: block_mask(w, (4, 1), 0.6),
        "block_mask 1x1/60 (one level)": lambda: block_mask(w, (1, 1), 0.6),
    }
    return {name: t.median * 1e3 for name, t in interleaved(calls, repeats, warmup=1).items()}


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sparsitylab bench hbs",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--size", type=positive_int, default=1024, help="irf: matrix side")
    parser.add_argument("--n", type=positive_int, default=256, help="irf: columns of B")
    parser.add_argument("--mask-size", type=positive_int, default=4096)
    parser.add_argument("--repeats", type=positive_int, default=15)
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--json", type=Path, default=Path("data/irf_cpu.json"))
    args = parser.parse_args(argv)
    if args.size % 16 or args.mask_size % 4:
        parser.error("--size must be a multiple of 16 and --mask-size of 4 (the block shapes)")
    with threads(args.threads):
        print(f"sparsitylab bench hbs — torch {torch.__version__}, {cpu_name()}\n")
        points = measure_irf(BLOCKS, SPARSITIES, (args.size, args.size), args.n, args.repeats)
        print(
            f"[1] irf = (t_dense / t_sparse) · density, {args.size}² · {args.size}×{args.n}, fp32"
        )
        print("  block   " + "".join(f"{s:>7}" for s in SPARSITIES))
        for block in BLOCKS:
            row = {p.sparsity: p.irf for p in points if p.block == block}
            print(f"  {block[0]}x{block[1]:<5}" + "".join(f"{row[s]:7.3f}" for s in SPARSITIES))
        record = irf_record(points, (args.size, args.size), args.n)
        masks = mask_task(args.mask_size, max(3, args.repeats // 3))
        record["mask_ms"] = masks
        record["mask_size"] = args.mask_size
        print(f"\n[2] masks of a {args.mask_size}² weight (median ms)")
        for name, ms in masks.items():
            print(f"  {name:<38} {ms:9.1f} ms")
        two = masks["hierarchical_masks 4x1/63 + 1x1/97"]
        wide, fine = masks["block_mask 4x1/60 (one level)"], masks["block_mask 1x1/60 (one level)"]
        print(f"  two levels / one 4x1 block_mask {two / wide:.2f}×, / one 1x1 {two / fine:.2f}×")
    atomic_write_json(record, args.json)
    print(
        f"\nwall clock, medians of interleaved rounds, {args.threads} thread(s); other processes "
        f"on the machine add noise. Wrote {args.json}"
    )
    return 0
