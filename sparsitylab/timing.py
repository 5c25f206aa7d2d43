"""The one place that times code: steady-state and interleaved medians, thread control, the CPU's
name.

- :func:`measure` — the steady-state time of one call, by
  ``torch.utils.benchmark.Timer.blocked_autorange`` (PyTorch's own timer: it sets the thread count,
  synchronises CUDA and picks how many calls to time).
- :func:`interleaved` — several calls timed round-robin (one of each per round), so a busy spell on
  a shared machine slows all of them alike and their *ratios* stay fair; the benchmarks of sparse
  kernels need that.
- :func:`threads` — run a block with ``n`` torch threads and restore the previous count, whatever
  happens.
- :func:`cpu_model`, :func:`cpu_name` — the CPU model (and torch's thread count), recorded with
  every measurement.

Everything is timed under ``torch.no_grad()`` (inference); every result is a :class:`Timing`, which
says which clock and how many threads measured it.
"""

from __future__ import annotations

import os
import platform
import re
import statistics
import time
from collections.abc import Callable, Iterator, Mapping
from contextlib import contextmanager
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path

import torch
from torch.utils import benchmark

from ._checks import check_choice, check_int, check_real

CLOCKS = ("wall", "thread")


@dataclass(frozen=True)
class Timing:
    """Seconds per call: median and quartiles over ``samples`` measurements, with how they were
    taken."""

    median: float
    q1: float
    q3: float
    samples: int
    clock: str
    threads: int

    def __str__(self) -> str:
        return (
            f"{self.median * 1e3:.3f} ms (IQR {self.q1 * 1e3:.3f}-{self.q3 * 1e3:.3f} ms, "
            f"n={self.samples}, {'wall clock' if self.clock == 'wall' else 'thread CPU time'}, "
            f"{self.threads} thread(s))"
        )


def _timing(times: list[float], clock: str, threads: int) -> Timing:
    q1, _, q3 = (
        statistics.quantiles(times, n=4, method="inclusive") if len(times) > 1 else times * 3
    )
    return Timing(statistics.median(times), q1, q3, len(times), clock, threads)


@contextmanager
def threads(n: int) -> Iterator[None]:
    """Run the block with ``n`` torch (intra-op) threads; the previous count is restored
    afterwards."""
    n = check_int(n, "threads", minimum=1)
    previous = torch.get_num_threads()
    torch.set_num_threads(n)
    try:
        yield
    finally:
        torch.set_num_threads(previous)


def _thread_count(num_threads: int | None) -> int:
    """``num_threads`` checked, or torch's current thread count when it is None."""
    if num_threads is None:
        return torch.get_num_threads()
    return check_int(num_threads, "num_threads", minimum=1)


def measure(
    fn: Callable[[], object], min_run_time: float = 0.2, num_threads: int | None = None
) -> Timing:
    """Steady-state wall time of ``fn()`` per call (``Timer.blocked_autorange``: blocks of calls for
    at least ``min_run_time`` seconds; median and quartiles over the blocks). ``num_threads``:
    default the current count."""
    check_real(min_run_time, "min_run_time", minimum=0.0)
    n = _thread_count(num_threads)
    timer = benchmark.Timer(stmt="fn()", globals={"fn": fn}, num_threads=n)
    with torch.no_grad():
        result = timer.blocked_autorange(min_run_time=min_run_time)
    return _timing(list(result.times), "wall", n)


def _clock(clock: str, n: int) -> Callable[[], float]:
    check_choice(clock, "clock", CLOCKS)
    if clock == "thread" and n != 1:
        raise ValueError(
            f"clock='thread' measures only the calling thread; it needs num_threads=1, not {n}"
        )
    return time.thread_time if clock == "thread" else time.perf_counter


