"""Reading the results files: one row per (model, method, target) over the seeds, Pareto fronts."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

# ----------------------------------------------------------------------------- reading the results


def load_results(folder: str | Path) -> list[dict[str, Any]]:
    """Every ``methods-*.json`` of ``folder``, sorted by model and seed."""
    files = sorted(Path(folder).glob("methods-*.json"))
    return sorted((json.loads(f.read_text()) for f in files), key=lambda r: (r["model"], r["seed"]))


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """Mean and sample standard deviation (0 for a single value) of ``values``."""
    values = list(values)
    if not values:
        raise ValueError("values is empty: there is nothing to average")
    return statistics.fmean(values), statistics.stdev(values) if len(values) > 1 else 0.0


def deployed_macs(run: dict[str, Any]) -> int:
    """MACs per sample of a run's cheapest deployable form: the compacted model's where there is
    one, else the non-zero weights' (an ideal sparse kernel's)."""
    return run["compacted_macs"] if run["compacted_macs"] is not None else run["sparse_macs"]


def pareto_front(costs: Sequence[float], accuracies: Sequence[float]) -> list[int]:
    """Indices of the points no other point beats: none has a cost ≤ and an accuracy ≥ with one
    of them strict. Sorted by cost."""
    points = list(zip(costs, accuracies))
    front = [
        i
        for i, (c, a) in enumerate(points)
        if not any(c2 <= c and a2 >= a and (c2, a2) != (c, a) for c2, a2 in points)
    ]
    return sorted(front, key=lambda i: (points[i][0], -points[i][1]))


def summarise(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, method, target) over the seeds: accuracy mean and spread, its change
    against the dense baseline of the same seeds, sparsity, deployed MACs as a fraction of dense,
    training overhead (epoch seconds over the dense baseline's) and seeds.

    The overhead comes from the seeds whose latency was timed (seed 0 by default): the benchmark
    runs those with nothing else on the machine, while later seeds may share it; it falls back to
    every seed when none was timed."""
    groups: dict[tuple[str, str, Any], list[tuple[dict, dict, bool]]] = {}
    for result in results:
        dense = next(r for r in result["runs"] if r["key"] == "dense")
        for run in result["runs"]:
            key = (result["model"], run["key"], run["target"])
            groups.setdefault(key, []).append((run, dense, bool(result["latency"])))
    rows = []
    for (model, key, target), triples in groups.items():
        pairs = [(run, dense) for run, dense, _ in triples]
        quiet = [(run, dense) for run, dense, timed in triples if timed] or pairs
        runs = [run for run, _ in pairs]
        acc, spread = mean_and_spread([r["test_acc"] for r in runs])
        delta, _ = mean_and_spread([r["test_acc"] - d["test_acc"] for r, d in pairs])
        rows.append(
            {
                "model": model,
                "key": key,
                "method": runs[0]["label"],
                "family": runs[0]["family"],
                "target": target,
                "target_kind": runs[0]["target_kind"],
                "accuracy": acc,
                "spread": spread,
                "vs dense": delta,
                "sparsity": statistics.fmean(r["sparsity"] for r in runs),
                "MACs / dense": statistics.fmean(deployed_macs(r) / r["macs"] for r in runs),
                "overhead": statistics.fmean(
                    r["epoch_seconds"] / d["epoch_seconds"] for r, d in quiet
                ),
                "seconds": statistics.fmean(r["seconds"] for r in runs),
                "seeds": len(runs),
            }
        )
    return rows
