"""Magnitude pruning as a method: one-shot or gradual (Zhu & Gupta), under any layer budget.

Recipe (Han et al. 2015; Zhu & Gupta 2017, https://arxiv.org/abs/1710.01878; REFERENCE §1.1)::

    method = MagnitudePruning(CubicSchedule(0.0, 0.9, start_step=0, delta=100, n=10), budget="erk")
    model = method.prepare(model)                     # masks at the step-0 target (fixed-mask reparam.)
    fit(model, loader, epochs, callbacks=[method])    # masks recomputed at each pruning event
    model = method.finalize(model)                    # bake W ⊙ M into plain weights

At each pruning event the masks are recomputed from the *effective* weights with
:func:`sparsitylab.sparsify.budgets.budget_masks`; pruned weights are 0 and rank lowest, so sparsity
only grows and masks freeze after the last event. Between events the fixed-mask reparametrisation
(:mod:`sparsitylab.reparam.fixed_mask`) keeps pruned weights exactly zero. Introduced in Chapter 1.
"""

from __future__ import annotations

from torch import nn

from .. import reparam
from ..metrics import global_sparsity
from ..sparsify.budgets import BUDGETS, budget_masks
from ..sparsify.schedules import CubicSchedule, OneShot, Schedule
from .base import Method


class MagnitudePruning(Method):
    """Prune the smallest-|w| weights of Linear/Conv2d layers following ``schedule`` and ``budget``.

    budget: "uniform", "global" or "erk" (see :mod:`sparsitylab.sparsify.budgets`);
    first_dense / last_dense: exclude the first / last prunable layer (the others compensate);
    bake_in: whether :meth:`finalize` removes the reparametrisation (True) or keeps the masks.
    """

    def __init__(
        self,
        schedule: Schedule,
        budget: str = "global",
        first_dense: bool = False,
        last_dense: bool = False,
        bake_in: bool = True,
    ):
        if not isinstance(schedule, (OneShot, CubicSchedule)):
            raise TypeError(
                f"schedule must be OneShot or CubicSchedule, got {type(schedule).__name__}"
            )
        if budget not in BUDGETS:
            raise ValueError(f"budget={budget!r} is not known; use one of {BUDGETS}")
        self.schedule, self.budget = schedule, budget
        self.first_dense, self.last_dense, self.bake_in = first_dense, last_dense, bake_in
        self.events: list[tuple[int, float]] = []  # (step, target sparsity) of every pruning event

    def prune(self, model: nn.Module, sparsity: float, step: int) -> None:
        """Recompute and apply the budget's magnitude masks at ``sparsity`` (one pruning event)."""
        masks = budget_masks(model, sparsity, self.budget, self.first_dense, self.last_dense)
        reparam.apply_masks(model, masks)
        self.events.append((step, sparsity))

    def prepare(self, model: nn.Module) -> nn.Module:
        """Mask every budgeted layer (all-True before t₀), pruning now if step 0 is an event."""
        self.events = []
        if self.schedule.is_pruning_step(0):
            self.prune(model, self.schedule.sparsity_at(0), 0)
        else:  # all-True masks: attach the reparametrisation, prune nothing yet
            reparam.apply_masks(
                model, budget_masks(model, 0.0, self.budget, self.first_dense, self.last_dense)
            )
        return model

    def after_step(self, model: nn.Module, step: int) -> None:
        if step > 0 and self.schedule.is_pruning_step(step):
            self.prune(model, self.schedule.sparsity_at(step), step)

    def on_epoch_end(self, model: nn.Module, epoch: int, record: dict[str, float]) -> None:
        record["sparsity"] = global_sparsity(model)

    def finalize(self, model: nn.Module) -> nn.Module:
        return reparam.remove_masks(model) if self.bake_in else model


def one_shot(sparsity: float, budget: str = "global", **kwargs) -> MagnitudePruning:
    """Prune once to ``sparsity`` before training; fine-tune with fixed masks."""
    return MagnitudePruning(OneShot(sparsity), budget, **kwargs)


def gradual(
    final_sparsity: float,
    total_steps: int,
    budget: str = "global",
    n: int = 10,
    end_fraction: float = 0.75,
    **kwargs,
) -> MagnitudePruning:
    """Zhu & Gupta GMP from dense (s_i = 0, t₀ = 0) to ``final_sparsity`` in ``n`` events that end
    at ``end_fraction`` of ``total_steps``; the rest of training fine-tunes with frozen masks."""
    schedule = CubicSchedule.spanning(total_steps, final_sparsity, n=n, end_fraction=end_fraction)
    return MagnitudePruning(schedule, budget, **kwargs)


__all__ = ["MagnitudePruning", "gradual", "one_shot"]
