"""Exercises for the chapter "Learned thresholds: STR and a target-sparsity mode".

Replace each ``raise NotImplementedError`` with your code, then grade your work with

    python exercises/grade.py 04_learned_thresholds_str

Use plain PyTorch; the library's own functions are what the grader compares you with, so do not
call them here. Throughout, g(s) = sigmoid(s) is the threshold and g′(s) = g(s)·(1 − g(s)).
"""

from __future__ import annotations

import torch


def soft_threshold(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    """Exercise 1. STR's effective weight S_g(W, s) = sign(W) · ReLU(|W| − g(s)).

    ``w`` has any shape, ``s`` is a scalar tensor; the result has the shape of ``w``, with exact
    zeros where |W| ≤ g(s) and the survivors shrunk toward 0 by g(s).
    """
    raise NotImplementedError("exercise 1: write the soft threshold")


def threshold_grad(w: torch.Tensor, s: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    """Exercise 2. The closed-form gradient of the loss with respect to the threshold parameter:

        ∂L/∂s = −g′(s) · Σ_i upstream_i · sign(W_i) · 1{|W_i| > g(s)}

    ``upstream`` is ∂L/∂S (same shape as ``w``), ``s`` a scalar tensor; return one value (a scalar
    tensor). Use the formula, not autograd.
    """
    raise NotImplementedError("exercise 2: write the gradient of the threshold")


def pruned_at_init(w: torch.Tensor, s: float) -> float:
    """Exercise 3. The share of a layer's weights that STR's threshold prunes before any training:
    the fraction of entries with |W| ≤ g(s). (Chapter 4: with s_init = −5 and PyTorch's default
    initialisation this is already 15–19 % of LeNet's large layers.) Return a Python float.
    """
    raise NotImplementedError("exercise 3: count the weights at or below the threshold")
