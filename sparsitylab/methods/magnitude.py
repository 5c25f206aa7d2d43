"""Magnitude pruning as a method: one-shot or gradual (Zhu & Gupta), under any layer budget.

Recipe (Han et al., NeurIPS 2015, https://arxiv.org/abs/1506.02626: prune, then fine-tune; Zhu &
Gupta 2017, https://arxiv.org/abs/1710.01878: the gradual cubic schedule)::

    method = MagnitudePruning(CubicSchedule(0.0, 0.9, start_step=0, delta=100, n=10), budget="erk")
    run = runner.run(method, model, loaders, epochs=3)   # masks recomputed at each pruning event

At each pruning event the masks are recomputed from the *effective* weights with
:func:`sparsitylab.sparsify.budgets.budget_masks`; pruned weights are 0 and rank lowest, so sparsity
only grows and masks freeze after the last event. Between events the fixed-mask reparametrisation
(:mod:`sparsitylab.reparam.fixed_mask`) keeps pruned weights exactly zero. The budget may differ
from the papers': Han et al. and Zhu & Gupta prune each layer by its own threshold ("uniform" here),
a "global" budget ranks all layers together. Introduced in Chapter 1.
"""

from __future__ import annotations

from typing import Any

from torch import nn

from .. import reparam
from .._checks import check_choice
from ..coverage import Scope, check_scope
from ..sparsify.budgets import BUDGETS, budget_masks
from ..sparsify.schedules import CubicSchedule, OneShot, Schedule
from . import register
from .base import Method


@register
class MagnitudePruning(Method):
    """Prune the smallest-|w| weights of every weight matrix following ``schedule`` and ``budget``.

    schedule: any :class:`~sparsitylab.sparsify.schedules.Schedule` (one-shot, cubic, or your own);
    budget: "uniform", "global" or "erk" (see :mod:`sparsitylab.sparsify.budgets`);
    first_dense / last_dense: exclude the first / last covered matrix (the others compensate);
    scope: which weight matrices (:mod:`sparsitylab.coverage`; default every one).
    """

    name = "magnitude"

    def __init__(
        self,
        schedule: Schedule,
        budget: str = "global",
        first_dense: bool = False,
        last_dense: bool = False,
        scope: Scope = None,
    ):
        if not isinstance(schedule, Schedule):
            raise TypeError(
                f"schedule must be a Schedule (sparsity_at, is_pruning_step, final_sparsity, "
                f"pruning_steps), got {type(schedule).__name__}"
            )
        self.schedule, self.budget = schedule, check_choice(budget, "budget", BUDGETS)
        self.first_dense, self.last_dense = first_dense, last_dense
        self.scope = check_scope(scope)
        self.events: list[tuple[int, float]] = []  # (step, target sparsity) of every pruning event

    @classmethod
    def from_options(
        cls,
        sparsity: float,
        budget: str = "global",
        schedule: str = "one_shot",
        total_steps: int | None = None,
        n: int = 10,
        end_fraction: float = 0.75,
        first_dense: bool = False,
        last_dense: bool = False,
        scope: Scope = None,
    ) -> MagnitudePruning:
        """Build from flat options: ``schedule`` "one_shot" or "gradual" (needs ``total_steps``)."""
        check_choice(schedule, "schedule", ("one_shot", "gradual"))
        if schedule == "one_shot":
            return cls(OneShot(sparsity), budget, first_dense, last_dense, scope)
        if total_steps is None:
            raise ValueError(
                "schedule='gradual' needs total_steps (the optimizer steps of training)"
            )
        return cls(
            CubicSchedule.spanning(total_steps, sparsity, n=n, end_fraction=end_fraction),
            budget,
            first_dense,
            last_dense,
            scope,
        )

    def _masks(self, model: nn.Module, sparsity: float):
        return budget_masks(
            model, sparsity, self.budget, self.first_dense, self.last_dense, scope=self.scope
        )

    def prune(self, model: nn.Module, sparsity: float, step: int) -> None:
        """Recompute and apply the budget's magnitude masks at ``sparsity`` (one pruning event)."""
        reparam.apply_masks(model, self._masks(model, sparsity))
        self.events.append((step, sparsity))

    def prepare(self, model: nn.Module, example_input: Any = None) -> nn.Module:
        """Mask every budgeted matrix (all-True before t₀), pruning now if step 0 is an event."""
        self.events = []
        if self.schedule.is_pruning_step(0):
            self.prune(model, self.schedule.sparsity_at(0), 0)
        else:  # all-True masks: attach the reparametrisation, prune nothing yet
            reparam.apply_masks(model, self._masks(model, 0.0))
        return model

    def after_step(self, model: nn.Module, step: int) -> None:
        if step > 0 and self.schedule.is_pruning_step(step):
            self.prune(model, self.schedule.sparsity_at(step), step)

    def freeze(self, model: nn.Module) -> None:
        """Nothing to do: between pruning events the masks are fixed already."""

    def state_dict(self) -> dict:
        return {"events": [list(event) for event in self.events]}

    def load_state_dict(self, state: dict) -> None:
        self.events = [(int(step), float(s)) for step, s in state["events"]]


def one_shot(sparsity: float, budget: str = "global", **kwargs) -> MagnitudePruning:
    """Prune once to ``sparsity`` before training; fine-tune with fixed masks."""
    return MagnitudePruning.from_options(sparsity, budget, "one_shot", **kwargs)


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
    return MagnitudePruning.from_options(
        final_sparsity, budget, "gradual", total_steps, n, end_fraction, **kwargs
    )


__all__ = ["MagnitudePruning", "gradual", "one_shot"]
