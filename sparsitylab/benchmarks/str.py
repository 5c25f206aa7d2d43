"""``sparsitylab bench str``: the cost of STR and STR-BN training, side by side with the dense step.

One training step (forward, backward, SGD step with momentum 0.9 and weight decay 5e-4) on a fixed
random Fashion-MNIST-shaped batch: LeNet-5 dense and with STR, ConvNet-BN dense, with STR and with
STR-BN (thresholds start at s = −5). Each optimizer is built from the method's parameter groups, as
the runner builds it. The contenders of a model are timed round-robin
(:func:`sparsitylab.timing.interleaved`) with ``--threads`` torch threads (default 1); the ratio is
method median / dense median, and the goal is ≤ 1.3× dense. Results go to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
from torch import nn

from .. import models
from ..files import atomic_write_json
from ..methods.base import Method
from ..methods.soft_threshold import STR, STRBN
from ..timing import interleaved, threads
from . import announce, positive_int, record_header
from .nm import training_step

GOAL = 1.3  # method step / dense step
S_INIT = -5.0
METHODS: dict[str, Callable[[], Method]] = {
    "dense": Method,  # the base method: one group holding every trainable parameter
    "STR": lambda: STR(s_init=S_INIT),
    "STR-BN": lambda: STRBN(s_init=S_INIT),
}
MODELS: dict[str, tuple[Callable[[], nn.Module], tuple[str, ...]]] = {
    "LeNet-5": (models.lenet5, ("dense", "STR")),
    "ConvNet-BN": (models.convnet_bn, ("dense", "STR", "STR-BN")),
}


def method_step(build: Callable[[], nn.Module], label: str, batch: int) -> Callable[[], None]:
    """The training step of a fresh model (seed 0) prepared by the method ``label``."""
    torch.manual_seed(0)
    method = METHODS[label]()
    model = method.prepare(build())
    groups = method.param_groups(model)
    if label != "dense" and not any(g.get("group") == "thresholds" for g in groups):
        raise AssertionError(f"{label} put no thresholds on {build.__name__}")
    return training_step(model, batch, groups)


def step_task(batch: int, repeats: int) -> dict[str, dict[str, float]]:
    """Median seconds of one training step per model and method, timed round-robin per model."""
    results = {}
    for name, (build, labels) in MODELS.items():
        calls = {label: method_step(build, label, batch) for label in labels}
        times = interleaved(calls, repeats, warmup=2)
        results[name] = {label: t.median for label, t in times.items()}
    return results


def ratios(medians: dict[str, dict[str, float]]) -> dict[str, dict[str, dict[str, float]]]:
    """Per model and method: the median seconds and the ratio to the model's dense median."""
    return {
        model: {k: {"median_s": s, "ratio": s / row["dense"]} for k, s in row.items()}
        for model, row in medians.items()
    }


def print_table(steps: dict[str, dict[str, dict[str, float]]], batch: int) -> None:
    print(f"one training step, batch {batch} (median ms; ratio = method / dense; goal ≤ {GOAL}×)")
    print(f"  {'model':<11} {'method':<7} {'median':>10} {'ratio':>7}")
    for model, row in steps.items():
        for label, cell in row.items():
            verdict = "" if label == "dense" else ("ok" if cell["ratio"] <= GOAL else "over goal")
            line = (
                f"  {model:<11} {label:<7} {cell['median_s'] * 1e3:7.1f} ms {cell['ratio']:6.2f}×"
            )
            print(f"{line}  {verdict}".rstrip())


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sparsitylab bench str",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--batch", type=positive_int, default=128, help="batch size")
    parser.add_argument("--repeats", type=positive_int, default=30, help="timed rounds")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads")
    parser.add_argument(
        "--out", type=Path, default=Path("data/bench_str_cpu.json"), help="JSON results file"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    with threads(args.threads):
        where = announce("str")
        steps = ratios(step_task(args.batch, args.repeats))
    print_table(steps, args.batch)
    print(
        f"\nMedians of {args.repeats} rounds, contenders timed round-robin, wall clock, "
        f"{args.threads} thread(s); other processes on the machine add noise."
    )
    record = {
        **record_header("str", where, args.threads),
        "batch": args.batch,
        "repeats": args.repeats,
        "s_init": S_INIT,
        "goal_ratio": GOAL,
        "step": steps,
    }
    atomic_write_json(record, args.out)
    print(f"wrote {args.out}")
    return 0


__all__ = ["GOAL", "METHODS", "MODELS", "main", "method_step", "ratios", "step_task"]
