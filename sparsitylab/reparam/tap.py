"""The dense gradient of masked weights: ∂L/∂W_eff, read during the ordinary backward pass.

A layer whose weight carries a :class:`~sparsitylab.reparam.fixed_mask.FixedMask` multiplies its
input by W_eff = W ⊙ M. Autograd computes ∂L/∂W_eff in full (dense) and only then zeroes the pruned
entries on the way back to the stored W, whose ``.grad`` is therefore masked. Growth methods (RigL,
SNFS; :mod:`sparsitylab.methods.growth`) need the dense one: :class:`GradientTap` hooks the masks'
outputs and keeps it, at no extra arithmetic.
"""

from __future__ import annotations

from functools import partial
from typing import Any

import torch
from torch import nn

from .base import find
from .fixed_mask import FixedMask


class GradientTap:
    """Reads ∂L/∂W_eff — the dense gradient of every masked weight — during backward.

    A forward hook on each :class:`~sparsitylab.reparam.fixed_mask.FixedMask` registers a tensor
    hook on the masked weight it returns; the hooks sum per tensor (a weight used twice in one
    forward) until :meth:`take`.
    """

    def __init__(self, model: nn.Module, names: list[str]):
        self.grads: dict[str, torch.Tensor] = {}
        self.handles = [
            f.module.register_forward_hook(partial(_on_masked_weight, self.grads, f.name))
            for f in find(model, FixedMask)
            if f.name in names
        ]

    def take(self) -> dict[str, torch.Tensor]:
        """The gradients summed since the last call (and forget them)."""
        grads = dict(self.grads)
        self.grads.clear()
        return grads

    def close(self) -> None:
        for handle in self.handles:
            handle.remove()
        self.handles, self.grads = [], {}


def _on_masked_weight(store: dict, name: str, module: nn.Module, inputs: Any, out: Any) -> None:
    if isinstance(out, torch.Tensor) and out.requires_grad:
        out.register_hook(partial(_add_gradient, store, name))


def _add_gradient(store: dict, name: str, grad: torch.Tensor) -> None:
    store[name] = grad.detach() if name not in store else store[name] + grad.detach()


__all__ = ["GradientTap"]
