"""STR and STR-BN as methods: learned per-layer thresholds on weights (unstructured) or on
BatchNorm scales (channels).

Recipe (Kusupati et al., ICML 2020, https://arxiv.org/abs/2002.03231)::

    method = STR(s_init=-100)
    run = runner.run(method, model, loaders, epochs=E, optimizer=SGD(weight_decay=5e-4))

``prepare`` puts a :class:`~sparsitylab.reparam.soft_threshold.SoftThreshold` on every weight
matrix (:mod:`sparsitylab.coverage`; ``scope=`` narrows it); ``finalize`` bakes the **shrunk and
masked** weights sign(W)·ReLU(|W| − g(s)) into an ordinary model with exact zeros.

Optimizer parameter groups are built **by module and parameter type, never by name substring** (the
public code matches names, so a ResNet threshold named ``…bn1.sparseThreshold`` falls into two
groups and PyTorch refuses the optimizer): the thresholds ``s`` get their own group with
``threshold_decay`` (default: the optimizer's weight decay), BatchNorm parameters optionally no
decay, everything else the optimizer's settings. Weight decay on ``s`` is what makes STR sparsify;
a threshold group with decay 0 draws a loud warning.

STR-BN (Kusupati 2020, "Adapting Unstructured Sparsity Techniques for Structured Sparsity") puts the
same threshold on the γ of every BatchNorm2d of an in-block channel group
(:func:`~sparsitylab.methods.channels.removable_batchnorms`: a group with one producer, so not a
residual stage, whose channels every block's shortcut sum shares) via
:class:`~sparsitylab.reparam.str_batchnorm.STRBatchNorm2d`; ``finalize`` turns them back into plain
BatchNorms with exact zeros and ``compact`` removes the pruned channels, their filters and the next
layer's inputs.
"""

from __future__ import annotations

import warnings
from typing import Any

import torch
from torch import nn

from .. import reparam
from .._checks import check_choice, check_real, check_sparsity
from ..coverage import Scope, check_scope, structured_coverage, weight_matrices
from ..deploy.compaction import compact
from ..metrics import BATCHNORMS
from ..reparam.soft_threshold import GRANULARITIES, SoftThreshold, threshold_parameters
from ..reparam.str_batchnorm import (
    STRBatchNorm2d,
    from_batchnorm,
    replace_batchnorms,
    to_batchnorm,
)
from ..train import trainable
from . import register
from .base import Method
from .channels import batchnorms, channel_groups
from .target_sparsity import DecayController, threshold_group


class NoThresholdDecayWarning(UserWarning):
    """STR's thresholds get no weight decay: s cannot grow, so the model will not sparsify."""


def threshold_groups(
    model: nn.Module,
    thresholds: list[nn.Parameter],
    threshold_decay: float | None,
    bn_decay: bool,
) -> list[dict]:
    """Optimizer groups by type — thresholds, BatchNorm parameters, the rest — every trainable
    parameter exactly once (no name matching anywhere)."""
    taken = {id(p) for p in thresholds}
    batchnorm = [
        p
        for m in model.modules()
        if isinstance(m, BATCHNORMS)
        for p in m.parameters(recurse=False)
        if p.requires_grad and id(p) not in taken
    ]
    taken |= {id(p) for p in batchnorm}
    rest = [p for p in trainable(model) if id(p) not in taken]
    groups = [{"params": rest, "group": "weights"}]
    if batchnorm:
        no_decay = {} if bn_decay else {"weight_decay": 0.0}
        groups.append({"params": batchnorm, "group": "batchnorm"} | no_decay)
    if thresholds:
        decay = {} if threshold_decay is None else {"weight_decay": threshold_decay}
        groups.append({"params": thresholds, "group": "thresholds"} | decay)
    return groups


def warn_without_decay(optimizer: torch.optim.Optimizer, thresholds: list[nn.Parameter]) -> None:
    """Warn loudly when a threshold sits in a group with weight decay 0 (it then cannot grow)."""
    ids = {id(p) for p in thresholds}
    for group in optimizer.param_groups:
        if any(id(p) in ids for p in group["params"]) and group.get("weight_decay", 0) == 0:
            warnings.warn(
                "the STR thresholds s have weight decay 0: only weight decay pulls s up, so the "
                "model will stay dense (set threshold_decay > 0 or the optimizer's weight_decay)",
                NoThresholdDecayWarning,
                stacklevel=3,
            )


