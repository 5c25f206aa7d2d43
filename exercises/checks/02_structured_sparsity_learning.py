"""Graders for ``exercises/02_structured_sparsity_learning.py``: each ``check_*`` takes the
student's module and raises AssertionError (or the stub's NotImplementedError) unless the exercise
is solved."""

from __future__ import annotations

from collections import OrderedDict

import torch
from torch import nn

from sparsitylab.deploy import compaction
from sparsitylab.methods.ssl import SSL
from sparsitylab.sparsify import groups, penalties

KINDS = ("filter", "channel", "shape")


def _hand_weight() -> torch.Tensor:
    """(2, 2, 1, 2): filter norms [5, 3], channel norms [3, 5], shape norms [3, 0, 0, 5]."""
    return torch.tensor([[[[3.0, 0.0]], [[0.0, 4.0]]], [[[0.0, 0.0]], [[0.0, 3.0]]]])


def _conv(weight: torch.Tensor) -> nn.Sequential:
    """A one-layer model holding ``weight`` (no bias) for the library's group functions."""
    n, c, kh, kw = weight.shape
    conv = nn.Conv2d(c, n, (kh, kw), bias=False)
    with torch.no_grad():
        conv.weight.copy_(weight)
    return nn.Sequential(conv)


def _random_weights() -> list[torch.Tensor]:
    torch.manual_seed(0)
    weights = [torch.randn(6, 4, 3, 3), torch.randn(5, 3, 5, 5), torch.randn(8, 6, 1, 1)]
    w = torch.randn(7, 5, 3, 2)
    w[2] = 0  # a zero filter, a zero channel and a zero shape column
    w[:, 1] = 0
    w[:, 3, 1, 0] = 0
    return [*weights, w]


def check_group_norms(student) -> None:
    hand = {"filter": [5.0, 3.0], "channel": [3.0, 5.0], "shape": [3.0, 0.0, 0.0, 5.0]}
    for kind, expected in hand.items():
        got = student.group_norms(_hand_weight(), kind)
        assert torch.allclose(got, torch.tensor(expected)), (
            f"hand case, {kind}: expected {expected}, got {got.tolist()}"
        )
    for w in _random_weights():
        for kind in KINDS:
            expected = groups.group_norms(_conv(w), kind)["0"].detach()
            got = student.group_norms(w, kind)
            assert tuple(got.shape) == tuple(expected.shape), (
                f"{kind} groups of a {tuple(w.shape)} weight: expected {len(expected)} norms, "
                f"got shape {tuple(got.shape)}"
            )
            assert torch.allclose(got, expected, atol=1e-6), (
                f"{kind} groups of a {tuple(w.shape)} weight differ from groups.group_norms"
            )


def check_prox_group(student) -> None:
    w = _hand_weight()
    got = student.prox_group(w, "filter", 3.0)
    assert torch.equal(w, _hand_weight()), "prox_group must not modify its input"
    expected = torch.cat([0.4 * w[:1], torch.zeros_like(w[1:])])
    assert torch.allclose(got, expected), (
        "hand case, filter groups, t = 3: filter 0 (norm 5) is scaled by 1 − 3/5 = 0.4, filter 1 "
        f"(norm 3 = t) dies; got {got.flatten().tolist()}"
    )
    got = student.prox_group(w, "shape", 4.0)
    expected = torch.zeros_like(w)
    expected[:, 1, 0, 1] = 0.2 * w[:, 1, 0, 1]
    assert torch.allclose(got, expected), (
        "hand case, shape groups, t = 4: only the last column (norm 5) survives, scaled by 0.2; "
        f"got {got.flatten().tolist()}"
    )
    for w in _random_weights():
        for kind in KINDS:
            for fraction in (None, 0.0, 0.5, 0.9, 1.0):
                model = _conv(w)
                t = _threshold(model, kind, fraction)
                penalties.prox_group_(model, kind, t)
                expected = model[0].weight.detach()
                got = student.prox_group(w.clone(), kind, t)
                assert not got.isnan().any(), f"{kind}, t={t:.3g}: NaN (a zero group divided by 0?)"
                assert torch.allclose(got, expected, atol=1e-6), (
                    f"{kind} groups of a {tuple(w.shape)} weight, t = {t:.4g}: differs from "
                    "penalties.prox_group_"
                )


def _threshold(model: nn.Module, kind: str, fraction: float | None) -> float:
    """A threshold that no group norm is close to: 0 for None, else halfway between the sorted
    norms at ``fraction`` of the way up and the next one (twice the largest for 1.0)."""
    if fraction is None:
        return 0.0
    norms = groups.group_norms(model, kind)["0"].detach().sort().values
    i = round(fraction * (len(norms) - 1))
    if i == len(norms) - 1:
        return 2 * float(norms[-1])
    return float(norms[i] + norms[i + 1]) / 2


