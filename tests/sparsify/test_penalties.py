"""Group lasso values and gradients, the 1e-4 zeroing rule, proximal steps, argument checks."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsitylab import models
from sparsitylab.sparsify import groups, penalties


def test_group_lasso_value_matches_naive_sum_over_groups():
    torch.manual_seed(0)
    net = models.lenet5()
    conv2 = net.conv2.weight
    naive_shape = sum(
        conv2[:, c, m, k].norm() for c in range(20) for m in range(5) for k in range(5)
    )
    naive_shape = naive_shape + sum(
        net.conv1.weight[:, 0, m, k].norm() for m in range(5) for k in range(5)
    )
    assert torch.allclose(penalties.group_lasso(net, "shape"), naive_shape, rtol=1e-5)
    naive_filter = sum(
        torch.cat([conv.weight[n].flatten(), conv.bias[n : n + 1]]).norm()
        for conv in (net.conv1, net.conv2)
        for n in range(conv.out_channels)
    )
    assert torch.allclose(penalties.group_lasso(net, "filter"), naive_filter, rtol=1e-5)


def test_group_lasso_gradient_is_lambda_w_over_norm():
    """The paper's update adds λ_g · w / ‖w_g‖ (0 on zero groups)."""
    torch.manual_seed(1)
    net = models.mlp((8, 6, 3))
    with torch.no_grad():
        net.fc1.weight[:, 2] = 0
    lam = 0.3
    cb = penalties.StructuredPenalty({"neuron_in": lam}, threshold=None)
    cb.penalty(net).backward()
    w = net.fc1.weight.detach()
    expected = lam * w / w.norm(dim=0, keepdim=True).clamp_min(1e-30)
    assert torch.allclose(net.fc1.weight.grad, expected, atol=1e-7)
    assert torch.equal(net.fc1.weight.grad[:, 2], torch.zeros(6))


def test_structured_penalty_adds_l1_and_sums_kinds():
    torch.manual_seed(2)
    net = models.lenet5()
    cb = penalties.StructuredPenalty({"filter": 0.1, "channel": 0.2}, l1=0.01)
    expected = (
        0.01 * sum(m.weight.abs().sum() for m in (net.conv1, net.conv2, net.fc1, net.fc2))
        + 0.1 * penalties.group_lasso(net, "filter")
        + 0.2 * penalties.group_lasso(net, "channel")
    )
    assert torch.allclose(cb.penalty(net), expected)
    with pytest.raises(ValueError, match="group kind='rows'"):
        penalties.StructuredPenalty({"rows": 0.1})
    with pytest.raises(ValueError, match="≥ 0"):
        penalties.StructuredPenalty({"filter": -1.0})


def test_layers_must_name_penalised_kinds_and_existing_layers():
    """A misspelt key in layers= used to be ignored, leaving the penalty on every layer."""
    with pytest.raises(ValueError, match="layers has a key 'filters'"):
        penalties.StructuredPenalty({"filter": 0.1}, layers={"filters": ["conv1"]})
    with pytest.raises(ValueError, match="'shape' that is not a penalised"):
        penalties.StructuredPenalty({"filter": 0.1}, layers={"shape": ["conv1"]})
    with pytest.raises(TypeError, match="not a string"):
        penalties.StructuredPenalty({"filter": 0.1}, layers={"filter": "conv1"})
    cb = penalties.StructuredPenalty({"filter": 0.1}, layers={"filter": ["conv9"]})
    with pytest.raises(ValueError, match=r"layers=\['conv9'\] carry no 'filter' groups"):
        cb.penalty(models.lenet5())
    with pytest.raises(ValueError, match="has no 'filter' groups"):
        penalties.StructuredPenalty({"filter": 0.1}).penalty(models.mlp())


def test_zero_small_sets_tiny_entries_to_exact_zero():
    net = models.mlp((4, 3, 2))
    with torch.no_grad():
        net.fc1.weight.copy_(torch.tensor([[5e-5, -9e-5, 2e-4, 1.0]] * 3))
    penalties.zero_small_(net)
    assert torch.equal(net.fc1.weight[0], torch.tensor([0.0, 0.0, 2e-4, 1.0]))
    with pytest.raises(ValueError, match="threshold"):
        penalties.zero_small_(net, -1.0)


@settings(max_examples=30, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    step=st.floats(0.0, 3.0),
    kind=st.sampled_from(["filter", "channel", "shape"]),
)
def test_prox_group_shrinks_each_norm_by_step_and_keeps_directions(seed, step, kind):
    torch.manual_seed(seed)
    net = models.lenet5()
    before = {n: v.detach().clone() for n, v in groups.group_norms(net, kind).items()}
    w_before = net.conv2.weight.detach().clone()
    penalties.prox_group_(net, kind, step)
    after = groups.group_norms(net, kind)
    for name in before:
        assert torch.allclose(after[name], (before[name] - step).clamp_min(0), atol=1e-5)
    scale = after["conv2"] / before["conv2"]  # each group keeps its direction: w_g is only rescaled
    shape = {"filter": (-1, 1, 1, 1), "channel": (1, -1, 1, 1), "shape": (1, 20, 5, 5)}[kind]
    assert torch.allclose(net.conv2.weight, w_before * scale.view(shape), atol=1e-6)


def test_prox_group_is_the_proximal_operator():
    """prox_{t‖·‖}(v) minimises ½‖x − v‖² + t‖x‖: compare with a numeric minimisation of one
    group."""
    torch.manual_seed(3)
    v = torch.randn(7)
    t = 0.8
    x = v.clone().requires_grad_(True)
    opt = torch.optim.LBFGS([x], max_iter=500, tolerance_grad=1e-12, tolerance_change=1e-14)

    def closure():
        opt.zero_grad()
        loss = 0.5 * (x - v).pow(2).sum() + t * x.norm()
        loss.backward()
        return loss

    opt.step(closure)
    net = models.mlp((7, 1, 2))
    with torch.no_grad():
        net.fc1.weight.copy_(v[None])
        net.fc1.bias.zero_()
    penalties.prox_group_(net, "neuron_out", t)
    assert torch.allclose(net.fc1.weight[0], x.detach(), atol=1e-4)


def test_prox_group_depth_zeroes_a_whole_branch():
    net = models.resnet20()
    norm = float(groups.group_norms(net, "depth")["blocks.s1b2"].detach())
    penalties.prox_group_(net, "depth", norm + 1.0, layers=["blocks.s1b2"])
    assert all(int(p.count_nonzero()) == 0 for p in net.blocks[1].branch.parameters())
    assert any(int(p.count_nonzero()) > 0 for p in net.blocks[0].branch.parameters())


def test_prox_l1_soft_thresholds():
    net = models.mlp((3, 1, 2))
    with torch.no_grad():
        net.fc1.weight.copy_(torch.tensor([[0.5, -0.2, 0.05]]))
    penalties.prox_l1_(net, 0.1)
    assert torch.allclose(net.fc1.weight, torch.tensor([[0.4, -0.1, 0.0]]))


def test_penalties_on_a_model_without_weights_are_refused_by_name():
    model = torch.nn.Sequential(torch.nn.ReLU())
    with pytest.raises(ValueError, match="Sequential has no weight matrix"):
        penalties.l1_penalty(model)
    with pytest.raises(ValueError, match="no 'filter' groups"):
        penalties.StructuredPenalty({"filter": 1e-3}).penalty(model)
