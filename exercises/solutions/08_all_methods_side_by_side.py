"""Instructor solutions for ``exercises/08_all_methods_side_by_side.py``."""

from __future__ import annotations

import math
from collections.abc import Sequence
from typing import Any


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    values = list(values)
    if not values:
        raise ValueError("values is empty")
    mean = sum(values) / len(values)
    if len(values) == 1:
        return mean, 0.0
    return mean, math.sqrt(sum((v - mean) ** 2 for v in values) / (len(values) - 1))


def standard_error(accuracy: float, samples: int) -> float:
    return math.sqrt(accuracy * (1 - accuracy) / samples)


def deployed_macs(run: dict[str, Any]) -> int:
    return run["sparse_macs"] if run["compacted_macs"] is None else run["compacted_macs"]


def pareto_front(costs: Sequence[float], accuracies: Sequence[float]) -> list[int]:
    def dominated(i: int) -> bool:
        return any(
            costs[j] <= costs[i]
            and accuracies[j] >= accuracies[i]
            and (costs[j] < costs[i] or accuracies[j] > accuracies[i])
            for j in range(len(costs))
        )

    front = [i for i in range(len(costs)) if not dominated(i)]
    return sorted(front, key=lambda i: (costs[i], -accuracies[i], i))
