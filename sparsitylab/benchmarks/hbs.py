"""``sparsitylab bench hbs``: the irregularity factor of the HBsNN performance model, and the cost
of hierarchical masks.

1. irf(sparsity, block) (:mod:`sparsitylab.deploy.perfmodel`) over a grid of block shapes and
   sparsities: a random block-sparse ``--size``² matrix times a ``--size``×``--n`` one, the
   library's CPU product for that block shape (the one an HBS level uses) against the dense GEMM,
   timed round-robin. Written to ``--json`` (default ``data/irf_cpu.json``) with CPU name, threads,
   torch version and date, for the chapter's predictions.
2. The two-level mask 4x1/63 + 1x1/97 of a 4096×4096 weight against one ``block_mask`` call with
   the first level's and with the last level's block shape (the goal: two levels ≤ 2× one 4x1
   ``block_mask``), and the previous implementations side by side: the remainder written out level
   by level and one ``kthvalue`` over all scores (no sampled bracket), and the current masks with
   the compiled band pass switched off (the PyTorch path). Every fast mask is checked equal to its
   previous one first. ``--masks-only`` re-measures just this part and updates
   ``mask_*`` in the existing ``--json``, keeping the irf grid the chapter reads.
"""

from __future__ import annotations

import argparse
import json
import os
from datetime import UTC, datetime
from pathlib import Path

import torch

from ..deploy.perfmodel import irf_record, measure_irf
from ..files import atomic_write_json
from ..gemm import from_gemm_view, gemm_view
from ..sparsify import native
from ..sparsify.hierarchical import hierarchical_masks, parse_config
from ..sparsify.masks import _keep_exact, block_mask, pruned_count
from ..timing import interleaved, threads
from . import announce, positive_int, torch_path

BLOCKS = [(1, 1), (4, 1), (2, 2), (4, 4), (8, 8), (16, 16)]
SPARSITIES = [0.5, 0.6, 0.7, 0.8, 0.9, 0.95, 0.97, 0.99]


TWO = "hierarchical_masks 4x1/63 + 1x1/97"
WIDE, FINE = "block_mask 4x1/60 (one level)", "block_mask 1x1/60 (one level)"
TWO_BEFORE = "previous hierarchical_masks (remainder written out, kthvalue over all)"
WIDE_BEFORE = "previous block_mask 4x1/60 (kthvalue over all blocks)"
TWO_TORCH = "hierarchical_masks 4x1/63 + 1x1/97, PyTorch path (no compiled band pass)"
WIDE_TORCH = "block_mask 4x1/60, PyTorch path (no compiled band pass)"


