"""Channel pruning as unstructured pruning of importance vectors, and Network Slimming.

The thesis of Kusupati's "Adapting Unstructured Sparsity Techniques for Structured Sparsity" (2020):
give every prunable layer a vector with one importance per channel — BatchNorm's |γ|, or the ℓ1 /
ℓ2 norm of the filter feeding the channel — and the unstructured machinery (budgets, schedules,
learned thresholds) prunes channels unchanged. Here that is one adapter:

- :func:`channel_importances` — BatchNorm name → importance vector, for every BatchNorm whose
  channels compaction can remove (:func:`~sparsitylab.deploy.compaction.channel_sites`: in a
  residual network only those *inside* a block, between its two convs; the channels of a block's
  output are tied to the shortcut sum of every block of the stage, so removing one would need a
  coupled decision across blocks);
- :class:`ChannelPruning` — :class:`~sparsitylab.methods.magnitude.MagnitudePruning` (any schedule,
  any budget of :mod:`sparsitylab.sparsify.budgets`) whose "weights" are those vectors; a pruned
  channel gets γ = β = 0, so it outputs exactly 0 and :func:`compact` removes it with its filter
  and the next layer's inputs.

:class:`NetworkSlimming` (Liu et al., ICCV 2017, https://arxiv.org/abs/1708.06519) is the classic
baseline: γ initialised to 0.5, an ℓ1 penalty λ Σ|γ| during training, one global threshold at a
percentile of all |γ| (strict >), fine-tuning. Two departures from the public code, both deliberate:
a minimum number of channels per layer (the global threshold can empty a layer), and **exact**
removal. A channel with γ = 0 still outputs the constant β, which the public code drops (changing
the outputs). Here its value after the element-wise modules, v = ReLU(β), is folded into the next
layer: into the bias of a Linear; for a zero-padded conv a constant input is *not* a constant
output near the border, so one removed channel per layer is kept as a "bias channel" that emits 1
and carries Σ_c v_c W[:, c] in the conv's weights (exact; costs one input channel of the next
layer and one zero filter).
"""

from __future__ import annotations

import copy
from collections.abc import Callable

import torch
import torch.nn.functional as F
from torch import nn

from .. import reparam
from .._checks import check_choice, check_int, check_real, check_sparsity
from ..deploy.compaction import ChannelSite, channel_sites, compact, layer_macs
from ..reparam.base import find
from ..sparsify.budgets import BUDGETS, scores_masks
from ..sparsify.schedules import Schedule
from . import register
from .base import Method
from .magnitude import MagnitudePruning

IMPORTANCES = ("gamma", "l1", "l2")


def _effective(module: nn.Module, tensor: str) -> torch.Tensor:
    return getattr(module, tensor).detach()


@torch.no_grad()
def channel_importances(model: nn.Module, kind: str = "gamma") -> dict[str, torch.Tensor]:
    """BatchNorm name → one importance per channel: |γ| ("gamma") or the ℓ1 / ℓ2 norm of the
    filter feeding the channel ("l1", "l2"; 0 where γ is already 0, so pruned channels stay
    pruned)."""
    check_choice(kind, "kind", IMPORTANCES)
    scores = {}
    for name, site in channel_sites(model).items():
        gamma = _effective(site.bn, "weight").abs()
        if kind == "gamma":
            scores[name] = gamma
            continue
        rows = _effective(model.get_submodule(site.producer), "weight").flatten(1)
        norm = rows.abs().sum(1) if kind == "l1" else rows.pow(2).sum(1).sqrt()
        scores[name] = norm * (gamma != 0)
    if not scores:
        raise ValueError("model has no BatchNorm whose channels can be removed")
    return scores


def filter_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """BatchNorm name → weight shape of the layer feeding it (ERK's p_l for channel budgets)."""
    return {
        name: tuple(model.get_submodule(site.producer).weight.shape)
        for name, site in channel_sites(model).items()
    }


def channel_masks(
    model: nn.Module, sparsity: float, budget: str = "global", kind: str = "gamma"
) -> dict[str, torch.Tensor]:
    """BatchNorm name → channel keep-mask at overall channel sparsity S under ``budget`` — the
    unstructured :func:`~sparsitylab.sparsify.budgets.scores_masks` on importance vectors."""
    scores = channel_importances(model, kind)
    return scores_masks(scores, sparsity, budget, erk_shapes=filter_shapes(model))


