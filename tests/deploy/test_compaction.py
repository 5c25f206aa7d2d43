"""Compaction: the compacted model equals the masked one, is smaller, and saves/loads as usual."""

from __future__ import annotations

import io

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st
from torch import nn

from sparsitylab import models, reparam, train
from sparsitylab.deploy import compaction
from sparsitylab.gemm import alive_columns, gemm_view
from sparsitylab.sparsify import groups


def _bn_stats(model: nn.Module, shape=(8, 1, 28, 28)) -> nn.Module:
    """Give BatchNorm layers non-trivial running statistics, then switch to eval."""
    model.train()
    with torch.no_grad():
        model(torch.randn(shape))
    return model.eval()


@torch.no_grad()
def _zero_random_groups(model: nn.Module, seed: int, frac: float) -> None:
    """Zero a random subset of every group kind (filters with their bias/BN, channels, fibers,
    neurons)."""
    g = torch.Generator().manual_seed(seed)
    bns = groups.following_batchnorm(model)
    layers = [m for m in model.modules() if isinstance(m, (nn.Conv2d, nn.Linear))]
    for layer in layers[:-1]:
        dead = torch.rand(layer.weight.shape[0], generator=g) < frac
        layer.weight[dead] = 0
        if layer.bias is not None:
            layer.bias[dead] = 0
        if layer in bns:
            bns[layer].weight[dead] = 0
            bns[layer].bias[dead] = 0
    for layer in layers:
        cols = torch.rand(layer.weight.flatten(1).shape[1], generator=g) < frac
        layer.weight.view(layer.weight.shape[0], -1)[:, cols] = 0


@settings(max_examples=12, deadline=None)
@given(
    name=st.sampled_from(["mlp", "lenet5", "convnet_bn"]),
    seed=st.integers(0, 1000),
    frac=st.floats(0, 0.9),
)
def test_compacted_outputs_equal_masked_outputs(name, seed, frac):
    torch.manual_seed(seed)
    model = _bn_stats(models.build(name))
    _zero_random_groups(model, seed, frac)
    small = compaction.compact(model)
    x = torch.randn(5, 1, 28, 28)
    assert torch.allclose(small(x), model(x), atol=1e-5)
    assert sum(p.numel() for p in small.parameters()) <= sum(p.numel() for p in model.parameters())


def test_resnet_dead_branches_are_dropped_and_outputs_equal():
    torch.manual_seed(0)
    net = _bn_stats(models.resnet20())
    with torch.no_grad():
        for i in (1, 4, 8):
            for p in net.blocks[i].branch.parameters():
                p.zero_()
        conv, bn = (
            net.blocks[2].branch.conv1,
            net.blocks[2].branch.bn1,
        )  # 5 inner channels of a live block
        conv.weight[:5] = 0
        bn.weight[:5] = 0
        bn.bias[:5] = 0
    small = compaction.compact(net)
    assert small.depth() == 20 - 6
    assert net.depth() == 20  # the original is untouched
    assert (
        small.blocks[2].branch.conv1.out_channels == 11
        and small.blocks[2].branch.bn1.num_features == 11
    )
    x = torch.randn(4, 1, 28, 28)
    assert torch.allclose(small(x), net(x), atol=1e-5)


def test_mlp_neurons_and_input_pixels_are_removed():
    net = models.mlp().eval()
    with torch.no_grad():
        net.fc1.weight[:, :284] = 0  # 284 dead pixels → 500 inputs survive
        net.fc2.weight[:, :100] = 0  # h1 neurons 0..99 unread
        net.fc2.weight[:50] = 0  # h2 neurons 0..49 dead (row and bias)
        net.fc2.bias[:50] = 0
    small = compaction.compact(net)
    assert [name for name, _ in small.named_children()] == [
        "flatten",
        "input_gather",
        "fc1",
        "relu1",
        "fc2",
        "relu2",
        "fc3",
    ]  # the names survive compaction
    assert (
        isinstance(small.input_gather, compaction.Gather) and len(small.input_gather.index) == 500
    )
    assert (small.fc1.in_features, small.fc1.out_features) == (500, 400)
    assert (small.fc2.in_features, small.fc2.out_features) == (400, 250)
    assert small.fc3.in_features == 250
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(small(x), net(x), atol=1e-5)
    macs = compaction.layer_macs(small)
    assert macs == {"fc1": 500 * 400, "fc2": 400 * 250, "fc3": 250 * 10}