def previous_block_keep(magnitudes: torch.Tensor, block: tuple[int, int], sparsity: float):
    """Baseline: one level as first implemented, one ``kthvalue`` over every block sum."""
    rows, cols = magnitudes.shape
    bh, bw = block
    grid = magnitudes.reshape(rows // bh, bh, cols // bw, bw)
    sums = (magnitudes if (bh, bw) == (1, 1) else grid.sum(dim=(1, 3))).reshape(-1)
    keep = _keep_exact(sums, pruned_count(sums.numel(), sparsity))
    return keep.reshape(rows // bh, 1, cols // bw, 1).expand(grid.shape).reshape(rows, cols)


def previous_hierarchical_masks(w: torch.Tensor, levels) -> list[torch.Tensor]:
    """Baseline: I_{k+1} = I_k with M_k set to 0, written out; each level ranked in full."""
    remainder = gemm_view(w).abs()
    taken = torch.zeros(remainder.shape, dtype=torch.bool)
    out = []
    for block, sparsity in levels:
        keep = previous_block_keep(remainder, block, sparsity) & ~taken
        out.append(from_gemm_view(keep, w.shape))
        remainder = remainder.masked_fill(keep, 0.0)
        taken |= keep
    return out


def mask_task(size: int, repeats: int) -> dict[str, float]:
    """Median ms: the two-level HBS mask vs single block_mask calls on a size×size weight, and the
    previous implementations (checked equal first)."""
    torch.manual_seed(0)
    w = torch.randn(size, size)
    levels = parse_config("4x1/63+1x1/97")
    fast, before = hierarchical_masks(w, levels), previous_hierarchical_masks(w, levels)
    wide_before = previous_block_keep(w.abs(), (4, 1), 0.6)
    with native.disabled():
        fast_torch = hierarchical_masks(w, levels)
    if not all(map(torch.equal, fast, before)) or not all(map(torch.equal, fast_torch, before)):
        raise AssertionError("a hierarchical mask differs from its previous implementation")
    if not torch.equal(block_mask(w, (4, 1), 0.6), wide_before):
        raise AssertionError("a mask differs from its previous implementation")
    calls = {
        TWO: lambda: hierarchical_masks(w, levels),
        WIDE: lambda: block_mask(w, (4, 1), 0.6),
        FINE: lambda: block_mask(w, (1, 1), 0.6),
        TWO_BEFORE: lambda: previous_hierarchical_masks(w, levels),
        WIDE_BEFORE: lambda: previous_block_keep(w.abs(), (4, 1), 0.6),
        TWO_TORCH: torch_path(lambda: hierarchical_masks(w, levels)),
        WIDE_TORCH: torch_path(lambda: block_mask(w, (4, 1), 0.6)),
    }
    return {name: t.median * 1e3 for name, t in interleaved(calls, repeats, warmup=1).items()}


def report_masks(size: int, repeats: int) -> dict:
    """Run :func:`mask_task`, print it with its ratios, return the ``mask_*`` fields of the JSON."""
    masks = mask_task(size, repeats)
    print(f"\n[2] masks of a {size}² weight (median ms)")
    for name, ms in masks.items():
        print(f"  {name:<72} {ms:9.1f} ms")
    ratios = {
        "two levels / one 4x1 block_mask": masks[TWO] / masks[WIDE],
        "two levels / one 1x1 block_mask": masks[TWO] / masks[FINE],
        "previous two levels / previous one 4x1 block_mask": masks[TWO_BEFORE] / masks[WIDE_BEFORE],
        "previous two levels / two levels": masks[TWO_BEFORE] / masks[TWO],
        "PyTorch path: two levels / one 4x1 block_mask": masks[TWO_TORCH] / masks[WIDE_TORCH],
    }
    for name, ratio in ratios.items():
        print(f"  {name:<52} {ratio:6.2f}×")
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
    return {
        "mask_ms": masks,
        "mask_ratio": ratios,
        "mask_size": size,
        "mask_repeats": repeats,
        "mask_date": datetime.now(UTC).isoformat(timespec="seconds"),
        "mask_load_average": load,
        "mask_note": (
            f"wall clock, medians of {repeats} interleaved rounds; 1-minute load average "
            f"{load} on {os.cpu_count()} CPUs when they ended (this benchmark adds about 1; more "
            "means other jobs shared the machine and every time above is inflated)"
        ),
    }


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
    parser.add_argument(
        "--masks-only",
        action="store_true",
        help="time only the masks and update their fields in the existing --json",
    )
    args = parser.parse_args(argv)
    if args.size % 16 or args.mask_size % 4:
        parser.error("--size must be a multiple of 16 and --mask-size of 4 (the block shapes)")
    if args.masks_only and not args.json.is_file():
        parser.error(f"--masks-only updates an existing --json; {args.json} does not exist")
    with threads(args.threads):
        announce("hbs")
        if args.masks_only:
            record = json.loads(args.json.read_text())
            record.update(report_masks(args.mask_size, max(3, args.repeats // 3)))
            atomic_write_json(record, args.json)
            print(f"\nupdated the mask fields of {args.json}")
            return 0
        points = measure_irf(BLOCKS, SPARSITIES, (args.size, args.size), args.n, args.repeats)
        print(
            f"[1] irf = (t_dense / t_sparse) · density, {args.size}² · {args.size}×{args.n}, fp32"
        )
        print("  block   " + "".join(f"{s:>7}" for s in SPARSITIES))
        for block in BLOCKS:
            row = {p.sparsity: p.irf for p in points if p.block == block}
            print(f"  {block[0]}x{block[1]:<5}" + "".join(f"{row[s]:7.3f}" for s in SPARSITIES))
        record = irf_record(points, (args.size, args.size), args.n)
        record.update(report_masks(args.mask_size, max(3, args.repeats // 3)))
    atomic_write_json(record, args.json)
    print(
        f"\nwall clock, medians of interleaved rounds, {args.threads} thread(s); other processes "
        f"on the machine add noise. Wrote {args.json}"
    )
    return 0
