"""Graders for ``exercises/05_nm_sparsity.py``: each ``check_*`` takes the student's module and
raises AssertionError (or the stub's NotImplementedError) unless the exercise is solved."""

from __future__ import annotations

import torch
from torch import nn

from sparsitylab import models, reparam
from sparsitylab.callbacks import flips
from sparsitylab.reparam.nm import NMMask
from sparsitylab.sparsify.masks import nm_mask
from sparsitylab.sparsify.nm import asp_eligible


def check_nm_keep(student) -> None:
    torch.manual_seed(0)
    for n, m in [(2, 4), (1, 4), (4, 8), (1, 2)]:
        w = torch.randn(6, 4 * m)
        assert torch.equal(student.nm_keep(w, n, m), nm_mask(w, n, m)), f"{n}:{m} on random weights"
        tied = torch.randint(-2, 3, (6, 4 * m)).float()  # many exact ties
        got = student.nm_keep(tied, n, m)
        assert (got.reshape(-1, m).sum(-1) == n).all(), f"{n}:{m}: keep exactly n per group"
        assert torch.equal(got, nm_mask(tied, n, m)), f"{n}:{m} with ties: the earlier entry wins"


def check_sr_ste_grad(student) -> None:
    torch.manual_seed(0)
    for decay in (0.0, 2e-4, 0.5):
        layer = nn.Linear(16, 4)
        reparam.attach(layer, "weight", NMMask(2, 4, decay=decay))
        w = layer.parametrizations.weight.original
        x = torch.randn(8, 16)
        keep = nm_mask(w, 2, 4)
        sparse = (w * keep).detach().requires_grad_()
        (x @ sparse.T + layer.bias).square().sum().backward()
        layer(x).square().sum().backward()
        got = student.sr_ste_grad(sparse.grad, w.detach(), keep, decay)
        assert torch.allclose(got, w.grad, atol=1e-6), f"decay={decay}: differs from autograd"


def check_sad(student) -> None:
    t, f = True, False
    before = {"a": torch.tensor([t, t, f, f]), "b": torch.tensor([[t, f], [f, t]])}
    after = {"a": torch.tensor([t, f, t, f]), "b": torch.tensor([[t, f], [f, t]])}
    assert student.sad(before, after) == {"a": 2, "b": 0}, "hand-counted case"
    torch.manual_seed(0)
    x = {"fc1": torch.rand(5, 8) > 0.5, "fc2": torch.rand(3, 4) > 0.5}
    y = {"fc1": torch.rand(5, 8) > 0.5, "fc2": torch.rand(3, 4) > 0.5}
    assert student.sad(x, y) == flips(x, y), "random masks"


def check_asp_layers(student) -> None:
    for build in (models.mlp, models.lenet5, models.convnet_bn, models.resnet20):
        net = build()
        expected = [
            name
            for name, layer in net.named_modules()
            if isinstance(layer, (nn.Linear, nn.Conv2d)) and asp_eligible(layer.weight)
        ]
        assert student.asp_layers(net) == expected, build.__name__
