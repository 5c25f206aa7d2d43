"""``sparsitylab bench posttrain``: what one layer of post-training pruning costs on a CPU.

SparseGPT's claim is that Optimal Brain Surgeon becomes affordable at scale: one Hessian
H = 2XᵀX/N per layer, one Cholesky factorisation of its inverse (O(d_col³)) and blocked updates
(O(d_row · d_col²)) instead of one inverse per pruned weight. Here one layer of a transformer MLP
(768 features, 3072 hidden units: both of its GEMMs, 3072 × 768 and 768 × 3072 as rows × columns)
with 2 048 calibration tokens (Gaussian inputs, seed 0) is pruned at 50 % and 2:4 by layer-wise
magnitude, Wanda and SparseGPT; each time is the median of ``--repeats`` runs and includes
everything the rule needs from the inputs (SparseGPT's Hessian, Wanda's input norms). Goal:
SparseGPT ≤ 2 s on the 768 × 3072 (rows × columns) GEMM on one thread.

Peak memory is the rise of the process's peak resident set size during the call (Linux: the
high-water mark is reset through ``/proc/self/clear_refs`` before each call and read from
``/proc/self/status`` after), with glibc told to return freed memory to the kernel first (a fixed
128 KiB mmap threshold and a heap trim), so that reused memory shows; what the allocator still
keeps is reused without showing, so it is a lower bound. ``None`` where ``/proc`` does not allow
it.

Run it with ``sparsitylab bench posttrain [--threads 1] [--repeats 3] [--json PATH]``.
"""

from __future__ import annotations

import argparse
import ctypes
import statistics
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from ..files import atomic_write_json
from ..sparsify import posttrain as rules
from ..sparsify.masks import nm_mask, topk_mask
from ..timing import machine_record, threads
from . import positive_int

GOAL_S = 2.0  # SparseGPT on the 768 × 3072 GEMM, 2 048 tokens, one thread
TOKENS = 2048
SHAPES = ((768, 3072), (3072, 768))  # rows × columns: the MLP's down and up projections


def _status_kib(field: str) -> int | None:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith(field + ":"):
                return int(line.split()[1])
    except OSError:
        return None
    return None


def _return_freed_memory() -> None:
    """Make glibc hand freed memory back to the kernel (so it shows again when reused): a fixed
    mmap threshold of 128 KiB (large tensors are mapped and unmapped, never kept in the heap) and
    a trim of the heap now. Nothing where the C library is not glibc."""
    try:
        libc = ctypes.CDLL("libc.so.6")
        libc.mallopt(-3, 128 * 1024)  # M_MMAP_THRESHOLD
        libc.malloc_trim(0)
    except (OSError, AttributeError):
        pass


def peak_memory_mb(call: Callable[[], Any]) -> float | None:
    """The rise of the peak resident set size while ``call()`` runs, in MB (module docstring), or
    None where the kernel does not expose it."""
    _return_freed_memory()
    try:
        Path("/proc/self/clear_refs").write_text("5")  # reset the high-water mark to the RSS now
    except OSError:
        call()
        return None
    before = _status_kib("VmRSS")
    call()
    peak = _status_kib("VmHWM")
    if before is None or peak is None:
        return None
    return max(peak - before, 0) / 1024


def rules_for(w: torch.Tensor, x: torch.Tensor) -> dict[str, Callable[[], Any]]:
    """Every (method, pattern) → a call pruning ``w`` from inputs ``x``."""
    return {
        "magnitude 50%": lambda: w * topk_mask(w, 0.5),
        "magnitude 2:4": lambda: w * nm_mask(w, 2, 4),
        "wanda 50%": lambda: w * rules.wanda_keep(w, rules.input_norms(x), 0.5),
        "wanda 2:4": lambda: w * rules.wanda_keep(w, rules.input_norms(x), n=2, m=4),
        "sparsegpt 50%": lambda: rules.sparsegpt(w, rules.hessian(x), 0.5),
        "sparsegpt 2:4": lambda: rules.sparsegpt(w, rules.hessian(x), n=2, m=4),
    }


def layer_task(repeats: int) -> dict[str, dict[str, Any]]:
    """Seconds (median) and peak memory of every rule on each GEMM of :data:`SHAPES`."""
    results: dict[str, dict[str, Any]] = {}
    for rows, columns in SHAPES:
        generator = torch.Generator().manual_seed(0)
        x = torch.randn(TOKENS, columns, generator=generator)
        w = 0.02 * torch.randn(rows, columns, generator=generator)
        shape = f"{rows}×{columns}"
        for name, call in rules_for(w, x).items():
            memory = peak_memory_mb(call)
            seconds = []
            for _ in range(repeats):
                started = time.perf_counter()
                call()
                seconds.append(time.perf_counter() - started)
            results[f"{name} {shape}"] = {
                "method": name,
                "shape": [rows, columns],
                "seconds": statistics.median(seconds),
                "spread": [min(seconds), max(seconds)],
                "peak_mb": memory,
                "weights_mb": w.numel() * 4 / 2**20,
            }
    return results


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sparsitylab bench posttrain",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads")
    parser.add_argument("--repeats", type=positive_int, default=3, help="timed runs per rule")
    parser.add_argument("--json", default=None, help="write the results to this JSON file")
    args = parser.parse_args(argv)
    with threads(args.threads):
        results = layer_task(args.repeats)
    for key, r in results.items():
        memory = "?" if r["peak_mb"] is None else f"{r['peak_mb']:.0f} MB"
        print(f"{key:28s} {r['seconds']:7.3f} s  peak +{memory}")
    goal = results[f"sparsegpt 50% {SHAPES[0][0]}×{SHAPES[0][1]}"]["seconds"]
    print(
        f"SparseGPT, {SHAPES[0][0]}×{SHAPES[0][1]} (rows × columns), {TOKENS} tokens, "
        f"{args.threads} thread(s): {goal:.2f} s (goal ≤ {GOAL_S:g} s)"
    )
    if args.json:
        atomic_write_json(
            {
                **machine_record(args.threads),
                "tokens": TOKENS,
                "goal_s": GOAL_S,
                "layers": results,
            },
            args.json,
        )
    return 0


__all__ = ["GOAL_S", "layer_task", "main", "peak_memory_mb", "rules_for"]
