"""Exercises for the chapter "All methods side by side: one budget, two models, measured".

Replace each ``raise NotImplementedError`` with your code, then grade your work with

    python exercises/grade.py 08_all_methods_side_by_side

Use plain Python (``math``, ``statistics``); the grader compares you with ``sparsitylab.suite``,
so do not call it here.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any


def mean_and_spread(values: Sequence[float]) -> tuple[float, float]:
    """Exercise 1. The mean and the *sample* standard deviation (divide by n − 1) of ``values``,
    as the chapter's "± spread" over seeds; the spread of a single value is 0. An empty sequence
    raises ValueError."""
    raise NotImplementedError("exercise 1: mean and spread over seeds")


def standard_error(accuracy: float, samples: int) -> float:
    """Exercise 2. The binomial standard error of an accuracy measured on ``samples`` test
    images: each image is right with probability p = ``accuracy``, independently, so the measured
    fraction has standard deviation √(p(1 − p)/n). (At p = 0.8 and n = 5 000 it is about 0.57
    points: the chapter's noise level.)"""
    raise NotImplementedError("exercise 2: the test set's standard error")


def deployed_macs(run: dict[str, Any]) -> int:
    """Exercise 3. The MACs per image of a run's cheapest deployable form, from its record (the
    keys of a ``runs`` entry of a results file): the compacted model's ``compacted_macs`` when the
    method has a compacted model (the value is not None), else ``sparse_macs``, the MACs of the
    non-zero weights (what an ideal sparse kernel would do)."""
    raise NotImplementedError("exercise 3: the MACs of the deployable form")


def pareto_front(costs: Sequence[float], accuracies: Sequence[float]) -> list[int]:
    """Exercise 4. The indices of the points on the Pareto front: point i is on it unless some
    other point j has costs[j] ≤ costs[i] and accuracies[j] ≥ accuracies[i] with at least one of
    the two strict (j *dominates* i). Exact duplicates do not dominate each other. Return the
    indices sorted by increasing cost (ties: higher accuracy first, then by index)."""
    raise NotImplementedError("exercise 4: the Pareto front")
