"""Exercises for the chapter "Unstructured pruning: magnitude, schedules and layer budgets".

Replace each ``raise NotImplementedError`` with your code, then grade your work with

    python exercises/grade.py 01_unstructured_pruning

Use plain PyTorch; the library's own functions (``sparsitylab.sparsify``) are what the grader
compares you with, so do not call them here. Conventions of the chapter: a keep-mask is a boolean
tensor of the weight's shape (True = kept); a sparsity s ∈ [0, 1) applied to n candidates prunes
exactly k = ⌊s·n + ½⌋ of them (round half up, at most n), the ones of smallest |w|.
"""

from __future__ import annotations

import torch


def topk_keep(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Exercise 1. Magnitude pruning of one tensor, with an exact count.

    Return the keep-mask of ``w`` (any shape, floating point) that prunes the k = ⌊s·n + ½⌋
    entries of smallest |w| and keeps the other n − k. Ties are broken by position: among entries
    of equal |w|, the one with the lower flat (row-major) index is kept, so exactly n − k entries
    are True even when many magnitudes are equal — a plain threshold |w| > t would over-prune.
    """
    raise NotImplementedError("exercise 1: the exact top-k magnitude mask")


def global_keep(weights: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    """Exercise 2. The *global* budget: one magnitude ranking over all tensors together.

    ``weights`` maps a layer name to its weight (all float32). Prune k = ⌊s·Σn + ½⌋ entries in
    total, those of smallest |w| across every tensor; layers get whatever share their magnitudes
    earn (a layer may lose all of its weights). Ties keep the entry that comes first in the order
    of the dict, then row-major within a tensor. Return name → keep-mask, same keys and order.
    """
    raise NotImplementedError("exercise 2: global magnitude masks")


def erk_sparsities(shapes: dict[str, tuple[int, ...]], sparsity: float) -> dict[str, float]:
    """Exercise 3. The Erdős–Rényi-Kernel budget of RigL, with its re-solve.

    ``shapes`` maps a layer name to its weight shape, (out, in) or (out, in, kh, kw); N_l is the
    product of the shape and p_l = Σ dims / Π dims. The density of a layer is ε·p_l, and ε is
    solved so that the kept weights are exactly (1 − S)·Σ N_l over all layers:

        ε · Σ_{free l} p_l N_l = (1 − S) · Σ_{free l} N_l − S · Σ_{dense l} N_l

    Start with every layer free. While the largest ε·p_l among the free layers exceeds 1 (allow a
    tolerance of 1e-12), move every free layer with that largest p_l to the dense set and solve
    again. Return name → sparsity: 0.0 for a dense layer, 1 − ε·p_l otherwise (clipped at 0); all
    zeros when S = 0.
    """
    raise NotImplementedError("exercise 3: ERK layer sparsities")


def cubic_sparsity(
    step: int, initial: float, final: float, start: int, delta: int, n: int
) -> float:
    """Exercise 4. The target sparsity of Zhu & Gupta's cubic schedule after optimizer step
    ``step``, as the chapter runs it (s_i = ``initial``, s_f = ``final``, t₀ = ``start``, Δt =
    ``delta``, n pruning events after the first):

        s_t = s_f + (s_i − s_f) · (1 − k/n)³   with k = min(⌊(t − t₀)/Δt⌋, n)

    Pruning happens only at the events t₀ + kΔt; between them the target of the last event is
    held, and after t₀ + nΔt it stays at s_f. Before t₀ nothing has been pruned: return 0.0 there
    (not s_i). Return a Python float.
    """
    raise NotImplementedError("exercise 4: the cubic schedule")
