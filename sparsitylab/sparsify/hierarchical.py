"""Hierarchical block sparsity (HBsNN): a weight as a sum of block-sparse levels.

From Vooturi, Mudigere and Avancha, "Hierarchical Block Sparse Neural Networks"
(https://arxiv.org/abs/1808.03420), §2.2–2.3. A layer's sparse matrix is M = M₁ + … + M_N, where
level k is block-sparse with its own block shape (bh_k, bw_k), no entry belongs to two levels, and
block shapes are hierarchical: (bh_{k+1}, bw_{k+1}) divides (bh_k, bw_k). Pruning, level by level:

1. I₁ is the layer's GEMM matrix (a conv weight (K, C, R, S) flattened to K × C·R·S, row i =
   F[i, :, :, :], the ``"chw"`` view of :mod:`sparsitylab.gemm`);
2. level k splits I_k into a grid of (bh_k, bw_k) blocks, scores each block by Σ|w| over it, and
   prunes the fraction sp_k of the grid's blocks with the lowest scores (sp_k counts blocks of the
   **whole** grid, as in the paper's arithmetic: 4x1/63 + 1x1/97 keeps 37 % + 3 % = 40 %);
3. M_k is I_k on the kept blocks, and I_{k+1} = I_k − M_k.

The entries M_k takes are exactly zero in I_{k+1}, so a later level's blocks inside them score 0 and
rank last; because block shapes nest, each later block lies wholly inside or wholly outside an
earlier one. :func:`hierarchical_masks` returns one boolean mask per level, disjoint by
construction; selection is that of :func:`~sparsitylab.sparsify.masks.mask_from_scores` (exact
counts, ties by position), vectorised over blocks, looping only over levels. I_k is never written
out: a block's Σ over I_k is its Σ|w| or, inside a taken block, exactly 0 (:func:`_level_keep`).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .._checks import check_int, check_pair, check_real, check_sparsity, check_tensor
from ..gemm import from_gemm_view, gemm_view
from .masks import _check_weight, _keep_flat, mask_from_scores, pruned_count

Level = tuple[tuple[int, int], float]  # ((bh, bw), sparsity)


def parse_config(text: str) -> list[Level]:
    """The paper's notation → levels: ``"4x1/63+1x1/97"`` → [((4, 1), 0.63), ((1, 1), 0.97)]."""
    levels = []
    for part in text.replace(" ", "").split("+"):
        try:
            shape, percent = part.split("/")
            bh, bw = (int(v) for v in shape.lower().split("x"))
            levels.append(((bh, bw), float(percent) / 100))
        except ValueError:
            raise ValueError(
                f"config={text!r} is not in the paper's notation, e.g. '4x1/63+1x1/97' "
                "(block rows x block cols / percent of that level's blocks pruned)"
            ) from None
    return check_levels(levels)


def check_levels(levels: Sequence[Level]) -> list[Level]:
    """Block shapes positive and hierarchical (each divides the one before); sparsities in
    [0, 1)."""
    if not levels:
        raise ValueError("levels is empty: give at least one ((bh, bw), sparsity) level")
    checked = []
    for i, level in enumerate(levels):
        if not (isinstance(level, Sequence) and len(level) == 2):
            raise TypeError(f"levels[{i}]={level!r} must be a pair ((bh, bw), sparsity)")
        shape = check_pair(level[0], f"levels[{i}] block shape")
        checked.append((shape, check_sparsity(level[1], f"levels[{i}] sparsity")))
    for (outer, _), (inner, _) in zip(checked, checked[1:]):
        if outer[0] % inner[0] or outer[1] % inner[1]:
            raise ValueError(
                f"block shapes {[s for s, _ in checked]} are not hierarchical: {inner} must divide "
                f"{outer} (Dim(M_i) % Dim(M_i+1) = 0)"
            )
    return checked


def fits(shape: Sequence[int], levels: Sequence[Level]) -> bool:
    """True when the first (largest) block shape tiles the GEMM view of a weight of ``shape``."""
    rows, cols = shape[0], int(torch.Size(shape[1:]).numel())
    (bh, bw), _ = levels[0]
    return rows % bh == 0 and cols % bw == 0


