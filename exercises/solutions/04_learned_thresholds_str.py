"""Solutions to ``exercises/04_learned_thresholds_str.py`` (for instructors)."""

from __future__ import annotations

import torch


def soft_threshold(w: torch.Tensor, s: torch.Tensor) -> torch.Tensor:
    return torch.sign(w) * torch.relu(w.abs() - torch.sigmoid(s))


def threshold_grad(w: torch.Tensor, s: torch.Tensor, upstream: torch.Tensor) -> torch.Tensor:
    g = torch.sigmoid(s)
    alive = w.abs() > g
    return -g * (1 - g) * (upstream * torch.sign(w) * alive).sum()


def pruned_at_init(w: torch.Tensor, s: float) -> float:
    return float((w.abs() <= torch.sigmoid(torch.tensor(float(s)))).float().mean())
