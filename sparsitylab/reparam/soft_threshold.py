"""STR's soft-threshold reparametrisation: W_eff = sign(W) · ReLU(|W| − sigmoid(s)).

From Kusupati et al., "Soft Threshold Weight Reparameterization for Learnable Sparsity" (ICML
2020, https://arxiv.org/abs/2002.03231). Each layer holds a learnable threshold parameter ``s``
(one scalar per layer, as in the paper's code, or one per output channel as an option) and computes
with S_g(W, s) = sign(W) · ReLU(|W| − g(s)), g = sigmoid. Weights with |W| ≤ g(s) are exactly 0;
the survivors are **shrunk** by g(s), not just masked.

Gradients (autograd gives them; the tests check the closed forms):

- ∂S/∂W = 1{|W| > g(s)} — pruned weights get no loss gradient, only weight decay;
- ∂L/∂s = −g′(s) · Σ_i (∂L/∂S_i) · sign(W_i) · 1{|W_i| > g(s)} (derived, not stated in the paper).

Sparsity is never set: it emerges because weight decay on ``s`` pulls it toward 0, which raises the
threshold g(s) toward 0.5 until the loss gradient balances it. A very negative ``s_init`` makes
sigmoid(s) and its derivative 0 in fp32, so training starts dense and only weight decay moves s at
first. :func:`sparsitylab.reparam.remove` bakes S_g(W, s) into an ordinary weight.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from .._checks import check_choice, check_real
from .base import Reparametrization, find

GRANULARITIES = ("layer", "channel")


class SoftThreshold(Reparametrization):
    """W ↦ sign(W) · ReLU(|W| − sigmoid(s)), with a learnable ``s`` per layer or per output channel.

    ``s_init``: initial value of s (STR's configs use −3200 on ImageNet, −100 on small data sets);
    ``granularity``: "layer" (one scalar) or "channel" (one per output row of the weight).
    """

    def __init__(
        self, s_init: float = -100.0, granularity: str = "layer", out_channels: int | None = None
    ):
        super().__init__()
        self.granularity = check_choice(granularity, "granularity", GRANULARITIES)
        self.s_init = check_real(s_init, "s_init")
        if granularity == "channel" and out_channels is None:
            raise ValueError("granularity='channel' needs out_channels (the weight's first size)")
        size = 1 if granularity == "layer" else int(out_channels)
        self.s = nn.Parameter(torch.full((size,), float(s_init)))

    def threshold(self) -> torch.Tensor:
        """g(s) = sigmoid(s), one value (or one per output channel)."""
        return torch.sigmoid(self.s)

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        g = self.threshold().reshape(-1, *([1] * (w.dim() - 1)))
        return torch.sign(w) * F.relu(w.abs() - g)

    def settings(self) -> dict[str, Any]:
        return {"s_init": self.s_init, "granularity": self.granularity, "size": self.s.numel()}

    @classmethod
    def from_state(
        cls, tensors: Mapping[str, torch.Tensor], settings: Mapping[str, Any]
    ) -> SoftThreshold:
        rebuilt = cls(settings["s_init"], settings["granularity"], settings["size"])
        with torch.no_grad():
            rebuilt.s.copy_(tensors["s"])
        return rebuilt

    def extra_repr(self) -> str:
        return f"granularity={self.granularity!r}, s_init={self.s_init:g}"


def thresholds(model: nn.Module) -> dict[str, torch.Tensor]:
    """Layer name → its current threshold g(s) (detached)."""
    return {f.name: f.module.threshold().detach() for f in find(model, SoftThreshold)}


def threshold_parameters(model: nn.Module) -> list[nn.Parameter]:
    """Every ``s`` of every :class:`SoftThreshold` in ``model``, found by class (never by name)."""
    return [f.module.s for f in find(model, SoftThreshold)]


__all__ = ["GRANULARITIES", "SoftThreshold", "threshold_parameters", "thresholds"]
