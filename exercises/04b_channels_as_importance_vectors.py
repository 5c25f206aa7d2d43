"""Exercises for the chapter "Channels as importance vectors: STR-BN, Network Slimming and
compaction".

Replace each ``raise NotImplementedError`` with your code, then grade your work with

    python exercises/grade.py 04b_channels_as_importance_vectors

Use plain PyTorch; the library's own functions are what the grader compares you with, so do not
call them here. Throughout, g(s) = sigmoid(s) is STR-BN's threshold.
"""

from __future__ import annotations

import torch
from torch import nn


def str_bn_affine(
    gamma: torch.Tensor, beta_hat: torch.Tensor, s: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exercise 1. The plain BatchNorm affine that an STR-BN layer computes with.

    STR-BN writes BatchNorm as Y = γ̂ ⊙ (X̂ + β̂) with γ̂ = sign(γ) · ReLU(|γ| − g(s)). Return the pair
    (weight γ̂, bias γ̂ ⊙ β̂), one entry per channel; a channel with γ̂ = 0 then outputs exactly 0.
    """
    raise NotImplementedError("exercise 3: write STR-BN's effective weight and bias")


def groups_by_type(model: nn.Module, thresholds: list[nn.Parameter]) -> list[dict]:
    """Exercise 2. Optimizer parameter groups for STR: a list of dicts, each with a "params" list.

    One group holds exactly ``thresholds``, one the parameters of every BatchNorm module (any
    ``nn.BatchNorm*d``) that are not thresholds, one every other trainable parameter; leave out a
    group that would be empty. Every trainable parameter of ``model`` appears exactly once. Decide
    by module type and by parameter identity, never by parameter or module name.
    """
    raise NotImplementedError("exercise 4: build the parameter groups by type")


def global_gamma_keep(gammas: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    """Exercise 3. Network Slimming's one global threshold, with a floor of one channel per layer.

    ``gammas`` maps a layer to its channels' |γ| (1-D, non-negative). Pool every channel of every
    layer; with k = round(ratio · N) of the N channels, the threshold is the k-th smallest |γ|
    (none when k = 0). A channel is kept when its |γ| is strictly above the threshold; a layer
    that would keep nothing keeps its largest-|γ| channel. Return layer → bool mask (True = kept).
    """
    raise NotImplementedError("exercise 3: one global |γ| threshold, one channel per layer kept")
