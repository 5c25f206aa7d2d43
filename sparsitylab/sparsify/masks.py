"""Magnitude masks: pure, vectorised tensor functions (no modules, no state).

Every function returns a **boolean keep-mask** (``True`` = weight kept) of the weight's shape.
Conventions shared by all of them (introduced in Chapter 1, ``book/01_unstructured_pruning``):

- ``sparsity`` s ∈ [0, 1) is the fraction of the *candidates* that are pruned — weights for
  :func:`topk_mask` and :func:`global_topk_masks`, blocks for :func:`block_mask`, any scored unit
  for :func:`mask_from_scores`. A set of n candidates loses exactly ``pruned_count(n, s) = ⌊s·n +
  ½⌋`` of them (round half up), so the number of non-zeros is exact.
- Weights must be floating point: magnitudes of integer tensors wrap (``abs(int8 -128) = -128``), so
  they are rejected with a ``TypeError``. ``mask_from_scores`` also ranks integer scores exactly.
- The lowest scores are pruned. Ties are broken deterministically: among equal scores the one with
  the **lower flat index is kept** (row-major order; for :func:`global_topk_masks`, the order of the
  tensors, then row-major within each).
- Selection uses ``kthvalue`` (linear time) rather than a full sort; a plain threshold ``|w| > t``
  would over-prune when scores tie at t, so ties at the threshold are resolved by position. From
  2¹⁸ scores on, a fixed-seed sample brackets the cut first and only the scores inside the bracket
  are ranked (the same mask; ``sparsitylab bench hbs`` times it against ranking all of them).

Primitives:

- :func:`mask_from_scores` — the core: keep the largest scores of any tensor to an exact sparsity.
- :func:`topk_mask` — per-tensor magnitude pruning (Han et al. 2015; Zhu & Gupta 2017).
- :func:`global_topk_masks` — one magnitude threshold across many tensors (global budget).
- :func:`block_mask` — rank (bh, bw) blocks of the GEMM view by Σ|w| and prune whole blocks
  (Vooturi et al., "Hierarchical Block Sparse Neural Networks", https://arxiv.org/abs/1808.03420).
- :func:`nm_mask` — N:M: keep the N largest |w| of every M consecutive columns of the GEMM view
  (Zhou et al., ICLR 2021, https://arxiv.org/abs/2102.04010); for a conv the grouping follows the
  ``order`` of :mod:`sparsitylab.gemm` (default: input channels at a fixed tap, the hardware
  layout).
- :func:`top_n_per_group` — the N:M selection itself, on any (groups, m) matrix.
- :func:`zero_pruned` — apply a keep-mask to a tensor: pruned entries become exact zeros.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence
from typing import TypeVar

import torch

from .._checks import check_int, check_nm, check_pair, check_sparsity, check_tensor, check_values
from ..gemm import from_gemm_view, gemm_view
from . import native

Tensors = TypeVar("Tensors", Sequence[torch.Tensor], Mapping[str, torch.Tensor])
INTEGER_SCORES = (torch.int8, torch.int16, torch.int32, torch.int64, torch.uint8)


def _check_scores(scores: torch.Tensor, name: str) -> torch.Tensor:
    """Floating or integer scores without NaN (NaN cannot be ranked), holding values."""
    check_values(check_tensor(scores, name), name)
    if not (scores.is_floating_point() or scores.dtype in INTEGER_SCORES):
        raise TypeError(
            f"{name} has dtype {scores.dtype}; a real (floating or integer) tensor is required"
        )
    # a finite sum proves there is no NaN at the cost of one read; only otherwise look closer
    if scores.is_floating_point() and not torch.isfinite(scores.sum()) and scores.isnan().any():
        raise ValueError(f"{name} contains NaN; NaN scores cannot be ranked")
    return scores


def _check_weight(w: torch.Tensor, name: str = "w") -> torch.Tensor:
    """A floating tensor without NaN: its magnitudes |w| are the scores."""
    check_tensor(w, name)
    if not w.is_floating_point():
        raise TypeError(
            f"{name} has dtype {w.dtype}; magnitude masks need a floating-point tensor "
            "(|x| of the most negative integer wraps around)"
        )
    return _check_scores(w, name)


def pruned_count(numel: int, sparsity: float) -> int:
    """How many of ``numel`` candidates a ``sparsity`` prunes: ⌊s·n + ½⌋ (round half up)."""
    sparsity = check_sparsity(sparsity)
    numel = check_int(numel, "numel", minimum=0)
    return min(numel, math.floor(sparsity * numel + 0.5))


SAMPLED_MIN = 1 << 18  # from this many scores on, bracket the cut from a sample (below: kthvalue)
SAMPLE = 1 << 16  # scores in that sample
MARGIN_SIGMAS = 5.0  # the bracket spans ±5 binomial standard deviations of the cut's sample rank
ONE_SIDED = 1 / 8  # a side this small (kept or pruned share) is ranked whole, saving a comparison


def _keep_flat(
    scores: torch.Tensor, n_prune: int, alive: torch.Tensor | None = None
) -> torch.Tensor:
    """Keep-mask of a 1-D ``scores`` pruning exactly ``n_prune`` lowest (ties: higher index
    pruned). Where the optional boolean ``alive`` is False, the score counts as 0 (the remainder of
    hierarchical pruning, without writing it out) and the entry is left out of the mask even when
    the ranking keeps it (then fewer than ``numel − n_prune`` are kept).

    Large inputs take :func:`_keep_bracketed`; it returns the same mask or, when its bracket misses,
    None, and then (as for small inputs) :func:`_keep_exact` ranks every score.
    """
    n = scores.numel()
    if 0 < n_prune < n and n >= SAMPLED_MIN:
        keep = _keep_bracketed(scores, n_prune, alive)
        if keep is not None:
            return keep
    if alive is None:
        return _keep_exact(scores, n_prune)
    zero = torch.zeros((), dtype=scores.dtype, device=scores.device)
    return _keep_exact(torch.where(alive, scores, zero), n_prune) & alive


def _keep_exact(scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    """:func:`_keep_flat` by one ``kthvalue`` over all scores, then a tie pass by position."""
    n = scores.numel()
    if n_prune <= 0:
        return torch.ones(n, dtype=torch.bool, device=scores.device)
    if n_prune >= n:
        return torch.zeros(n, dtype=torch.bool, device=scores.device)
    threshold = scores.kthvalue(n_prune).values  # the largest pruned score
    keep = scores > threshold
    keep_tied = (n - n_prune) - int(keep.count_nonzero())  # scores equal to it that survive
    if keep_tied > 0:  # only with ties: keep the first keep_tied of them in flat order
        tied = torch.nonzero(scores == threshold).squeeze(1)
        keep[tied[:keep_tied]] = True
    return keep


def _bracket(
    scores: torch.Tensor, n_prune: int, alive: torch.Tensor | None, one_sided: float = ONE_SIDED
) -> tuple[torch.Tensor | None, torch.Tensor | None]:
    """Scores ``lo ≤ hi`` that very likely enclose the cut (the n_prune-th and next smallest score),
    read from a fixed-seed sample of ``SAMPLE`` scores; None for a side left open (a side holding
    at most ``one_sided`` of the scores).

    The cut's rank in the sample is binomial, so ranks ±``MARGIN_SIGMAS`` standard deviations around
    its expectation miss it with probability below 1e-6; a miss costs time, not exactness.
    """
    n = scores.numel()
    generator = torch.Generator(device=scores.device).manual_seed(0)  # the caller's RNG untouched
    picks = torch.randint(n, (SAMPLE,), generator=generator, device=scores.device)
    sample = scores[picks]
    if alive is not None:
        sample.masked_fill_(~alive[picks], 0)
    p = n_prune / n
    centre, margin = p * SAMPLE, MARGIN_SIGMAS * math.sqrt(SAMPLE * p * (1 - p)) + 2
    lo_rank, hi_rank = math.floor(centre - margin), math.ceil(centre + margin)
    lo = sample.kthvalue(lo_rank).values if lo_rank >= 1 and p > one_sided else None
    hi = sample.kthvalue(hi_rank).values if hi_rank <= SAMPLE and p < 1 - one_sided else None
    return lo, hi


def _keep_bracketed(
    scores: torch.Tensor, n_prune: int, alive: torch.Tensor | None
) -> torch.Tensor | None:
    """:func:`_keep_flat` without ranking every score: those above ``hi`` are kept, those below
    ``lo`` pruned, and only the band [lo, hi] between them is ranked (``kthvalue``, ties by the
    band's flat order); None when the band does not hold the cut.

    Two comparisons and the band's ``nonzero`` (one of each when a side is open) instead of a
    selection over all scores, or one compiled pass (:func:`.native.band_select`) where it runs;
    entries not ``alive`` score 0, below any ``lo > 0``.
    """
    # the compiled pass tests both sides at no extra cost: there a narrow two-sided band is cheaper
    # to rank than a one-sided one holding the whole small side
    lo, hi = _bracket(scores, n_prune, alive, 0.0 if native.available() else ONE_SIDED)
    if lo is None and hi is None:
        return None  # a sample too small to bracket anything
    if alive is not None and (lo is None or lo <= 0):
        return None  # the cut may fall among the zeroed entries: rank them all
    fused = native.band_select(scores, alive, lo, hi)  # the same three sets in one compiled pass
    if fused is not None:
        keep, band_index, kept_above = fused
        take = scores.numel() - n_prune - kept_above
        if not 0 <= take <= band_index.numel():
            return None  # the cut lies outside the band
        ranked = _keep_exact(scores.index_select(0, band_index), band_index.numel() - take)
        return keep.index_fill_(0, band_index[ranked], True)
    above = None if hi is None else scores > hi  # kept whatever the band holds
    if lo is None:
        band = ~above
    else:
        band = scores >= lo
        if above is not None:
            band ^= above  # above ⊂ {≥ lo}
    if alive is not None:
        band &= alive
        if above is not None:
            above &= alive
    band_index = torch.nonzero(band).squeeze(1)  # ascending: the band in flat order
    take = scores.numel() - n_prune - (0 if above is None else int(above.count_nonzero()))
    if not 0 <= take <= band_index.numel():
        return None  # the cut lies outside the band
    ranked = _keep_exact(scores.index_select(0, band_index), band_index.numel() - take)
    keep = band.index_fill_(0, band_index[~ranked], False)
    return keep if above is None else keep.bitwise_or_(above)


def mask_from_scores(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask of ``scores``' shape keeping the largest scores; exactly ``pruned_count`` are
    pruned.

    This is the selection every other function here reuses; pass any importance score
    (|w|, |w·∇w|, block sums, …). Integer scores are ranked exactly.
    """
    _check_scores(scores, "scores")
    return _keep_flat(scores.reshape(-1), pruned_count(scores.numel(), sparsity)).reshape(
        scores.shape
    )


def topk_mask(w: torch.Tensor, sparsity: float, name: str = "w") -> torch.Tensor:
    """Magnitude pruning of one tensor: keep the ``numel - ⌊s·numel + ½⌋`` largest |w|.

    m = 1{|w| ranks among the top (1 − s)·n}, ties kept in row-major order. ``name``: how errors
    call the tensor (a layer's name, say).
    """
    _check_weight(w, name)
    n_prune = pruned_count(w.numel(), sparsity)
    return _keep_flat(w.detach().abs().reshape(-1), n_prune).reshape(w.shape)


def global_topk_masks(tensors: Tensors, sparsity: float) -> Tensors:
    """Global magnitude pruning: one ranking of |w| over all ``tensors`` together.

    Exactly ``⌊s·Σn + ½⌋`` weights are pruned in total; layers receive whatever share their
    magnitudes earn (which can empty a layer at high sparsity — "layer collapse").
    ``tensors`` is a sequence or a mapping; the result has the same container type. Magnitudes are
    ranked in the widest floating dtype among the tensors (never narrowed).
    """
    items = list(tensors.values()) if isinstance(tensors, Mapping) else list(tensors)
    if not items:
        raise ValueError("tensors is empty: give at least one tensor to prune")
    names = list(tensors) if isinstance(tensors, Mapping) else range(len(items))
    for key, t in zip(names, items):
        _check_weight(t, f"tensors[{key!r}]")
    devices = {t.device for t in items}
    if len(devices) > 1:
        raise ValueError(
            f"tensors live on several devices {sorted(map(str, devices))}; move them to one"
        )
    dtype = torch.float32  # at least fp32 (kthvalue on fp16 is slow or missing); fp64 stays fp64
    for t in items:
        dtype = torch.promote_types(dtype, t.dtype)
    flat = torch.cat([t.detach().abs().reshape(-1).to(dtype) for t in items])
    keep = _keep_flat(flat, pruned_count(flat.numel(), sparsity))
    masks = [m.reshape(t.shape) for m, t in zip(keep.split([t.numel() for t in items]), items)]
    if isinstance(tensors, Mapping):
        return dict(zip(tensors.keys(), masks))  # type: ignore[return-value]
    return masks  # type: ignore[return-value]


def block_mask(w: torch.Tensor, block_shape: Sequence[int] | int, sparsity: float) -> torch.Tensor:
    """Block magnitude pruning: prune the ``⌊s·B + ½⌋`` of the B blocks with the smallest Σ|w|.

    ``w`` is tiled in its GEMM view (:func:`sparsitylab.gemm.gemm_view`, ``"chw"``: a conv weight
    (K, C, R, S) as K × C·R·S, row i = filter i, as HBsNN does) by ``block_shape = (bh, bw)``
    blocks, which must divide that matrix exactly. A block is kept or pruned as a whole; ties keep
    the block that comes first in row-major block order. Sparsity counts blocks, so weight sparsity
    equals it up to the rounding of B.
    """
    _check_weight(w)
    if w.dim() not in (2, 3, 4, 5):
        raise ValueError(
            f"w has shape {tuple(w.shape)}; block_mask needs a 2-D (Linear) or 3- to 5-D (conv) "
            "weight"
        )
    bh, bw = check_pair(block_shape, "block_shape")
    matrix = gemm_view(w.detach())
    rows, cols = matrix.shape
    if rows % bh or cols % bw:
        raise ValueError(
            f"block_shape=({bh}, {bw}) does not divide the weight viewed as a {rows}×{cols} matrix "
            f"(from shape {tuple(w.shape)}); choose bh | {rows} and bw | {cols}"
        )
    return from_gemm_view(block_keep(matrix.abs(), (bh, bw), sparsity), w.shape)


def block_keep(magnitudes: torch.Tensor, block: tuple[int, int], sparsity: float) -> torch.Tensor:
    """Element keep-mask of a 2-D matrix of magnitudes pruned by whole ``block = (bh, bw)`` tiles:
    the ⌊s·B + ½⌋ of its B tiles with the smallest sums go (``block`` must divide the matrix).

    The step :func:`block_mask` and each level of hierarchical block pruning share.
    """
    rows, cols = magnitudes.shape
    bh, bw = block
    grid = magnitudes.reshape(rows // bh, bh, cols // bw, bw)
    sums = magnitudes if (bh, bw) == (1, 1) else grid.sum(dim=(1, 3))  # 1×1: nothing to add up
    keep_blocks = mask_from_scores(sums.reshape(rows // bh, cols // bw), sparsity)
    return keep_blocks[:, None, :, None].expand(grid.shape).reshape(rows, cols)


def nm_mask(w: torch.Tensor, n: int, m: int, order: str = "hwc") -> torch.Tensor:
    """N:M mask: in every group of ``m`` consecutive columns of the GEMM view, keep the ``n``
    largest |w|.

    Groups run along the input (reduction) dimension: for ``nn.Linear`` (out, in), ``m`` consecutive
    inputs of a row; for ``nn.Conv2d`` (out, in, kh, kw), the grouping of :mod:`sparsitylab.gemm` in
    ``order``: ``"hwc"`` (default) groups ``m`` consecutive input channels at a fixed (out, kh, kw)
    — the layout of NVIDIA ASP, NM-sparsity and sparse tensor cores; ``"chw"`` groups ``m``
    consecutive entries of the flattened (in, kh, kw) row, as the N:M paper's original code did.
    Ties keep the earlier weight of the group. The grouped length must be divisible by ``m`` (ASP
    zero-pads instead; pad before calling if you want that).
    """
    _check_weight(w)
    n, m = check_nm(n, m)
    if w.dim() not in (2, 3, 4, 5):
        raise ValueError(
            f"w has shape {tuple(w.shape)}; nm_mask needs a 2-D (Linear) or 3- to 5-D (conv) weight"
        )
    matrix = gemm_view(w.detach(), order)
    grouped = w.shape[1] if (w.dim() == 2 or order == "hwc") else matrix.shape[1]
    if grouped % m:
        what = (
            "input features"
            if w.dim() == 2
            else ("input channels" if order == "hwc" else "in·kh·kw entries")
        )
        raise ValueError(
            f"w of shape {tuple(w.shape)} has {grouped} {what}, not divisible by m={m}; "
            f"N:M groups run along them (order={order!r}; pad to a multiple of m, or see "
            f"sparsitylab.sparsify.nm for the policies that keep such a layer dense)"
        )
    keep = top_n_per_group(matrix.reshape(-1, m), n)
    return from_gemm_view(keep.reshape(matrix.shape), w.shape, order)


PAIRWISE_MAX_M = 16  # above this, m² comparisons cost more than a sort
GROUP_CHUNK = 1 << 16  # groups per chunk on the CPU: the chunk's temporaries stay in cache


def top_n_per_group(groups: torch.Tensor, n: int) -> torch.Tensor:
    """Keep-mask of ``groups`` (G, m): in every row, the ``n`` largest |values|; ties keep the
    earlier position.

    For m ≤ 16 no sort is needed: the rank of each entry (how many entries of its group beat it) is
    counted with the m(m−1)/2 pairwise comparisons, and an entry is kept when its rank is below n.
    On the CPU (float32/float64) a compiled C loop does this in one pass (:mod:`.native`); the
    PyTorch path runs on chunks of the transposed groups (m contiguous rows of scores), which stay
    in cache, about 10× faster than ``argsort`` for 2:4 (``sparsitylab bench nm``). Larger m use a
    stable ``argsort``; all give the same mask.
    """
    check_tensor(groups, "groups", dims=(2,))
    count, m = groups.shape
    check_int(n, "n", minimum=1, maximum=max(m - 1, 1))
    if m <= PAIRWISE_MAX_M:  # one compiled pass over the groups where it can run (same mask)
        keep = native.top_n_per_group(groups, n)
        if keep is not None:
            return keep
    keep = torch.empty(count, m, dtype=torch.bool, device=groups.device)
    if m > PAIRWISE_MAX_M:
        order = torch.argsort(groups.abs(), dim=-1, descending=True, stable=True)
        return keep.fill_(False).scatter_(-1, order[:, :n], True)
    chunk = GROUP_CHUNK if groups.device.type == "cpu" else max(count, 1)
    scores = torch.empty(m, min(chunk, count), dtype=groups.dtype, device=groups.device)
    rank = torch.empty(scores.shape, dtype=torch.int16, device=groups.device)
    beats = torch.empty(scores.shape[1], dtype=torch.int16, device=groups.device)
    # rank_i = #{j < i: |g_j| ≥ |g_i|} + #{j > i: |g_j| > |g_i|}: start from m−1−i (every later
    # entry beats i), then for each pair i < j where i wins, move that point from i to j
    start = torch.arange(m - 1, -1, -1, dtype=torch.int16, device=groups.device)[:, None]
    for first in range(0, count, chunk):
        size = min(chunk, count - first)
        a, r, b = scores[:, :size], rank[:, :size], beats[:size]
        torch.abs(groups[first : first + size].t(), out=a)
        r.copy_(start.expand(m, size))
        for i in range(m):
            for j in range(i + 1, m):
                torch.ge(a[i], a[j], out=b)  # 1 where i beats j (the earlier entry wins a tie)
                r[j].add_(b)
                r[i].sub_(b)
        torch.lt(r, n, out=keep[first : first + size].t())
    return keep


def zero_pruned(w: torch.Tensor, keep: torch.Tensor) -> torch.Tensor:
    """``w`` with every pruned entry (``keep`` False) set to exactly 0 — a select, not a product, so
    a pruned NaN or ±inf also becomes 0. Kept entries are ``w``'s values, bit for bit."""
    check_tensor(w, "w")
    check_tensor(keep, "keep")
    if keep.shape != w.shape:
        raise ValueError(
            f"keep has shape {tuple(keep.shape)}, which does not match w's shape {tuple(w.shape)}"
        )
    return torch.where(
        keep.to(device=w.device, dtype=torch.bool),
        w,
        torch.zeros((), dtype=w.dtype, device=w.device),
    )


__all__ = [
    "pruned_count",
    "mask_from_scores",
    "topk_mask",
    "global_topk_masks",
    "block_keep",
    "block_mask",
    "nm_mask",
    "top_n_per_group",
    "zero_pruned",
]
