"""Reading the results files: one row per (model, method, target) over the seeds, Pareto fronts."""

from __future__ import annotations

import json
import statistics
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch

from ..significance import mcnemar, paired_bootstrap, seed_interval, unpack_correct

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


def control_key(run: dict[str, Any]) -> str:
    """The dense control a run is judged against: the single-cosine dense model for runs trained
    from scratch (and for runs started from it), the shared dense baseline (pre-trained, then
    ``post`` more epochs) for everything else."""
    return "dense-scratch" if run["start"] in ("scratch", "dense-scratch") else "dense"


def _runs_by_key(result: dict[str, Any]) -> dict[tuple[str, Any], dict[str, Any]]:
    return {(r["key"], r["target"]): r for r in result["runs"]}


def _correct(run: dict[str, Any], images: int) -> torch.Tensor:
    if "correct" not in run:
        raise ValueError(f"run {run['key']!r} has no per-image record (a file from before 0.3)")
    return unpack_correct(run["correct"], images)


def compare(
    results: Sequence[dict[str, Any]],
    model: str,
    a: tuple[str, Any],
    b: tuple[str, Any],
    confidence: float = 0.95,
) -> dict[str, Any]:
    """Is run ``a`` = (key, target) better than run ``b`` on ``model``? Both intervals of the
    accuracy difference a − b: over seeds (Student t, paired by seed) and over test images
    (paired bootstrap of all seeds' images pooled), and McNemar's p per seed. ``resolved`` is
    True when both intervals exclude 0 — the book's condition for "better"."""
    files = [r for r in results if r["model"] == model]
    pairs = [(_runs_by_key(f).get(a), _runs_by_key(f).get(b), f) for f in files]
    pairs = [(x, y, f) for x, y, f in pairs if x is not None and y is not None]
    if not pairs:
        raise ValueError(f"no results file of model={model!r} holds both {a} and {b}")
    images = [f["settings"]["test_size"] for _, _, f in pairs]
    hits = [(_correct(x, n), _correct(y, n)) for (x, y, _), n in zip(pairs, images)]
    seeds = (
        seed_interval([x["test_acc"] for x, _, _ in pairs], [y["test_acc"] for _, y, _ in pairs],
                      confidence)
        if len(pairs) > 1
        else None
    )  # fmt: skip
    pooled = paired_bootstrap(
        torch.cat([h for h, _ in hits]), torch.cat([h for _, h in hits]), confidence=confidence
    )
    return {
        "difference": statistics.fmean(x["test_acc"] - y["test_acc"] for x, y, _ in pairs),
        "seeds": seeds,
        "images": pooled,
        "mcnemar_p": [mcnemar(x, y).p_value for x, y in hits],
        "resolved": pooled.excludes_zero and seeds is not None and seeds.excludes_zero,
    }


def summarise(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, method, target) over the seeds: accuracy mean and spread; its change
    against the dense baseline of the same seeds ("vs dense") and against the run's own control
    (:func:`control_key`: "vs control", with the seed-level interval and whether both intervals of
    :func:`compare` exclude 0); sparsity, deployed MACs as a fraction of dense, training overhead
    (epoch seconds over the dense baseline's) and seeds.

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
        row = {
            "model": model,
            "key": key,
            "method": runs[0]["label"],
            "family": runs[0]["family"],
            "target": target,
            "target_kind": runs[0]["target_kind"],
            "accuracy": acc,
            "spread": spread,
            "vs dense": delta,
            **_against_control(results, model, runs[0]),
            "sparsity": statistics.fmean(r["sparsity"] for r in runs),
            "MACs / dense": statistics.fmean(deployed_macs(r) / r["macs"] for r in runs),
            "overhead": statistics.fmean(r["epoch_seconds"] / d["epoch_seconds"] for r, d in quiet),
            "seconds": statistics.fmean(r["seconds"] for r in runs),
            "seeds": len(runs),
        }
        rows.append(row)
    return rows


def _against_control(
    results: Sequence[dict[str, Any]], model: str, run: dict[str, Any]
) -> dict[str, Any]:
    control = control_key(run)
    have = all(
        any(r["key"] == control for r in f["runs"]) and "correct" in run
        for f in results
        if f["model"] == model
    )
    if not have or run["key"] == control:
        return {"control": control, "vs control": None, "low": None, "high": None, "resolved": None}
    found = compare(results, model, (run["key"], run["target"]), (control, None))
    seeds = found["seeds"]
    return {
        "control": control,
        "vs control": found["difference"],
        "low": None if seeds is None else seeds.low,
        "high": None if seeds is None else seeds.high,
        "resolved": found["resolved"],
    }


def latency_table(results: Sequence[dict[str, Any]]) -> list[dict[str, Any]]:
    """One row per (model, run, form, batch) of the timed files: median ms, its spread (IQR), and
    the speedup over the dense model *and* over the masked one (the identical computation with
    zeros stored: any speedup of masked over dense is timing noise, the null control)."""
    rows = []
    for result in results:
        for run_key, forms in result["latency"].items():
            if run_key == "dense":
                continue
            key, _, target = run_key.partition("@")
            for form, batches in forms.items():
                for batch, t in batches.items():
                    masked = forms.get("masked", {}).get(batch)
                    rows.append(
                        {
                            "model": result["model"],
                            "seed": result["seed"],
                            "key": key,
                            "target": float(target),
                            "form": form,
                            "batch": int(batch),
                            "ms": 1e3 * t["median"],
                            "iqr ms": 1e3 * (t["q3"] - t["q1"]),
                            "vs dense": forms["dense"][batch]["median"] / t["median"],
                            "vs masked": None if masked is None else masked["median"] / t["median"],
                        }
                    )
    return rows