class ThresholdMethod(Method):
    """What STR and STR-BN share: threshold parameter groups, the zero-decay warning and the
    target-sparsity mode (:mod:`sparsitylab.methods.target_sparsity`).

    target_sparsity: the overall sparsity to reach (of the thresholded values: STR's weights,
    STR-BN's channels), or None for plain STR (sparsity set by λ and s_init); total_steps: the
    optimizer steps of training, which the controller's ramp needs. In target mode
    ``controller.trace`` holds the sparsity after every step and ``corrections`` (step, factor c)
    every rescale of the thresholds; the last, at ``total_steps``, is the final exact one.
    Both, the controller's reference decay and its held thresholds are in :meth:`state_dict`
    (resuming is exact).
    """

    def __init__(
        self,
        s_init: float,
        threshold_decay: float | None,
        bn_decay: bool,
        target_sparsity: float | None,
        total_steps: int | None,
    ):
        self.s_init = check_real(s_init, "s_init")
        self.bn_decay = bn_decay
        self.threshold_decay = (
            None if threshold_decay is None else check_real(threshold_decay, "threshold_decay", 0.0)
        )
        self.controller: DecayController | None = None
        if target_sparsity is not None:
            if total_steps is None:
                raise ValueError(
                    "target_sparsity needs total_steps (the optimizer steps of training)"
                )
            self.controller = DecayController(check_sparsity(target_sparsity), total_steps)
        self.corrections: list[tuple[int, float]] = []  # (step, factor c) of each rescale
        self._optimizer: torch.optim.Optimizer | None = None

    def thresholds(self, model: nn.Module) -> list[nn.Parameter]:
        """The threshold parameters ``s`` of ``model`` (weights' and STR-BN's), found by type."""
        return threshold_parameters(model) + [
            m.s for m in model.modules() if isinstance(m, STRBatchNorm2d)
        ]

    def param_groups(self, model: nn.Module) -> list[dict]:
        """Three groups, by type: the thresholds, BatchNorm parameters, the rest — each parameter
        exactly once."""
        return threshold_groups(model, self.thresholds(model), self.threshold_decay, self.bn_decay)

    def on_fit_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if self.controller is None:
            warn_without_decay(optimizer, self.thresholds(model))
        else:
            threshold_group(optimizer, self.thresholds(model))  # fail early on a wrong optimizer
            self._optimizer = optimizer

    def after_step(self, model: nn.Module, step: int) -> None:
        if self.controller is None or self._optimizer is None:
            return
        factor = self.controller.update(model, self._optimizer, step)
        if factor is not None:
            self.corrections.append((step, factor))

    def state_dict(self) -> dict:
        control = {} if self.controller is None else self.controller.state_dict()
        return {"corrections": [list(c) for c in self.corrections], **control}

    def load_state_dict(self, state: dict) -> None:
        self.corrections = [(int(t), float(c)) for t, c in state.get("corrections", [])]
        if self.controller is not None:
            self.controller.load_state_dict(state)


@register
class STR(ThresholdMethod):
    """Soft Threshold Reparameterization on every Linear/Conv2d weight.

    s_init: initial s (threshold sigmoid(s_init)); granularity: "layer" or "channel";
    threshold_decay: weight decay of the s group (None: the optimizer's); bn_decay: False puts
    BatchNorm γ, β in a group without weight decay (STR's ``--no-bn-decay``); target_sparsity,
    total_steps: the target-sparsity mode (:class:`ThresholdMethod`); scope: which weight
    matrices (:mod:`sparsitylab.coverage`; a "channel" threshold is one per row of the stored
    tensor).
    """

    name = "str"

    def __init__(
        self,
        s_init: float = -100.0,
        granularity: str = "layer",
        threshold_decay: float | None = None,
        bn_decay: bool = True,
        target_sparsity: float | None = None,
        total_steps: int | None = None,
        scope: Scope = None,
    ):
        super().__init__(s_init, threshold_decay, bn_decay, target_sparsity, total_steps)
        self.granularity = check_choice(granularity, "granularity", GRANULARITIES)
        self.scope = check_scope(scope)

    def prepare(self, model: nn.Module, example_input: Any = None) -> nn.Module:
        for w in weight_matrices(model, self.scope).values():
            rows = w.tensor.shape[0]
            reparam.attach(w.module, w.attr, SoftThreshold(self.s_init, self.granularity, rows))
        return model

    def freeze(self, model: nn.Module) -> None:
        """Bake the soft thresholds and fix the zeros for fine-tuning (plain fixed masks)."""
        reparam.remove(model, SoftThreshold)
        super().freeze(model)


