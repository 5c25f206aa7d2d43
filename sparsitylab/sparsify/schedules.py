"""Pruning schedules: *when* the sparsity target changes during training (pure, no state).

A schedule answers two questions for an optimizer step t (t = 0 before the first step):
``sparsity_at(t)`` — the target sparsity after the last pruning event at or before t — and
``is_pruning_step(t)`` — whether masks are recomputed at t. Any object with those methods (and
``final_sparsity``, ``pruning_steps()``) is a :class:`Schedule`; the training callback that applies
one is :class:`sparsitylab.methods.magnitude.MagnitudePruning`.

- :class:`OneShot` — prune once at step 0, then train (fine-tune) with the masks fixed.
- :class:`CubicSchedule` — gradual magnitude pruning (GMP) of Zhu & Gupta 2017
  (https://arxiv.org/abs/1710.01878)::

      s_t = s_f + (s_i − s_f) · (1 − (t − t₀)/(n Δt))³,   t ∈ {t₀, t₀+Δt, …, t₀+nΔt}

  **Variant implemented:** the paper's formula evaluated at the n + 1 pruning events
  t₀ + kΔt, k = 0…n, so the final event prunes to exactly s_f at step t₀ + nΔt and masks are frozen
  afterwards. Between events the target is held. This is *not* the STR repository's per-epoch
  variant (factor (1 − (e − init)/(final − init + 1))³, which only approaches s_f, with masks
  recomputed every forward pass).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Protocol, runtime_checkable

from .._checks import check_int, check_real, check_sparsity


@runtime_checkable
class Schedule(Protocol):
    """What a pruning method asks of a schedule (steps count optimizer steps; 0 = before the
    first)."""

    @property
    def final_sparsity(self) -> float: ...

    def sparsity_at(self, step: int) -> float: ...

    def is_pruning_step(self, step: int) -> bool: ...

    def pruning_steps(self) -> list[int]: ...


def _check_step(step: int) -> int:
    return check_int(step, "step", minimum=0)


@dataclass(frozen=True)
class OneShot:
    """Prune to ``sparsity`` once, before the first optimizer step; masks stay fixed afterwards."""

    sparsity: float

    def __post_init__(self) -> None:
        check_sparsity(self.sparsity)

    @property
    def final_sparsity(self) -> float:
        return self.sparsity

    @property
    def final_step(self) -> int:
        return 0

    def sparsity_at(self, step: int) -> float:
        _check_step(step)
        return self.sparsity

    def is_pruning_step(self, step: int) -> bool:
        return _check_step(step) == 0

    def pruning_steps(self) -> list[int]:
        return [0]


@dataclass(frozen=True)
class CubicSchedule:
    """Zhu & Gupta's cubic schedule: from ``initial_sparsity`` s_i at ``start_step`` t₀ to
    ``final_sparsity`` s_f in ``n`` pruning events spaced ``delta`` (Δt) optimizer steps apart."""

    initial_sparsity: float
    final_sparsity: float
    start_step: int
    delta: int
    n: int

    def __post_init__(self) -> None:
        check_sparsity(self.initial_sparsity, "initial_sparsity")
        check_sparsity(self.final_sparsity, "final_sparsity")
        if self.initial_sparsity > self.final_sparsity:
            raise ValueError(
                f"initial_sparsity={self.initial_sparsity} exceeds final_sparsity="
                f"{self.final_sparsity}; sparsity only grows under this schedule"
            )
        for name, low in (("start_step", 0), ("delta", 1), ("n", 1)):
            check_int(getattr(self, name), name, minimum=low)

    @property
    def final_step(self) -> int:
        """t₀ + nΔt: the last pruning event, where the target reaches s_f exactly."""
        return self.start_step + self.n * self.delta

    def sparsity_at(self, step: int) -> float:
        """Target after the last event at or before ``step``; 0 before t₀ (nothing pruned yet)."""
        step = _check_step(step)
        if step < self.start_step:
            return 0.0
        k = min((step - self.start_step) // self.delta, self.n)
        progress = k / self.n
        return (
            self.final_sparsity
            + (self.initial_sparsity - self.final_sparsity) * (1.0 - progress) ** 3
        )

    def is_pruning_step(self, step: int) -> bool:
        step = _check_step(step)
        offset = step - self.start_step
        return 0 <= offset <= self.n * self.delta and offset % self.delta == 0

    def pruning_steps(self) -> list[int]:
        """The n + 1 event steps t₀, t₀+Δt, …, t₀+nΔt."""
        return list(range(self.start_step, self.final_step + 1, self.delta))

    @classmethod
    def spanning(
        cls,
        total_steps: int,
        final_sparsity: float,
        initial_sparsity: float = 0.0,
        start_fraction: float = 0.0,
        end_fraction: float = 0.75,
        n: int = 10,
    ) -> CubicSchedule:
        """A schedule pruning between ``start_fraction`` and ``end_fraction`` of ``total_steps`` in
        ``n`` events (Zhu & Gupta prune early enough to recover; RigL ends at ~3/4 of training)."""
        check_int(total_steps, "total_steps", minimum=1)
        check_int(n, "n", minimum=1)
        check_real(start_fraction, "start_fraction", 0.0, 1.0)
        check_real(end_fraction, "end_fraction", 0.0, 1.0)
        if not start_fraction < end_fraction:
            raise ValueError(
                f"start_fraction={start_fraction}, end_fraction={end_fraction}: "
                f"need 0 ≤ start < end ≤ 1"
            )
        start = round(start_fraction * total_steps)
        delta = (round(end_fraction * total_steps) - start) // n
        if delta < 1:
            raise ValueError(
                f"total_steps={total_steps} is too few for n={n} events between "
                f"{start_fraction} and {end_fraction} of training"
            )
        return cls(initial_sparsity, final_sparsity, start, delta, n)


__all__ = ["CubicSchedule", "OneShot", "Schedule"]
