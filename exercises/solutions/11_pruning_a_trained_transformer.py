"""Instructor solutions for ``exercises/11_pruning_a_trained_transformer.py``."""

from __future__ import annotations

import math

import torch


def wanda_mask(weight: torch.Tensor, inputs: torch.Tensor, sparsity: float) -> torch.Tensor:
    scores = weight.abs() * inputs.norm(dim=0)[None, :]
    k = math.floor(sparsity * weight.shape[1] + 0.5)
    keep = torch.ones_like(weight, dtype=torch.bool)
    if k:
        keep.scatter_(1, torch.argsort(scores, dim=1, stable=True)[:, :k], False)
    return keep


def obs_step(row: torch.Tensor, h_inverse: torch.Tensor, q: int) -> torch.Tensor:
    new = row - row[q] / h_inverse[q, q] * h_inverse[:, q]
    new[q] = 0.0
    return new


def contribution(inputs: torch.Tensor, weight: torch.Tensor, columns: torch.Tensor) -> float:
    return float(torch.linalg.matrix_norm(inputs[:, columns] @ weight[:, columns].T))


def reconstruction_error(inputs: torch.Tensor, weight: torch.Tensor, pruned: torch.Tensor) -> float:
    target = inputs @ weight.T
    energy = float(target.square().sum())
    if energy == 0:
        raise ValueError("the layer's outputs are all zero: the relative error is undefined")
    return float((inputs @ pruned.T - target).square().sum()) / energy
