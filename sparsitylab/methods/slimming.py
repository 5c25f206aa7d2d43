"""Network Slimming on the coupled channel groups of any model (:mod:`sparsitylab.graph`).

Network Slimming (Liu et al., ICCV 2017, https://arxiv.org/abs/1708.06519) is the classic
baseline: γ initialised to 0.5, an ℓ1 penalty λ Σ|γ| during training, one global threshold at a
percentile of all |γ| (strict >), fine-tuning. It prunes in-block channels (groups with one
producer and a BatchNorm, as the paper does), never a residual stage. Two departures from the public
code, both deliberate: a minimum number of channels per group (the global threshold can empty a
layer), and **exact** removal. A channel with γ = 0 still outputs the constant β, which the public
code drops (changing the outputs). Here the constant each reader receives is measured on the
example input and folded in: into the bias of a Linear or unpadded conv; a zero-padded conv sees a
constant input as position-dependent near its border (and a reader without a bias has nowhere to
put it), so one removed channel per group is kept as a "bias channel" (its β set to 1) whose reader
columns carry the others' contribution (exact; costs one input channel of the reader; no tensor is
added to the model, so a saved pruning plan replays on the user's class).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from .. import reparam
from .._checks import check_int, check_real, check_sparsity
from ..deploy.compaction import compact, layer_macs
from ..graph import ChannelGroup
from ..graph.tracer import call
from ..models import eval_mode
from . import register
from .base import Method
from .channels import (
    Channels,
    _example,
    _gamma,
    batchnorms,
    channel_groups,
    group_coverage,
    importances,
)


@torch.no_grad()
def reader_inputs(
    model: nn.Module, readers: list[str], example_input: Any
) -> dict[str, torch.Tensor]:
    """Module name → the input it receives on ``example_input`` (eval mode)."""
    seen: dict[str, torch.Tensor] = {}
    hooks = [
        model.get_submodule(name).register_forward_pre_hook(
            lambda m, args, n=name: seen.setdefault(n, args[0].detach())
        )
        for name in readers
    ]
    try:
        with eval_mode(model):
            call(model, example_input)
    finally:
        for h in hooks:
            h.remove()
    missing = [n for n in readers if n not in seen]
    if missing:
        raise ValueError(f"modules {missing} read the channels but were never called as modules")
    return seen


def _constants(x: torch.Tensor, columns: torch.Tensor, dim: int, reader: str) -> torch.Tensor:
    """The value of each input column (constant over samples and positions), else ValueError."""
    values = x.movedim(dim, 0)[columns].reshape(len(columns), -1)
    spread = (values.amax(1) - values.amin(1)).abs()
    scale = values.abs().amax(1).clamp_min(1.0)
    if bool((spread > 1e-5 * scale).any()):
        raise ValueError(
            f"{reader}: a removed channel's input is not constant (γ = 0 does not silence every "
            "path to it), so Slimming cannot fold it exactly"
        )
    return values[:, 0]


@torch.no_grad()
def fold_removed(
    model: nn.Module, group: ChannelGroup, removed: torch.Tensor, example: Any
) -> None:
    """Zero γ of the ``removed`` channels in every BatchNorm of ``group`` and move the constants
    they still deliver into their readers (module doc); in place, outputs unchanged."""
    if not bool(removed.any()):
        return
    if reparam.find(model):
        raise TypeError("fold_removed needs plain tensors (bake reparametrisations first)")
    bns = [model.get_submodule(n) for n in batchnorms(model, group)]
    for bn in bns:
        bn.weight[group.unit_slices(_gamma(group, _name(model, bn)))[removed].reshape(-1)] = 0.0
    readers = [m for m in group.members if m.role == "reads"]
    if not readers:
        return
    values = reader_inputs(model, [m.module for m in readers], example)
    bias_unit = int(removed.nonzero()[0])
    carried: dict[str, torch.Tensor] = {}
    for member in readers:
        layer = model.get_submodule(member.module)
        if not isinstance(layer, (nn.Linear, nn.Conv2d)) or getattr(layer, "groups", 1) != 1:
            raise ValueError(f"{member.module}: Slimming folds into Linear or Conv2d readers only")
        columns = group.unit_slices(member)[removed].reshape(-1)
        dim = 1 if isinstance(layer, nn.Conv2d) else -1
        v = _constants(values[member.module], columns, dim, member.module)
        w = layer.weight
        shape = (1, -1) + (1,) * (w.dim() - 2)
        contribution = (w[:, columns] * v.view(shape)).sum(1)  # Σ_c v_c W[:, c] (per tap)
        w[:, columns] = 0.0
        padded = isinstance(layer, nn.Conv2d) and any(p != 0 for p in _padding(layer))
        if not padded and layer.bias is not None:
            layer.bias += contribution.flatten(1).sum(1) if contribution.dim() > 1 else contribution
        else:  # no bias to fold into (and none is added: the model keeps its own tensors)
            carried[member.module] = contribution
    for bn in bns:
        index = group.unit_slices(_gamma(group, _name(model, bn)))[removed].reshape(-1)
        bn.bias[index] = 0.0
    if carried:  # one removed channel becomes the bias channel: constant input c_b
        for bn in bns:
            bn.bias[group.unit_slices(_gamma(group, _name(model, bn)))[bias_unit]] = 1.0
        for member in group.producers:
            w = model.get_parameter(member.tensor) if member.tensor.endswith("weight") else None
            if w is not None:
                w.index_fill_(member.axis, group.unit_slices(member)[bias_unit], 0.0)
        values = reader_inputs(model, list(carried), example)
        for member in readers:
            if member.module not in carried:
                continue
            layer = model.get_submodule(member.module)
            column = group.unit_slices(member)[bias_unit][:1]  # one column carries it all
            dim = 1 if isinstance(layer, nn.Conv2d) else -1
            c_b = _constants(values[member.module], column, dim, member.module)
            if bool((c_b == 0).any()):
                raise ValueError(f"{member.module}: the bias channel reads 0; cannot fold exactly")
            layer.weight[:, column] = (carried[member.module] / c_b).unsqueeze(1)


def _name(model: nn.Module, module: nn.Module) -> str:
    return next(n for n, m in model.named_modules() if m is module)


def _padding(conv: nn.Conv2d) -> tuple[int, ...]:
    if isinstance(conv.padding, str):
        return (0,) if conv.padding == "valid" else (1,)
    return tuple(conv.padding)


@register
class NetworkSlimming(Method):
    """Network Slimming: ℓ1 on BatchNorm γ, one global |γ| percentile, exact removal, fine-tune.

    ratio: fraction of all prunable channels to remove; strength: λ of the ℓ1 penalty (the paper:
    1e-4 VGG, 1e-5 ResNet); gamma_init: γ at ``prepare`` (0.5 in the paper; None keeps a
    pretrained model's); min_channels: channels every group keeps.
    """

    name = "slimming"
    structured = True

    def __init__(
        self,
        ratio: float,
        strength: float = 1e-4,
        gamma_init: float | None = 0.5,
        min_channels: int = 1,
    ):
        self.ratio = check_sparsity(ratio, "ratio")
        self.strength = check_real(strength, "strength", 0.0)
        self.gamma_init = None if gamma_init is None else check_real(gamma_init, "gamma_init")
        self.min_channels = check_int(min_channels, "min_channels", minimum=1)
        self.pruned = False
        self.channels: Channels | None = None  # the in-block groups, found by prepare
        self.batchnorms: list[str] = []

    def _channels(self, model: nn.Module, example_input: Any = None) -> Channels:
        if self.channels is None or example_input is not None:
            self.channels = channel_groups(model, example_input, "block")
            self.batchnorms = list(
                dict.fromkeys(
                    bn for g in self.channels.groups.values() for bn in batchnorms(model, g)
                )
            )
        return self.channels

    def prepare(self, model: nn.Module, example_input: Any = None) -> nn.Module:
        self.pruned = False
        self.channels = None
        self._channels(model, example_input)
        if self.gamma_init is not None:
            with torch.no_grad():
                for name in self.batchnorms:
                    model.get_submodule(name).weight.fill_(self.gamma_init)
        return model

    def coverage(self, model: nn.Module) -> dict[str, str]:
        return group_coverage(model, self.channels)

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """λ Σ |γ| over the prunable BatchNorms (its gradient is Slimming's λ·sign(γ))."""
        gammas = (model.get_submodule(name).weight for name in self.batchnorms)
        return self.strength * sum(g.abs().sum() for g in gammas)

    def keep(self, model: nn.Module, ratio: float | None = None) -> dict[str, torch.Tensor]:
        """Label → kept channels: |γ| above the global ``ratio`` percentile (strict >), and at
        least ``min_channels`` per group (the largest |γ|)."""
        ratio = self.ratio if ratio is None else check_sparsity(ratio, "ratio")
        scores = importances(model, self._channels(model), "gamma")
        every = torch.cat(list(scores.values()))
        k = round(ratio * every.numel())
        threshold = float(every.kthvalue(k).values) if k > 0 else -1.0
        kept = {}
        for name, g in scores.items():
            keep = g > threshold
            floor = min(self.min_channels, g.numel())
            keep[g.topk(floor).indices] = True
            kept[name] = keep
        return kept

    @torch.no_grad()
    def prune(self, model: nn.Module, ratio: float | None = None) -> None:
        """Remove (exactly, by folding) the channels :meth:`keep` drops; in place."""
        kept = self.keep(model, ratio)
        channels = self._channels(model)
        for name, group in channels.groups.items():
            fold_removed(model, group, ~kept[name], channels.example)
        self.pruned = True

    def freeze(self, model: nn.Module) -> None:
        """Prune, then fix every zero for fine-tuning (the bias channels' β = 1 stays trainable)."""
        if not self.pruned:
            self.prune(model)
        super().freeze(model)

    def finalize(self, model: nn.Module) -> nn.Module:
        final = super().finalize(model)
        if not self.pruned:
            self.prune(final)
        return final

    def compact(
        self, model: nn.Module, example_input: torch.Tensor | None = None
    ) -> nn.Module | None:
        example = example_input if example_input is not None else _example(self.channels)
        return compact(model, example_input=example)

    def state_dict(self) -> dict:
        return {"pruned": self.pruned}

    def load_state_dict(self, state: dict) -> None:
        self.pruned = bool(state["pruned"])


def macs_fraction(small: nn.Module, dense: nn.Module, input_shape: tuple[int, ...]) -> float:
    """MACs of ``small`` (a compacted model) over those of ``dense``, per sample."""
    return sum(layer_macs(small, input_shape).values()) / sum(
        layer_macs(dense, input_shape).values()
    )


def match_macs(
    pruned_at: Callable[[float], nn.Module],
    dense: nn.Module,
    fraction: float,
    input_shape: tuple[int, ...] = (1, 1, 28, 28),
    steps: int = 20,
) -> tuple[float, float]:
    """Bisection over a pruning amount x ∈ [0, 1): ``pruned_at(x)`` returns a compacted model;
    returns (x, its MACs fraction) with the MACs fraction closest to ``fraction`` seen."""
    check_real(fraction, "fraction", 0.0, 1.0)
    low, high, best = 0.0, 0.999, (0.0, 1.0)
    for _ in range(steps):
        middle = (low + high) / 2
        got = macs_fraction(pruned_at(middle), dense, input_shape)
        if abs(got - fraction) < abs(best[1] - fraction):
            best = (middle, got)
        low, high = (middle, high) if got > fraction else (low, middle)
    return best


def slimmed(
    model: nn.Module, ratio: float, min_channels: int = 1, example_input: Any = None
) -> nn.Module:
    """A compacted copy of ``model`` with Slimming's global |γ| pruning at ``ratio`` (for
    :func:`match_macs`); ``model`` is unchanged."""
    final = reparam.remove(reparam.clone(model)).eval()
    method = NetworkSlimming(ratio, gamma_init=None, min_channels=min_channels)
    method.prepare(final, example_input)
    method.prune(final)
    return compact(final, example_input=method.channels.example)


__all__ = [
    "NetworkSlimming",
    "fold_removed",
    "macs_fraction",
    "match_macs",
    "reader_inputs",
    "slimmed",
]
