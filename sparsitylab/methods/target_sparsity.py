"""Target-sparsity mode for STR and STR-BN: reach a requested overall sparsity S exactly.

Neither STR nor STR-BN has one (STR's users ask for it: RAIVNLab/STR issue #14). From STR: the
operator 𝒮_g(W, s) = sign(W)·ReLU(|W| − g(s)) (the paper's S_g), g = sigmoid, and (read from its
code) that the sparsity emerges from the weight decay λ_s on the thresholds s, which pulls s
toward 0 and so raises g(s). Everything below is our construction (derived — not from the
papers). It leaves the per-layer allocation to STR and controls only the overall sparsity Ŝ,
against the cubic ramp of Zhu & Gupta over the first fraction f (``end_fraction``) of the T
optimizer steps::

    s_t = S · (1 − (1 − min(1, t / (f·T)))³)

:class:`DecayController`, after every optimizer step:

1. **A ceiling, enforced by rescaling.** Whenever Ŝ > s_t + ``tolerance``, :func:`hit_target`
   rescales every threshold to s_t and the thresholds' optimizer state (momentum) is dropped.
   This is what keeps the network alive: λ_s only sets the *speed* of s, and from s_init = −100
   (g′(s) ≈ 0 there, so nothing but decay moves s; the decay sits at the clamp ``max_decay``
   while Ŝ lags) momentum brings s far too fast. It used to cross the few units of s where the
   weights sit in one step and go on to g(s) ≈ 1: 100 % of the weights pruned, ∂L/∂s = 0, no
   way back (digits, 3-conv CNN: Ŝ from 0.4 to 1 at step 17). Now it is cut back to the ramp on
   the step it overshoots. Lagging behind the ramp is allowed (it only prunes later).
2. **A proportional controller on λ_s** below the ceiling::

       λ_s = λ_ref · exp(gain · (s_t − Ŝ)),   clamped to [min_decay, max_decay],

   λ_ref the group's own decay. Behind the target λ_s grows and s rises faster; ahead of it
   λ_s falls below λ_ref and the loss gradient, which wants the weights back, lowers s. In
   between, STR's own dynamics (loss gradient against decay, per layer) move the thresholds.
3. **An exact rescale to S at the ramp's end, then the thresholds hold.** Whatever Ŝ lags is
   pruned at f·T at once, with the remaining (1 − f)·T steps to train after it. From then on
   the controller writes the thresholds back after every step (the optimizer's step on s is
   undone; a ceiling rescale, if the weights shrink that far, sets new ones): left free, the loss
   gradient pulled them down (digits, S = 0.95: Ŝ from 0.95 to 0.87 in 20 steps) and the last
   rescale had to cut the difference with no training after it. Held, Ŝ only drifts as the
   weights move, and the **final exact rescale** after the last step (kept: it makes Ŝ = S
   exactly) moves that drift: under 1 point on our digits runs, mostly un-pruning weights that
   shrank below their threshold (κ slightly below 1).

Each rescale multiplies every threshold by one common factor κ, g_l ← κ·g_l, with κ between the
k-th and (k+1)-th smallest ratio |w_i| / g_l(i), k = round(s_t · Σ_l N_l): exactly k of the Σ_l N_l
thresholded values then fall at or below their threshold (ties aside), and the ratios between the
layers' thresholds — the learned budget's shape — are kept. κ measures thresholds, not weights:
the method records every rescale as (step, κ) in ``corrections`` (the last, at step T, is the final
one) and ``trace`` has Ŝ before and after each. One pass over the weights' magnitudes per step,
no extra training runs.

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
    return _sparsity(_sites_or_raise(model))


@torch.no_grad()
def _sparsity(found: list[Site]) -> float:
    zeros = sum(int((x.magnitudes <= torch.sigmoid(x.s).view(-1, 1)).sum()) for x in found)
    return zeros / sum(x.magnitudes.numel() for x in found)


@torch.no_grad()
def hit_target(model: nn.Module, sparsity: float) -> float:
    """Scale every threshold by one factor κ so that round(S·N) values are pruned; returns κ.

    In place on the ``s`` parameters (s ← logit(κ·sigmoid(s))). ``ValueError`` when the target
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
    """s_t = S·(1 − (1 − min(1, t / (f·T)))³): Zhu & Gupta's ramp from 0 to S, held after f·T."""
    progress = min(1.0, step / max(1.0, end_fraction * total_steps))
    return sparsity * (1.0 - (1.0 - progress) ** 3)


