"""Graders for ``exercises/04_learned_thresholds_str.py``: each ``check_*`` takes the student's
module and raises AssertionError (or the stub's NotImplementedError) unless the exercise is
solved."""

from __future__ import annotations

import torch
from torch import nn

from sparsitylab.methods.soft_threshold import STR
from sparsitylab.methods.target_sparsity import threshold_sparsity
from sparsitylab.reparam.soft_threshold import SoftThreshold


def _scalar(value) -> torch.Tensor:
    got = torch.as_tensor(value).detach()
    assert got.numel() == 1, f"expected one value, got shape {tuple(got.shape)}"
    return got.reshape(())


def check_soft_threshold(student) -> None:
    w = torch.tensor([0.9, -0.8, 0.3, -0.2, 0.5])
    got = student.soft_threshold(w, torch.tensor(0.0))  # g(0) = 0.5
    assert torch.allclose(got, torch.tensor([0.4, -0.3, 0.0, 0.0, 0.0])), "hand case, s = 0"
    assert (got[2:] == 0).all(), "|W| ≤ g(s) must give exact zeros"
    torch.manual_seed(0)
    for s, shape in [(-3.0, (6, 5)), (-1.0, (4, 3, 3, 3)), (0.5, (10,))]:
        operator = SoftThreshold(s)
        w = torch.randn(shape)
        got = student.soft_threshold(w, torch.tensor(s))
        assert got.shape == w.shape, f"s={s}: the result must have the shape of w"
        assert torch.allclose(got, operator(w).detach()), f"s={s}: differs from SoftThreshold"


def check_threshold_grad(student) -> None:
    w, upstream = torch.tensor([0.9, -0.8, 0.1]), torch.tensor([1.0, 2.0, 3.0])
    got = _scalar(student.threshold_grad(w, torch.tensor(0.0), upstream))
    # g = 0.5, g′ = 0.25; the sum over survivors is 1·1 + 2·(−1) = −1 (0.1 is pruned)
    assert torch.allclose(got, torch.tensor(0.25)), "hand case, s = 0"
    torch.manual_seed(0)
    for s, shape in [(-3.0, (6, 5)), (-1.0, (4, 3, 3, 3)), (0.5, (10,))]:
        operator = SoftThreshold(s)
        w, upstream = torch.randn(shape), torch.randn(shape)
        operator(w).backward(upstream)
        got = _scalar(student.threshold_grad(w, torch.tensor(s), upstream))
        assert torch.allclose(got, _scalar(operator.s.grad), atol=1e-6), (
            f"s={s}: differs from autograd through SoftThreshold"
        )


def check_pruned_at_init(student) -> None:
    w = torch.tensor([0.001, -0.002, 0.5, -0.7, 0.0067, 0.0068])
    got = student.pruned_at_init(w, -5.0)  # g(−5) = 0.006693
    assert isinstance(got, float), "return a Python float"
    assert abs(got - 2 / 6) < 1e-6, f"hand case: 2 of 6 weights are at or below g(−5), got {got}"
    for s in (-6.0, -5.0, -4.0):
        torch.manual_seed(0)
        layer = STR(s_init=s).prepare(nn.Sequential(nn.Linear(400, 120)))
        expected = threshold_sparsity(layer)  # the library's count, on the same weights
        weight = layer[0].parametrizations.weight.original.detach()
        got = student.pruned_at_init(weight, s)
        assert abs(got - expected) < 1e-6, f"s={s}: {got} vs the library's {expected}"
