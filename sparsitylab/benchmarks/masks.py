"""``sparsitylab bench masks``: mask computation time, ours vs naive references, side by side.

Two tasks (issue: Chapter 1 acceptance):

1. global magnitude pruning of a ~10M-parameter MLP (1024-2048-2048-2048-10, 10.5M weights);
2. top-k magnitude mask of one 4096×4096 tensor.

Contenders: ``sparsitylab.sparsify.masks`` (``kthvalue`` selection + positional tie-break, linear
time), a naive exact reference (stable full sort of all |w|, then scatter — same masks, O(n log n)),
and PyTorch's own tools (``torch.topk``; ``torch.nn.utils.prune.global_unstructured``), which are
not deterministic under ties. Every contender's mask is checked for the exact non-zero count.
"""

from __future__ import annotations

import argparse
import copy
from collections.abc import Callable, Mapping
from typing import Any

import torch
from torch.nn.utils import prune

from .. import models
from ..metrics import prunable_layers
from ..sparsify.budgets import budget_masks
from ..sparsify.masks import pruned_count, topk_mask
from ..timing import cpu_name, interleaved
from . import positive_int, sparsity_value


def sort_reference_mask(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Naive exact reference: stable descending sort of all scores, keep the first n − k."""
    flat = scores.reshape(-1)
    order = torch.sort(flat, descending=True, stable=True).indices
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[order[: flat.numel() - pruned_count(flat.numel(), sparsity)]] = True
    return keep.reshape(scores.shape)


def torch_topk_mask(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """``torch.topk`` keep-mask (ties: unspecified order)."""
    flat = w.abs().reshape(-1)
    keep = torch.zeros_like(flat, dtype=torch.bool)
    keep[
        torch.topk(flat, flat.numel() - pruned_count(flat.numel(), sparsity), sorted=False).indices
    ] = True
    return keep.reshape(w.shape)


def global_sort_reference(weights: list[torch.Tensor], sparsity: float) -> list[torch.Tensor]:
    """Naive global pruning: concatenate, sort, split back."""
    keep = sort_reference_mask(torch.cat([w.abs().reshape(-1) for w in weights]), sparsity)
    return [m.reshape(w.shape) for m, w in zip(keep.split([w.numel() for w in weights]), weights)]


def torch_prune_global(model: torch.nn.Module, sparsity: float) -> list[torch.Tensor]:
    """``torch.nn.utils.prune.global_unstructured`` with L1 on a copy (adds weight_orig +
    weight_mask)."""
    clone = copy.deepcopy(model)
    params = [(m, "weight") for m in prunable_layers(clone).values()]
    prune.global_unstructured(params, pruning_method=prune.L1Unstructured, amount=sparsity)
    return [m.weight_mask.bool() for m, _ in params]


def _kept(masks: torch.Tensor | Mapping[str, torch.Tensor] | list[torch.Tensor]) -> int:
    """Kept weights of one mask, a list of masks or a name → mask mapping."""
    if isinstance(masks, torch.Tensor):
        return int(masks.sum())
    return sum(int(m.sum()) for m in (masks.values() if isinstance(masks, Mapping) else masks))


def _table(contenders: dict[str, Callable[[], Any]], expected: int, repeats: int) -> None:
    """Time the contenders round-robin (:func:`sparsitylab.timing.interleaved`) and print one row
    each: median, speed-up over the first (the naive reference), and whether its mask keeps exactly
    ``expected`` weights."""
    kept = {name: _kept(make()) for name, make in contenders.items()}
    times = interleaved(contenders, repeats, warmup=1)
    reference = next(iter(times.values())).median
    for name, t in times.items():
        exact = "yes" if kept[name] == expected else f"NO ({kept[name]} vs {expected})"
        print(
            f"  {name:<44} {t.median * 1e3:9.1f} ms   {reference / t.median:6.2f}×   "
            f"exact count: {exact}"
        )


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sparsitylab bench masks",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--sparsity", type=sparsity_value, default=0.9)
    parser.add_argument("--repeats", type=positive_int, default=5)
    parser.add_argument("--device", default="cpu", choices=["cpu", "cuda"])
    args = parser.parse_args(argv)
    if args.device == "cuda" and not torch.cuda.is_available():
        parser.error("--device cuda requested but CUDA is not available")
    device, s = torch.device(args.device), args.sparsity
    torch.manual_seed(0)
    print(
        f"sparsitylab bench masks — sparsity {s}, device {device}, torch {torch.__version__}, "
        f"{cpu_name()}"
    )
    print("  speed-up column = naive sort reference time / this time (higher is faster)\n")

    model = models.mlp((1024, 2048, 2048, 2048, 10)).to(device)
    weights = [m.weight.detach() for m in prunable_layers(model).values()]
    n = sum(w.numel() for w in weights)
    same = all(
        torch.equal(a, b)
        for a, b in zip(
            budget_masks(model, s, "global").values(), global_sort_reference(weights, s)
        )
    )
    print(
        f"[1] global magnitude pruning of an MLP with {n / 1e6:.1f}M weights (masks identical to "
        f"reference: {same})"
    )
    _table(
        {
            "naive: concatenate + full stable sort": lambda: global_sort_reference(weights, s),
            "torch.nn.utils.prune.global_unstructured": lambda: torch_prune_global(model, s),
            "sparsitylab budget_masks(..., 'global')": lambda: budget_masks(model, s, "global"),
        },
        n - pruned_count(n, s),
        args.repeats,
    )

    w = torch.randn(4096, 4096, device=device)
    same = torch.equal(topk_mask(w, s), sort_reference_mask(w.abs(), s))
    print(f"\n[2] top-k mask of a 4096×4096 tensor (masks identical to reference: {same})")
    _table(
        {
            "naive: full stable sort": lambda: sort_reference_mask(w.abs(), s),
            "torch.topk (ties unspecified)": lambda: torch_topk_mask(w, s),
            "sparsitylab topk_mask": lambda: topk_mask(w, s),
        },
        w.numel() - pruned_count(w.numel(), s),
        args.repeats,
    )
    print(
        f"\nTimes are medians of {args.repeats} rounds after 1 warm-up, the contenders of each "
        "task timed round-robin; other processes on the machine add noise."
    )
    return 0