def hierarchical_masks(w: torch.Tensor, levels: Sequence[Level]) -> list[torch.Tensor]:
    """One boolean keep-mask per level (w's shape), disjoint; their union is the HBS mask.

    ``levels`` = [((bh₁, bw₁), sp₁), …] (or use :func:`parse_config`); level k keeps exactly
    B_k − ⌊sp_k·B_k + ½⌋ of its B_k blocks, ranked by Σ|remainder| over the block.
    """
    _check_weight(w)
    check_tensor(w, "w", dims=(2, 3, 4, 5))
    levels = check_levels(levels)
    magnitudes = gemm_view(w.detach()).abs()
    rows, cols = magnitudes.shape
    if not fits(w.shape, levels):
        raise ValueError(
            f"block shape {levels[0][0]} does not tile the weight viewed as a {rows}×{cols} matrix "
            f"(from shape {tuple(w.shape)}); the first block shape must divide it"
        )
    alive = None  # entries no earlier level took (the others are 0 in the remainder I_k)
    result = []
    for k, (block, sparsity) in enumerate(levels):
        keep = _level_keep(magnitudes, block, sparsity, alive)
        result.append(from_gemm_view(keep, w.shape))
        if k + 1 < len(levels):
            alive = ~keep if alive is None else alive.bitwise_xor_(keep)  # keep ⊂ alive
    return result


def _level_keep(
    magnitudes: torch.Tensor,
    block: tuple[int, int],
    sparsity: float,
    alive: torch.Tensor | None,
) -> torch.Tensor:
    """One level's element keep-mask: its (bh, bw) blocks ranked by Σ|remainder|, within ``alive``.

    The remainder I_k is never written out. Because block shapes nest, a block of this level lies
    wholly inside or wholly outside the entries earlier levels took, so its Σ over I_k is either its
    Σ|w| (the same numbers summed in the same order) or exactly 0; the selection reads each block's
    first entry of ``alive`` to tell which (``_keep_flat``'s ``alive``).
    """
    rows, cols = magnitudes.shape
    bh, bw = block
    grid = magnitudes.reshape(rows // bh, bh, cols // bw, bw)
    sums = magnitudes if (bh, bw) == (1, 1) else grid.sum(dim=(1, 3))
    live = None if alive is None else alive[::bh, ::bw].reshape(-1)
    # a taken block scores 0; _keep_flat leaves it out even where the ranking reaches it
    keep = _keep_flat(sums.reshape(-1), pruned_count(sums.numel(), sparsity), live)
    keep = keep.reshape(rows // bh, cols // bw)
    return keep[:, None, :, None].expand(grid.shape).reshape(rows, cols)


def union(level_masks: Sequence[torch.Tensor]) -> torch.Tensor:
    """The HBS keep-mask: the union of disjoint level masks."""
    out = level_masks[0].clone()
    for mask in level_masks[1:]:
        out |= mask
    return out


def retained_top(w: torch.Tensor, keep: torch.Tensor, fractions: Sequence[float]) -> list[float]:
    """For each fraction f, the share of the top-f largest-|w| weights that ``keep`` retains (the
    paper's Table 2 statistic). Ties at the cut are ranked by position, as everywhere."""
    out = []
    for f in fractions:
        top = mask_from_scores(w.detach().abs(), 1.0 - f)
        out.append(float((top & keep).sum()) / max(1, int(top.sum())))
    return out


def guaranteed_top(levels: Sequence[Level], fractions: Sequence[float], numel: int) -> list[bool]:
    """For each fraction f, whether ``levels`` keep the whole top-f set of *any* weight of ``numel``
    entries (:func:`retained_top` = 1 by construction, not by measurement).

    Derived here, not stated in the paper: a trailing run of 1×1 levels keeps, one entry at a time,
    the largest magnitudes the coarser levels left; a top-f weight a coarse level did not take
    outranks every other entry left (ties are ranked by position in both selections), so all of
    them survive when the 1×1 levels keep at least as many entries as the top-f set holds:
    Σ_k (numel − ⌊s_k·numel + ½⌋) ≥ numel − ⌊(1 − f)·numel + ½⌋. Assumes the top-f weights are
    non-zero. (The paper's Table 2 shows 100 % for 4x1/70 + 1x1/90 at top 10 %, guaranteed, and for
    4x1/63 + 1x1/97 at top 10 %, measured.)
    """
    levels = check_levels(levels)
    numel = check_int(numel, "numel", minimum=1)
    fine = 0
    for shape, sparsity in reversed(levels):
        if shape != (1, 1):
            break
        fine += numel - pruned_count(numel, sparsity)
    tops = [check_real(f, f"fractions[{i}]", 0.0, 1.0) for i, f in enumerate(fractions)]
    return [f == 0 or fine >= numel - pruned_count(numel, 1.0 - f) for f in tops]


__all__ = [
    "Level",
    "check_levels",
    "fits",
    "guaranteed_top",
    "hierarchical_masks",
    "parse_config",
    "retained_top",
    "union",
]
