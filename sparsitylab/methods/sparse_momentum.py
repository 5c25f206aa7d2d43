"""SNFS, "sparse momentum" (Dettmers & Zettlemoyer 2019, https://arxiv.org/abs/1907.04840): growth
by the momentum of the dense gradient, with the budget redistributed across layers.

The shared life cycle (random ERK mask, updates every ΔT steps, exact counts, optimizer state
reset, checkpointed state) is :class:`sparsitylab.methods.growth.DynamicSparse`'s; this module adds
what SNFS changes: its prune rate's schedule, its momentum, and per-layer counts from the
redistribution (:func:`sparsitylab.sparsify.growth.apportion`, made exact). Chapter 10.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import nn

from ..sparsify.growth import apportion, cosine_fraction
from . import register
from .growth import DynamicSparse


@register
class SNFS(DynamicSparse):
    """Sparse momentum: prune the smallest-|w| fraction p of each layer (p cosine-decayed from 0.5
    to 0.005 over training, SNFS's ``CosineDecay``); give the pruned total back to the layers in
    proportion to their mean |momentum| over active weights; regrow by |momentum| in each layer.
    Defaults follow their code: p = 0.5, updates until the last step (pass
    ``update_every=len(train_loader)`` for their once-per-epoch schedule)."""

    name = "snfs"
    uses_gradient = True

    defaults = {"drop_fraction": 0.5, "end_fraction": 1.0}

    def __init__(self, sparsity: float, total_steps: int, **options: Any):
        super().__init__(sparsity, total_steps, **options)
        self.momentum: dict[str, torch.Tensor] = {}
        self.mu = 0.9

    def on_fit_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        super().on_fit_start(model, optimizer)
        self.mu = float(optimizer.param_groups[0].get("momentum", 0.9))

    def fraction_at(self, step: int) -> float:
        return cosine_fraction(step, self.drop_fraction, self.total_steps, floor=0.005)

    def observe(self, grads: dict[str, torch.Tensor]) -> None:
        for name, grad in grads.items():
            if name in self.momentum:
                self.momentum[name].mul_(self.mu).add_(grad)
            else:
                self.momentum[name] = grad.clone()

    def counts(self, model: nn.Module, masks: dict[str, torch.Tensor], fraction: float):
        drops = {n: math.floor(fraction * int(m.sum())) for n, m in masks.items()}
        scores = {
            n: float(self._momentum(n, m).abs()[m].mean()) if m.any() else 0.0
            for n, m in masks.items()
        }
        room = {n: m.numel() - int(m.sum()) + drops[n] for n, m in masks.items()}
        grows = apportion(sum(drops.values()), scores, room)
        return {n: (drops[n], grows[n]) for n in masks}

    def grow_scores(self, name: str, weight: torch.Tensor, grads: dict) -> torch.Tensor:
        return self._momentum(name, weight).abs()

    def step_flops(self, sparse_forward: float, dense_forward: float) -> float:
        """The momentum needs the dense gradient at every step until the last update:
        2 f_S + f_D per step then, 3 f_S after (the RigL paper's accounting of SNFS)."""
        if not self.update_steps():
            return 3 * sparse_forward
        dense_part = min(1.0, (self.last_update_step + 1) / self.total_steps)
        dense_step = 2 * sparse_forward + dense_forward
        return dense_part * dense_step + (1 - dense_part) * 3 * sparse_forward

    def _momentum(self, name: str, like: torch.Tensor) -> torch.Tensor:
        if name not in self.momentum:
            raise ValueError(
                f"SNFS needs the momentum of layer {name!r}, but no gradient was ever recorded: "
                "the layer took no part in backward passes (train it, or leave it out with "
                "scope=)"
            )
        return self.momentum[name]

    def state_dict(self) -> dict:
        return {
            **super().state_dict(),
            "momentum": {n: m.clone() for n, m in self.momentum.items()},
        }

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.momentum = {n: m.clone() for n, m in state["momentum"].items()}


__all__ = ["SNFS"]
