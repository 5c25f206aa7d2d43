"""Exercises for the chapter "N:M sparsity: learning fine-grained structure from scratch".

Replace each ``raise NotImplementedError`` with your code, then grade your work with

    python exercises/grade.py 05_nm_sparsity

Use plain PyTorch; the library's own functions are what the grader compares you with, so do not
call them here.
"""

from __future__ import annotations

import torch
from torch import nn


def nm_keep(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Exercise 1. The N:M keep-mask of a 2-D weight ``w`` (out, in).

    Split every row into groups of ``m`` consecutive inputs and keep (True) the ``n`` entries of
    largest |w| in each group. Ties keep the earlier entry. ``in`` is a multiple of ``m``.
    Hint: count, for every entry, how many entries of its group beat it.
    """
    raise NotImplementedError("exercise 1: write the N:M keep-mask")


def sr_ste_grad(
    grad: torch.Tensor, w: torch.Tensor, keep: torch.Tensor, decay: float
) -> torch.Tensor:
    """Exercise 2. The gradient SR-STE hands to the dense weight ``w``.

    ``grad`` is ∂L/∂W̃ for the sparse weight W̃ = w ⊙ keep; ``decay`` is λ_W (0 gives plain STE).
    """
    raise NotImplementedError("exercise 2: write the SR-STE gradient")


def sad(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> dict[str, int]:
    """Exercise 3. Sparse Architecture Divergence: per layer, how many mask bits differ between the
    boolean masks ``before`` and ``after`` (same layers, same shapes)."""
    raise NotImplementedError("exercise 3: count the flipped mask bits")


def asp_layers(model: nn.Module) -> list[str]:
    """Exercise 4. The names of the Linear and Conv2d layers NVIDIA's ASP would sparsify, in module
    order (its rule: weight.size(0) % 8 == 0 and weight.size(1) % 16 == 0)."""
    raise NotImplementedError("exercise 4: apply ASP's eligibility rule")
