"""Group norms of every SSL structure vs a naive loop over groups, and their (sub)gradients."""

from __future__ import annotations

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sparsitylab import models
from sparsitylab.sparsify import groups


def naive_norms(w: torch.Tensor, kind: str) -> torch.Tensor:
    """One group at a time, straight from the paper's index notation."""
    if kind == "filter":
        return torch.stack([w[n].norm() for n in range(w.shape[0])])
    if kind in ("channel", "neuron_in"):
        return torch.stack([w[:, c].norm() for c in range(w.shape[1])])
    c, kh, kw = w.shape[1:]
    return torch.stack(
        [w[:, i, m, k].norm() for i in range(c) for m in range(kh) for k in range(kw)]
    )


conv_shapes = st.tuples(st.integers(1, 6), st.integers(1, 5), st.integers(1, 3), st.integers(1, 3))


@settings(max_examples=30, deadline=None)
@given(shape=conv_shapes, seed=st.integers(0, 10_000), zero_frac=st.floats(0, 1))
def test_conv_group_norms_match_naive_loop(shape, seed, zero_frac):
    g = torch.Generator().manual_seed(seed)
    w = torch.randn(shape, generator=g)
    w[torch.rand(shape[0], generator=g) < zero_frac] = 0  # some all-zero filters
    assert torch.allclose(
        groups.safe_norm(groups.row_squares(_conv(w))), naive_norms(w, "filter"), atol=1e-6
    )
    assert torch.allclose(
        groups.safe_norm(groups.channel_squares(w)), naive_norms(w, "channel"), atol=1e-6
    )
    assert torch.allclose(
        groups.safe_norm(groups.column_squares(w)), naive_norms(w, "shape"), atol=1e-6
    )


def _conv(w: torch.Tensor) -> nn.Conv2d:
    conv = nn.Conv2d(w.shape[1], w.shape[0], w.shape[2:], bias=False)
    conv.weight = nn.Parameter(w.clone())
    return conv


def test_filter_group_owns_bias_and_following_batchnorm():
    model = models.convnet_bn()
    conv, bn = model.conv1, model.bn1
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    expected = (conv.weight.flatten(1).pow(2).sum(1) + bn.weight.pow(2) + bn.bias.pow(2)).sqrt()
    assert torch.allclose(groups.group_norms(model, "filter")["conv1"], expected)
    lenet = models.lenet5()
    conv1 = lenet.conv1
    expected = (conv1.weight.flatten(1).pow(2).sum(1) + conv1.bias.pow(2)).sqrt()
    assert torch.allclose(groups.group_norms(lenet, "filter")["conv1"], expected)


def test_neuron_groups_cover_rows_and_columns_and_skip_the_class_layer():
    mlp = models.mlp((6, 5, 4, 3))
    out_norms = groups.group_norms(mlp, "neuron_out")
    assert list(out_norms) == ["fc1", "fc2"]  # the last Linear (class scores) is not pruned
    fc = mlp.fc1
    assert torch.allclose(out_norms["fc1"], torch.cat([fc.weight, fc.bias[:, None]], 1).norm(dim=1))
    assert torch.allclose(
        groups.group_norms(mlp, "neuron_in")["fc1"], naive_norms(fc.weight, "neuron_in")
    )


def test_depth_group_is_the_whole_branch_and_restricting_layers_works():
    net = models.resnet20()
    norms = groups.group_norms(net, "depth")
    assert len(norms) == 9
    branch = net.blocks[4].branch
    expected = torch.cat([p.flatten() for p in branch.parameters()]).norm()
    assert torch.allclose(norms["blocks.s2b2"], expected)
    assert list(groups.group_norms(net, "depth", layers=["blocks.s1b3"])) == ["blocks.s1b3"]
    with pytest.raises(ValueError, match="carry no 'depth' groups"):
        groups.group_norms(net, "depth", layers=["stem.conv"])
    with pytest.raises(ValueError, match="group kind='rows' is not one of"):
        groups.group_norms(net, "rows")


class Residual(nn.Module):
    """A residual block that is not the project's: depth groups need only ``branch`` and
    ``drop_branch``."""

    def __init__(self, width: int):
        super().__init__()
        self.branch = nn.Sequential(nn.Linear(width, width), nn.ReLU(), nn.Linear(width, width))

    def drop_branch(self) -> None:
        self.branch = None

    def forward(self, x):
        return x if self.branch is None else x + self.branch(x)


def test_depth_groups_work_on_any_block_with_a_branch():
    from sparsitylab.deploy import compaction

    net = nn.Sequential(nn.Flatten(), nn.Linear(16, 8), Residual(8), Residual(8), nn.Linear(8, 3))
    assert list(groups.group_norms(net, "depth")) == ["2", "3"]
    with torch.no_grad():
        for p in net[3].branch.parameters():
            p.zero_()
    assert groups.zero_group_fraction(net, "depth") == {"2": 0.0, "3": 1.0}
    small = compaction.compact(net, example_input=torch.randn(4, 1, 4, 4))
    assert small[3].branch is None and small[2].branch is not None


@pytest.mark.parametrize(
    "kind,name",
    [("filter", "mlp"), ("shape", "mlp"), ("depth", "lenet5"), ("neuron_out", "resnet20")],
)
def test_a_group_kind_the_model_does_not_have_is_an_error(kind, name):
    """A penalty on a kind the model lacks would silently be zero."""
    with pytest.raises(ValueError, match=f"has no {kind!r} groups"):
        groups.group_norms(models.build(name), kind)


def test_safe_norm_has_zero_subgradient_at_zero_groups():
    w = torch.tensor([[0.0, 0.0], [3.0, 4.0]], requires_grad=True)
    norms = groups.safe_norm(w.pow(2).sum(1))
    norms.sum().backward()
    assert torch.equal(norms.detach(), torch.tensor([0.0, 5.0]))
    assert torch.equal(w.grad[0], torch.zeros(2))  # subgradient 0 at ‖w_g‖ = 0 (paper's choice)
    assert torch.allclose(w.grad[1], torch.tensor([0.6, 0.8]))  # w / ‖w‖
    assert torch.isfinite(w.grad).all()


def test_zero_group_fraction_counts_exactly_zero_groups():
    net = models.lenet5()
    with torch.no_grad():
        net.conv2.weight[:, :5] = 0
        net.conv2.weight[0, 6, 0, 0] = (
            1e-30  # a tiny non-zero: alive (its square would underflow to 0)
        )
    assert groups.zero_group_fraction(net, "channel")["conv2"] == pytest.approx(0.25)
    assert groups.zero_group_fraction(net, "filter")["conv2"] == 0.0
    with torch.no_grad():
        net.conv2.weight[:, 6] = 0
        net.conv2.weight[0, 6, 0, 0] = 1e-30
    assert groups.zero_group_fraction(net, "channel")["conv2"] == pytest.approx(0.25)
