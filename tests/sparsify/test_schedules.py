"""Pruning schedules: Zhu & Gupta cubic values, events, final step, and argument checks."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsitylab.sparsify.schedules import CubicSchedule, OneShot

PROPERTY = settings(max_examples=80, deadline=None)  # per test, not a global profile


def zhu_gupta(t, s_i, s_f, t0, dt, n):
    """The paper's formula, s_t = s_f + (s_i − s_f)(1 − (t − t0)/(nΔt))³, at an event step t."""
    return s_f + (s_i - s_f) * (1 - (t - t0) / (n * dt)) ** 3


schedules = st.builds(
    lambda si, extra, t0, dt, n: CubicSchedule(si, min(0.99, si + extra), t0, dt, n),
    st.floats(0, 0.5),
    st.floats(0, 0.5),
    st.integers(0, 50),
    st.integers(1, 20),
    st.integers(1, 12),
)


@PROPERTY
@given(schedules)
def test_events_follow_formula_and_end_exactly_at_final(s):
    steps = s.pruning_steps()
    assert len(steps) == s.n + 1 and steps[0] == s.start_step and steps[-1] == s.final_step
    for t in steps:
        assert s.is_pruning_step(t)
        assert s.sparsity_at(t) == pytest.approx(
            zhu_gupta(t, s.initial_sparsity, s.final_sparsity, s.start_step, s.delta, s.n),
            abs=1e-12,
        )
    assert s.sparsity_at(s.start_step) == pytest.approx(s.initial_sparsity)
    assert s.sparsity_at(s.final_step) == s.final_sparsity  # exactly, not asymptotically
    assert s.sparsity_at(s.final_step + 1000) == s.final_sparsity
    assert not s.is_pruning_step(s.final_step + s.delta)


@PROPERTY
@given(schedules, st.integers(0, 400))
def test_target_is_held_between_events_and_monotone(s, t):
    last_event = max([e for e in s.pruning_steps() if e <= t], default=None)
    expected = 0.0 if last_event is None else s.sparsity_at(last_event)
    assert s.sparsity_at(t) == expected
    assert s.sparsity_at(t + 1) >= s.sparsity_at(t)


def test_cubic_prunes_fast_early_and_slow_late():
    s = CubicSchedule(0.0, 0.9, 0, 10, 10)
    first, last = s.sparsity_at(10) - s.sparsity_at(0), s.sparsity_at(100) - s.sparsity_at(90)
    assert first > 10 * last
    assert s.sparsity_at(50) == pytest.approx(0.9 * (1 - 0.5**3))
    assert s.sparsity_at(5) == 0.0 and not s.is_pruning_step(5)


def test_before_start_nothing_is_pruned():
    s = CubicSchedule(0.2, 0.8, 30, 5, 4)
    assert s.sparsity_at(29) == 0.0 and s.sparsity_at(30) == pytest.approx(0.2)


def test_spanning_fits_events_into_training():
    s = CubicSchedule.spanning(1000, 0.95, n=10, end_fraction=0.75)
    assert s.start_step == 0 and s.final_step <= 750 and s.delta == 75
    with pytest.raises(ValueError, match="too few"):
        CubicSchedule.spanning(5, 0.9, n=10)
    with pytest.raises(ValueError, match="start_fraction"):
        CubicSchedule.spanning(100, 0.9, start_fraction=0.8, end_fraction=0.5)


def test_one_shot():
    s = OneShot(0.9)
    assert s.is_pruning_step(0) and not s.is_pruning_step(1)
    assert s.sparsity_at(0) == s.sparsity_at(500) == s.final_sparsity == 0.9 and s.final_step == 0


@pytest.mark.parametrize(
    "kwargs,msg",
    [
        (dict(initial_sparsity=0.5, final_sparsity=0.2), "exceeds"),
        (dict(final_sparsity=1.2), "final_sparsity"),
        (dict(delta=0), "delta"),
        (dict(n=0), "n=0"),
        (dict(start_step=-1), "start_step"),
    ],
)
def test_bad_arguments_raise(kwargs, msg):
    args = dict(initial_sparsity=0.0, final_sparsity=0.9, start_step=0, delta=10, n=5) | kwargs
    with pytest.raises(ValueError, match=msg):
        CubicSchedule(**args)


def test_a_non_int_step_count_is_a_type_error():
    with pytest.raises(TypeError, match="n=2.5"):
        CubicSchedule(0.0, 0.9, 0, 10, 2.5)


def test_bad_step_raises():
    with pytest.raises(ValueError, match="step=-1"):
        CubicSchedule(0.0, 0.9, 0, 10, 5).sparsity_at(-1)
    with pytest.raises(ValueError, match="sparsity"):
        OneShot(-0.1)


@pytest.mark.parametrize(
    "kwargs, match",
    [({"n": 0}, "n=0"), ({"n": -1}, "n=-1"), ({"total_steps": 0}, "total_steps=0")],
)
def test_spanning_names_a_bad_event_count_or_step_count(kwargs, match):
    options = {"total_steps": 100, "final_sparsity": 0.9, **kwargs}
    with pytest.raises(ValueError, match=match):
        CubicSchedule.spanning(**options)
