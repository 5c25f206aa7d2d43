"""STR-BN: BatchNorm with a soft-thresholded scale, so a pruned channel outputs exactly 0.

From Kusupati, "Adapting Unstructured Sparsity Techniques for Structured Sparsity" (2020): write
BatchNorm as Y = γ̂ ⊙ (X̂ + β̂), with the stored bias β̂ trained independently of γ, and apply STR to
γ: γ̂ = sign(γ) · ReLU(|γ| − sigmoid(s)), one scalar s per layer. The layer therefore runs BatchNorm
with weight γ̂ and bias γ̂ ⊙ β̂; when γ̂_c = 0, channel c outputs exactly 0 (not β_c), so the
channel, the filter feeding it and the next layer's matching inputs can be removed
(:func:`sparsitylab.deploy.compaction.compact`).

This is a module, not a parametrisation, because the bias depends on the thresholded weight.
:func:`to_batchnorm` turns it back into an ordinary ``nn.BatchNorm2d`` with weight γ̂ and bias
γ̂ ⊙ β̂ (exact zeros); :func:`from_batchnorm` converts a BatchNorm (β̂ = β/γ where γ ≠ 0, as the
rewriting implies).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class STRBatchNorm2d(nn.BatchNorm2d):
    """``nn.BatchNorm2d`` computing with γ̂ = sign(γ)·ReLU(|γ| − sigmoid(s)) and bias γ̂ ⊙ β̂."""

    def __init__(self, num_features: int, s_init: float = -100.0, **kwargs):
        super().__init__(num_features, **kwargs)
        if not self.affine:
            raise ValueError("STR-BN needs an affine BatchNorm (it thresholds γ)")
        self.s = nn.Parameter(torch.full((1,), float(s_init)))

    def effective_weight(self) -> torch.Tensor:
        """γ̂ = sign(γ) · ReLU(|γ| − sigmoid(s))."""
        return torch.sign(self.weight) * F.relu(self.weight.abs() - torch.sigmoid(self.s))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        self._check_input_dim(x)
        factor = 0.0 if self.momentum is None else self.momentum
        if self.training and self.track_running_stats:
            self.num_batches_tracked.add_(1)
            if self.momentum is None:
                factor = 1.0 / float(self.num_batches_tracked)
        batch_stats = self.training or (self.running_mean is None and self.running_var is None)
        track = not self.training or self.track_running_stats
        gamma = self.effective_weight()
        return F.batch_norm(
            x,
            self.running_mean if track else None,
            self.running_var if track else None,
            gamma,
            gamma * self.bias,
            batch_stats,
            factor,
            self.eps,
        )


@torch.no_grad()
def from_batchnorm(bn: nn.BatchNorm2d, s_init: float = -100.0) -> STRBatchNorm2d:
    """An STR-BN computing what ``bn`` computes while sigmoid(s_init) ≈ 0: same statistics, γ kept,
    β̂ = β/γ (0 where γ = 0)."""
    new = STRBatchNorm2d(
        bn.num_features,
        s_init,
        eps=bn.eps,
        momentum=bn.momentum,
        track_running_stats=bn.track_running_stats,
    ).to(bn.weight.device)
    new.load_state_dict({**bn.state_dict(), "s": new.s.detach()}, strict=True)
    safe = torch.where(bn.weight != 0, bn.weight, torch.ones((), device=bn.weight.device))
    new.bias.copy_(torch.where(bn.weight != 0, bn.bias / safe, torch.zeros((), device=safe.device)))
    new.train(bn.training)
    return new


@torch.no_grad()
def to_batchnorm(bn: STRBatchNorm2d) -> nn.BatchNorm2d:
    """The ordinary BatchNorm computing what ``bn`` computes: weight γ̂, bias γ̂ ⊙ β̂ (exact zeros)."""
    plain = nn.BatchNorm2d(
        bn.num_features,
        eps=bn.eps,
        momentum=bn.momentum,
        track_running_stats=bn.track_running_stats,
    ).to(bn.weight.device)
    state = {k: v for k, v in bn.state_dict().items() if k != "s"}
    gamma = bn.effective_weight()
    state["weight"], state["bias"] = gamma, gamma * bn.bias
    plain.load_state_dict(state)
    plain.train(bn.training)
    return plain


def replace_batchnorms(model: nn.Module, names: list[str], convert) -> nn.Module:
    """Replace the named BatchNorms of ``model`` in place by ``convert(bn)``; returns ``model``."""
    for name in names:
        parent_name, _, child = name.rpartition(".")
        parent = model.get_submodule(parent_name) if parent_name else model
        setattr(parent, child, convert(getattr(parent, child)))
    return model


__all__ = ["STRBatchNorm2d", "from_batchnorm", "replace_batchnorms", "to_batchnorm"]
