"""``sparsitylab bench growth``: what regrowing costs per epoch, against a fixed-mask run.

For LeNet-5 and the half-width ConvNet-BN at 90 % sparsity (random ERK masks, batch 128, a fixed
random Fashion-MNIST-shaped batch, SGD with momentum 0.9), two costs per method:

- **one training step** through the method's callbacks (forward, backward, SGD step,
  ``after_step``): the fixed-mask step for the static control and SET; RigL and SNFS also read the
  dense gradient through hooks, and SNFS updates its momentum every step;
- **one mask update** (drop, regrow, reset the optimizer state of the changed positions, record).

The steps of all methods are timed round-robin (:func:`sparsitylab.timing.interleaved`), then the
updates. The cost of an epoch at update interval ΔT is ΔT steps plus one update, so the ratio
reported is (ΔT·step + update) / (ΔT·step of the static control); the goal is ≤ 1.15× at ΔT = 100.
Results go to ``--out`` as JSON.
"""

from __future__ import annotations

import argparse
from collections.abc import Callable
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

from .. import models
from ..files import atomic_write_json
from ..methods.growth import SET, DynamicSparse, RigL, StaticSparse
from ..methods.sparse_momentum import SNFS
from ..timing import interleaved, threads
from . import announce, positive_int, record_header

GOAL = 1.15  # per epoch at ΔT = 100, against the static (fixed-mask) run
SPARSITY = 0.9
METHODS: dict[str, type[DynamicSparse]] = {
    "static": StaticSparse,
    "SET": SET,
    "RigL": RigL,
    "SNFS": SNFS,
}
MODELS: dict[str, Callable[[], nn.Module]] = {
    "LeNet-5": models.lenet5,
    "ConvNet-BN": lambda: models.convnet_bn(widths=(16, 32, 64)),
}


class Trainer:
    """A model prepared by a growth method, its optimizer, and a fixed batch."""

    def __init__(self, build: Callable[[], nn.Module], kind: type[DynamicSparse], batch: int):
        torch.manual_seed(0)
        self.method = kind(SPARSITY, total_steps=10**9, update_every=10**8, end_fraction=1.0)
        self.model = self.method.prepare(build())
        self.optimizer = torch.optim.SGD(
            self.model.parameters(), lr=1e-3, momentum=0.9, weight_decay=5e-4
        )
        self.method.on_fit_start(self.model, self.optimizer)
        self.x, self.y = torch.randn(batch, 1, 28, 28), torch.randint(0, 10, (batch,))
        self.model.train()
        self.count, self.grads = 0, {}
        self._forward_backward()  # a first step: momentum buffers and dense gradients exist
        if self.method.tap is not None:  # kept for the timed updates
            self.grads = {n: g.clone() for n, g in self.method.tap.grads.items()}
        self._after()

    def _forward_backward(self) -> None:
        with torch.enable_grad():
            self.optimizer.zero_grad(set_to_none=True)
            F.cross_entropy(self.model(self.x), self.y).backward()
            self.optimizer.step()

    def _after(self) -> None:
        self.count += 1
        self.method.after_step(self.model, self.count)

    def step(self) -> None:
        """One training step through the method's callbacks (never an update step)."""
        self._forward_backward()
        self._after()

    def update(self) -> None:
        """One mask update with the last step's dense gradients."""
        self.method.update(self.model, self.count, self.grads)


def measure(
    batch: int, repeats: int, interval: int, clock: str = "thread"
) -> dict[str, dict[str, dict[str, float]]]:
    """Per model and method: median step and update seconds, and the per-epoch ratio. ``clock``:
    "thread" (CPU time of this thread: with one torch thread, other processes do not distort
    it) or "wall"."""
    results = {}
    for model_name, build in MODELS.items():
        trainers = {label: Trainer(build, kind, batch) for label, kind in METHODS.items()}
        steps = interleaved({k: t.step for k, t in trainers.items()}, repeats, 2, clock=clock)
        updating = {k: t.update for k, t in trainers.items() if k != "static"}
        updates = interleaved(updating, max(3, repeats // 3), 1, clock=clock)
        base = interval * steps["static"].median
        results[model_name] = {
            label: {
                "step_s": steps[label].median,
                "update_s": updates[label].median if label in updates else 0.0,
                "epoch_ratio": (
                    interval * steps[label].median
                    + (updates[label].median if label in updates else 0.0)
                )
                / base,
            }
            for label in trainers
        }
    return results


def print_table(results: dict, interval: int) -> None:
    print(
        f"per-epoch cost at ΔT = {interval}: (ΔT·step + update) / (ΔT·static step); goal ≤ {GOAL}×"
    )
    print(f"  {'model':<11} {'method':<7} {'step':>9} {'update':>10} {'ratio':>7}")
    for model, row in results.items():
        for label, cell in row.items():
            verdict = "" if label == "static" else ("ok" if cell["epoch_ratio"] <= GOAL else "over")
            print(
                f"  {model:<11} {label:<7} {cell['step_s'] * 1e3:6.1f} ms "
                f"{cell['update_s'] * 1e3:7.1f} ms {cell['epoch_ratio']:6.3f}×  {verdict}".rstrip()
            )


def parse(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="sparsitylab bench growth",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--batch", type=positive_int, default=128, help="batch size")
    parser.add_argument("--repeats", type=positive_int, default=30, help="timed rounds (steps)")
    parser.add_argument("--interval", type=positive_int, default=100, help="ΔT, steps per update")
    parser.add_argument("--threads", type=positive_int, default=1, help="torch threads")
    parser.add_argument(
        "--clock", choices=("thread", "wall"), default="thread", help="thread CPU time or wall"
    )
    parser.add_argument(
        "--out", type=Path, default=Path("data/bench_growth_cpu.json"), help="JSON results file"
    )
    return parser.parse_args(argv)


def main(argv: list[str]) -> int:
    args = parse(argv)
    with threads(args.threads):
        where = announce("growth")
        if args.clock == "thread" and args.threads != 1:
            raise ValueError("--clock thread measures one thread: use --threads 1 or --clock wall")
        results = measure(args.batch, args.repeats, args.interval, args.clock)
    print_table(results, args.interval)
    print(
        f"\nMedians of {args.repeats} rounds (updates: {max(3, args.repeats // 3)}), contenders "
        f"timed round-robin, {args.clock} clock, {args.threads} thread(s)."
    )
    record = {
        **record_header("growth", where, args.threads),
        "batch": args.batch,
        "repeats": args.repeats,
        "interval": args.interval,
        "clock": args.clock,
        "sparsity": SPARSITY,
        "goal_ratio": GOAL,
        "results": results,
    }
    atomic_write_json(record, args.out)
    print(f"wrote {args.out}")
    return 0


__all__ = ["GOAL", "METHODS", "MODELS", "Trainer", "main", "measure"]
