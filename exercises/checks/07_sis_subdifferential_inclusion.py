"""Graders for ``exercises/07_sis_subdifferential_inclusion.py``."""

from __future__ import annotations

import pytest
import torch

from sparsitylab.sparsify import sis


def relu_case(seed: int = 0, samples: int = 30, inputs: int = 6, outputs: int = 4):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, inputs, generator=g, dtype=torch.float64)
    w = torch.randn(outputs, inputs, generator=g, dtype=torch.float64) / 2
    b = 0.1 * torch.randn(outputs, generator=g, dtype=torch.float64)
    y = torch.relu(x @ w.T + b)
    noisy = w + 0.3 * torch.randn(w.shape, generator=g, dtype=torch.float64)
    return x, y, noisy, b


def check_relu_projection(student) -> None:
    u = torch.tensor([[0.5, -1.0, 2.0], [-0.5, 0.3, 0.0]], dtype=torch.float64)
    y = torch.tensor([[1.0, 0.0, 0.0], [0.0, 0.25, 0.0]], dtype=torch.float64)
    assert student.relu_projection(u, y).tolist() == [[1.0, -1.0, 0.0], [-0.5, 0.25, 0.0]], (
        "active units: = y; inactive: min(u, 0)"
    )
    x, y, w, b = relu_case()
    u = x @ w.T + b
    expected = sis.project(u, sis.targets(y, "relu"), y, "relu")
    assert torch.allclose(student.relu_projection(u, y), expected)


def check_softmax_theta(student) -> None:
    log_y = torch.log_softmax(torch.tensor([[1.0, 2.0, 3.0]]), dim=1)
    assert student.softmax_theta(log_y + 5.0, log_y) == pytest.approx(0.0, abs=1e-10), (
        "a constant shift of ln y is inside C: Θ = 0"
    )
    g = torch.Generator().manual_seed(1)
    u = torch.randn(20, 5, generator=g, dtype=torch.float64)
    logits = torch.randn(20, 5, generator=g, dtype=torch.float64)
    problem = sis.LayerProblem.from_pre_activation(
        torch.zeros(20, 1, dtype=torch.float64), logits, "softmax"
    )
    assert student.softmax_theta(u, torch.log_softmax(logits, dim=1)) == pytest.approx(
        problem.theta(u)
    )


def check_ista_step(student) -> None:
    x, y, w, b = relu_case(seed=2)
    w[:, 0] = 0.001  # small weights that one threshold step removes
    penalty, step = 50.0, 0.05
    got_w, got_b = student.ista_step(x, y, w, b, penalty, step)
    u = x @ w.T + b
    r = u - sis.project(u, sis.targets(y, "relu"), y, "relu")
    gw, gb = r.T @ x / penalty, r.sum(dim=0) / penalty
    assert torch.allclose(got_b, b - step * gb), "the bias takes a plain gradient step"
    assert torch.allclose(got_w, sis.soft_threshold(w - step * gw, step)), (
        "W: gradient step, then soft-threshold by the step"
    )
    assert bool((got_w == 0).any()), "soft-thresholding gives exact zeros"


def check_error_and_theta(student) -> None:
    for seed in range(5):
        x, y, w, b = relu_case(seed=seed)
        u = x @ w.T + b
        error, theta = student.error_and_theta(u, y)
        assert error == pytest.approx(float((torch.relu(u) - y).square().sum()))
        assert theta == pytest.approx(sis.theta(u, y, "relu"))
        assert error <= theta + 1e-12, "ReLU is non-expansive: the output error is at most Θ"
