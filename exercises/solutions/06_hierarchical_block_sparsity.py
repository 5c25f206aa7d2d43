"""Solutions to ``exercises/06_hierarchical_block_sparsity.py`` (for instructors)."""

from __future__ import annotations

import torch

from sparsitylab.sparsify.masks import mask_from_scores


def block_scores(matrix: torch.Tensor, bh: int, bw: int) -> torch.Tensor:
    rows, cols = matrix.shape
    return matrix.abs().reshape(rows // bh, bh, cols // bw, bw).sum(dim=(1, 3))


def two_level_masks(
    matrix: torch.Tensor, block: tuple[int, int], coarse: float, fine: float
) -> tuple[torch.Tensor, torch.Tensor]:
    bh, bw = block
    keep_blocks = mask_from_scores(block_scores(matrix, bh, bw), coarse)
    level1 = keep_blocks.repeat_interleave(bh, 0).repeat_interleave(bw, 1)
    remainder = matrix.abs().masked_fill(level1, 0.0)
    level2 = mask_from_scores(remainder, fine) & ~level1
    return level1, level2


def retained_top(w: torch.Tensor, keep: torch.Tensor, fraction: float) -> float:
    top = mask_from_scores(w.abs(), 1.0 - fraction)
    return float((top & keep).sum()) / float(top.sum())


def predicted_speedup(levels: list[tuple[float, float]]) -> float:
    return 1.0 / sum(kept / irf for kept, irf in levels)
