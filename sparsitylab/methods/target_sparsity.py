"""Target-sparsity mode for STR and STR-BN: reach a requested overall sparsity S (±0.5 points).

Neither STR nor STR-BN has one (STR's users ask for it: RAIVNLab/STR issue #14). STR's sparsity
emerges from the weight decay λ_s on its thresholds s, which pulls s toward 0 and so raises
g(s) = sigmoid(s); we therefore control λ_s and leave the per-layer allocation to STR. Two parts
(our construction, derived — not from the papers):

1. **A controller on λ_s during training** (:class:`DecayController`). Every ``every`` optimizer
   steps it measures the sparsity ŝ and sets λ_s from how far ŝ is from a target trajectory::

       λ_s = λ_ref · exp(gain · (τ(t) − ŝ)),   τ(t) = S · (1 − (1 − min(1, t / (f·T)))³)

   the cubic ramp of Zhu & Gupta over the first fraction f (``end_fraction``) of the T steps,
   clamped to [``min_decay``, ``max_decay``], λ_ref the group's own decay. Behind the target λ_s
   grows and s rises faster; ahead of it λ_s falls below λ_ref and the loss gradient, which wants
   the weights back, lowers s. (λ_s sets the *speed* of s, so integral control of λ_s — a second
   integrator — overshot by 5–10 points in our trials.) It costs one pass over the weights'
   magnitudes per update (a few milliseconds on our models) and no extra training runs.
2. **An exact correction** (:func:`hit_target`) where the ramp ends, and again after the last
   step (the rest of training adapts the weights to the corrected thresholds): every threshold
   is multiplied by one common factor c, g_l ← c·g_l, with c between the k-th and (k+1)-th
   smallest ratio |w_i| / g_l(i), k = round(S·N). Then
   exactly k of the N thresholded values fall at or below their threshold (ties aside), and the
   ratios between the layers' thresholds — the learned budget's shape — are kept. The closing
   numbers of Chapter 4 report how far the controller alone got, i.e. how large c was.

A *site* is one threshold parameter s (one value per layer, or per output channel) with the
magnitudes it thresholds: the un-thresholded weight of a :class:`SoftThreshold`, or the γ of an
:class:`STRBatchNorm2d`.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch
from torch import nn

from .._checks import check_int, check_real, check_sparsity
from ..reparam.base import find, stack
from ..reparam.soft_threshold import SoftThreshold
from ..reparam.str_batchnorm import STRBatchNorm2d


@dataclass(frozen=True)
class Site:
    """Magnitudes (one row per value of ``s``) and the threshold parameter ``s`` acting on them."""

    magnitudes: torch.Tensor
    s: nn.Parameter


def _thresholded_input(layer: nn.Module, tensor: str, index: int) -> torch.Tensor:
    """What the reparametrisation at ``index`` of ``layer.<tensor>`` receives."""
    x = getattr(layer.parametrizations, tensor).original
    for below in stack(layer, tensor)[:index]:
        x = below(x)
    return x


@torch.no_grad()
def sites(model: nn.Module) -> list[Site]:
    """Every STR threshold of ``model`` (weights and STR-BN γ) with the magnitudes it prunes."""
    found = []
    for f in find(model, SoftThreshold):
        w = _thresholded_input(f.layer, f.tensor, f.index)
        found.append(Site(w.abs().reshape(f.module.s.numel(), -1), f.module.s))
    found += [
        Site(m.weight.detach().abs().reshape(1, -1), m.s)
        for m in model.modules()
        if isinstance(m, STRBatchNorm2d)
    ]
    return found


def _sites_or_raise(model: nn.Module) -> list[Site]:
    found = sites(model)
    if not found:
        raise ValueError("model has no STR thresholds (prepare it with STR or STR-BN first)")
    return found


@torch.no_grad()
def threshold_sparsity(model: nn.Module) -> float:
    """The fraction of thresholded values (STR weights, STR-BN γ) at or below their threshold."""
    found = _sites_or_raise(model)
    zeros = sum(int((x.magnitudes <= torch.sigmoid(x.s).view(-1, 1)).sum()) for x in found)
    return zeros / sum(x.magnitudes.numel() for x in found)


@torch.no_grad()
def hit_target(model: nn.Module, sparsity: float) -> float:
    """Scale every threshold by one factor c so that round(S·N) values are pruned; returns c.

    In place on the ``s`` parameters (s ← logit(c·sigmoid(s))). ``ValueError`` when the target
    would need a threshold ≥ 1 (sigmoid cannot reach it) or the model has no thresholds.
    """
    sparsity = check_sparsity(sparsity)
    found = _sites_or_raise(model)
    # in float64: sigmoid(s_init = −100) underflows to 0 in float32 but not here
    ratios = torch.cat(
        [(x.magnitudes.double() / torch.sigmoid(x.s.double()).view(-1, 1)).flatten() for x in found]
    )
    k = round(sparsity * ratios.numel())
    # halfway between the k-th and (k+1)-th ratio, so the s ↔ sigmoid round trip cannot move a
    # value across the threshold
    below = float(ratios.kthvalue(k).values) if k > 0 else 0.0
    above = float(ratios.kthvalue(k + 1).values) if k < ratios.numel() else 2 * below
    factor = (below + above) / 2
    for x in found:
        g = torch.sigmoid(x.s.double()) * factor
        if bool((g >= 1).any()):
            raise ValueError(
                f"sparsity={sparsity} needs a threshold of {float(g.max()):.3g} ≥ 1, which "
                "sigmoid(s) cannot reach: values ≥ 1 (e.g. BatchNorm γ at its default 1) can "
                "never be pruned; request less, or start from smaller values"
            )
        x.s.copy_(torch.logit(g).to(x.s.dtype))
    return factor


def cubic_ramp(step: int, total_steps: int, sparsity: float, end_fraction: float) -> float:
    """τ(t) = S·(1 − (1 − min(1, t / (f·T)))³): Zhu & Gupta's ramp from 0 to S, held after f·T."""
    progress = min(1.0, step / max(1.0, end_fraction * total_steps))
    return sparsity * (1.0 - (1.0 - progress) ** 3)


