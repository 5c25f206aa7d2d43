"""Growth: the tensor rules of dynamic sparse training — drop some active weights, regrow as many.

Pure functions (no modules, no state); :mod:`sparsitylab.methods.growth` drives them during
training. Introduced in Chapter 10 (``book/10_growth``).

- :func:`cosine_fraction` — the annealed drop fraction of RigL, f(t) = (α/2)(1 + cos(π t / T_end))
  (Evci et al., ICML 2020, https://arxiv.org/abs/1911.11134, eq. 1), 0 from T_end on; with a floor
  it is SNFS's cosine-decayed prune rate (Dettmers & Zettlemoyer 2019,
  https://arxiv.org/abs/1907.04840: ``CosineDecay(p, T, eta_min=0.005)`` in their code).
- :func:`drop_grow` — one update of one tensor: drop the ``count`` active entries with the smallest
  drop score, then activate the ``count`` entries with the largest grow score among those not kept.
  As in RigL's code (``_get_update_op``), an entry dropped in this update *may* be regrown in the
  same update; the number of active entries never changes.
- :func:`random_masks` — exact-count random masks at given per-layer sparsities (SET's Erdős–Rényi
  start; RigL's random ERK start).
- :func:`apportion` — split a total count across layers in proportion to scores, each capped by its
  room, exactly (SNFS's redistribution, made exact: see the function).

Ties are broken as everywhere in the library (:mod:`sparsitylab.sparsify.masks`): among equal
scores the lower flat index is kept. RigL's code breaks them with noise of σ = 1e-5 instead.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import torch

from .._checks import check_int, check_tensor
from .masks import _keep_flat, pruned_count


def cosine_fraction(step: int, initial: float, end_step: int, floor: float = 0.0) -> float:
    """floor + (initial − floor)·½(1 + cos(π·step/end_step)) for step < end_step, else 0.

    RigL: ``floor=0``, end_step = T_end (75 % of training). SNFS: floor 0.005, end_step = all
    steps (its rate never reaches 0 before the last update).
    """
    if step >= end_step:
        return 0.0
    return floor + (initial - floor) * 0.5 * (1.0 + math.cos(math.pi * step / end_step))


def drop_grow(
    mask: torch.Tensor,
    drop_score: torch.Tensor,
    grow_score: torch.Tensor,
    drop: int,
    grow: int | None = None,
) -> torch.Tensor:
    """A new keep-mask with ``drop`` active entries dropped and ``grow`` (default ``drop``) grown.

    Dropped: the ``drop`` active entries (``mask`` True) with the smallest ``drop_score``
    (magnitude for SET, RigL and SNFS). Grown: the ``grow`` entries with the largest
    ``grow_score`` among those not kept after the drop (random for SET, |dense gradient| for RigL,
    |momentum| for SNFS) — so an entry just dropped competes for regrowth, as in RigL's code.
    The result has exactly ``active − drop + grow`` True entries (as many as ``mask`` when
    ``grow`` is ``drop``).
    """
    check_tensor(mask, "mask")
    if mask.dtype != torch.bool:
        raise TypeError(f"mask must be a boolean keep-mask, got dtype {mask.dtype}")
    for name, score in (("drop_score", drop_score), ("grow_score", grow_score)):
        if tuple(score.shape) != tuple(mask.shape):
            raise ValueError(
                f"{name} has shape {tuple(score.shape)} but mask has shape {tuple(mask.shape)}"
            )
    flat = mask.reshape(-1)
    active, n = int(flat.sum()), flat.numel()
    drop = check_int(drop, "drop", minimum=0, maximum=active)
    grow = drop if grow is None else check_int(grow, "grow", minimum=0, maximum=n - active + drop)
    if drop == 0 and grow == 0:
        return mask.clone()
    lowest = torch.tensor(-math.inf, device=mask.device)
    drop_scores = torch.where(flat, drop_score.detach().reshape(-1).float(), lowest)
    kept = _keep_flat(drop_scores, n - active + drop)  # the inactive and `drop` active ones go
    grow_scores = torch.where(kept, lowest, grow_score.detach().reshape(-1).float())
    grown = _keep_flat(grow_scores, n - grow)  # keep the `grow` largest among the rest
    return (kept | grown).reshape(mask.shape)


def random_masks(
    shapes: Mapping[str, Sequence[int]],
    sparsities: Mapping[str, float],
    generator: torch.Generator,
    device: torch.device | str = "cpu",
) -> dict[str, torch.Tensor]:
    """A uniformly random keep-mask per tensor with exactly ``⌊s·n + ½⌋`` entries pruned.

    Random scores are drawn from ``generator`` (on the CPU, so a seed gives the same masks on every
    device) in the order of ``shapes``.
    """
    masks = {}
    for name, shape in shapes.items():
        n = math.prod(shape)
        scores = torch.rand(n, generator=generator)
        keep = _keep_flat(scores, pruned_count(n, sparsities[name]))
        masks[name] = keep.reshape(tuple(shape)).to(device)
    return masks


def apportion(total: int, scores: Mapping[str, float], room: Mapping[str, int]) -> dict[str, int]:
    """Integers g_l ≤ room_l with Σ g_l = ``total``, as close to total·score_l / Σ score as the caps
    allow.

    Water-filling: layers whose share exceeds their room get their room and leave; the rest share
    what remains, rounded by largest remainder (ties: layer order). Non-positive or non-finite
    scores count as 0; when every remaining score is 0, the rest is shared equally.

    SNFS's code (``calc_growth_redistribution``) caps at 0.99 of the room, spreads the overflow as
    a mean residual for up to 1000 rounds and corrects the network's total non-zeros only on
    average over later updates ("adjusted growth"); this exact version keeps the count fixed at
    every update, which the library requires of every growth method.
    """
    total = check_int(total, "total", minimum=0)
    if total > sum(room.values()):
        raise ValueError(
            f"total={total} exceeds the room of all layers together ({sum(room.values())})"
        )
    weight = {n: (s if math.isfinite(s) and s > 0 else 0.0) for n, s in scores.items()}
    given = dict.fromkeys(scores, 0)
    free, left = [n for n in scores if room[n] > 0], total
    while left > 0 and free:
        mass = sum(weight[n] for n in free)
        ideal = {n: left * (weight[n] / mass if mass > 0 else 1 / len(free)) for n in free}
        full = [n for n in free if ideal[n] >= room[n] - given[n]]
        if full:
            for n in full:
                left -= room[n] - given[n]
                given[n] = room[n]
            free = [n for n in free if n not in full]
            continue
        floors = {n: math.floor(ideal[n]) for n in free}
        by_remainder = sorted(free, key=lambda n: -(ideal[n] - floors[n]))
        extra = set(by_remainder[: left - sum(floors.values())])
        for n in free:
            given[n] += floors[n] + (n in extra)
        left = 0
    return given


__all__ = ["apportion", "cosine_fraction", "drop_grow", "random_masks"]
