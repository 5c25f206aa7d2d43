"""Exercises for the chapter "Learned thresholds: STR and STR-BN".

Replace each ``raise NotImplementedError`` with your code, then grade your work with

    python exercises/grade.py 04_learned_thresholds_str

Use plain PyTorch; the library's own functions are what the grader compares you with, so do not
call them here. Throughout, g(s) = sigmoid(s) is the threshold and g′(s) = g(s)·(1 − g(s)).
"""

from __future__ import annotations

import torch
from torch import nn


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


def str_bn_affine(
    gamma: torch.Tensor, beta_hat: torch.Tensor, s: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exercise 3. The plain BatchNorm affine that an STR-BN layer computes with.

    STR-BN writes BatchNorm as Y = γ̂ ⊙ (X̂ + β̂) with γ̂ = sign(γ) · ReLU(|γ| − g(s)). Return the pair
    (weight γ̂, bias γ̂ ⊙ β̂), one entry per channel; a channel with γ̂ = 0 then outputs exactly 0.
    """
    raise NotImplementedError("exercise 3: write STR-BN's effective weight and bias")


def groups_by_type(model: nn.Module, thresholds: list[nn.Parameter]) -> list[dict]:
    """Exercise 4. Optimizer parameter groups for STR: a list of dicts, each with a "params" list.

    One group holds exactly ``thresholds``, one the parameters of every BatchNorm module (any
    ``nn.BatchNorm*d``) that are not thresholds, one every other trainable parameter; leave out a
    group that would be empty. Every trainable parameter of ``model`` appears exactly once. Decide
    by module type and by parameter identity, never by parameter or module name.
    """
    raise NotImplementedError("exercise 4: build the parameter groups by type")
