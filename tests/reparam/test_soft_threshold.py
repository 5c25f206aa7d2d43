"""STR's soft threshold: forward, both gradients against the closed forms, save/load, baking."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsitylab import reparam
from sparsitylab.reparam.soft_threshold import SoftThreshold, threshold_parameters, thresholds


def str_layer(s_init: float, granularity: str = "layer", conv: bool = False) -> nn.Module:
    torch.manual_seed(0)
    layer = nn.Conv2d(3, 4, 3) if conv else nn.Linear(10, 6)
    out = layer.weight.shape[0]
    reparam.attach(layer, "weight", SoftThreshold(s_init, granularity, out))
    return layer


@pytest.mark.parametrize("conv", [False, True])
def test_forward_shrinks_and_zeros(conv):
    layer = str_layer(-1.5, conv=conv)
    w = layer.parametrizations.weight.original.detach()
    g = torch.sigmoid(torch.tensor(-1.5))
    expected = torch.where(w.abs() > g, w - g * torch.sign(w), torch.zeros(()))
    assert torch.allclose(layer.weight, expected, atol=1e-7)
    assert (layer.weight[w.abs() <= g] == 0).all()


@pytest.mark.parametrize("granularity", ["layer", "channel"])
def test_gradients_match_the_closed_forms(granularity):
    layer = str_layer(-1.2, granularity)
    p = layer.parametrizations.weight[0]
    w = layer.parametrizations.weight.original
    with torch.no_grad():
        if granularity == "channel":
            p.s.copy_(torch.linspace(-2.0, -0.5, 6))
    x = torch.randn(7, 10)
    sparse = layer.weight.detach().clone().requires_grad_()
    (x @ sparse.T + layer.bias).square().sum().backward()
    G = sparse.grad  # ∂L/∂S
    layer(x).square().sum().backward()
    g = torch.sigmoid(p.s.detach()).reshape(-1, 1)
    alive = (w.detach().abs() > g).float()
    assert torch.allclose(w.grad, G * alive, atol=1e-5)  # ∂S/∂W = 1{|W| > g(s)}
    g_prime = (g * (1 - g)).reshape(-1)
    per_row = (G * torch.sign(w.detach()) * alive).sum(1)
    expected_s = -g_prime * (per_row.sum() if granularity == "layer" else per_row)
    assert torch.allclose(p.s.grad, expected_s.reshape(p.s.shape), atol=1e-5)


def test_very_negative_s_starts_dense_with_zero_threshold_gradient():
    layer = str_layer(-100.0)
    assert torch.equal(layer.weight, layer.parametrizations.weight.original)
    layer(torch.randn(3, 10)).sum().backward()
    assert float(layer.parametrizations.weight[0].s.grad.abs().sum()) == 0.0


def test_save_load_and_bake():
    layer = str_layer(-2.0, "channel")
    with torch.no_grad():
        layer.parametrizations.weight[0].s.add_(torch.arange(6.0) / 3)
    fresh = reparam.load_state_dict(nn.Linear(10, 6), layer.state_dict())
    assert torch.equal(fresh.weight, layer.weight)
    assert torch.equal(thresholds(fresh)[""], thresholds(layer)[""])
    baked = reparam.remove(fresh)
    assert not reparam.find(baked) and torch.equal(baked.weight, layer.weight)
    assert len(threshold_parameters(layer)) == 1


def test_bad_options():
    with pytest.raises(ValueError, match="granularity"):
        SoftThreshold(-1.0, "row")
    with pytest.raises(ValueError, match="out_channels"):
        SoftThreshold(-1.0, "channel")
    with pytest.raises(TypeError, match="s_init"):
        SoftThreshold("big")
