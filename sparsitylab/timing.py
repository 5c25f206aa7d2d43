"""Timing helpers for the benchmarks: interleaved medians and their clock on a shared CPU (``bench
spmm``), and the CPU name every benchmark records."""

from __future__ import annotations

import platform
import re
import statistics
import time
from collections.abc import Callable, Sequence
from pathlib import Path

import torch


def cpu_clock(threads: int) -> Callable[[], float]:
    """With one thread, the CPU time of the calling thread (``time.thread_time``): other processes
    on a shared machine then do not distort it. With more threads (work on other threads), wall
    time."""
    return time.thread_time if threads == 1 else time.perf_counter


def interleaved_medians(
    calls: Sequence[Callable[[], object]],
    repeats: int,
    clock: Callable[[], float] = time.perf_counter,
) -> list[float]:
    """Median seconds of each call, timed round-robin (one of each per round) so all see the same
    machine state: drift between separate loops would bias their ratios."""
    if repeats < 1:
        raise ValueError(f"repeats={repeats} must be ≥ 1")
    for call in calls:  # warm-up: thread pools, MKL inspector, caches
        call()
    times: list[list[float]] = [[] for _ in calls]
    for _ in range(repeats):
        for call, spent in zip(calls, times):
            start = clock()
            call()
            spent.append(clock() - start)
    return [statistics.median(t) for t in times]


def cpu_name() -> str:
    """The CPU's model name (Linux /proc/cpuinfo, else ``platform``) and torch's thread count."""
    try:
        text = Path("/proc/cpuinfo").read_text()
        name = re.search(r"model name\s*:\s*(.+)", text).group(1).strip()  # type: ignore[union-attr]
    except (OSError, AttributeError):
        name = platform.processor() or platform.machine()
    return f"{name}, {torch.get_num_threads()} torch thread(s)"


__all__ = ["cpu_clock", "interleaved_medians", "cpu_name"]
