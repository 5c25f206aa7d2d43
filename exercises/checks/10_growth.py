"""Graders for ``exercises/10_growth.py``."""

from __future__ import annotations

import math

import pytest
import torch

from sparsitylab.methods.growth import RigL
from sparsitylab.sparsify.growth import cosine_fraction, drop_grow
from sparsitylab.sparsify.masks import _keep_flat, pruned_count


def check_rigl_fraction(student) -> None:
    assert student.rigl_fraction(0, 0.3, 100) == pytest.approx(0.3), "f(0) = α"
    assert student.rigl_fraction(50, 0.3, 100) == pytest.approx(0.15), "f(T_end / 2) = α / 2"
    assert student.rigl_fraction(100, 0.3, 100) == 0.0, "no update from T_end on: 0"
    assert student.rigl_fraction(250, 0.3, 100) == 0.0, "after T_end: still 0"
    for step in (1, 17, 73, 99):
        assert student.rigl_fraction(step, 0.5, 100) == pytest.approx(
            cosine_fraction(step, 0.5, 100)
        ), "(α/2)(1 + cos(π t / T_end))"


def check_rigl_update(student) -> None:
    mask = torch.tensor([True, True, True, False, False, False])
    weight = torch.tensor([0.5, -0.1, 2.0, 0.0, 0.0, 0.0])
    gradient = torch.tensor([0.0, 0.0, 0.0, 0.3, -0.9, 0.1])
    got = student.rigl_update(mask, weight, gradient, 1)
    assert got.dtype == torch.bool and got.shape == mask.shape, "a bool mask of the same shape"
    assert got.tolist() == [True, False, True, False, True, False], (
        "drop the smallest |w| (index 1), grow the largest |gradient| (index 4)"
    )
    back = student.rigl_update(mask, weight, torch.tensor([0.0, 5.0, 0, 0.3, 0.9, 0.1]), 1)
    assert back.tolist() == mask.tolist(), "a weight just dropped competes for regrowth"
    torch.manual_seed(0)
    for _ in range(20):
        m = torch.rand(7, 9) < 0.4
        w = torch.randint(-2, 3, (7, 9)).float()  # many ties
        g = torch.randint(-2, 3, (7, 9)).float()
        k = int(m.sum()) // 3
        expected = drop_grow(m, w.abs(), g.abs(), k)
        assert torch.equal(student.rigl_update(m, w, g, k), expected), (
            "ties: among equal scores the lower flat index is kept, and grown first"
        )


def check_lottery_round(student) -> None:
    torch.manual_seed(1)
    for _ in range(20):
        w = torch.randint(-3, 4, (6, 10)).float()
        mask = torch.rand(6, 10) < 0.7
        got = student.lottery_round(w, mask, 0.2)
        survivors = int(mask.sum())
        assert int(got.sum()) == survivors - pruned_count(survivors, 0.2), (
            "prune floor(rate · survivors + 0.5) of the survivors"
        )
        assert not (got & ~mask).any(), "pruned weights stay pruned"
        scores = torch.where(mask, w.abs(), torch.tensor(-1.0)).reshape(-1)
        n_prune = w.numel() - survivors + pruned_count(survivors, 0.2)
        expected = _keep_flat(scores, n_prune).reshape(w.shape)
        assert torch.equal(got, expected), "the smallest |w| go; ties: the higher index first"


def check_rigl_flops(student) -> None:
    assert student.rigl_flops(1.0, 10.0, 100) == pytest.approx((300 + 2 + 10) / 101)
    assert student.rigl_flops(2.0, 2.0, 5) == pytest.approx(6.0), "sparse = dense: 3 f per step"
    method = RigL(0.9, total_steps=10**6, update_every=100, end_fraction=1.0)
    assert math.isclose(
        student.rigl_flops(1.0, 10.0, 100), method.step_flops(1.0, 10.0), rel_tol=1e-3
    ), "the library's accounting over a long run"