@register
class ChannelPruning(MagnitudePruning):
    """Magnitude pruning of channels by importance (|γ|, or filter ℓ1/ℓ2) under any schedule and
    budget; a pruned channel's γ and β are masked to 0. ``compact`` gives the smaller model."""

    name = "channels"
    structured = True

    def __init__(self, schedule: Schedule, budget: str = "global", importance: str = "gamma"):
        super().__init__(schedule, budget)
        self.importance = check_choice(importance, "importance", IMPORTANCES)

    @classmethod
    def from_options(cls, sparsity: float, budget: str = "global", importance: str = "gamma", **kw):
        base = MagnitudePruning.from_options(sparsity, budget, **kw)
        return cls(base.schedule, budget, importance)

    def _masks(self, model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
        masks = channel_masks(model, sparsity, self.budget, self.importance)
        return {key: m for bn, m in masks.items() for key in (bn, f"{bn}.bias")}

    def compact(
        self, model: nn.Module, example_input: torch.Tensor | None = None
    ) -> nn.Module | None:
        return compact(model, example_input=example_input)


def _constant_after(site: ChannelSite, beta: torch.Tensor) -> torch.Tensor:
    """What a channel emitting the constant β carries into the next layer (ReLU applied)."""
    value = beta
    for m in site.after:
        if isinstance(m, nn.ReLU):
            value = F.relu(value)
        elif isinstance(m, nn.AvgPool2d) and m.padding != 0 and m.count_include_pad:
            raise ValueError(f"{site.name}: a zero-padded AvgPool2d does not keep constants")
    return value


@torch.no_grad()
def fold_removed(model: nn.Module, site: ChannelSite, removed: torch.Tensor) -> None:
    """Zero γ of the ``removed`` channels and move the constants they still emit into the next
    layer (see the module doc); in place, the model's outputs unchanged (eval and train mode)."""
    bn, consumer = site.bn, model.get_submodule(site.consumer)
    if find(bn) or find(consumer):
        raise TypeError("fold_removed needs plain tensors (bake reparametrisations first)")
    bn.weight[removed] = 0.0
    value = torch.where(removed, _constant_after(site, bn.bias), torch.zeros_like(bn.bias))
    w = consumer.weight
    units = len(removed)
    if isinstance(consumer, nn.Linear):
        view = w.view(w.shape[0], units, -1)
        if consumer.bias is None:
            consumer.bias = nn.Parameter(torch.zeros(w.shape[0], device=w.device))
        consumer.bias += (view * value.view(1, -1, 1)).sum((1, 2))
        view[:, removed] = 0.0
        bn.bias[removed] = 0.0
        return
    carried = (w * value.view(1, -1, 1, 1)).sum(1)  # Σ_c v_c W[:, c]
    w[:, removed] = 0.0
    bn.bias[removed] = 0.0
    if bool(value.ne(0).any()):  # one removed channel becomes the bias channel: emits 1
        b = int(removed.nonzero()[0])
        bn.bias[b] = 1.0
        w[:, b] = carried
        model.get_submodule(site.producer).weight[b] = 0.0


@register
class NetworkSlimming(Method):
    """Network Slimming: ℓ1 on BatchNorm γ, one global |γ| percentile, exact removal, fine-tune.

    ratio: fraction of all prunable channels to remove; strength: λ of the ℓ1 penalty (the paper:
    1e-4 VGG, 1e-5 ResNet); gamma_init: γ at ``prepare`` (0.5 in the paper; None keeps a
    pretrained model's); min_channels: channels every layer keeps.
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
        self.batchnorms: list[str] = []  # the prunable BatchNorms, found once by prepare

    def prepare(self, model: nn.Module) -> nn.Module:
        self.pruned = False
        found = channel_sites(model)
        if not found:
            raise ValueError("model has no BatchNorm whose channels can be removed")
        self.batchnorms = list(found)
        if self.gamma_init is not None:
            with torch.no_grad():
                for site in found.values():
                    site.bn.weight.fill_(self.gamma_init)
        return model

    def penalty(self, model: nn.Module) -> torch.Tensor:
        """λ Σ |γ| over the prunable BatchNorms (its gradient is Slimming's λ·sign(γ))."""
        gammas = (model.get_submodule(name).weight for name in self.batchnorms)
        return self.strength * sum(g.abs().sum() for g in gammas)

    def keep(self, model: nn.Module, ratio: float | None = None) -> dict[str, torch.Tensor]:
        """BatchNorm name → kept channels: |γ| above the global ``ratio`` percentile (strict >),
        and at least ``min_channels`` per layer (the largest |γ|)."""
        ratio = self.ratio if ratio is None else check_sparsity(ratio, "ratio")
        scores = channel_importances(model, "gamma")
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
        for name, site in channel_sites(model).items():
            fold_removed(model, site, ~kept[name])
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
        return compact(model, example_input=example_input)

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


def slimmed(model: nn.Module, ratio: float, min_channels: int = 1) -> nn.Module:
    """A compacted copy of ``model`` with Slimming's global |γ| pruning at ``ratio`` (for
    :func:`match_macs`); ``model`` is unchanged."""
    final = reparam.remove(copy.deepcopy(model))
    NetworkSlimming(ratio, gamma_init=None, min_channels=min_channels).prune(final)
    return compact(final.eval())


__all__ = [
    "BUDGETS",
    "IMPORTANCES",
    "ChannelPruning",
    "NetworkSlimming",
    "channel_importances",
    "channel_masks",
    "filter_shapes",
    "fold_removed",
    "macs_fraction",
    "match_macs",
    "slimmed",
]
