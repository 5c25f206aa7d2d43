"""Solutions to ``exercises/02_structured_sparsity_learning.py`` (for instructors)."""

from __future__ import annotations

import torch


def _squares(weight: torch.Tensor, kind: str) -> torch.Tensor:
    squared = weight.pow(2)
    if kind == "filter":
        return squared.flatten(1).sum(1)
    if kind == "channel":
        return squared.sum(0).flatten(1).sum(1)
    if kind == "shape":
        return squared.sum(0).flatten()
    raise ValueError(f"unknown group kind {kind!r}")


def group_norms(weight: torch.Tensor, kind: str) -> torch.Tensor:
    return _squares(weight, kind).sqrt()


def _broadcast(per_group: torch.Tensor, weight: torch.Tensor, kind: str) -> torch.Tensor:
    """One value per group, shaped to multiply ``weight``."""
    if kind == "filter":
        return per_group.view(-1, 1, 1, 1)
    if kind == "channel":
        return per_group.view(1, -1, 1, 1)
    return per_group.view(1, *weight.shape[1:])


def prox_group(weight: torch.Tensor, kind: str, threshold: float) -> torch.Tensor:
    norms = group_norms(weight, kind)
    safe = torch.where(norms > 0, norms, torch.ones_like(norms))
    scale = torch.where(norms > threshold, 1 - threshold / safe, torch.zeros_like(norms))
    return weight * _broadcast(scale, weight, kind)


def dying_groups(
    weight: torch.Tensor, kind: str, lr: float, lam: float, momentum: float
) -> torch.Tensor:
    threshold = lr / (1 - momentum) * lam
    return group_norms(weight, kind) <= threshold


def compacted_macs(weight: torch.Tensor, bias: torch.Tensor | None, positions: int) -> int:
    matrix = weight.detach().flatten(1)
    rows = (matrix != 0).any(1)
    if bias is not None:
        rows = rows | (bias.detach() != 0)
    columns = (matrix != 0).any(0)
    return positions * int(rows.sum()) * int(columns.sum())
