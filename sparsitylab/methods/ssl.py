"""SSL: Structured Sparsity Learning by group lasso (Wen et al., NIPS 2016; REFERENCE §1.4).

Life cycle on the shared :class:`~sparsitylab.methods.base.Method` interface::

    ssl = SSL({"filter": 5e-3, "shape": 5e-3})          # λ_g per group kind
    fit(model, loader, epochs, optimizer=opt, callbacks=[ssl])   # E_D + λ·R + Σ λ_g R_g
    ssl.freeze(model)                                    # fix the learned zero structure …
    fit(model, loader, epochs, callbacks=[ssl])          # … and fine-tune without the penalty
    small = ssl.finalize(model)                          # compacted dense model, same outputs

Exact zeros come either from the paper's rule (``exact="zero"``: |w| < 1e-4 → 0 after every update)
or from a proximal block soft-threshold after every update (``exact="prox"``; derived — not from the
paper; it needs the optimizer to read the learning rate η and momentum μ: the threshold is η·λ_g/(1
− μ), as far as the gradient form moves a group per step, so one λ means the same in both).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import torch
from torch import nn

from ..deploy.compaction import compact
from ..reparam.fixed_mask import apply_masks, is_masked, remove_masks
from ..sparsify.penalties import (
    ZEROUT_THRESHOLD,
    StructuredPenalty,
    prox_group_,
    prox_l1_,
)
from .base import Method

EXACT_MODES = ("zero", "prox")


class SSL(Method):
    """Group-lasso training with exact zeros, structure freezing for fine-tuning, and compaction.

    strengths: {group kind: λ_g} (kinds of :mod:`sparsitylab.sparsify.groups`). ``l1``: λ of the ℓ1
    term R. layers: {kind: module names} to restrict a kind. exact: "zero" (paper) or "prox".
    threshold: the ZEROUT threshold of ``exact="zero"`` (None = plain (sub)gradient descent, no
    zeroing).
    """

    def __init__(
        self,
        strengths: Mapping[str, float],
        l1: float = 0.0,
        layers: Mapping[str, list[str]] | None = None,
        exact: str = "zero",
        threshold: float | None = ZEROUT_THRESHOLD,
        optimizer: torch.optim.Optimizer | None = None,
    ):
        if exact not in EXACT_MODES:
            raise ValueError(f"exact={exact!r} must be one of {EXACT_MODES}")
        if exact == "prox" and optimizer is None:
            raise ValueError(
                "exact='prox' needs optimizer=... to read the learning rate of each step"
            )
        self.exact, self.optimizer = exact, optimizer
        self.objective = StructuredPenalty(
            strengths, l1, layers, threshold if exact == "zero" else None
        )
        self.frozen = False

    def penalty(self, model: nn.Module) -> torch.Tensor | float:
        if self.frozen:
            return 0.0
        if self.exact == "zero":
            return self.objective.penalty(model)
        return 0.0  # prox: every penalty term is applied as a proximal step in after_step

    @torch.no_grad()
    def after_step(self, model: nn.Module, step: int) -> None:
        if self.frozen:
            return  # the fixed masks keep the structure exact
        if self.exact == "zero":
            self.objective.after_step(model, step)
        else:
            size = self.prox_step_size()
            for kind, lam in self.objective.strengths.items():
                prox_group_(model, kind, size * lam, self.objective.layers.get(kind))
            if self.objective.l1:
                prox_l1_(model, size * self.objective.l1)
            self._clear_momentum_of_zeros()

    def prox_step_size(self) -> float:
        """η/(1 − μ): under heavy-ball momentum μ a steady gradient moves a weight η/(1 − μ) per
        step, so this step shrinks a group as fast as the penalty's gradient would in
        ``exact="zero"`` (derived)."""
        group = self.optimizer.param_groups[0]
        return group["lr"] / (1.0 - group.get("momentum", 0.0))

    @torch.no_grad()
    def _clear_momentum_of_zeros(self) -> None:
        """Zeroed groups forget their SGD momentum, else the stale velocity revives them next step
        (derived)."""
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                buffer = self.optimizer.state.get(p, {}).get("momentum_buffer")
                if buffer is not None:
                    buffer.mul_(p != 0)

    @torch.no_grad()
    def freeze(self, model: nn.Module) -> None:
        """Fix the learned structure for fine-tuning; the penalty is switched off from now on.

        Every parameter holding zeros — weights, and the biases and BatchNorm γ, β of dead groups —
        gets a fixed mask (:func:`sparsitylab.reparam.fixed_mask.apply_masks`): its zeros are exact
        in every forward pass and receive no gradient.
        """
        apply_masks(
            model,
            {
                name: p != 0
                for name, p in model.named_parameters()
                if ".parametrizations." not in name and not bool(p.all())
            },
        )
        self.frozen = True

    def finalize(self, model: nn.Module) -> nn.Module:
        """The compacted dense model (:func:`sparsitylab.deploy.compaction.compact`).

        Fixed masks are baked into ``model`` first (in place: it becomes an ordinary model with
        exact zeros).
        """
        if is_masked(model):
            remove_masks(model)
        self.frozen = False
        return compact(model)


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, loader: Iterable, max_batches: int | None = None
) -> nn.Module:
    """Recompute every BatchNorm's running mean/variance as plain averages over ``loader``
    (train-mode passes).

    Group lasso shrinks weights quickly, so the running statistics collected during training lag
    behind the weights; re-estimating them is the usual step after pruning (derived — not from the
    paper).
    """
    norms = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    device = next(model.parameters()).device
    for i, (x, *_) in enumerate(loader):
        if max_batches is not None and i >= max_batches:
            break
        model(x.to(device))
    for m, momentum in saved:
        m.momentum = momentum
    return model.train(was_training)


__all__ = ["SSL", "EXACT_MODES", "recalibrate_batchnorm"]