def check_dying_groups(student) -> None:
    w = _hand_weight()
    got = student.dying_groups(w, "filter", lr=0.1, lam=4.0, momentum=0.9)
    assert got.dtype == torch.bool, f"return a boolean tensor, got dtype {got.dtype}"
    assert got.tolist() == [False, True], (
        "hand case: η/(1 − μ)·λ = 0.1/0.1·4 = 4, so the filter of norm 3 dies and that of norm 5 "
        f"survives; got {got.tolist()}"
    )
    assert student.dying_groups(w, "filter", lr=0.1, lam=4.0, momentum=0.0).tolist() == [
        False,
        False,
    ], "hand case without momentum: t = 0.4, nothing dies"
    assert student.dying_groups(w, "shape", lr=0.1, lam=4.0, momentum=0.9).tolist() == [
        True,
        True,
        True,
        False,
    ], "hand case, shape groups, t = 4: zero columns are dead too"
    for w in _random_weights():
        for kind in KINDS:
            t = _threshold(_conv(w), kind, 0.5)  # about half the groups die
            for lr, momentum in [(0.05, 0.0), (0.01, 0.9), (0.1, 0.5)]:
                lam = t * (1 - momentum) / lr
                model = _conv(w)
                method = SSL({kind: lam}, exact="prox")
                method.on_fit_start(
                    model, torch.optim.SGD(model.parameters(), lr=lr, momentum=momentum)
                )
                method.after_step(model, 0)
                expected = ~groups.group_alive(model, kind)["0"]
                got = student.dying_groups(w, kind, lr, lam, momentum)
                assert torch.equal(got, expected), (
                    f"{kind} groups of a {tuple(w.shape)} weight, lr={lr}, momentum={momentum}: "
                    f"expected {int(expected.sum())} dead groups, got {int(got.sum())}"
                )


def _zero_structure(weight: torch.Tensor, bias: torch.Tensor) -> None:
    """Zero rows 1 and 3 (bias of row 3 kept non-zero: that row stays), column 2, and for a conv
    every column of input channel 0."""
    weight[1] = 0
    bias[1] = 0
    weight[3] = 0
    if weight.dim() == 2:
        weight[:, 2] = 0
    else:
        weight[:, 0] = 0
        weight[:, 1, 0, 1] = 0


def check_compacted_macs(student) -> None:
    w = torch.tensor([[1.0, 0.0, 0.0, 2.0], [0.0, 0.0, 0.0, 0.0], [3.0, 4.0, 0.0, 0.0]])
    got = student.compacted_macs(w, torch.tensor([0.5, 0.0, 0.0]), 5)
    assert got == 5 * 2 * 3, (
        f"hand case: row 1 (weights and bias zero) and column 2 go: 5 positions × 2 × 3 = 30, "
        f"got {got}"
    )
    assert student.compacted_macs(w, torch.tensor([0.5, 1.0, 0.0]), 5) == 5 * 3 * 3, (
        "hand case: a zero row with a non-zero bias stays (it outputs its bias)"
    )
    assert student.compacted_macs(w, None, 1) == 1 * 2 * 3, "hand case without a bias"
    torch.manual_seed(0)
    mlp = nn.Sequential(OrderedDict(fc1=nn.Linear(12, 6), relu=nn.ReLU(), fc2=nn.Linear(6, 3)))
    lenet = nn.Sequential(
        OrderedDict(
            conv=nn.Conv2d(3, 8, 3, padding=1),
            relu=nn.ReLU(),
            pool=nn.MaxPool2d(2),
            flatten=nn.Flatten(),
            fc=nn.Linear(8 * 5 * 5, 4),
        )
    )
    for model, name, shape, positions in [
        (mlp, "fc1", (1, 12), 1),
        (lenet, "conv", (1, 3, 10, 10), 100),
    ]:
        layer = model.get_submodule(name)
        with torch.no_grad():
            _zero_structure(layer.weight, layer.bias)
        small = compaction.compact(model, example_input=torch.randn(2, *shape[1:]))
        expected = compaction.layer_macs(small, shape)[name]
        got = student.compacted_macs(layer.weight.detach(), layer.bias.detach(), positions)
        assert got == expected, (
            f"{type(layer).__name__} {tuple(layer.weight.shape)} with dead rows and columns: the "
            f"compacted layer runs {expected} MACs per sample, got {got}"
        )
        dense = positions * layer.weight.numel()
        assert expected < dense, "the grader's layer should lose rows and columns"
        assert student.compacted_macs(torch.randn(layer.weight.shape), None, positions) == dense, (
            "a dense layer keeps every row and column"
        )
