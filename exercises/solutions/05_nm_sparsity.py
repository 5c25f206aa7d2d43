"""Solutions to ``exercises/05_nm_sparsity.py`` (for instructors)."""

from __future__ import annotations

import torch
from torch import nn


def nm_keep(w: torch.Tensor, n: int, m: int) -> torch.Tensor:
    groups = w.abs().reshape(-1, m)
    # entry i loses to j when |g_j| > |g_i|, or |g_j| = |g_i| and j comes first
    position = torch.arange(m)
    bigger = groups[:, None, :] > groups[:, :, None]  # [group, i, j]: j beats i by magnitude
    tie_earlier = (groups[:, None, :] == groups[:, :, None]) & (
        position[None, :] < position[:, None]
    )
    rank = (bigger | tie_earlier).sum(-1)
    return (rank < n).reshape(w.shape)


def sr_ste_grad(
    grad: torch.Tensor, w: torch.Tensor, keep: torch.Tensor, decay: float
) -> torch.Tensor:
    return grad + decay * (~keep) * w


def sad(before: dict[str, torch.Tensor], after: dict[str, torch.Tensor]) -> dict[str, int]:
    return {name: int((before[name] != after[name]).sum()) for name in before}


def asp_layers(model: nn.Module) -> list[str]:
    return [
        name
        for name, layer in model.named_modules()
        if isinstance(layer, (nn.Linear, nn.Conv2d))
        and layer.weight.shape[0] % 8 == 0
        and layer.weight.shape[1] % 16 == 0
    ]
