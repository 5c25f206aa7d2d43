"""N:M sparsity as methods: trained from scratch (STE / SR-STE), or NVIDIA's ASP recipe.

From scratch (Zhou et al., ICLR 2021, https://arxiv.org/abs/2102.04010)::

    method = NMSparsity(n=2, m=4, decay=2e-4)     # SR-STE; decay=0 is plain STE
    run = runner.run(method, model, loaders, epochs=E)

``prepare`` puts an :class:`~sparsitylab.reparam.nm.NMMask` on every layer the plan
(:mod:`sparsitylab.sparsify.nm`) makes sparse; the mask follows the dense weight on every forward
during the whole of training, and ``finalize`` bakes the last one in (exact zeros).

ASP, NVIDIA's Automatic SParsity (apex ``contrib/sparsity``) — dense training, then one-shot 2:4
magnitude masks, then re-training with fixed masks and the same optimizer, schedule and epochs::

    run = runner.run(ASP(), model, loaders, epochs=E, finetune_epochs=E)

``prepare`` leaves the model dense; ``freeze`` (the runner calls it before fine-tuning) prunes
once: ASP's best-of-all-patterns rule keeps, per group, the pattern with the largest kept Σ|w|,
which is the top N by magnitude, i.e. :func:`~sparsitylab.sparsify.masks.nm_mask`. ASP itself skips
every weight with out % 8 ≠ 0 or in % 16 ≠ 0 (``asp_rule=True`` reproduces that); by default the
layer plan decides, as for the from-scratch method.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .. import reparam
from .._checks import check_choice, check_nm, check_real
from ..coverage import Scope, check_scope, weight_matrices
from ..gemm import ORDERS
from ..reparam.nm import SR_STE_DECAY, NMMask
from ..sparsify.nm import POLICIES, LayerPlan, asp_eligible, model_masks, plan
from . import register
from .base import Method


class _Planned(Method):
    """Shared options: the N:M pattern and which layers take it."""

    def __init__(
        self,
        n: int = 2,
        m: int = 4,
        policy: str = "dense",
        order: str = "hwc",
        first_dense: bool = False,
        last_dense: bool = False,
        scope: Scope = None,
    ):
        self.n, self.m = check_nm(n, m)
        self.policy = check_choice(policy, "policy", POLICIES)
        self.order = check_choice(order, "order", ORDERS)
        self.first_dense, self.last_dense = first_dense, last_dense
        self.scope = check_scope(scope)
        self.plans: dict[str, LayerPlan] = {}

    def plan(self, model: nn.Module) -> dict[str, LayerPlan]:
        """The layer plan (:func:`sparsitylab.sparsify.nm.plan`) for ``model``."""
        return plan(
            model, self.m, self.policy, self.order, self.first_dense, self.last_dense, self.scope
        )

    def coverage(self, model: nn.Module) -> dict[str, str]:
        """Covered matrices the plan keeps dense say why (an indivisible width, a choice)."""
        report = super().coverage(model)
        matrices = weight_matrices(model, self.scope)
        for name, p in (self.plans or self.plan(model)).items():
            if not p.sparse:
                report[matrices[name].parameter] = p.reason
        return report

    def sparse_layers(self) -> list[str]:
        """The layers the method sparsifies (after ``prepare``)."""
        return [name for name, p in self.plans.items() if p.sparse]


@register
class NMSparsity(_Planned):
    """N:M from scratch: masks recomputed from the dense weights on every forward (STE / SR-STE).

    decay: SR-STE's λ_W (default 2e-4; 0 gives plain STE). policy, order, first_dense, last_dense:
    which layers are N:M and along which axis (:func:`sparsitylab.sparsify.nm.plan`).
    """

    name = "nm"

    def __init__(
        self,
        n: int = 2,
        m: int = 4,
        decay: float = SR_STE_DECAY,
        policy: str = "dense",
        order: str = "hwc",
        first_dense: bool = False,
        last_dense: bool = False,
        scope: Scope = None,
    ):
        super().__init__(n, m, policy, order, first_dense, last_dense, scope)
        self.decay = check_real(decay, "decay", minimum=0.0)

    def prepare(self, model: nn.Module, example_input: Any = None) -> nn.Module:
        self.plans = self.plan(model)
        matrices = weight_matrices(model, self.scope)
        for name, p in self.plans.items():
            if p.sparse:
                w = matrices[name]
                mask = NMMask(self.n, self.m, p.order, self.decay, w.transposed)
                reparam.attach(w.module, w.attr, mask)
        return model

    def freeze(self, model: nn.Module) -> None:
        """Fix the current N:M masks (STE no longer moves them): each dynamic mask becomes a
        :class:`~sparsitylab.reparam.FixedMask`."""
        masks = reparam.nm.current_masks(model)
        reparam.remove(model, NMMask)
        reparam.apply_masks(model, masks)


@register
class ASP(_Planned):
    """NVIDIA's ASP recipe: dense training, one-shot N:M magnitude masks, fixed-mask re-training.

    asp_rule: also skip every layer ASP would skip (out % 8 ≠ 0 or in % 16 ≠ 0).
    """

    name = "asp"

    def __init__(
        self,
        n: int = 2,
        m: int = 4,
        policy: str = "dense",
        order: str = "hwc",
        first_dense: bool = False,
        last_dense: bool = False,
        asp_rule: bool = False,
        scope: Scope = None,
    ):
        super().__init__(n, m, policy, order, first_dense, last_dense, scope)
        self.asp_rule = asp_rule
        self.pruned = False

    def plan(self, model: nn.Module) -> dict[str, LayerPlan]:
        plans = super().plan(model)
        if not self.asp_rule:
            return plans
        matrices = weight_matrices(model, self.scope)
        return {
            name: p
            if not p.sparse or asp_eligible(matrices[name].oriented())
            else LayerPlan(name, p.shape, None, "dense: ASP skips it (needs out % 8, in % 16 = 0)")
            for name, p in plans.items()
        }

    def prepare(self, model: nn.Module, example_input: Any = None) -> nn.Module:
        self.plans, self.pruned = self.plan(model), False
        return model

    def freeze(self, model: nn.Module) -> None:
        """Prune once: the N:M magnitude masks of the trained weights, fixed from now on."""
        reparam.apply_masks(model, model_masks(model, self.n, self.m, self.plans))
        self.pruned = True

    def finalize(self, model: nn.Module) -> nn.Module:
        """Bake the masks in; a model that was never fine-tuned is pruned here (no re-training)."""
        model = reparam.clone(model)
        if not self.pruned:
            reparam.apply_masks(model, model_masks(model, self.n, self.m, self.plans))
        return reparam.remove(model)

    def state_dict(self) -> dict:
        return {"pruned": self.pruned}

    def load_state_dict(self, state: dict) -> None:
        self.pruned = bool(state["pruned"])


__all__ = ["ASP", "NMSparsity"]
