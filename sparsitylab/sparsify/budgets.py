"""Layer-wise sparsity budgets: how a global target S is shared among layers.

Three allocations (introduced in Chapter 1, ``book/01_unstructured_pruning``):

- **uniform** — every prunable layer gets the same sparsity;
- **global** — one magnitude ranking over all layers; each layer gets what its weights earn
  (one threshold for all layers; Han et al. 2015 instead threshold each layer by its own weight
  spread; can empty small layers, "layer collapse");
- **ERK** — Erdős–Rényi-Kernel (Evci et al., RigL, ICML 2020): density_l = ε·p_l with
  p_l = (Σ dims / Π dims)^power for a weight of dims (out, in[, kh, kw]) — ER for Linear, ERK for
  conv — and ε solved so that Σ density_l·N_l = (1 − S)·Σ N_l. A layer whose ε·p_l would exceed 1
  is made dense and ε is re-solved (google-research/rigl ``get_sparsities_erdos_renyi``;
  https://arxiv.org/abs/1911.11134).

Convention for every budget here: **S is the sparsity over all covered weight matrices**
(:mod:`sparsitylab.coverage`: Linear, conv, attention and RNN weights by default, or a ``scope``;
biases, norms and embedding tables stay dense). Layers listed as ``dense`` (e.g. the first/last
layer) are excluded and the other layers prune more to compensate; this is RigL's convention for
ERK. RigL's *uniform* baseline instead keeps the first layer dense *and* the rest at S (overall
< S); we compensate so that all three budgets are compared at the same overall sparsity.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .._checks import check_choice, check_names, check_real, check_sparsity
from ..coverage import Scope, weight_matrices
from .masks import global_topk_masks, pruned_count, topk_mask

BUDGETS = ("uniform", "global", "erk")


def layer_shapes(model: nn.Module, scope: Scope = None) -> dict[str, tuple[int, ...]]:
    """Name → shape (outputs first) of every covered weight matrix, in definition order."""
    return {name: tuple(w.oriented().shape) for name, w in weight_matrices(model, scope).items()}


def dense_layer_names(names: Sequence[str], first: bool = False, last: bool = False) -> list[str]:
    """The names among ``names`` to keep dense: the first and/or the last layer."""
    names = list(names)
    return [n for i, n in enumerate(names) if (first and i == 0) or (last and i == len(names) - 1)]


def _unreachable(sparsity: float, dense: Sequence[str], dense_fraction: float) -> ValueError:
    return ValueError(
        f"sparsity={sparsity} is unreachable with dense layers {list(dense)} (they hold "
        f"{dense_fraction:.2%} of the weights): the other layers would have to lose every weight; "
        f"request less than {1 - dense_fraction:.4f} or keep fewer layers dense"
    )


def _split(
    shapes: Mapping[str, Sequence[int]],
    sparsity: float,
    dense: Sequence[str],
    sizes: Mapping[str, int] | None = None,
):
    """Check a request; return (S, sizes, free sizes). S·ΣN must stay below the free layers'
    weights. ``sizes`` (default: the shapes' products) are the counts the sparsity is over."""
    sparsity = check_sparsity(sparsity)
    if not shapes:
        raise ValueError("shapes is empty: the model has no prunable layers")
    check_names(dense, "dense", list(shapes))
    sizes = {name: math.prod(shape) for name, shape in shapes.items()} if sizes is None else sizes
    free = {n: s for n, s in sizes.items() if n not in dense}
    if sparsity > 0 and pruned_count(sum(sizes.values()), sparsity) >= sum(free.values()):
        raise _unreachable(sparsity, dense, 1 - sum(free.values()) / sum(sizes.values()))
    return sparsity, sizes, free


def uniform_sparsities(
    shapes: Mapping[str, Sequence[int]], sparsity: float, dense: Sequence[str] = ()
) -> dict[str, float]:
    """Same sparsity s' for every non-dense layer, with s'·Σ_free N_l = S·Σ N_l (s' = S without
    dense layers)."""
    sparsity, sizes, free = _split(shapes, sparsity, dense)
    share = (
        sparsity * sum(sizes.values()) / sum(free.values()) if free else 0.0
    )  # < 1: _split checked
    return {name: (share if name in free else 0.0) for name in shapes}


def erk_sparsities(
    shapes: Mapping[str, Sequence[int]],
    sparsity: float,
    dense: Sequence[str] = (),
    power_scale: float = 1.0,
    sizes: Mapping[str, int] | None = None,
) -> dict[str, float]:
    """ERK sparsities 1 − ε·p_l, with RigL's re-solve when a density would exceed 1 (see module
    doc). ``sizes``: the counts N_l being pruned when they are not the shapes' products (channel
    budgets: p_l from the filter's shape, N_l its number of channels).

    Solves ε·Σ_free p_l N_l = (1 − S)·Σ_free N_l − S·Σ_dense N_l; while max ε·p_l > 1, the layers
    with maximal p_l join the dense set and ε is solved again (at most one pass per layer).
    """
    power_scale = check_real(power_scale, "power_scale", minimum=0.0)  # 1.0 = ERK, 0 = uniform
    sparsity, sizes, _ = _split(shapes, sparsity, dense, sizes)
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
        if rhs <= 0:  # the layers made dense so far leave nothing for the others to keep
            raise _unreachable(
                sparsity, sorted(dense_set), sum(sizes[n] for n in dense_set) / sum(sizes.values())
            )
        epsilon = rhs / sum(raw[n] * sizes[n] for n in free)
        p_max = max(raw[n] for n in free)
        if epsilon * p_max <= 1.0 + 1e-12:  # tolerance: ε·p = 1 exactly is a valid density
            break
        dense_set |= {n for n in free if raw[n] == p_max}
    return {
        name: 0.0 if name in dense_set else max(0.0, 1.0 - epsilon * raw[name]) for name in shapes
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
    return global_topk_masks(
        {n: weights[n] for n in free}, n_prune / sum(free.values())
    )  # < 1: _split checked


def _weights_and_dense(
    model: nn.Module, budget: str, first_dense: bool, last_dense: bool, scope: Scope = None
):
    """The (effective, outputs-first) covered weights of ``model`` and the names to keep dense."""
    check_choice(budget, "budget", BUDGETS)
    weights = {n: w.oriented().detach() for n, w in weight_matrices(model, scope).items()}
    return weights, dense_layer_names(list(weights), first_dense, last_dense)


def _shape_sparsities(
    weights: Mapping[str, torch.Tensor],
    sparsity: float,
    budget: str,
    dense: Sequence[str],
    power_scale: float,
) -> dict[str, float]:
    """The "uniform" or "erk" per-layer sparsities, which depend on the weights' shapes only."""
    shapes = {n: tuple(w.shape) for n, w in weights.items()}
    if budget == "uniform":
        return uniform_sparsities(shapes, sparsity, dense)
    return erk_sparsities(shapes, sparsity, dense, power_scale)


def budget_sparsities(
    model: nn.Module,
    sparsity: float,
    budget: str = "global",
    first_dense: bool = False,
    last_dense: bool = False,
    power_scale: float = 1.0,
    scope: Scope = None,
) -> dict[str, float]:
    """Per-matrix sparsities of ``model``'s covered weights under ``budget`` ("uniform", "global",
    "erk")."""
    weights, dense = _weights_and_dense(model, budget, first_dense, last_dense, scope)
    if budget == "global":
        return global_sparsities(weights, sparsity, dense)
    return _shape_sparsities(weights, sparsity, budget, dense, power_scale)


def budget_masks(
    model: nn.Module,
    sparsity: float,
    budget: str = "global",
    first_dense: bool = False,
    last_dense: bool = False,
    power_scale: float = 1.0,
    scope: Scope = None,
) -> dict[str, torch.Tensor]:
    """Magnitude keep-masks for ``model``'s covered weights (``scope``) at overall sparsity S under
    ``budget``, each in its tensor's stored layout.

    Dense layers get no mask. Each masked layer's non-zero count is exact for its budgeted
    sparsity (uniform/ERK: ⌊s_l·N_l + ½⌋ pruned per layer; global: exactly ⌊S·ΣN + ½⌋ in total).
    Masks come from the *effective* weights, so an already-masked weight (0) ranks lowest and
    stays pruned: repeated calls with growing S give nested masks (up to ties among exact zeros).
    """
    matrices = weight_matrices(model, scope)
    weights, dense = _weights_and_dense(model, budget, first_dense, last_dense, scope)
    masks = scores_masks(weights, sparsity, budget, dense, power_scale)
    return {n: matrices[n].restore(m) for n, m in masks.items()}


def scores_masks(
    scores: Mapping[str, torch.Tensor],
    sparsity: float,
    budget: str = "global",
    dense: Sequence[str] = (),
    power_scale: float = 1.0,
    erk_shapes: Mapping[str, Sequence[int]] | None = None,
) -> dict[str, torch.Tensor]:
    """Keep-masks that prune the smallest |score| entries of each named tensor under ``budget``.

    The tensors may be weights (:func:`budget_masks`) or any importance vectors — one score per
    BatchNorm channel, say (:mod:`sparsitylab.sparsify.importance`): the budget does not care what
    it prunes. ``erk_shapes`` gives ERK its p_l when the scores' own shapes do not (a channel
    vector's would make ERK uniform); the counts stay the scores' sizes.
    """
    check_choice(budget, "budget", BUDGETS)
    scores = {n: t.detach() for n, t in scores.items()}
    if budget == "global":
        return global_masks(scores, sparsity, dense)
    if budget == "erk" and erk_shapes is not None:
        sizes = {n: t.numel() for n, t in scores.items()}
        per_layer = erk_sparsities(erk_shapes, sparsity, dense, power_scale, sizes)
    else:
        per_layer = _shape_sparsities(scores, sparsity, budget, dense, power_scale)
    for n, s in per_layer.items():
        if n not in dense and pruned_count(scores[n].numel(), s) == scores[n].numel():
            raise ValueError(
                f"layer {n!r} would lose every weight (all {scores[n].numel()} entries) at its "
                f"{budget} sparsity {s:.4f} (overall sparsity={sparsity}); request less or keep "
                "it dense"
            )
    return {
        n: topk_mask(t, per_layer[n], name=f"scores[{n!r}]")
        for n, t in scores.items()
        if n not in dense
    }


__all__ = [
    "BUDGETS",
    "budget_masks",
    "budget_sparsities",
    "dense_layer_names",
    "erk_sparsities",
    "global_masks",
    "global_sparsities",
    "layer_shapes",
    "scores_masks",
    "uniform_sparsities",
]
