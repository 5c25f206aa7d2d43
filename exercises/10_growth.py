"""Exercises for the chapter "Growth: sparse from the first step".

Replace each ``raise NotImplementedError`` with your code, then grade your work with

    python exercises/grade.py 10_growth

Masks are boolean tensors, True where a weight is kept (active). Use torch; the grader compares
you with ``sparsitylab.sparsify.growth`` and ``sparsitylab.methods``, so do not call them here.
"""

from __future__ import annotations

import torch


def rigl_fraction(step: int, alpha: float, end_step: int) -> float:
    """Exercise 1. RigL's drop fraction at ``step``: (α/2)(1 + cos(π·step/end_step)) before
    ``end_step``, and 0 from ``end_step`` on (no more updates)."""
    raise NotImplementedError("exercise 1: RigL's cosine drop fraction")


def rigl_update(
    mask: torch.Tensor, weight: torch.Tensor, gradient: torch.Tensor, count: int
) -> torch.Tensor:
    """Exercise 2. One RigL update of one layer: drop the ``count`` active weights with the smallest
    |weight|, then grow the ``count`` positions with the largest |gradient| among those not kept
    (a weight just dropped may come back). Ties: among equal scores, the lower flat index is kept
    (and grown first). Return the new mask; it has as many True entries as ``mask``."""
    raise NotImplementedError("exercise 2: drop by magnitude, grow by gradient")


def lottery_round(weight: torch.Tensor, mask: torch.Tensor, rate: float) -> torch.Tensor:
    """Exercise 3. One round of iterative magnitude pruning for one layer: among the surviving
    weights (``mask`` True), prune ``floor(rate · survivors + 0.5)`` with the smallest |weight|
    (ties: the higher flat index goes first); pruned weights stay pruned. Return the new mask."""
    raise NotImplementedError("exercise 3: prune a share of the survivors")


def rigl_flops(sparse_forward: float, dense_forward: float, interval: int) -> float:
    """Exercise 4. Average training FLOPs per step of RigL while it updates (the paper's
    accounting): a sparse step costs 3·f_S (forward, and two backward products); every ``interval``
    steps one step needs the dense gradient, costing 2·f_S + f_D. Return
    (3·f_S·ΔT + 2·f_S + f_D) / (ΔT + 1)."""
    raise NotImplementedError("exercise 4: RigL's FLOPs per step")