@dataclass
class DecayController:
    """Proportional control of the thresholds' weight decay toward :func:`cubic_ramp` (see the
    module doc): λ_s = λ_ref · exp(gain · (τ(t) − ŝ)), clamped.

    ``trace`` records (step, target, sparsity, decay) at every update, for plots.
    """

    sparsity: float
    total_steps: int
    end_fraction: float = 0.6
    every: int = 5
    gain: float = 60.0
    min_decay: float = 1e-6
    max_decay: float = 0.5
    trace: list[tuple[int, float, float, float]] = field(default_factory=list)
    reference: float | None = None  # λ_ref: the group's decay when control starts

    def __post_init__(self) -> None:
        check_sparsity(self.sparsity)
        check_int(self.total_steps, "total_steps", minimum=1)
        check_real(self.end_fraction, "end_fraction", 0.0, 1.0)
        check_int(self.every, "every", minimum=1)
        check_real(self.gain, "gain", 0.0)
        check_real(self.min_decay, "min_decay", 0.0)
        check_real(self.max_decay, "max_decay", self.min_decay)

    @property
    def ramp_end(self) -> int:
        """The step f·T where the ramp reaches S (the first exact correction)."""
        return max(1, round(self.end_fraction * self.total_steps))

    def update(self, model: nn.Module, group: dict, step: int) -> None:
        """At every ``every``-th step: measure, then set ``group["weight_decay"]``."""
        if step % self.every:
            return
        if self.reference is None:
            self.reference = max(group.get("weight_decay", 0.0), self.min_decay)
        target = cubic_ramp(step, self.total_steps, self.sparsity, self.end_fraction)
        now = threshold_sparsity(model)
        decay = self.reference * math.exp(self.gain * (target - now))
        group["weight_decay"] = decay = min(self.max_decay, max(self.min_decay, decay))
        self.trace.append((step, target, now, decay))


def threshold_group(optimizer: torch.optim.Optimizer, thresholds: list[nn.Parameter]) -> dict:
    """The optimizer group holding the thresholds (all of them must be in one group)."""
    ids = {id(p) for p in thresholds}
    holding = [g for g in optimizer.param_groups if ids & {id(p) for p in g["params"]}]
    if len(holding) != 1 or {id(p) for p in holding[0]["params"]} != ids:
        raise ValueError(
            "target-sparsity mode needs every STR threshold, and nothing else, in one optimizer "
            "group (build the optimizer from method.param_groups(model))"
        )
    return holding[0]


__all__ = [
    "DecayController",
    "Site",
    "cubic_ramp",
    "hit_target",
    "sites",
    "threshold_group",
    "threshold_sparsity",
]
