"""Solutions to ``exercises/07_sis_subdifferential_inclusion.py`` (for instructors)."""

from __future__ import annotations

import torch


def relu_projection(u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    return torch.where(y > 0, y, u.clamp(max=0.0))


def softmax_theta(u: torch.Tensor, log_y: torch.Tensor) -> float:
    shift = u - log_y
    return float((shift - shift.mean(dim=1, keepdim=True)).square().sum())


def ista_step(
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    penalty: float,
    step: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    u = x @ w.T + b
    r = u - relu_projection(u, y)
    v = w - step * (r.T @ x) / penalty
    return torch.sign(v) * (v.abs() - step).clamp_min(0.0), b - step * r.sum(dim=0) / penalty


def error_and_theta(u: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    error = float((torch.relu(u) - y).square().sum())
    theta = float((u - relu_projection(u, y)).square().sum())
    return error, theta
