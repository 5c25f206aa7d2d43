"""Solutions to ``exercises/04_learned_thresholds_str.py`` (for instructors)."""

from __future__ import annotations

import torch
from torch import nn

BATCHNORMS = (nn.modules.batchnorm._BatchNorm,)  # BatchNorm1d/2d/3d and their subclasses


def soft_threshold(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.sign(w) * torch.relu(w.abs() - torch.sigmoid(s))


def threshold_grad(w: torch.Tensor, s: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    g = torch.sigmoid(s)
    alive = w.abs() > g
    return -g * (1 - g) * (upstream * torch.sign(w) * alive).sum()


def str_bn_affine(
    gamma: torch.Tensor, beta_hat: torch.Tensor, s: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    weight = soft_threshold(gamma, s)
    return weight, weight * beta_hat


def groups_by_type(model: nn.Module, thresholds: list[nn.Parameter]) -> list[dict]:
    taken = {id(p) for p in thresholds}  # an STR-BN threshold is also a BatchNorm's parameter
    batchnorm = [
        p
        for m in model.modules()
        if isinstance(m, BATCHNORMS)
        for p in m.parameters(recurse=False)
        if p.requires_grad and id(p) not in taken
    ]
    taken |= {id(p) for p in batchnorm}
    rest = [p for p in model.parameters() if p.requires_grad and id(p) not in taken]
    groups = [{"params": list(thresholds)}, {"params": batchnorm}, {"params": rest}]
    return [g for g in groups if g["params"]]