@dataclass
class DecayController:
    """Keeps the overall threshold sparsity Ŝ at or below :func:`cubic_ramp` by rescaling the
    thresholds, steers their weight decay toward the ramp, and holds them from the ramp's end on
    (see the module doc).

    ``trace`` records (step, target s_t, Ŝ measured, Ŝ after any rescale, decay set) after every
    step, for plots. ``reference`` is λ_ref, the group's decay when control starts; ``held`` the
    thresholds s fixed at the ramp's end (plain lists, for checkpoints).
    """

    sparsity: float
    total_steps: int
    end_fraction: float = 0.6
    gain: float = 60.0
    min_decay: float = 1e-6
    max_decay: float = 0.5
    tolerance: float = 0.01
    trace: list[tuple[int, float, float, float, float]] = field(default_factory=list)
    reference: float | None = None
    held: list[list[float]] | None = None

    def __post_init__(self) -> None:
        check_sparsity(self.sparsity)
        check_int(self.total_steps, "total_steps", minimum=1)
        check_real(self.end_fraction, "end_fraction", 0.0, 1.0)
        check_real(self.gain, "gain", 0.0)
        check_real(self.min_decay, "min_decay", 0.0)
        check_real(self.max_decay, "max_decay", self.min_decay)
        check_real(self.tolerance, "tolerance", 0.0, 1.0)

    @property
    def ramp_end(self) -> int:
        """The step f·T where the ramp reaches S: the exact rescale, then the thresholds hold."""
        return max(1, round(self.end_fraction * self.total_steps))

    def target(self, step: int) -> float:
        """s_t at ``step``, the ramp's sparsity after ``step``."""
        return cubic_ramp(step, self.total_steps, self.sparsity, self.end_fraction)

    @torch.no_grad()
    def update(self, model: nn.Module, optimizer: torch.optim.Optimizer, step: int) -> float | None:
        """After optimizer step ``step``: hold (from the ramp's end), measure Ŝ, rescale when the
        ceiling or the schedule asks, set the thresholds' decay. Returns the rescale factor κ, or
        None when there was no rescale.

        The thresholds' group is looked up in ``optimizer`` every time: loading an optimizer
        state (resuming) replaces the group dicts, so a kept reference would go stale.
        """
        found = _sites_or_raise(model)
        group = threshold_group(optimizer, [x.s for x in found])
        if self.reference is None:
            self.reference = max(group.get("weight_decay", 0.0), self.min_decay)
        if self.held is not None:  # undo the optimizer's step on s
            for x, s in zip(found, self.held, strict=True):
                x.s.copy_(torch.tensor(s, dtype=x.s.dtype).view_as(x.s))
        target, now = self.target(step), _sparsity(found)
        factor, after = None, now
        if step in (self.ramp_end, self.total_steps) or now > target + self.tolerance:
            factor = hit_target(model, target)
            for x in found:  # the momentum that carried s past the ramp must not do it again
                optimizer.state.pop(x.s, None)
            after = _sparsity(found)
            if self.held is not None or step == self.ramp_end:
                self.held = [x.s.flatten().tolist() for x in found]
        decay = self.reference * math.exp(self.gain * (target - after))
        group["weight_decay"] = decay = min(self.max_decay, max(self.min_decay, decay))
        self.trace.append((step, target, now, after, decay))
        return factor

    def state_dict(self) -> dict:
        """Everything the controller evolves (λ_ref, the held thresholds, the trace)."""
        trace = [list(t) for t in self.trace]
        return {"reference": self.reference, "held": self.held, "trace": trace}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""
        self.reference, self.held = state.get("reference"), state.get("held")
        self.trace = [(int(t[0]), *map(float, t[1:])) for t in state.get("trace", [])]


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
