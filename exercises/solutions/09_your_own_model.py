"""Instructor solutions for ``exercises/09_your_own_model.py``."""

from __future__ import annotations

import torch


def producer_norms(group, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    total = torch.zeros(group.size)
    for member in group.members:
        if member.role != "produces":
            continue
        t = tensors[member.tensor].detach().float()
        per_index = t.pow(2).movedim(member.axis, 0).reshape(t.shape[member.axis], -1).sum(1)
        total += per_index[group.index[(member.tensor, member.axis)]].sum(1)
    return total.sqrt()


def removal_masks(group, shapes: dict[str, tuple[int, ...]], removed: torch.Tensor) -> dict:
    masks: dict[str, torch.Tensor] = {}
    for member in group.members:
        mask = masks.get(member.tensor, torch.ones(shapes[member.tensor], dtype=torch.bool))
        index = group.index[(member.tensor, member.axis)][removed].reshape(-1)
        masks[member.tensor] = mask.index_fill(member.axis, index, False)
    return masks


def speedup_report(
    masked_s: float, compacted_s: float, dense_macs: int, compacted_macs: int
) -> tuple[float, float, float]:
    if min(masked_s, compacted_s, dense_macs, compacted_macs) <= 0:
        raise ValueError("times and MACs must be positive")
    speedup, ideal = masked_s / compacted_s, dense_macs / compacted_macs
    return speedup, ideal, speedup / ideal


def covered_share(coverage: dict[str, str], sizes: dict[str, int]) -> float:
    total = sum(sizes[name] for name in coverage)
    if not total:
        raise ValueError("the model has no parameters")
    return sum(sizes[name] for name, why in coverage.items() if why == "covered") / total
