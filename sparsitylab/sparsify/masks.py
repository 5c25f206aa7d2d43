"""Magnitude masks: pure, vectorised tensor functions (no modules, no state).

Every function returns a **boolean keep-mask** (``True`` = weight kept) of the weight's shape.
Conventions shared by all of them (introduced in Chapter 1, ``book/01_unstructured_pruning``):

- ``sparsity`` s ∈ [0, 1) is the fraction of zeros; a set of n candidates loses exactly
  ``pruned_count(n, s) = ⌊s·n + ½⌋`` of them (round half up), so the number of non-zeros is exact.
- The lowest scores are pruned. Ties are broken deterministically: among equal scores the one with
  the **lower flat index is kept** (row-major order; for :func:`global_topk_masks`, the order of the
  tensors, then row-major within each).
- Selection uses ``kthvalue`` (linear time) rather than a full sort; a plain threshold ``|w| > t``
  would over-prune when scores tie at t (REFERENCE §1.1), so ties at the threshold are resolved by
  position.

Primitives:

- :func:`mask_from_scores` — the core: keep the largest scores of any tensor to an exact sparsity.
- :func:`topk_mask` — per-tensor magnitude pruning (Han et al. 2015; Zhu & Gupta 2017).
- :func:`global_topk_masks` — one magnitude threshold across many tensors (global budget).
- :func:`block_mask` — rank (bh, bw) blocks by Σ|w| and prune whole blocks (HBsNN, REFERENCE §1.8).
- :func:`nm_mask` — N:M: keep the N largest |w| of every M consecutive weights along the reduction
  dimension (Zhou et al. 2021; for conv, groups of input channels in (out, kh, kw, in) order, §1.7).
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from numbers import Real
from typing import TypeVar

import torch

Tensors = TypeVar("Tensors", Sequence[torch.Tensor], Mapping[str, torch.Tensor])


def check_sparsity(sparsity: float, name: str = "sparsity") -> float:
    """Return ``sparsity`` as a float after checking it is a real number in [0, 1).

    1 is excluded: a layer with every weight pruned computes nothing (the project-wide rule).
    """
    if isinstance(sparsity, bool) or not isinstance(sparsity, Real):
        raise TypeError(
            f"{name}={sparsity!r} must be a real number in [0, 1), got {type(sparsity).__name__}"
        )
    if not 0.0 <= float(sparsity) < 1.0:  # also rejects NaN
        raise ValueError(
            f"{name}={sparsity!r} must lie in [0, 1) (fraction of weights set to zero)"
        )
    return float(sparsity)


def _check_tensor(w: torch.Tensor, name: str = "w") -> None:
    if not isinstance(w, torch.Tensor):
        raise TypeError(f"{name} must be a torch.Tensor, got {type(w).__name__}")
    if not (
        w.is_floating_point()
        or w.dtype in (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)
    ):
        raise TypeError(
            f"{name} has dtype {w.dtype}; a real (floating or integer) tensor is required"
        )
    if w.is_floating_point() and torch.isnan(w).any():
        raise ValueError(f"{name} contains NaN; magnitudes of NaN cannot be ranked")


def pruned_count(numel: int, sparsity: float) -> int:
    """How many of ``numel`` candidates a ``sparsity`` prunes: ⌊s·n + ½⌋ (round half up)."""
    sparsity = check_sparsity(sparsity)
    if numel < 0:
        raise ValueError(f"numel={numel} must be ≥ 0")
    return min(numel, math.floor(sparsity * numel + 0.5))


def _keep_flat(scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Keep-mask of a 1-D ``scores`` pruning exactly ``n_prune`` lowest (ties: higher index
    pruned)."""
    n = scores.numel()
    if n_prune <= 0:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    if n_prune >= n:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    threshold = scores.kthvalue(n_prune).values  # the largest pruned score
    keep = scores > threshold
    keep_tied = (n - n_prune) - int(keep.sum())  # how many scores equal to the threshold survive
    if keep_tied > 0:  # only with ties: keep the first keep_tied of them in flat order
        tied = torch.nonzero(scores == threshold).squeeze(1)
        keep[tied[:keep_tied]] = True
    return keep


