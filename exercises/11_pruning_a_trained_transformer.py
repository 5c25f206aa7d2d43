"""Exercises for the chapter "Pruning a trained transformer: magnitude, Wanda, SparseGPT and SIS
from a few images".

Replace each ``raise NotImplementedError`` with your code, then grade your work with

    python exercises/grade.py 11_pruning_a_trained_transformer

One layer computes y = W x with W of shape (rows, columns); its calibration inputs X are a
(samples × columns) matrix. Use torch; the grader compares you with
``sparsitylab.sparsify.posttrain`` and ``sparsitylab.methods.units``, so do not call them here.
"""

from __future__ import annotations

import torch


def wanda_mask(weight: torch.Tensor, inputs: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Exercise 1. Wanda's keep-mask: score S_ij = |W_ij| · ‖X_j‖₂ (the ℓ2 norm of input feature j
    over every sample) and, in every row, prune the ``round(sparsity · columns)`` lowest scores
    (on a tie, prune the earlier column). Return a bool tensor of W's shape, True where kept."""
    raise NotImplementedError("exercise 1: Wanda's mask of one layer")


def obs_step(row: torch.Tensor, h_inverse: torch.Tensor, q: int) -> torch.Tensor:
    """Exercise 2. One Optimal Brain Surgeon step on one row of weights: remove weight ``q`` and
    correct the others so that the layer's squared reconstruction error grows least:
    δ = −(w_q / [H⁻¹]_qq) · H⁻¹_{:,q}. Return the new row (its entry q exactly 0)."""
    raise NotImplementedError("exercise 2: one OBS step")


def contribution(inputs: torch.Tensor, weight: torch.Tensor, columns: torch.Tensor) -> float:
    """Exercise 3. The output contribution of one unit occupying input ``columns`` of a reader
    weight W (outputs × inputs) on inputs X (samples × inputs): ‖X_u W_uᵀ‖_F, with X_u and W_u the
    unit's columns of X and W."""
    raise NotImplementedError("exercise 3: a unit's output contribution")


def reconstruction_error(inputs: torch.Tensor, weight: torch.Tensor, pruned: torch.Tensor) -> float:
    """Exercise 4. The relative squared reconstruction error of a pruned layer on its inputs:
    ‖X Wᵀ − X W'ᵀ‖²_F / ‖X Wᵀ‖²_F. A layer whose outputs are all zero raises ValueError."""
    raise NotImplementedError("exercise 4: the reconstruction error of a pruned layer")
