"""Graders for ``exercises/00_getting_started.py``: each ``check_*`` takes the student's module and
raises AssertionError (or the stub's NotImplementedError) unless the exercise is solved."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsitylab import metrics, models, reparam
from sparsitylab.sparsify.budgets import budget_masks


def _pruned(build, sparsity: float = 0.6, seed: int = 0) -> nn.Module:
    """A freshly built model whose Linear/Conv2d weights are magnitude-pruned in place (no masks
    attached), so that zeros and non-zeros differ from layer to layer."""
    torch.manual_seed(seed)
    net = build()
    with torch.no_grad():
        for name, keep in budget_masks(net, sparsity, "global").items():
            net.get_submodule(name).weight.mul_(keep)
    return net


def check_weight_sparsity(student) -> None:
    net = nn.Sequential(nn.Linear(4, 3), nn.BatchNorm1d(3), nn.ReLU(), nn.Linear(3, 2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0, 2, 0], [0, 0, 3, 4], [5, 0, 6, 0]]))
        net[0].bias.zero_()  # zero biases and BatchNorm parameters must not be counted
        net[1].weight.zero_()
        net[1].bias.zero_()
        net[3].weight.fill_(0.5)
    got = student.weight_sparsity(net)
    assert got == pytest.approx(6 / 18), (
        f"hand case: 6 zero weights of 12 + 6 = 18 (biases and BatchNorm excluded), got {got}"
    )
    assert student.weight_sparsity(models.lenet5()) == 0.0, "a freshly built LeNet is dense"
    for build in (models.mlp, models.lenet5, models.convnet_bn, models.resnet20):
        net = _pruned(build)
        expected = metrics.sparsity(net)
        assert student.weight_sparsity(net) == pytest.approx(expected), (
            f"{build.__name__}: differs from metrics.sparsity ({expected:.6f}); are the nested "
            "layers of the ResNet counted, and only Linear/Conv2d weights?"
        )
    net = models.lenet5()
    reparam.apply_masks(net, budget_masks(net, 0.7, "uniform"))
    assert student.weight_sparsity(net) == pytest.approx(metrics.sparsity(net)), (
        "a masked LeNet: count the effective weight (layer.weight), which is 70 % zeros"
    )


def check_conv2d_macs(student) -> None:
    assert student.conv2d_macs(nn.Conv2d(1, 20, 5), 28, 28) == 24 * 24 * 20 * 25, (
        "LeNet's conv1 on a 28×28 image: 24·24 positions × 20·1·5·5 weights = 288 000"
    )
    assert student.conv2d_macs(nn.Conv2d(20, 50, 5), 12, 12) == 8 * 8 * 50 * 20 * 25, (
        "LeNet's conv2 on its 12×12 input: 8·8 positions × 50·20·5·5 weights = 1 600 000"
    )
    layers = [
        (nn.Conv2d(3, 8, 3), 10, 12),
        (nn.Conv2d(3, 8, 3, padding=1), 10, 12),
        (nn.Conv2d(4, 6, (3, 5), stride=2, padding=(1, 2)), 15, 9),
        (nn.Conv2d(4, 6, 3, stride=(1, 3), bias=False), 9, 17),
        (nn.Conv2d(4, 8, 3, dilation=2, padding=2, groups=2), 11, 11),
        (nn.Conv2d(6, 6, 1, stride=3, groups=6, bias=False), 7, 8),
    ]
    for conv, height, width in layers:
        cost = metrics.layer_costs(nn.Sequential(conv), (1, conv.in_channels, height, width))[0]
        got = student.conv2d_macs(conv, height, width)
        assert got == cost.macs, (
            f"{conv} on {height}×{width}: expected {cost.macs} MACs (output "
            f"{cost.output_shape[1]}×{cost.output_shape[2]}, weight {cost.weight_shape}), got {got}"
        )


class _Unused(nn.Module):
    """One Linear on the forward path and one that is never called."""

    def __init__(self):
        super().__init__()
        self.unused = nn.Linear(4, 5)
        self.used = nn.Linear(4, 3)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.used(x)


def _table(costs) -> dict[str, tuple[int, int]]:
    return {c.name: (c.macs, c.sparse_macs) for c in costs}


def check_layer_macs(student) -> None:
    net = _Unused()
    got = student.layer_macs(net, (1, 4))
    assert {k: tuple(map(int, v)) for k, v in got.items()} == {"used": (12, 12)}, (
        f"a layer the forward pass never reaches is left out; got {got}"
    )
    cases = [
        ("mlp", models.mlp, (1, 1, 28, 28)),
        ("lenet5", models.lenet5, (1, 1, 28, 28)),
        ("lenet5, 3×32×32", lambda: models.lenet5(in_channels=3, image_size=32), (1, 3, 32, 32)),
        ("convnet_bn", models.convnet_bn, (1, 1, 28, 28)),
        ("resnet20", models.resnet20, (1, 1, 28, 28)),
    ]
    for name, build, shape in cases:
        net = _pruned(build).train()
        expected = _table(metrics.layer_costs(net, shape))
        got = student.layer_macs(net, shape)
        assert isinstance(got, dict), f"return a dict name → (macs, sparse_macs), got {type(got)}"
        got = {k: tuple(map(int, v)) for k, v in got.items()}
        for layer, pair in expected.items():
            assert layer in got, f"{name}: layer {layer!r} is missing"
            assert got[layer][0] == pair[0], (
                f"{name}, {layer}: expected {pair[0]} MACs, got {got[layer][0]}"
            )
            assert got[layer][1] == pair[1], (
                f"{name}, {layer}: expected {pair[1]} sparse-aware MACs (positions × non-zero "
                f"weights), got {got[layer][1]}"
            )
        assert list(got) == list(expected), f"{name}: one entry per prunable layer, in module order"
        assert all(m.training for m in net.modules()), f"{name}: restore the model's training mode"
        assert not any(m._forward_hooks for m in net.modules()), f"{name}: remove your hooks"


def check_parameters_and_nonzeros(student) -> None:
    net = nn.Sequential(nn.Linear(3, 2), nn.BatchNorm1d(2))
    with torch.no_grad():
        net[0].weight.copy_(torch.tensor([[1.0, 0, 2], [0, 3, 4]]))
        net[0].bias.copy_(torch.tensor([0.0, 1.0]))
        net[1].weight.fill_(1.0)
        net[1].bias.zero_()
    got = tuple(map(int, student.parameters_and_nonzeros(net)))
    assert got == (12, 7), (
        "hand case: 6 + 2 + 2 + 2 = 12 parameters (BatchNorm's running statistics are buffers, "
        f"not parameters), 4 + 1 + 2 + 0 = 7 non-zeros; got {got}"
    )
    got = tuple(map(int, student.parameters_and_nonzeros(models.lenet5())))
    assert got[0] == 431_080, f"LeNet has 431 080 parameters, got {got[0]}"
    for build in (models.mlp, models.lenet5, models.convnet_bn, models.resnet20):
        net = _pruned(build)
        expected = (metrics.count_parameters(net), metrics.count_nonzeros(net))
        got = tuple(map(int, student.parameters_and_nonzeros(net)))
        assert got == expected, f"{build.__name__}: expected {expected}, got {got}"
