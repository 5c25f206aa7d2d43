"""Layer-wise sparsity budgets: how a global target S is shared among layers.

Three allocations (introduced in Chapter 1, ``book/01_unstructured_pruning``):

- **uniform** — every prunable layer gets the same sparsity;
- **global** — one magnitude ranking over all layers; each layer gets what its weights earn
  (Han et al. 2015; can empty small layers, "layer collapse");
- **ERK** — Erdős–Rényi-Kernel (Evci et al., RigL, ICML 2020): density_l = ε·p_l with p_l = (Σ dims
  / Π dims)^power for a weight of dims (out, in[, kh, kw]) — ER for Linear, ERK for conv — and ε
  solved so that Σ density_l·N_l = (1 − S)·Σ N_l. A layer whose ε·p_l would exceed 1 is made dense
  and ε is re-solved (google-research/rigl ``get_sparsities_erdos_renyi``, REFERENCE §1.2).

Convention for every budget here: **S is the sparsity over all prunable weights** (Linear and
Conv2d weights; biases and BN stay dense). Layers listed as ``dense`` (e.g. the first/last layer)
are excluded and the other layers prune more to compensate; this is RigL's convention for ERK.
RigL's *uniform* baseline instead keeps the first layer dense *and* the rest at S (overall < S);
we compensate so that all three budgets are compared at the same overall sparsity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from ..metrics import prunable_layers
from .masks import check_sparsity, global_topk_masks, pruned_count, topk_mask

BUDGETS = ("uniform", "global", "erk")


def layer_shapes(model: nn.Module) -> dict[str, tuple[int, ...]]:
    """Name → weight shape of every prunable (Linear/Conv2d) layer, in definition order."""
    return {name: tuple(m.weight.shape) for name, m in prunable_layers(model).items()}


def dense_layer_names(names: Sequence[str], first: bool = False, last: bool = False) -> list[str]:
    """The names among ``names`` to keep dense: the first and/or the last layer."""
    names = list(names)
    return [n for i, n in enumerate(names) if (first and i == 0) or (last and i == len(names) - 1)]


def _split(shapes: Mapping[str, Sequence[int]], sparsity: float, dense: Sequence[str]):
    sparsity = check_sparsity(sparsity)
    unknown = set(dense) - set(shapes)
    if unknown:
        raise ValueError(f"dense names {sorted(unknown)} are not layers; layers are {list(shapes)}")
    if not shapes:
        raise ValueError("shapes is empty: the model has no prunable layers")
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    free = {n: s for n, s in sizes.items() if n not in dense}
    n_pruned = sparsity * sum(sizes.values())
    if n_pruned > sum(free.values()) * (1 + 1e-12):
        raise ValueError(
            f"sparsity={sparsity} is unreachable with dense layers {list(dense)}: they hold "
            f"{1 - sum(free.values()) / sum(sizes.values()):.1%} of the weights"
        )
    return sparsity, sizes, free


def uniform_sparsities(
    shapes: Mapping[str, Sequence[int]], sparsity: float, dense: Sequence[str] = ()
) -> dict[str, float]:
    """Same sparsity s' for every non-dense layer, with s'·Σ_free N_l = S·Σ N_l (s' = S without
    dense layers)."""
    sparsity, sizes, free = _split(shapes, sparsity, dense)
    share = min(1.0, sparsity * sum(sizes.values()) / sum(free.values())) if free else 0.0
    return {name: (share if name in free else 0.0) for name in shapes}


def erk_sparsities(
    shapes: Mapping[str, Sequence[int]],
    sparsity: float,
    dense: Sequence[str] = (),
    power_scale: float = 1.0,
) -> dict[str, float]:
    """ERK sparsities 1 − ε·p_l, with RigL's re-solve when a density would exceed 1 (see module
    doc).

    Solves ε·Σ_free p_l N_l = (1 − S)·Σ_free N_l − S·Σ_dense N_l; while max ε·p_l > 1, the layers
    with maximal p_l join the dense set and ε is solved again (at most one pass per layer).
    """
    if (
        isinstance(power_scale, bool)
        or not isinstance(power_scale, (int, float))
        or power_scale < 0
    ):
        raise ValueError(
            f"power_scale={power_scale!r} must be a number ≥ 0 (1.0 = ERK, 0 = uniform)"
        )
    sparsity, sizes, _ = _split(shapes, sparsity, dense)
    if sparsity == 0.0:
        return dict.fromkeys(shapes, 0.0)
    raw = {name: (sum(shape) / math.prod(shape)) ** power_scale for name, shape in shapes.items()}
    dense_set = set(dense)
    while True:
        free = [n for n in shapes if n not in dense_set]
        if not free:
            raise ValueError(
                f"sparsity={sparsity}: every layer had to be made dense; no ERK allocation exists"
            )
        rhs = sum((1 - sparsity) * sizes[n] for n in free) - sum(
            sparsity * sizes[n] for n in dense_set
        )
        epsilon = rhs / sum(raw[n] * sizes[n] for n in free)
        p_max = max(raw[n] for n in free)
        if epsilon * p_max <= 1.0 + 1e-12:  # tolerance: ε·p = 1 exactly is a valid density
            break
        dense_set |= {n for n in free if raw[n] == p_max}
    return {
        name: 0.0 if name in dense_set else min(1.0, max(0.0, 1.0 - epsilon * raw[name]))
        for name in shapes
    }


def global_sparsities(
    weights: Mapping[str, torch.Tensor], sparsity: float, dense: Sequence[str] = ()
) -> dict[str, float]:
    """The per-layer sparsities that one global magnitude ranking produces (see
    :func:`budget_masks`)."""
    masks = global_masks(weights, sparsity, dense)
    return {
        name: (1.0 - masks[name].sum().item() / w.numel()) if name in masks else 0.0
        for name, w in weights.items()
    }


def global_masks(
    weights: Mapping[str, torch.Tensor], sparsity: float, dense: Sequence[str] = ()
) -> dict[str, torch.Tensor]:
    """Keep-masks of the non-dense layers from one ranking of |w|, pruning round(S·Σ N_l) weights in
    total."""
    sparsity, sizes, free = _split({n: tuple(w.shape) for n, w in weights.items()}, sparsity, dense)
    if not free:
        return {}
    n_prune = pruned_count(sum(sizes.values()), sparsity)
    return global_topk_masks({n: weights[n] for n in free}, min(1.0, n_prune / sum(free.values())))


def budget_sparsities(
    model: nn.Module,
    sparsity: float,
    budget: str = "global",
    first_dense: bool = False,
    last_dense: bool = False,
    power_scale: float = 1.0,
) -> dict[str, float]:
    """Per-layer sparsities of ``model``'s prunable layers under ``budget`` ("uniform", "global",
    "erk")."""
    weights = {n: m.weight.detach() for n, m in prunable_layers(model).items()}
    dense = dense_layer_names(list(weights), first_dense, last_dense)
    if budget == "global":
        return global_sparsities(weights, sparsity, dense)
    shapes = {n: tuple(w.shape) for n, w in weights.items()}
    if budget == "uniform":
        return uniform_sparsities(shapes, sparsity, dense)
    if budget == "erk":
        return erk_sparsities(shapes, sparsity, dense, power_scale)
    raise ValueError(f"budget={budget!r} is not known; use one of {BUDGETS}")


def budget_masks(
    model: nn.Module,
    sparsity: float,
    budget: str = "global",
    first_dense: bool = False,
    last_dense: bool = False,
    power_scale: float = 1.0,
) -> dict[str, torch.Tensor]:
    """Magnitude keep-masks for ``model`` at overall sparsity S under ``budget``.

    Dense layers get no mask. Each masked layer's non-zero count is exact for its budgeted
    sparsity (uniform/ERK: ⌊s_l·N_l + ½⌋ pruned per layer; global: exactly ⌊S·ΣN + ½⌋ in total).
    Masks come from the *effective* weights, so an already-masked weight (0) ranks lowest and
    stays pruned: repeated calls with growing S give nested masks (up to ties among exact zeros).
    """
    weights = {n: m.weight.detach() for n, m in prunable_layers(model).items()}
    dense = dense_layer_names(list(weights), first_dense, last_dense)
    if budget == "global":
        return global_masks(weights, sparsity, dense)
    per_layer = budget_sparsities(model, sparsity, budget, first_dense, last_dense, power_scale)
    return {n: topk_mask(w, per_layer[n]) for n, w in weights.items() if n not in dense}


__all__ = [
    "BUDGETS",
    "budget_masks",
    "budget_sparsities",
    "dense_layer_names",
    "erk_sparsities",
    "global_masks",
    "global_sparsities",
    "layer_shapes",
    "uniform_sparsities",
]
