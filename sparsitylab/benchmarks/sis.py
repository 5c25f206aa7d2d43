"""``sparsitylab bench sis``: what one SIS layer solve costs.

The first layer (784 → 500, ReLU) of the MLP, trained for one epoch on Fashion-MNIST (``--data
random``: random Gaussian inputs and weights instead, no data set needed), with ``--samples``
calibration images (default 10 000) and the budget η = ρ·Θ(0) (``--rho``, default 0.03).
Five solves from the dense weights, each timed once on the wall clock with ``--threads`` torch
threads (default 1), side by side in one run: ``solve_to_eta`` (majorise–minimise on X̃ᵀX̃, since
issue 30), the FISTA + bisection it replaced (every solve it needs), FISTA at the penalty the
bisection found, to its default tolerance (1e-6) and to 1e-4, and Chambolle–Pock on the
constrained form. The goal (issue 30): Θ ≤ η in ≤ 30 s on 1 thread at the bisection's sparsity
± 1 point. Results go to ``--json``, with the machine's load average (``os.getloadavg``).
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

from ..files import atomic_write_json
from ..sparsify.sis import LayerProblem, fista, primal_dual, solve_to_eta
from ..sparsify.sis_bisection import bisection_to_eta
from ..timing import threads
from . import announce, positive_int, positive_real, record_header


def layer(
    data: str, samples: int, seed: int = 0
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(X, W, b) of a 784 → 500 ReLU layer: the MLP's fc1 after one epoch, or random."""
    g = torch.Generator().manual_seed(seed)
    if data == "random":
        x = torch.randn(samples, 784, generator=g)
        w = torch.randn(500, 784, generator=g) / 28
        return x, w, 0.1 * torch.randn(500, generator=g)
    from .. import data as datasets
    from .. import models, train

    train.seed_everything(seed)
    train_split, _ = datasets.load_fashion_mnist()
    model = models.mlp()
    loader = datasets.make_loader(
        datasets.subset(train_split, 10_000), 128, shuffle=True, seed=seed
    )
    optimizer = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    train.fit(model, loader, 1, optimizer=optimizer, progress=False)
    images = datasets.make_loader(datasets.subset(train_split, samples, seed=seed + 1), samples)
    x = next(iter(images))[0].flatten(1)
    return x, model.fc1.weight.detach(), model.fc1.bias.detach()


def run(data: str, samples: int, rho: float) -> list[dict]:
    """The five solves on one problem: iterations, seconds, Θ/η, sparsity, converged."""
    x, w, b = layer(data, samples)
    y = torch.relu(x @ w.T + b)
    started = time.perf_counter()
    problem = LayerProblem(x, y, "relu")
    setup = time.perf_counter() - started
    eta = rho * problem.zero_theta()
    rows, last = [], [None]

    def record(name, solve):
        started = time.perf_counter()
        s = last[0] = solve()
        seconds = time.perf_counter() - started
        rows.append(
            {
                "solver": name,
                "iterations": s.iterations,
                "seconds": seconds,
                "theta / eta": s.theta / eta,
                "sparsity": s.sparsity,
                "converged": s.converged,
            }
        )
        return s

    record(
        "majorise–minimise to η (solve_to_eta)",
        lambda: solve_to_eta(problem, None, "relu", w, b, eta),
    )
    rows[-1]["lasso iterations (d×d)"] = sum(h["lasso"] for h in last[0].history)
    bisected = record(
        "FISTA + bisection to η", lambda: bisection_to_eta(problem, None, "relu", w, b, eta)
    )
    record("FISTA at that penalty", lambda: fista(problem, None, "relu", w, b, bisected.penalty))
    record(
        "FISTA at that penalty, tol 1e-4",
        lambda: fista(problem, None, "relu", w, b, bisected.penalty, tol=1e-4),
    )
    record("Chambolle–Pock to η", lambda: primal_dual(problem, None, "relu", w, b, eta))
    for row in rows:
        row["setup seconds (centring, ‖X‖)"] = setup
    return rows


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sparsitylab bench sis",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--data", choices=("fashion-mnist", "random"), default="fashion-mnist")
    parser.add_argument("--samples", type=positive_int, default=10_000)
    parser.add_argument("--rho", type=positive_real, default=0.03)
    parser.add_argument("--threads", type=positive_int, default=1)
    parser.add_argument("--json", type=Path, default=None, help="also write the results here")
    args = parser.parse_args(argv)
    with threads(args.threads):
        where = announce("sis")
        rows = run(args.data, args.samples, args.rho)
    print(f"784×500 ReLU layer ({args.data}), {args.samples} samples, η = {args.rho}·Θ(0)")
    for r in rows:
        print(
            f"  {r['solver']:<33} {r['iterations']:>5} iterations  {r['seconds']:7.1f} s  "
            f"Θ/η {r['theta / eta']:.4f}  sparsity {r['sparsity']:.3f}  converged {r['converged']}"
        )
    print("\nwall clock, one run each; other processes on the machine add noise.")
    if args.json is not None:
        record = {
            **record_header("sis", where, args.threads),
            "data": args.data,
            "samples": args.samples,
            "rho": args.rho,
            "load average (1, 5, 15 min) at the end": list(os.getloadavg()),
            "runs": rows,
        }
        atomic_write_json(record, args.json)
        print(f"wrote {args.json}")
    return 0