def test_channel_and_shape_sparsity_give_a_smaller_gemm():
    net = models.lenet5().eval()
    with torch.no_grad():
        net.conv2.weight[:, 5:] = 0  # conv2 reads only 5 channels → conv1 keeps 5 filters
        net.conv2.weight[:, :, 0, :] = 0  # and no tap of the first kernel row
    small = compaction.compact(net)
    conv1, conv2 = small.conv1, small.conv2
    assert conv1.out_channels == 5
    assert isinstance(conv2, compaction.GemmConv2d) and tuple(conv2.weight.shape) == (50, 5 * 4 * 5)
    macs = compaction.layer_macs(small)
    assert macs["conv2"] == 8 * 8 * 50 * 5 * 4 * 5  # positions × kept rows × kept columns
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(small(x), net(x), atol=1e-5)


@pytest.mark.parametrize(
    "stride,padding,dilation", [(1, 0, 1), (2, 1, 1), (1, 2, 2), ((2, 1), (1, 0), 1)]
)
def test_gemm_conv_equals_conv2d(stride, padding, dilation):
    torch.manual_seed(1)
    conv = nn.Conv2d(3, 4, (3, 2), stride=stride, padding=padding, dilation=dilation)
    with torch.no_grad():
        conv.weight[:, 1, 0, 1] = 0
    cols = alive_columns(gemm_view(conv.weight)).nonzero().flatten()
    gemm = compaction.GemmConv2d.from_conv(conv, cols)
    x = torch.randn(2, 3, 9, 8)
    assert torch.allclose(
        gemm(x), F.conv2d(x, conv.weight, conv.bias, stride, padding, dilation), atol=1e-5
    )
    with pytest.raises(ValueError, match="channels"):
        gemm(torch.randn(1, 2, 9, 8))


def test_compacted_model_saves_and_loads_like_any_model():
    net = models.lenet5().eval()
    with torch.no_grad():
        net.conv1.weight[:7] = 0
        net.conv1.bias[:7] = 0
        net.conv2.weight[:, :, :, 4] = 0
    small = compaction.compact(net)
    buffer = io.BytesIO()
    torch.save(small, buffer)
    buffer.seek(0)
    loaded = torch.load(buffer, weights_only=False)
    fresh = compaction.compact(net)
    with torch.no_grad():
        for p in fresh.parameters():
            p.zero_()
    state = io.BytesIO()
    torch.save(small.state_dict(), state)
    state.seek(0)
    fresh.load_state_dict(torch.load(state, weights_only=True))
    x = torch.randn(2, 1, 28, 28)
    assert torch.allclose(loaded(x), small(x)) and torch.allclose(fresh(x), small(x))
    loss = F.cross_entropy(small.train()(x), torch.tensor([1, 2]))
    loss.backward()  # it trains, too
    assert all(p.grad is not None for p in small.parameters())