def interleaved(
    calls: Mapping[str, Callable[[], object]],
    repeats: int = 30,
    warmup: int = 3,
    num_threads: int | None = None,
    clock: str = "wall",
    order: str = "rotate",
) -> dict[str, Timing]:
    """Median seconds per call of each of ``calls``, timed round-robin: every round calls each once.

    ``order``: ``"rotate"`` (default) starts round r at call r mod k, so over the rounds every
    call runs first, second, … equally often and none always runs right after the same other one
    (a fixed order biases the comparison: the first call pays for cold caches and clock ramps, the
    later ones inherit warm ones); ``"reverse"`` reverses the order every other round (the same
    for two calls); ``"fixed"`` keeps the given order in every round (measurably biased: only for
    reproducing old numbers).

    ``clock``: ``"wall"`` (``time.perf_counter``, CUDA synchronised around each call) or
    ``"thread"`` (CPU time of the calling thread, ``time.thread_time``: with one thread, other
    processes on a shared machine then do not distort it). ``warmup`` rounds run first, untimed
    (thread pools, caches, MKL's inspector).
    """
    repeats, warmup = (
        check_int(repeats, "repeats", minimum=1),
        check_int(warmup, "warmup", minimum=0),
    )
    check_choice(order, "order", ORDERS)
    n = _thread_count(num_threads)
    now = _clock(clock, n)
    sync = torch.cuda.synchronize if torch.cuda.is_available() else (lambda: None)
    times: dict[str, list[float]] = {name: [] for name in calls}
    with threads(n), torch.no_grad():
        for round_ in range(warmup + repeats):
            for name, call in _round_order(list(calls.items()), order, round_):
                sync()
                start = now()
                call()
                sync()
                if round_ >= warmup:
                    times[name].append(now() - start)
    return {name: _timing(t, clock, n) for name, t in times.items()}


ORDERS = ("rotate", "reverse", "fixed")


def _round_order(items: list, order: str, round_: int) -> list:
    """The calls of one round in the order ``order`` gives round ``round_`` (see interleaved)."""
    if order == "rotate":
        shift = round_ % max(len(items), 1)
        return items[shift:] + items[:shift]
    if order == "reverse" and round_ % 2:
        return items[::-1]
    return items


def cpu_model() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else ``platform``)."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        return re.search(r"model name\s*:\s*(.+)", text).group(1).strip()  # type: ignore[union-attr]
    except (OSError, AttributeError):
        return platform.processor() or platform.machine()


def cpu_name() -> str:
    """The CPU's model name and torch's current thread count, e.g. ``"AMD EPYC, 2 torch
    thread(s)"``."""
    return f"{cpu_model()}, {torch.get_num_threads()} torch thread(s)"


def machine_record(num_threads: int) -> dict[str, object]:
    """Where and how a benchmark measured, as the first fields of its JSON record: CPU, machine
    type, cores, torch threads, torch version, date and clock (wall clock, medians)."""
    return {
        "cpu": cpu_name(),
        "machine": platform.machine(),
        "cores": os.cpu_count(),
        "threads": num_threads,
        "torch": torch.__version__,
        "date": datetime.now(UTC).isoformat(timespec="seconds"),
        "clock": "wall (time.perf_counter), medians",
    }


def caption(
    timings: Timing | Mapping[str, Timing], batch: int | None = None, where: str | None = None
) -> str:
    """The one-line "measured on …" label of a timing table or plot: CPU model, threads, clock,
    batch, repeats and spread (the widest interquartile range, relative to its median).

    ``where``: the CPU name to print (default: :func:`cpu_model` of this machine).
    """
    found = [timings] if isinstance(timings, Timing) else list(timings.values())
    if not found:
        raise ValueError("timings is empty: there is nothing to caption")
    first = found[0]
    if any((t.clock, t.threads) != (first.clock, first.threads) for t in found):
        raise ValueError("timings were taken with different clocks or thread counts")
    spread = max((t.q3 - t.q1) / t.median for t in found if t.median > 0)
    clock = "wall clock" if first.clock == "wall" else "thread CPU time"
    size = "" if batch is None else f", batch {check_int(batch, 'batch', minimum=1)}"
    low, high = min(t.samples for t in found), max(t.samples for t in found)
    rounds = f"{low}" if low == high else f"{low}–{high}"
    return (
        f"measured on {where or cpu_model()}, {first.threads} thread(s), {clock}{size}, median of "
        f"{rounds} rounds, interquartile range up to {100 * spread:.0f} % of the median"
    )


__all__ = [
    "CLOCKS",
    "Timing",
    "caption",
    "cpu_model",
    "cpu_name",
    "interleaved",
    "machine_record",
    "measure",
    "threads",
]