@register
class STRBN(ThresholdMethod):
    """STR on the γ of every channel-removable BatchNorm2d (one threshold per layer); the weights
    stay dense. ``compact`` gives the smaller dense model.

    s_init, threshold_decay, bn_decay, target_sparsity (of the channels), total_steps: as for
    :class:`STR` (STR-BN's configs: s_init −100, weight decay 3.05e-5). In target-sparsity mode
    the last step rescales every threshold, which changes the scale of whole channels: run with
    ``recalibrate_bn=True`` (the runner) so the BatchNorm statistics that follow match, or
    fine-tune after ``freeze``.
    """

    name = "str-bn"
    structured = True

    def __init__(
        self,
        s_init: float = -100.0,
        threshold_decay: float | None = None,
        bn_decay: bool = True,
        target_sparsity: float | None = None,
        total_steps: int | None = None,
    ):
        super().__init__(s_init, threshold_decay, bn_decay, target_sparsity, total_steps)
        self.names: list[str] = []
        self.members: list[str] = []

    def prepare(self, model: nn.Module, example_input: Any = None) -> nn.Module:
        groups = channel_groups(model, example_input, "block").groups.values()
        names = dict.fromkeys(bn for g in groups for bn in batchnorms(model, g))
        self.names = [
            n for n in names if type(bn := model.get_submodule(n)) is nn.BatchNorm2d and bn.affine
        ]
        self.members = sorted({m.tensor for g in groups for m in g.members})
        if not self.names:
            kinds = sorted({type(model.get_submodule(n)).__name__ for n in names} - {"BatchNorm2d"})
            why = (
                f" (its in-block BatchNorms are {', '.join(kinds)}: a subclass with its own "
                "forward, which replacing it by STR's BatchNorm would drop)"
                if kinds
                else ""
            )
            raise ValueError(
                f"{type(model).__name__} has no affine nn.BatchNorm2d in a removable channel group"
                f"{why}; STR-BN thresholds their γ (see sparsitylab.graph.explain(model, example))"
            )
        return replace_batchnorms(model, self.names, lambda bn: from_batchnorm(bn, self.s_init))

    def coverage(self, model: nn.Module) -> dict[str, str]:
        """The thresholded γ are covered; every other parameter is left to the channels' fate."""
        return structured_coverage(model, self.members)

    def freeze(self, model: nn.Module) -> None:
        """Turn the STR BatchNorms into plain ones (γ̂, γ̂ ⊙ β̂) in place and fix their zeros, so
        fine-tuning keeps the pruned channels exactly 0 and no threshold moves any more."""
        names = [n for n, m in model.named_modules() if isinstance(m, STRBatchNorm2d)]
        replace_batchnorms(model, names, to_batchnorm)
        super().freeze(model)

    def finalize(self, model: nn.Module) -> nn.Module:
        """A copy with plain BatchNorms of weight γ̂ and bias γ̂ ⊙ β̂ (pruned channels exactly 0)."""
        final = reparam.clone(model)
        names = [n for n, m in final.named_modules() if isinstance(m, STRBatchNorm2d)]
        return reparam.remove(replace_batchnorms(final, names, to_batchnorm))

    def compact(
        self, model: nn.Module, example_input: torch.Tensor | None = None
    ) -> nn.Module | None:
        return compact(model, example_input=example_input)

    def state_dict(self) -> dict:
        return {**super().state_dict(), "names": list(self.names)}

    def load_state_dict(self, state: dict) -> None:
        super().load_state_dict(state)
        self.names = list(state["names"])


__all__ = [
    "STR",
    "STRBN",
    "NoThresholdDecayWarning",
    "ThresholdMethod",
    "threshold_groups",
    "warn_without_decay",
]