def test_keep_masks_keep_one_unit_and_stop_at_unknown_modules():
    net = models.mlp((6, 4, 3)).eval()
    with torch.no_grad():
        net.fc1.weight.zero_()
        net.fc1.bias.zero_()
    small = compaction.compact(net)
    assert small.fc2.in_features == 1  # a layer keeps ≥ 1 unit; the output is still exact
    x = torch.randn(2, 6)
    assert torch.allclose(small(x), net(x))
    odd = nn.Sequential(
        nn.Linear(4, 3), nn.Sigmoid(), nn.Linear(3, 2)
    )  # sigmoid(0) = 0.5: not removable
    with torch.no_grad():
        odd[0].weight[1] = 0
        odd[0].bias[1] = 0
    small = compaction.compact(
        odd, example_input=torch.randn(5, 4)
    )  # a boundary: every unit is kept
    assert small[0].out_features == 3 and small[2].in_features == 3
    with pytest.raises(ValueError, match="groups=1"):
        compaction.GemmConv2d.from_conv(nn.Conv2d(4, 4, 3, groups=2), torch.arange(3))


def test_branch_with_zero_last_conv_becomes_a_constant():
    torch.manual_seed(2)
    net = _bn_stats(models.resnet20())
    with torch.no_grad():
        net.blocks[
            0
        ].branch.conv2.weight.zero_()  # last conv zero, BN β ≠ 0: a constant per channel
        net.blocks[0].branch.bn2.bias.uniform_(0.1, 0.5)
        net.blocks[5].branch.conv2.weight.zero_()  # … and with β = 0 and γ = 0: nothing at all
        net.blocks[5].branch.bn2.bias.zero_()
        net.blocks[5].branch.bn2.weight.zero_()
    loader = [(torch.randn(8, 1, 28, 28), torch.zeros(8)) for _ in range(2)]
    train.recalibrate_batchnorm(net, loader)
    assert not net.training
    small = compaction.compact(net)
    assert (
        isinstance(small.blocks[0].branch, compaction.ConstantBranch)
        and small.blocks[5].branch is None
    )
    x = torch.randn(3, 1, 28, 28)
    assert torch.allclose(small(x), net(x), atol=1e-5)
    assert small.depth() == 20 - 2 - 2  # a constant branch holds no weight layer either


# --- no silent wrong answers ---------------------------------------------------------------------


def test_a_zero_filter_before_a_non_affine_batchnorm_is_kept():
    """BatchNorm2d(affine=False) maps a zero channel to −μ/σ ≠ 0: removing its filter would change
    outputs."""
    torch.manual_seed(0)
    net = nn.Sequential(
        nn.Conv2d(1, 4, 3),
        nn.BatchNorm2d(4, affine=False),
        nn.ReLU(),
        nn.Flatten(),
        nn.Linear(4 * 26 * 26, 3),
    )
    _bn_stats(net)
    with torch.no_grad():
        net[0].weight[1] = 0
        net[0].bias[1] = 0
        net[1].running_mean[
            1
        ] = -0.5  # the zero channel then leaves the BN (and the ReLU) as +0.5/σ
    assert compaction.batchnorm_zero_response(net[1])[1] > 0
    small = compaction.compact(net, example_input=torch.randn(2, 1, 28, 28))
    assert small[0].out_channels == 4
    with torch.no_grad():  # with running mean 0 the channel does output 0 and is removed
        net[1].running_mean[1] = 0
    assert compaction.compact(net, example_input=torch.randn(2, 1, 28, 28))[0].out_channels == 3


def test_a_batchnorm_after_the_relu_is_resized_with_its_units():
    """Linear → ReLU → BatchNorm1d → Linear with a dead unit used to give a model that crashed."""
    torch.manual_seed(0)
    net = nn.Sequential(nn.Linear(6, 5), nn.ReLU(), nn.BatchNorm1d(5), nn.Linear(5, 2))
    _bn_stats(net, (16, 6))
    with torch.no_grad():
        net[0].weight[2] = 0
        net[0].bias[2] = 0
        net[2].weight[2] = 0
        net[2].bias[2] = 0
    small = compaction.compact(net, example_input=torch.randn(4, 6))
    assert small[0].out_features == 4 and small[2].num_features == 4 and small[3].in_features == 4


