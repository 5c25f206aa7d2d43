"""Exercises for the chapter "Hierarchical block sparsity: accuracy of fine grains, speed of
blocks".

Replace each ``raise NotImplementedError`` with your code, then grade your work with

    python exercises/grade.py 06_hierarchical_block_sparsity

You may use ``sparsitylab.sparsify.masks.mask_from_scores(scores, sparsity)`` (keep the largest
scores, prune exactly ⌊sparsity·n + ½⌋, ties keep the lower index) as the selection primitive;
write everything else yourself.
"""

from __future__ import annotations

import torch


def block_scores(matrix: torch.Tensor, bh: int, bw: int) -> torch.Tensor:
    """Exercise 1. The score of every (bh, bw) block of a 2-D ``matrix``: Σ|w| over the block, as a
    (rows/bh, cols/bw) tensor. No Python loops over blocks."""
    raise NotImplementedError("exercise 1: block scores")


def two_level_masks(
    matrix: torch.Tensor, block: tuple[int, int], coarse: float, fine: float
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exercise 2. The two level masks of HBS pruning with levels [(block, coarse), ((1, 1), fine)]:
    level 1 keeps whole blocks (sparsity ``coarse`` of the block grid); level 2 keeps single
    entries (sparsity ``fine`` of all entries) of what level 1 left, I₂ = I₁ − M₁. Return two
    boolean masks of ``matrix``'s shape, disjoint."""
    raise NotImplementedError("exercise 2: two-level HBS masks")


def retained_top(w: torch.Tensor, keep: torch.Tensor, fraction: float) -> float:
    """Exercise 3. The share (0–1) of the ``fraction`` largest-|w| weights of ``w`` that the boolean
    mask ``keep`` retains (the paper's Table 2 statistic)."""
    raise NotImplementedError("exercise 3: retained top-k share")


def predicted_speedup(levels: list[tuple[float, float]]) -> float:
    """Exercise 4. The HBsNN performance model for one layer: ``levels`` holds, per level, (kept
    fraction of the dense FLOPs, irf of that level). Return C_dense / C_sparse."""
    raise NotImplementedError("exercise 4: the performance model")
