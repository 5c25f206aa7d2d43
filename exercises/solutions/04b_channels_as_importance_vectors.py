"""Solutions to ``exercises/04b_channels_as_importance_vectors.py`` (for instructors)."""

from __future__ import annotations

import torch
from torch import nn

BATCHNORMS = (nn.modules.batchnorm._BatchNorm,)  # BatchNorm1d/2d/3d and their subclasses


def _soft_threshold(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.sign(w) * torch.relu(w.abs() - torch.sigmoid(s))


def str_bn_affine(
    gamma: torch.Tensor, beta_hat: torch.Tensor, s: torch.Tensor
) -> tuple[torch.Tensor, torch.Tensor]:
    weight = _soft_threshold(gamma, s)
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


def global_gamma_keep(gammas: dict[str, torch.Tensor], ratio: float) -> dict[str, torch.Tensor]:
    every = torch.cat(list(gammas.values()))
    k = round(ratio * every.numel())
    threshold = float(every.kthvalue(k).values) if k > 0 else -1.0
    kept = {}
    for name, g in gammas.items():
        keep = g > threshold
        keep[g.argmax()] = True
        kept[name] = keep
    return kept
