"""Timing helpers: how many calls they make, what they report, thread restoring (no speed
asserts)."""

from __future__ import annotations

import pytest
import torch

from sparsitylab import timing


def test_interleaved_calls_each_function_in_rounds_and_reports_quartiles():
    order = []
    result = timing.interleaved(
        {"a": lambda: order.append("a"), "b": lambda: order.append("b")}, repeats=4, warmup=1
    )
    assert order == ["a", "b", "b", "a"] * 2 + ["a", "b"]  # each first in turn, warm-up included
    assert result["a"].samples == 4 and result["a"].q1 <= result["a"].median <= result["a"].q3
    assert result["a"].clock == "wall" and "wall clock" in str(result["a"])


def test_measure_uses_pytorchs_timer():
    calls = []
    result = timing.measure(lambda: calls.append(1), min_run_time=0.01)
    assert len(calls) > result.samples >= 1 and result.median > 0  # blocks of many calls


def test_threads_context_restores_the_count_even_on_error():
    before = torch.get_num_threads()
    with pytest.raises(RuntimeError), timing.threads(1):
        assert torch.get_num_threads() == 1
        raise RuntimeError("boom")
    assert torch.get_num_threads() == before


@pytest.mark.parametrize(
    "kwargs,err,msg",
    [
        (dict(repeats=0), ValueError, "repeats=0"),
        (dict(warmup=-1), ValueError, "warmup=-1"),
        (dict(clock="cpu"), ValueError, "clock='cpu'"),
        (dict(clock="thread", num_threads=2), ValueError, "needs num_threads=1"),
        (dict(num_threads=0), ValueError, "num_threads=0"),
        (dict(repeats=2.5), TypeError, "repeats=2.5"),
    ],
)
def test_bad_arguments(kwargs, err, msg):
    with pytest.raises(err, match=msg):
        timing.interleaved({"f": lambda: None}, **kwargs)


def test_cpu_name_names_the_threads():
    with timing.threads(1):
        assert timing.cpu_name().endswith("1 torch thread(s)")


def test_caption_names_machine_threads_clock_batch_repeats_and_spread():
    from sparsitylab.timing import Timing, caption

    timings = {
        "dense": Timing(0.010, 0.009, 0.011, 40, "wall", 1),
        "sparse": Timing(0.020, 0.019, 0.024, 40, "wall", 1),
    }
    text = caption(timings, batch=256, where="Test CPU")
    assert text == (
        "measured on Test CPU, 1 thread(s), wall clock, batch 256, median of 40 rounds, "
        "interquartile range up to 25 % of the median"
    )
    assert "thread CPU time" in caption(Timing(1.0, 0.9, 1.1, 5, "thread", 2))
    mixed = {"a": Timing(1.0, 0.9, 1.1, 5, "wall", 1), "b": Timing(1.0, 0.9, 1.1, 9, "wall", 1)}
    assert "median of 5–9 rounds" in caption(mixed)
    with pytest.raises(ValueError, match="different clocks"):
        caption({**timings, "other": Timing(0.01, 0.01, 0.01, 40, "thread", 1)})
    with pytest.raises(ValueError, match="empty"):
        caption({})


def test_interleaved_rotates_which_call_goes_first_every_round():
    seen = []
    calls = {k: (lambda k=k: seen.append(k)) for k in "abc"}
    timing.interleaved(calls, repeats=3, warmup=0)
    assert "".join(seen) == "abcbcacab"  # each call is first, second and third once
    seen.clear()
    timing.interleaved(calls, repeats=2, warmup=0, order="reverse")
    assert "".join(seen) == "abccba"
    seen.clear()
    timing.interleaved(calls, repeats=2, warmup=0, order="fixed")
    assert "".join(seen) == "abcabc"
    with pytest.raises(ValueError, match="order"):
        timing.interleaved(calls, repeats=1, order="random")


def test_two_identical_callables_time_alike_within_their_spread():
    # the control the chapters' speedups rest on: the same work under two names must not come
    # out faster or slower because of its place in the round (thread CPU time, one thread)
    a, b = torch.randn(96, 96), torch.randn(96, 96)

    def work():
        for _ in range(20):
            a @ b

    t = timing.interleaved({"first": work, "second": work}, repeats=40, warmup=3,
                           num_threads=1, clock="thread")  # fmt: skip
    spread = max((x.q3 - x.q1) / x.median for x in t.values())
    assert abs(t["first"].median / t["second"].median - 1) <= max(spread, 0.05)