def mask_from_scores(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask of ``scores``' shape keeping the largest scores; exactly ``pruned_count`` are
    pruned.

    This is the selection every other function here reuses; pass any importance score
    (|w|, |w·∇w|, block sums, …).
    """
    _check_tensor(scores, "scores")
    return _keep_flat(scores.reshape(-1), pruned_count(scores.numel(), sparsity)).reshape(
        scores.shape
    )


def topk_mask(w: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Magnitude pruning of one tensor: keep the ``numel - ⌊s·numel + ½⌋`` largest |w|.

    m = 1{|w| ranks among the top (1 − s)·n}, ties kept in row-major order.
    """
    _check_tensor(w)
    n_prune = pruned_count(w.numel(), sparsity)
    return _keep_flat(w.detach().abs().reshape(-1), n_prune).reshape(w.shape)


def global_topk_masks(tensors: Tensors, sparsity: float) -> Tensors:
    """Global magnitude pruning: one ranking of |w| over all ``tensors`` together.

    Exactly ``⌊s·Σn + ½⌋`` weights are pruned in total; layers receive whatever share their
    magnitudes earn (which can empty a layer at high sparsity — "layer collapse").
    ``tensors`` is a sequence or a mapping; the result has the same container type.
    """
    items = list(tensors.values()) if isinstance(tensors, Mapping) else list(tensors)
    if not items:
        raise ValueError("tensors is empty: give at least one tensor to prune")
    for i, t in enumerate(items):
        _check_tensor(t, f"tensors[{i}]")
    devices = {t.device for t in items}
    if len(devices) > 1:
        raise ValueError(
            f"tensors live on several devices {sorted(map(str, devices))}; move them to one"
        )
    dtype = (
        torch.promote_types(items[0].dtype, torch.float32)
        if items[0].is_floating_point()
        else torch.float32
    )
    for t in items[1:]:
        dtype = torch.promote_types(dtype, t.dtype)
    flat = torch.cat([t.detach().abs().reshape(-1).to(dtype) for t in items])
    keep = _keep_flat(flat, pruned_count(flat.numel(), sparsity))
    masks = [m.reshape(t.shape) for m, t in zip(keep.split([t.numel() for t in items]), items)]
    if isinstance(tensors, Mapping):
        return dict(zip(tensors.keys(), masks))  # type: ignore[return-value]
    return masks  # type: ignore[return-value]


def _as_pair(value: Sequence[int] | int, name: str) -> tuple[int, int]:
    pair = (
        (value, value) if isinstance(value, int) and not isinstance(value, bool) else tuple(value)
    )
    if len(pair) != 2 or not all(
        isinstance(v, int) and not isinstance(v, bool) and v >= 1 for v in pair
    ):
        raise ValueError(
            f"{name}={value!r} must be a positive int or a pair of positive ints (rows, cols)"
        )
    return pair  # type: ignore[return-value]


def block_mask(w: torch.Tensor, block_shape: Sequence[int] | int, sparsity: float) -> torch.Tensor:
    """Block magnitude pruning: prune the ``⌊s·B + ½⌋`` of the B blocks with the smallest Σ|w|.

    ``w`` is viewed as a matrix of ``w.shape[0]`` rows (a conv weight (K, C, R, S) as K × C·R·S,
    row i = filter i, as HBsNN does) and tiled by ``block_shape = (bh, bw)`` blocks, which must
    divide that matrix exactly. A block is kept or pruned as a whole; ties keep the block that comes
    first in row-major block order. Sparsity counts blocks, so weight sparsity equals it up to the
    rounding of B.
    """
    _check_tensor(w)
    if w.dim() < 2:
        raise ValueError(
            f"w has shape {tuple(w.shape)}; block_mask needs a tensor with ≥ 2 dimensions"
        )
    bh, bw = _as_pair(block_shape, "block_shape")
    rows, cols = w.shape[0], w[0].numel()
    if rows % bh or cols % bw:
        raise ValueError(
            f"block_shape=({bh}, {bw}) does not divide the weight viewed as a {rows}×{cols} matrix "
            f"(from shape {tuple(w.shape)}); choose bh | {rows} and bw | {cols}"
        )
    block_sums = w.detach().abs().reshape(rows // bh, bh, cols // bw, bw).sum(dim=(1, 3))
    keep_blocks = mask_from_scores(block_sums, sparsity)
    keep = keep_blocks[:, None, :, None].expand(rows // bh, bh, cols // bw, bw)
    return keep.reshape(w.shape)


def nm_mask(w: torch.Tensor, n: int, m: int, dim: int = 1) -> torch.Tensor:
    """N:M mask: in every group of ``m`` consecutive weights along ``dim``, keep the ``n`` largest
    |w|.

    ``dim`` is the input (reduction) dimension: 1 for ``nn.Linear`` (out, in) and for
    ``nn.Conv2d`` (out, in, kh, kw). The tensor is viewed with ``dim`` last — for a conv that is
    (out, kh, kw, in), the NHWC grouping of aojunzz/NM-sparsity and NVIDIA ASP (REFERENCE §1.7) —
    and cut into groups of m. Ties keep the earlier weight of the group. ``w.shape[dim]`` must be
    divisible by ``m`` (ASP zero-pads instead; pad before calling if you want that).
    """
    _check_tensor(w)
    for name, value in (("n", n), ("m", m)):
        if isinstance(value, bool) or not isinstance(value, int):
            raise TypeError(f"{name}={value!r} must be an int")
    if not 1 <= n < m:
        raise ValueError(
            f"n={n}, m={m}: need 1 ≤ n < m (keep n of every m weights; n = m is dense, n = 0 empty)"
        )
    if w.dim() == 0:
        raise ValueError("w is a scalar; nm_mask needs a tensor with at least one dimension")
    if not -w.dim() <= dim < w.dim():
        raise ValueError(f"dim={dim} is out of range for a tensor with {w.dim()} dimensions")
    if w.shape[dim] % m:
        raise ValueError(
            f"w.shape[{dim}]={w.shape[dim]} is not divisible by m={m}; "
            f"N:M groups run along dim {dim} (pad it to a multiple of m)"
        )
    moved = w.detach().abs().movedim(dim, -1)
    groups = moved.reshape(*moved.shape[:-1], moved.shape[-1] // m, m)
    order = torch.argsort(groups, dim=-1, descending=True, stable=True)
    keep = torch.zeros(groups.shape, dtype=torch.bool, device=w.device)
    keep.scatter_(-1, order[..., :n], True)
    return keep.reshape(moved.shape).movedim(-1, dim)


def apply_mask(w: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
    """``w ⊙ mask`` (a new tensor; masked entries are exact zeros of ``w``'s dtype)."""
    if mask.shape != w.shape:
        raise ValueError(
            f"mask shape {tuple(mask.shape)} does not match weight shape {tuple(w.shape)}"
        )
    return w * mask.to(w.dtype)


__all__ = [
    "check_sparsity",
    "pruned_count",
    "mask_from_scores",
    "topk_mask",
    "global_topk_masks",
    "block_mask",
    "nm_mask",
    "apply_mask",
]
