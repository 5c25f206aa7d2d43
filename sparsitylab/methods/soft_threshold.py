"""STR as a method: learned per-layer thresholds, hence learned layer budgets.

Recipe (Kusupati et al., ICML 2020, https://arxiv.org/abs/2002.03231)::

    method = STR(s_init=-100)
    run = runner.run(method, model, loaders, epochs=E, optimizer=SGD(weight_decay=5e-4))

``prepare`` puts a :class:`~sparsitylab.reparam.soft_threshold.SoftThreshold` on the weight of
every Linear and Conv2d; ``finalize`` bakes the **shrunk and masked** weights sign(W)·ReLU(|W| −
g(s)) into an ordinary model with exact zeros.

Optimizer parameter groups are built **by module and parameter type, never by name substring** (the
public code matches names, so a ResNet threshold named ``…bn1.sparseThreshold`` falls into two
groups and PyTorch refuses the optimizer): the thresholds ``s`` get their own group with
``threshold_decay`` (default: the optimizer's weight decay), BatchNorm parameters optionally no
decay, everything else the optimizer's settings. Weight decay on ``s`` is what makes STR sparsify;
a threshold group with decay 0 draws a loud warning.
"""

from __future__ import annotations

import warnings

import torch
from torch import nn

from .. import reparam
from .._checks import check_real
from ..metrics import BATCHNORMS, prunable_layers
from ..reparam.soft_threshold import SoftThreshold, threshold_parameters
from ..train import trainable
from . import register
from .base import Method


class NoThresholdDecayWarning(UserWarning):
    """STR's thresholds get no weight decay: s cannot grow, so the model will not sparsify."""


@register
class STR(Method):
    """Soft Threshold Reparameterization on every Linear/Conv2d weight.

    s_init: initial s (threshold sigmoid(s_init)); granularity: "layer" or "channel";
    threshold_decay: weight decay of the s group (None: the optimizer's); bn_decay: False puts
    BatchNorm γ, β in a group without weight decay (STR's ``--no-bn-decay``).
    """

    name = "str"

    def __init__(
        self,
        s_init: float = -100.0,
        granularity: str = "layer",
        threshold_decay: float | None = None,
        bn_decay: bool = True,
    ):
        SoftThreshold(s_init, granularity, out_channels=1)  # check the options now
        self.s_init, self.granularity, self.bn_decay = s_init, granularity, bn_decay
        self.threshold_decay = (
            None if threshold_decay is None else check_real(threshold_decay, "threshold_decay", 0.0)
        )

    def prepare(self, model: nn.Module) -> nn.Module:
        for layer in prunable_layers(model).values():
            out = layer.weight.shape[0]
            reparam.attach(layer, "weight", SoftThreshold(self.s_init, self.granularity, out))
        return model

    def param_groups(self, model: nn.Module) -> list[dict]:
        """Three groups, by type: the thresholds, BatchNorm parameters, the rest — each parameter
        exactly once."""
        thresholds = threshold_parameters(model)
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
            groups.append(
                {"params": batchnorm, "group": "batchnorm"}
                | ({} if self.bn_decay else {"weight_decay": 0.0})
            )
        if thresholds:
            decay = {} if self.threshold_decay is None else {"weight_decay": self.threshold_decay}
            groups.append({"params": thresholds, "group": "thresholds"} | decay)
        return groups

    def on_fit_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        ids = {id(p) for p in threshold_parameters(model)}
        for group in optimizer.param_groups:
            if any(id(p) in ids for p in group["params"]) and group.get("weight_decay", 0) == 0:
                warnings.warn(
                    "STR's thresholds s have weight decay 0: only weight decay pulls s up, so the "
                    "model will stay dense (set threshold_decay > 0 or the optimizer's "
                    "weight_decay)",
                    NoThresholdDecayWarning,
                    stacklevel=2,
                )

    def freeze(self, model: nn.Module) -> None:
        """Bake the soft thresholds and fix the zeros for fine-tuning (plain fixed masks)."""
        reparam.remove(model, SoftThreshold)
        super().freeze(model)


__all__ = ["NoThresholdDecayWarning", "STR"]
