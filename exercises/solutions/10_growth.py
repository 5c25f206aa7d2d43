"""Instructor solutions for ``exercises/10_growth.py``."""

from __future__ import annotations

import math

import torch


def rigl_fraction(step: int, alpha: float, end_step: int) -> float:
    if step >= end_step:
        return 0.0
    return alpha / 2 * (1 + math.cos(math.pi * step / end_step))


def _order(scores: torch.Tensor, descending: bool) -> torch.Tensor:
    """Flat indices sorted by score (stable: among ties, lower index first)."""
    return torch.argsort(scores.reshape(-1), descending=descending, stable=True)


def rigl_update(
    mask: torch.Tensor, weight: torch.Tensor, gradient: torch.Tensor, count: int
) -> torch.Tensor:
    flat = mask.reshape(-1).clone()
    active = torch.nonzero(flat).squeeze(1)
    # the smallest |w| among the active ones; among ties the higher index goes first
    order = torch.argsort(weight.reshape(-1)[active].abs(), descending=True, stable=True)
    dropped = active[order[len(active) - count :]]
    flat[dropped] = False
    score = torch.where(flat, torch.tensor(-math.inf), gradient.reshape(-1).abs().float())
    flat[_order(score, descending=True)[:count]] = True
    return flat.reshape(mask.shape)


def lottery_round(weight: torch.Tensor, mask: torch.Tensor, rate: float) -> torch.Tensor:
    flat = mask.reshape(-1).clone()
    survivors = torch.nonzero(flat).squeeze(1)
    k = math.floor(rate * len(survivors) + 0.5)
    order = torch.argsort(weight.reshape(-1)[survivors].abs(), descending=True, stable=True)
    flat[survivors[order[len(survivors) - k :]]] = False
    return flat.reshape(mask.shape)


def rigl_flops(sparse_forward: float, dense_forward: float, interval: int) -> float:
    return (3 * sparse_forward * interval + 2 * sparse_forward + dense_forward) / (interval + 1)