def test_a_still_masked_model_is_refused_with_the_layer_named():
    net = models.mlp((6, 4, 3))
    reparam.apply_masks(net, {"fc1": torch.ones(4, 6, dtype=torch.bool)})
    with pytest.raises(TypeError, match=r"still reparametrised \(\['fc1.weight'\]\)"):
        compaction.compact(net)


def test_the_example_input_check_catches_a_changed_output(monkeypatch):
    net = models.mlp((6, 4, 3)).eval()
    real = compaction.apply_plan

    def broken(model, plan):
        real(model, plan)
        with torch.no_grad():
            model.fc2.bias.add_(1.0)
        return model

    monkeypatch.setattr(compaction, "apply_plan", broken)
    with pytest.raises(ValueError, match="different function"):
        compaction.compact(net, example_input=torch.randn(3, 6))
    assert net.fc2.bias.abs().max() < 1  # the caller's model is untouched


class HeadsFromInputWidth(nn.Module):
    """Attention whose code derives a head's width from its input's (as torchvision's Swin v1
    does): with fewer heads the reshape fails, whatever the surgery updates."""

    def __init__(self, width: int = 8, heads: int = 2):
        super().__init__()
        self.num_heads = heads
        self.qkv = nn.Linear(width, 3 * width)
        self.proj = nn.Linear(width, width)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        b, n, c = x.shape
        qkv = self.qkv(x).reshape(b, n, 3, self.num_heads, c // self.num_heads)
        q, k, v = qkv.permute(2, 0, 3, 1, 4)
        attention = torch.softmax(q @ k.transpose(-2, -1), dim=-1)
        return self.proj((attention @ v).transpose(1, 2).reshape(b, n, -1))


def test_groups_of_a_module_whose_code_breaks_are_kept_whole_and_reported():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Linear(4, 8), nn.LayerNorm(8), HeadsFromInputWidth(), nn.Linear(8, 16), nn.ReLU(),
        nn.Linear(16, 3),
    ).eval()  # fmt: skip
    x = torch.randn(2, 5, 4)
    g = compaction.trace(model, x)
    heads = next(grp for grp in g.groups if grp.heads)
    hidden = next(grp for grp in g.groups if any(m.tensor == "3.weight" for m in grp.producers))
    with torch.no_grad():  # zero head 1 and half the hidden units
        for (tensor, axis), index in [*heads.index.items(), *hidden.index.items()]:
            module, _, attr = tensor.rpartition(".")
            unit = 1 if (tensor, axis) in heads.index else slice(0, 8)
            getattr(model.get_submodule(module), attr).index_fill_(
                axis, index[unit].reshape(-1), 0.0
            )
    with pytest.warns(UserWarning, match="HeadsFromInputWidth's code assumes"):
        small = compaction.compact(model, example_input=x)
    kept = small.sparsitylab_kept_whole  # every group with a tensor in the module: heads, proj rows
    assert heads.name in kept and hidden.name not in kept
    assert all(any(m.tensor.startswith("2.") for m in g.group(k).members) for k in kept)
    assert small[2].qkv.weight.shape == (24, 8) and small[3].weight.shape == (8, 8)
    with torch.no_grad():
        assert torch.allclose(small(x), model(x), atol=1e-6)


def test_a_torch_layer_that_breaks_is_an_error_not_a_kept_group(monkeypatch):
    net = models.mlp((6, 4, 3)).eval()
    with torch.no_grad():
        net.fc1.weight[1] = 0
        net.fc1.bias[1] = 0
    real = compaction.apply_plan

    def broken(model, plan):  # a surgery bug: fc2 keeps its old input width
        real(model, plan)
        model.fc2.weight = nn.Parameter(torch.zeros(3, 4))
        return model

    monkeypatch.setattr(compaction, "apply_plan", broken)
    with pytest.raises(ValueError, match="no longer runs"):
        compaction.compact(net, example_input=torch.randn(3, 6))
