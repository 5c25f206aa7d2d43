"""Channel pruning as unstructured pruning of importance vectors, on the coupled channel groups of
any model (:mod:`sparsitylab.graph`).

The thesis of Kusupati's "Adapting Unstructured Sparsity Techniques for Structured Sparsity" (2020):
give every prunable group a vector with one importance per channel — BatchNorm's |γ|, or the ℓ1 /
ℓ2 norm of the filters producing the channel — and the unstructured machinery (budgets, schedules,
learned thresholds) prunes channels unchanged. Here that is one adapter over the graph's groups:

- :func:`channel_groups` — the groups a method may prune, by *label* (the BatchNorm's name when the
  group has exactly one, else the group's name), and why the others are left out. A group is a
  coupled set: pruning a residual stage's channel removes it from every conv and norm of the stage;
- :func:`channel_importances` — label → one importance per channel: the mean |γ| of the group's
  BatchNorms ("gamma"), or the ℓ1 / ℓ2 norm of its producer rows ("l1", "l2");
- :class:`ChannelPruning` — :class:`~sparsitylab.methods.magnitude.MagnitudePruning` (any schedule,
  any budget of :mod:`sparsitylab.sparsify.budgets`) whose "weights" are those vectors; a pruned
  channel gets a mask on **every** parameter slice of its unit (producer rows and biases, norm γ and
  β, the readers' input columns), so it computes exactly what the model without the channel
  computes, and :func:`~sparsitylab.deploy.compaction.compact` removes it.

:class:`~sparsitylab.methods.slimming.NetworkSlimming` (the classic baseline) prunes the in-block
groups of :func:`channel_groups` (``need="block"``).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn

from .._checks import check_choice
from ..coverage import structured_coverage
from ..deploy.compaction import compact, default_input
from ..graph import ChannelGroup, trace
from ..metrics import BATCHNORMS
from ..reparam.base import tensor_name
from ..sparsify.budgets import BUDGETS, scores_masks
from ..sparsify.schedules import Schedule
from . import register
from .magnitude import MagnitudePruning

IMPORTANCES = ("gamma", "l1", "l2")
NEEDS = ("any", "batchnorm", "block")


def _module(model: nn.Module, tensor: str) -> tuple[nn.Module, str]:
    module_name, _, attr = tensor.rpartition(".")
    return (model.get_submodule(module_name) if module_name else model), attr


def effective(model: nn.Module, tensor: str) -> torch.Tensor:
    """The value a model computes with for a named tensor (a masked weight's effective value)."""
    module, attr = _module(model, tensor)
    return getattr(module, attr).detach()


def batchnorms(model: nn.Module, group: ChannelGroup) -> list[str]:
    """Names of the BatchNorm modules whose γ is a member of ``group``."""
    names = []
    for m in group.members:
        module, attr = _module(model, m.tensor)
        if isinstance(module, BATCHNORMS) and attr == "weight" and m.module not in names:
            names.append(m.module)
    return names


def label(model: nn.Module, group: ChannelGroup) -> str:
    """How channel methods name a group: its BatchNorm when it has exactly one, else its name."""
    found = batchnorms(model, group)
    return found[0] if len(found) == 1 else group.name


@dataclass
class Channels:
    """The groups a channel method prunes (label → group) and the ones it leaves out, with why."""

    groups: dict[str, ChannelGroup]
    excluded: dict[str, str] = field(default_factory=dict)
    example: Any = None


def channel_groups(model: nn.Module, example_input: Any = None, need: str = "any") -> Channels:
    """The prunable groups of ``model`` that a channel method can use.

    need: "any" (every group), "batchnorm" (groups with a BatchNorm γ: importance "gamma") or
    "block" (a BatchNorm and one producer: the in-block channels Slimming and STR-BN prune, never a
    residual stage). ``ValueError`` naming the reasons when none qualifies.
    """
    check_choice(need, "need", NEEDS)
    example = default_input(model) if example_input is None else example_input
    graph = trace(model, example)
    found, excluded = {}, {}
    for group in graph.groups:
        bns = batchnorms(model, group)
        if need != "any" and not bns:
            excluded[group.name] = "no BatchNorm γ in the group"
        elif need == "block" and len(group.producers) != 1:
            excluded[group.name] = f"shared by {len(group.producers)} producers (a residual sum)"
        else:
            found[label(model, group)] = group
    if not found:
        why = (
            "; ".join(f"{k}: {v}" for k, v in excluded.items()) or "the graph has no prunable group"
        )
        kept = "; ".join(f"{k.name}: {k.reasons[0]}" for k in graph.kept[:4])
        raise ValueError(
            f"{type(model).__name__} has no channels this method can prune ({why})"
            + (f"; kept whole: {kept}" if kept else "")
            + " — see sparsitylab.graph.explain(model, example_input)"
        )
    return Channels(found, excluded, example)


def importances(
    model: nn.Module, channels: Channels, kind: str = "gamma"
) -> dict[str, torch.Tensor]:
    """Label → one importance per channel (see the module docstring); 0 for a masked channel."""
    check_choice(kind, "kind", IMPORTANCES)
    scores = {}
    for name, group in channels.groups.items():
        if kind == "gamma":
            gammas = [
                effective(model, f"{bn}.weight").abs()[group.unit_slices(_gamma(group, bn))].mean(1)
                for bn in batchnorms(model, group)
            ]
            scores[name] = torch.stack(gammas).mean(0).cpu()
            continue
        total = torch.zeros(group.size)
        for member in group.producers:
            w = effective(model, member.tensor).float()
            rows = w.movedim(member.axis, 0).reshape(w.shape[member.axis], -1)
            per_row = rows.abs().sum(1) if kind == "l1" else rows.pow(2).sum(1)
            total += per_row.cpu()[group.unit_slices(member)].sum(1)
        scores[name] = total if kind == "l1" else total.sqrt()
    return scores


def _gamma(group: ChannelGroup, bn: str):
    return next(m for m in group.members if m.tensor == f"{bn}.weight")


def channel_importances(
    model: nn.Module, kind: str = "gamma", example_input: Any = None
) -> dict[str, torch.Tensor]:
    """Label → importance vector for every group that ``kind`` applies to (module docstring)."""
    check_choice(kind, "kind", IMPORTANCES)
    need = "batchnorm" if kind == "gamma" else "any"
    return importances(model, channel_groups(model, example_input, need), kind)


def filter_shapes(model: nn.Module, channels: Channels) -> dict[str, tuple[int, ...]]:
    """Label → shape of the weight producing the group (ERK's p_l for channel budgets)."""
    return {
        name: tuple(effective(model, g.producers[0].tensor).shape) if g.producers else (g.size,)
        for name, g in channels.groups.items()
    }


def unit_masks(
    model: nn.Module, channels: Channels, keep: dict[str, torch.Tensor]
) -> dict[str, torch.Tensor]:
    """Mask name → keep-mask of every parameter a pruned channel occupies (all its slices)."""
    masks: dict[str, torch.Tensor] = {}
    for name, kept in keep.items():
        group = channels.groups[name]
        gone = ~kept.cpu()
        for member in group.members:
            module, attr = _module(model, member.tensor)
            if attr in module._buffers:  # running statistics: γ = β = 0 silences them
                continue
            key = tensor_name(member.module, attr)
            tensor = getattr(module, attr)
            mask = masks.get(key, torch.ones(tensor.shape, dtype=torch.bool))
            index = group.unit_slices(member)[gone].reshape(-1)
            masks[key] = mask.index_fill(member.axis, index, False)
    return masks


def channel_masks(
    model: nn.Module,
    sparsity: float,
    budget: str = "global",
    kind: str = "gamma",
    example_input: Any = None,
) -> dict[str, torch.Tensor]:
    """Label → channel keep-mask at overall channel sparsity S under ``budget`` — the unstructured
    :func:`~sparsitylab.sparsify.budgets.scores_masks` on importance vectors."""
    channels = channel_groups(model, example_input, "batchnorm" if kind == "gamma" else "any")
    return _keep(model, channels, sparsity, budget, kind)


def _keep(model, channels, sparsity, budget, kind) -> dict[str, torch.Tensor]:
    scores = importances(model, channels, kind)
    return scores_masks(scores, sparsity, budget, erk_shapes=filter_shapes(model, channels))


@register
class ChannelPruning(MagnitudePruning):
    """Magnitude pruning of channels by importance (|γ|, or filter ℓ1/ℓ2) under any schedule and
    budget, on every coupled group of the model; a pruned channel is masked in every tensor it
    occupies. ``compact`` gives the smaller model."""

    name = "channels"
    structured = True

    def __init__(self, schedule: Schedule, budget: str = "global", importance: str = "gamma"):
        super().__init__(schedule, budget)
        self.importance = check_choice(importance, "importance", IMPORTANCES)
        self.channels: Channels | None = None

    @classmethod
    def from_options(cls, sparsity: float, budget: str = "global", importance: str = "gamma", **kw):
        base = MagnitudePruning.from_options(sparsity, budget, **kw)
        return cls(base.schedule, budget, importance)

    def prepare(self, model: nn.Module, example_input: Any = None) -> nn.Module:
        need = "batchnorm" if self.importance == "gamma" else "any"
        self.channels = channel_groups(model, example_input, need)
        return super().prepare(model, example_input)

    def _masks(self, model: nn.Module, sparsity: float) -> dict[str, torch.Tensor]:
        keep = _keep(model, self.channels, sparsity, self.budget, self.importance)
        return unit_masks(model, self.channels, keep)

    def coverage(self, model: nn.Module) -> dict[str, str]:
        return group_coverage(model, self.channels)

    def compact(
        self, model: nn.Module, example_input: torch.Tensor | None = None
    ) -> nn.Module | None:
        example = example_input if example_input is not None else _example(self.channels)
        return compact(model, example_input=example)


def group_coverage(model: nn.Module, channels: Channels | None) -> dict[str, str]:
    """Coverage of a channel method: every parameter of the groups it prunes."""
    groups = channels.groups.values() if channels is not None else []
    return structured_coverage(model, {m.tensor for g in groups for m in g.members})


def _example(channels: Channels | None) -> Any:
    return None if channels is None else channels.example


def removable_batchnorms(model: nn.Module, example_input: Any = None) -> dict[str, nn.Module]:
    """Name → module of every BatchNorm whose channels Slimming and STR-BN prune (in-block)."""
    channels = channel_groups(model, example_input, "block")
    names = dict.fromkeys(bn for g in channels.groups.values() for bn in batchnorms(model, g))
    return {name: model.get_submodule(name) for name in names}


__all__ = [
    "BUDGETS",
    "IMPORTANCES",
    "ChannelPruning",
    "Channels",
    "batchnorms",
    "channel_groups",
    "channel_importances",
    "channel_masks",
    "effective",
    "filter_shapes",
    "group_coverage",
    "importances",
    "label",
    "removable_batchnorms",
    "unit_masks",
]
