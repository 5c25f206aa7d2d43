"""Solutions to ``exercises/01_unstructured_pruning.py`` (for instructors)."""

from __future__ import annotations

import math

import torch


def _keep_flat(magnitudes: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask of a 1-D tensor: the n − ⌊s·n + ½⌋ largest, ties to the lower index."""
    n = magnitudes.numel()
    prune = min(n, math.floor(sparsity * n + 0.5))
    # a stable ascending sort of −|w| lists the largest first, equal values in index order
    order = torch.argsort(-magnitudes, stable=True)
    keep = torch.zeros(n, dtype=torch.bool, device=magnitudes.device)
    keep[order[: n - prune]] = True
    return keep


def topk_keep(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    return _keep_flat(w.detach().abs().reshape(-1), sparsity).reshape(w.shape)


def global_keep(weights: dict[str, torch.Tensor], sparsity: float) -> dict[str, torch.Tensor]:
    flat = torch.cat([w.detach().abs().reshape(-1) for w in weights.values()])
    keep = _keep_flat(flat, sparsity)
    pieces = keep.split([w.numel() for w in weights.values()])
    return {name: piece.reshape(w.shape) for (name, w), piece in zip(weights.items(), pieces)}


def erk_sparsities(shapes: dict[str, tuple[int, ...]], sparsity: float) -> dict[str, float]:
    if sparsity == 0:
        return dict.fromkeys(shapes, 0.0)
    sizes = {name: math.prod(shape) for name, shape in shapes.items()}
    p = {name: sum(shape) / math.prod(shape) for name, shape in shapes.items()}
    dense: set[str] = set()
    while True:
        free = [name for name in shapes if name not in dense]
        rhs = (1 - sparsity) * sum(sizes[n] for n in free) - sparsity * sum(sizes[n] for n in dense)
        epsilon = rhs / sum(p[n] * sizes[n] for n in free)
        largest = max(p[n] for n in free)
        if epsilon * largest <= 1 + 1e-12:
            break
        dense |= {n for n in free if p[n] == largest}
    return {n: 0.0 if n in dense else max(0.0, 1 - epsilon * p[n]) for n in shapes}


def cubic_sparsity(
    step: int, initial: float, final: float, start: int, delta: int, n: int
) -> float:
    if step < start:
        return 0.0
    k = min((step - start) // delta, n)
    return final + (initial - final) * (1 - k / n) ** 3
