"""Graders for ``exercises/01_unstructured_pruning.py``: each ``check_*`` takes the student's
module and raises AssertionError (or the stub's NotImplementedError) unless the exercise is
solved."""

from __future__ import annotations

import pytest
import torch

from sparsitylab import models
from sparsitylab.sparsify import budgets
from sparsitylab.sparsify.masks import global_topk_masks, topk_mask
from sparsitylab.sparsify.schedules import CubicSchedule


def _mask(got, shape, what: str) -> torch.Tensor:
    assert isinstance(got, torch.Tensor), f"{what}: return a tensor, got {type(got).__name__}"
    assert tuple(got.shape) == tuple(shape), (
        f"{what}: the mask must have the weight's shape {tuple(shape)}, got {tuple(got.shape)}"
    )
    assert got.dtype == torch.bool, f"{what}: return a boolean mask, got dtype {got.dtype}"
    return got


def check_topk_keep(student) -> None:
    tied = torch.tensor([0.5, 0.5, 0.5, 0.5, 0.5, 0.5, 2.0, 2.0, 2.0, 2.0])
    got = _mask(student.topk_keep(tied, 0.3), tied.shape, "the chapter's tied example")
    assert int(got.sum()) == 7, (
        f"the chapter's tied example: ⌊0.3·10 + ½⌋ = 3 are pruned, so keep 7 of 10; got "
        f"{int(got.sum())}"
    )
    assert got.tolist() == [True] * 3 + [False] * 3 + [True] * 4, (
        "ties keep the lower flat index: of the six 0.5s the first three survive, got "
        f"{got.int().tolist()}"
    )
    w = torch.tensor([[0.1, -3.0, 0.2], [-0.4, 5.0, -0.05]])
    got = _mask(student.topk_keep(w, 0.5), w.shape, "hand case")
    assert got.tolist() == [[False, True, False], [True, True, False]], (
        f"hand case: prune the 3 smallest |w| (0.05, 0.1, 0.2), got {got.int().tolist()}"
    )
    assert int(student.topk_keep(torch.ones(5), 0.5).sum()) == 2, (
        "⌊0.5·5 + ½⌋ = 3 are pruned (round half up), so 2 of 5 are kept"
    )
    torch.manual_seed(0)
    for shape in [(10,), (6, 7), (4, 3, 5, 5)]:
        for s in (0.0, 0.1, 0.5, 0.9, 0.97):
            w = torch.randn(shape)
            expected = topk_mask(w, s)
            got = _mask(student.topk_keep(w, s), shape, f"shape {shape}, sparsity {s}")
            assert int(got.sum()) == int(expected.sum()), (
                f"shape {shape}, sparsity {s}: keep exactly {int(expected.sum())}, "
                f"got {int(got.sum())}"
            )
            assert torch.equal(got, expected), (
                f"shape {shape}, sparsity {s}: differs from topk_mask"
            )
            ties = torch.randint(-3, 4, shape).float()  # many equal magnitudes, zeros included
            assert torch.equal(student.topk_keep(ties, s), topk_mask(ties, s)), (
                f"shape {shape}, sparsity {s}, with ties: the lower flat index wins"
            )


def _weights(net) -> dict[str, torch.Tensor]:
    return {
        name: m.weight.detach()
        for name, m in net.named_modules()
        if isinstance(m, (torch.nn.Linear, torch.nn.Conv2d))
    }


def check_global_keep(student) -> None:
    weights = {"a": torch.tensor([[0.3, -0.1], [2.0, 0.2]]), "b": torch.tensor([1.0, -0.25, 0.05])}
    got = student.global_keep(weights, 0.5)
    assert isinstance(got, dict) and list(got) == ["a", "b"], "return name → mask, same keys"
    assert got["a"].tolist() == [[True, False], [True, False]], (
        "hand case: 4 of 7 pruned in total (0.05, 0.1, 0.2, 0.25); got a = "
        f"{got['a'].int().tolist()}"
    )
    assert got["b"].tolist() == [True, False, False], (
        f"hand case: got b = {got['b'].int().tolist()}"
    )
    tied = {"x": torch.full((2, 2), 0.5), "y": torch.full((3,), 0.5)}
    got = student.global_keep(tied, 0.3)  # ⌊0.3·7 + ½⌋ = 2 pruned
    assert got["x"].all() and got["y"].tolist() == [True, False, False], (
        "all magnitudes tie: the first tensor's entries win, then row-major order; got "
        f"x = {got['x'].int().tolist()}, y = {got['y'].int().tolist()}"
    )
    torch.manual_seed(0)
    for build in (models.mlp, models.lenet5, models.convnet_bn):
        net = build()
        weights = _weights(net)
        for s in (0.5, 0.9, 0.99):
            expected = global_topk_masks(weights, s)
            got = student.global_keep(weights, s)
            assert list(got) == list(expected), f"{build.__name__}: same keys, same order"
            for name in expected:
                assert torch.equal(got[name], expected[name]), (
                    f"{build.__name__} at {s}: layer {name} differs from global_topk_masks "
                    f"(kept {int(got[name].sum())}, expected {int(expected[name].sum())})"
                )
    ties = {f"t{i}": torch.randint(-2, 3, shape).float() for i, shape in enumerate([(5, 4), (9,)])}
    expected = global_topk_masks(ties, 0.6)
    got = student.global_keep(ties, 0.6)
    assert all(torch.equal(got[k], expected[k]) for k in expected), "ties across tensors"


