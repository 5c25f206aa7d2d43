"""Graders for ``exercises/08_all_methods_side_by_side.py``."""

from __future__ import annotations

import random
import statistics

import pytest

from sparsitylab import metrics, suite


def check_mean_and_spread(student) -> None:
    assert student.mean_and_spread([0.8]) == (0.8, 0.0), "one seed: the spread is 0"
    mean, spread = student.mean_and_spread([0.80, 0.82, 0.84])
    assert mean == pytest.approx(0.82) and spread == pytest.approx(0.02), (
        "the sample standard deviation divides by n − 1: [0.80, 0.82, 0.84] → 0.02"
    )
    values = [random.Random(3).random() for _ in range(7)]
    assert student.mean_and_spread(values) == pytest.approx(suite.mean_and_spread(values))
    assert student.mean_and_spread(values)[1] == pytest.approx(statistics.stdev(values))
    with pytest.raises(ValueError):
        student.mean_and_spread([])


def check_standard_error(student) -> None:
    assert student.standard_error(0.8, 5000) == pytest.approx(0.005657, rel=1e-3), (
        "√(0.8 · 0.2 / 5000) ≈ 0.0057"
    )
    assert student.standard_error(1.0, 100) == 0.0, "a perfect score has no binomial noise"
    for p, n in [(0.5, 10), (0.73, 1234), (0.99, 10_000)]:
        assert student.standard_error(p, n) == pytest.approx(metrics.standard_error(p, n))
    assert student.standard_error(0.8, 20_000) == pytest.approx(
        student.standard_error(0.8, 5000) / 2
    ), "four times the test images halve the noise"


def check_deployed_macs(student) -> None:
    unstructured = {"compacted_macs": None, "sparse_macs": 123, "macs": 1000}
    structured = {"compacted_macs": 400, "sparse_macs": 900, "macs": 1000}
    assert student.deployed_macs(unstructured) == 123, "no compacted model: the non-zeros' MACs"
    assert student.deployed_macs(structured) == 400, "a compacted model: its MACs"
    zero = {"compacted_macs": 0, "sparse_macs": 50, "macs": 100}
    assert student.deployed_macs(zero) == suite.deployed_macs(zero) == 0, (
        "a compacted model with 0 MACs is still a compacted model (test `is None`, not truth)"
    )


def check_pareto_front(student) -> None:
    costs, accs = [1.0, 2.0, 3.0, 2.5], [0.70, 0.80, 0.79, 0.85]
    assert student.pareto_front(costs, accs) == [0, 1, 3], "point 2 is beaten by point 3"
    assert student.pareto_front([1.0, 1.0], [0.5, 0.5]) == [0, 1], "duplicates both stay"
    assert student.pareto_front([1.0, 1.0], [0.5, 0.6]) == [1], "same cost, more accurate wins"
    rng = random.Random(0)
    for _ in range(20):
        n = rng.randint(1, 12)
        c = [rng.choice([0.5, 1.0, 1.5, 2.0]) for _ in range(n)]
        a = [rng.choice([0.6, 0.7, 0.8]) for _ in range(n)]
        assert student.pareto_front(c, a) == suite.pareto_front(c, a), (c, a)
