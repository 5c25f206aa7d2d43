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


def test_gemm_view_rows_are_filters_and_columns_are_fibers():
    w = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    gemm = groups.gemm_view(w)
    assert gemm.shape == (2, 12)
    assert torch.equal(gemm[1], w[1].flatten())
    assert torch.equal(gemm[:, 1 * 4 + 1 * 2 + 0], w[:, 1, 1, 0])  # column (c=1, m=1, k=0)
    with pytest.raises(ValueError, match="2-D"):
        groups.gemm_view(torch.zeros(3))


def test_filter_group_owns_bias_and_following_batchnorm():
    model = models.convnet_bn()
    conv, bn = model[0], model[1]
    with torch.no_grad():
        bn.weight.uniform_(0.5, 1.5)
        bn.bias.uniform_(-1, 1)
    expected = (conv.weight.flatten(1).pow(2).sum(1) + bn.weight.pow(2) + bn.bias.pow(2)).sqrt()
    assert torch.allclose(groups.group_norms(model, "filter")["0"], expected)
    lenet = models.lenet5()
    conv1 = lenet[0]
    expected = (conv1.weight.flatten(1).pow(2).sum(1) + conv1.bias.pow(2)).sqrt()
    assert torch.allclose(groups.group_norms(lenet, "filter")["0"], expected)


def test_neuron_groups_cover_rows_and_columns_and_skip_the_class_layer():
    mlp = models.mlp((6, 5, 4, 3))
    out_norms = groups.group_norms(mlp, "neuron_out")
    assert list(out_norms) == ["1", "3"]  # the last Linear (class scores) is not pruned
    fc = mlp[1]
    assert torch.allclose(out_norms["1"], torch.cat([fc.weight, fc.bias[:, None]], 1).norm(dim=1))
    assert torch.allclose(
        groups.group_norms(mlp, "neuron_in")["1"], naive_norms(fc.weight, "neuron_in")
    )


def test_depth_group_is_the_whole_branch_and_restricting_layers_works():
    net = models.resnet20()
    norms = groups.group_norms(net, "depth")
    assert len(norms) == 9
    branch = net.blocks[4].branch
    expected = torch.cat([p.flatten() for p in branch.parameters()]).norm()
    assert torch.allclose(norms["blocks.4"], expected)
    assert list(groups.group_norms(net, "depth", layers=["blocks.2"])) == ["blocks.2"]
    with pytest.raises(ValueError, match="carry no 'depth' groups"):
        groups.group_norms(net, "depth", layers=["stem.0"])
    with pytest.raises(ValueError, match="unknown"):
        groups.group_norms(net, "rows")


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
        net[2].weight[:, :5] = 0
    assert groups.zero_group_fraction(net, "channel")["2"] == pytest.approx(0.25)
    assert groups.zero_group_fraction(net, "filter")["2"] == 0.0