def check_erk_sparsities(student) -> None:
    got = student.erk_sparsities({"a": (10, 10), "b": (100, 100)}, 0.5)
    assert set(got) == {"a", "b"}, f"one sparsity per layer, got keys {sorted(got)}"
    # p_a = 0.2, p_b = 0.02: first ε = 5050/220, ε·p_a > 1, so a becomes dense; then
    # ε·0.02·10000 = 0.5·10000 − 0.5·100 gives ε = 24.75 and b keeps 0.495 of its weights
    assert got["a"] == pytest.approx(0.0, abs=1e-12), f"hand case: a must be dense, got {got}"
    assert got["b"] == pytest.approx(0.505), f"hand case: b's sparsity is 0.505, got {got['b']}"
    zero = student.erk_sparsities({"a": (10, 10), "b": (100, 100)}, 0.0)
    assert zero == pytest.approx({"a": 0.0, "b": 0.0}), "S = 0: every layer dense"
    for build in (models.mlp, models.lenet5, models.convnet_bn, models.resnet20):
        shapes = budgets.layer_shapes(build())
        for s in (0.5, 0.8, 0.9, 0.95, 0.98):
            expected = budgets.erk_sparsities(shapes, s)
            got = student.erk_sparsities(shapes, s)
            assert list(got) == list(expected), "one entry per layer, in the order of shapes"
            for name in expected:
                assert got[name] == pytest.approx(expected[name], abs=1e-9), (
                    f"{build.__name__} at S={s}: layer {name} should have sparsity "
                    f"{expected[name]:.6f}, got {got[name]:.6f}"
                )
            sizes = {name: torch.Size(shape).numel() for name, shape in shapes.items()}
            kept = sum((1 - got[name]) * sizes[name] for name in sizes)
            assert kept == pytest.approx((1 - s) * sum(sizes.values())), "total density is 1 − S"


def check_cubic_sparsity(student) -> None:
    hand = {9: 0.0, 10: 0.0, 14: 0.0, 15: 0.9 - 0.9 * (2 / 3) ** 3, 19: 0.9 - 0.9 * (2 / 3) ** 3}
    hand |= {20: 0.9 - 0.9 * (1 / 3) ** 3, 25: 0.9, 1000: 0.9}
    for step, expected in hand.items():
        got = student.cubic_sparsity(step, 0.0, 0.9, 10, 5, 3)
        assert got == pytest.approx(expected), (
            f"s_i=0, s_f=0.9, t0=10, Δt=5, n=3, step {step}: expected {expected:.5f}, got {got}"
        )
    assert student.cubic_sparsity(3, 0.2, 0.9, 10, 5, 3) == 0.0, "before t0 nothing is pruned: 0"
    assert student.cubic_sparsity(10, 0.2, 0.9, 10, 5, 3) == pytest.approx(0.2), "at t0: s_i"
    for s_i, s_f, t0, delta, n in [
        (0.0, 0.98, 0, 7, 10),
        (0.25, 0.9, 100, 30, 4),
        (0.5, 0.5, 3, 1, 1),
    ]:
        schedule = CubicSchedule(s_i, s_f, t0, delta, n)
        for step in range(schedule.final_step + 2 * delta + 2):
            expected = schedule.sparsity_at(step)
            got = student.cubic_sparsity(step, s_i, s_f, t0, delta, n)
            assert got == pytest.approx(expected, abs=1e-12), (
                f"{schedule}, step {step}: expected {expected:.6f}, got {got}"
            )
