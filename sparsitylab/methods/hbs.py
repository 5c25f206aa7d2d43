"""Hierarchical block sparsity as a method: prune a trained model into HBS levels, retrain with
fixed masks.

Recipe (Vooturi et al., "Hierarchical Block Sparse Neural Networks",
https://arxiv.org/abs/1808.03420, §3): start from a trained dense model, prune every layer but the
first with the same levels, retrain with a learning rate 1/100 of the base rate divided by 10 at
1/2 and 3/4 of the retraining (their ResNet-v2-50 runs: 18 epochs, steps at 9 and 14)::

    method = HierarchicalBlockPruning("4x1/63+1x1/97")
    run = runner.run(method, trained, loaders, epochs=E, optimizer=SGD(lr=base / 100),
                     scheduler=step_decay)

``prepare`` computes each layer's level masks (:func:`~sparsitylab.sparsify.hierarchical.
hierarchical_masks`) from the weights it is given and fixes their union
(:class:`~sparsitylab.reparam.FixedMask`), so retraining never changes the structure;
:meth:`export` packs a finalized layer as :class:`~sparsitylab.deploy.formats.HBS`. A layer the
first block shape does not tile (e.g. a 10-way classifier with 4×1 blocks) stays dense, and
:attr:`skipped` says why.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import torch
from torch import nn

from .. import reparam
from ..coverage import Scope, WeightMatrix, check_scope, weight_matrices
from ..deploy.formats import HBS
from ..gemm import gemm_view
from ..sparsify.hierarchical import Level, check_levels, fits, hierarchical_masks, parse_config
from ..sparsify.hierarchical import union as union_of
from . import register
from .base import Method


def step_decay(optimizer: torch.optim.Optimizer, total_steps: int):
    """The paper's retraining schedule shape: the LR divided by 10 at 1/2 and 3/4 of the steps."""
    milestones = sorted({max(1, total_steps // 2), max(1, (3 * total_steps) // 4)})
    return torch.optim.lr_scheduler.MultiStepLR(optimizer, milestones=milestones, gamma=0.1)


@register
class HierarchicalBlockPruning(Method):
    """One-shot HBS pruning of every weight matrix but the first, then fixed-mask retraining.

    levels: the paper's notation ("4x1/63+1x1/97") or [((bh, bw), sparsity), …]; skip_first: keep
    the first covered matrix dense, as the paper does; scope: which weight matrices
    (:mod:`sparsitylab.coverage`; blocks tile each one's GEMM view, outputs first).
    """

    name = "hbs"

    def __init__(self, levels: str | Sequence[Level], skip_first: bool = True, scope: Scope = None):
        self.levels = parse_config(levels) if isinstance(levels, str) else check_levels(levels)
        self.skip_first = skip_first
        self.scope = check_scope(scope)
        self.level_masks: dict[str, list[torch.Tensor]] = {}
        self.skipped: dict[str, str] = {}

    @classmethod
    def from_options(
        cls, levels: str, skip_first: bool = True, scope: Scope = None
    ) -> HierarchicalBlockPruning:
        return cls(levels, skip_first, scope)

    @property
    def config(self) -> str:
        """The levels in the paper's notation."""
        return "+".join(f"{bh}x{bw}/{100 * s:g}" for (bh, bw), s in self.levels)

    def layers(self, model: nn.Module) -> dict[str, WeightMatrix]:
        """The weight matrices this method prunes; the others are recorded in :attr:`skipped`."""
        chosen, self.skipped = {}, {}
        for i, (name, w) in enumerate(weight_matrices(model, self.scope).items()):
            shape = w.oriented().shape
            if i == 0 and self.skip_first:
                self.skipped[name] = "first layer (kept dense, as in the paper)"
            elif not fits(shape, self.levels):
                rows, cols = gemm_view(w.oriented()).shape
                self.skipped[name] = f"{rows}×{cols} is not tiled by {self.levels[0][0]} blocks"
            else:
                chosen[name] = w
        return chosen

    @torch.no_grad()
    def prepare(self, model: nn.Module, example_input: Any = None) -> nn.Module:
        chosen = self.layers(model)
        self.level_masks = {
            name: hierarchical_masks(w.oriented().detach(), self.levels)
            for name, w in chosen.items()
        }
        reparam.apply_masks(
            model,
            {name: chosen[name].restore(union_of(m)) for name, m in self.level_masks.items()},
        )
        return model

    def coverage(self, model: nn.Module) -> dict[str, str]:
        report = super().coverage(model)
        matrices = weight_matrices(model, self.scope)
        for name, why in (self.skipped if self.level_masks else {}).items():
            report[matrices[name].parameter] = why
        return report

    def freeze(self, model: nn.Module) -> None:
        """Nothing to do: the masks are fixed from ``prepare`` on."""

    def export(self, model: nn.Module) -> dict[str, HBS]:
        """Each pruned matrix of a finalized ``model`` as an HBS matrix (its GEMM view, one BSR
        per level)."""
        blocks = [shape for shape, _ in self.levels]
        matrices = weight_matrices(model)
        return {
            name: HBS.from_masks(
                gemm_view(matrices[name].oriented().detach()),
                [gemm_view(m) for m in masks],
                blocks,
            )
            for name, masks in self.level_masks.items()
        }


__all__ = ["HierarchicalBlockPruning", "step_decay"]
