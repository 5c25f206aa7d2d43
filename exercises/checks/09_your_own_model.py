"""Graders for ``exercises/09_your_own_model.py``."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsitylab import coverage, graph, models
from sparsitylab.methods.channels import Channels, importances


class _Residual(nn.Module):
    """A stage of two residual blocks: its channels are produced by three convolutions."""

    def __init__(self):
        super().__init__()
        self.stem = nn.Conv2d(1, 6, 3, padding=1)
        self.a, self.b = nn.Conv2d(6, 6, 3, padding=1), nn.Conv2d(6, 6, 3, padding=1)
        self.fc = nn.Linear(6, 3)

    def forward(self, x):
        y = torch.relu(self.stem(x))
        y = torch.relu(y + self.a(y))
        y = torch.relu(y + self.b(y))
        return self.fc(y.mean((2, 3)))


def _traced():
    torch.manual_seed(0)
    model = _Residual()
    g = graph.trace(model, torch.randn(1, 1, 8, 8))
    return model, g.groups[0]


def check_producer_norms(student) -> None:
    model, group = _traced()
    tensors = dict(model.named_parameters())
    expected = importances(model, Channels({"stage": group}), "l2")["stage"]
    got = student.producer_norms(group, tensors)
    assert got.shape == (group.size,), f"one importance per unit: shape ({group.size},)"
    assert torch.allclose(got, expected, atol=1e-5), (
        "sum the squares of every producer's slices (stem, a and b here) before the square root"
    )
    convnet = models.convnet_bn(widths=(4, 6, 8))
    g = graph.trace(convnet, torch.randn(1, 1, 28, 28)).group("conv2")
    weight = convnet.conv2.weight.detach()
    assert torch.allclose(
        student.producer_norms(g, dict(convnet.named_parameters())), weight.flatten(1).norm(dim=1)
    ), "a plain conv group: the norm of each filter"


def check_removal_masks(student) -> None:
    model, group = _traced()
    shapes = {name: tuple(p.shape) for name, p in model.named_parameters()}
    removed = torch.tensor([True, False, False, True, False, False])
    masks = student.removal_masks(group, shapes, removed)
    assert set(masks) == {m.tensor for m in group.members}, "one mask per member tensor"
    assert masks["a.weight"].shape == shapes["a.weight"]
    assert not masks["a.weight"][0].any() and not masks["a.weight"][:, 3].any(), (
        "a.weight is a member twice: its rows (produces) and its columns (reads) both go"
    )
    assert masks["a.weight"][1:3, [1, 2, 4, 5]].all(), "the other slices are kept"
    assert not masks["fc.weight"][:, 0].any() and masks["fc.weight"][:, 1].all()
    assert masks["stem.bias"].tolist() == [False, True, True, False, True, True]


def check_speedup_report(student) -> None:
    speedup, ideal, efficiency = student.speedup_report(10.0, 8.0, 1000, 500)
    assert speedup == pytest.approx(1.25) and ideal == pytest.approx(2.0)
    assert efficiency == pytest.approx(0.625), "1.25× measured of an ideal 2×: 0.625 of it"
    for bad in [(0.0, 1.0, 10, 5), (1.0, 1.0, 10, 0), (-1.0, 1.0, 10, 5)]:
        with pytest.raises(ValueError):
            student.speedup_report(*bad)


def check_covered_share(student) -> None:
    model = nn.Sequential(nn.Embedding(10, 4), nn.Linear(4, 3))
    report = coverage.coverage(model)
    sizes = {name: p.numel() for name, p in model.named_parameters()}
    assert student.covered_share(report, sizes) == pytest.approx(12 / (40 + 12 + 3)), (
        "only the Linear weight is covered: the embedding table and the bias are not"
    )
    lenet = models.lenet5()
    sizes = {name: p.numel() for name, p in lenet.named_parameters()}
    share = student.covered_share(coverage.coverage(lenet), sizes)
    biases = sum(p.numel() for n, p in lenet.named_parameters() if n.endswith("bias"))
    assert share == pytest.approx(1 - biases / sum(sizes.values()))
    with pytest.raises(ValueError):
        student.covered_share({}, {})
