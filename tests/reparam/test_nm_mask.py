"""The N:M reparametrisation: forward W ⊙ E(W) recomputed every call, the STE and SR-STE
backward exactly as the formulas (through the compiled passes and through PyTorch's), save/load,
and baking."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from sparsitylab import reparam
from sparsitylab.reparam.nm import NMMask, current_masks, nm_layers
from sparsitylab.sparsify import native
from sparsitylab.sparsify.masks import nm_mask

PATHS = pytest.mark.parametrize("path", ["native", "torch"])  # compiled passes, or PyTorch only


@pytest.fixture
def path_env(path, monkeypatch):
    monkeypatch.setenv("SPARSITYLAB_NATIVE", "1" if path == "native" else "0")


def layer(decay: float, order: str = "hwc", conv: bool = False) -> nn.Module:
    torch.manual_seed(0)
    net = nn.Conv2d(8, 6, 3) if conv else nn.Linear(16, 6)
    reparam.attach(net, "weight", NMMask(2, 4, order, decay))
    return net


@PATHS
@pytest.mark.parametrize("conv", [False, True])
def test_forward_is_w_times_e_of_the_current_weight(conv, path_env):
    net = layer(0.0, conv=conv)
    w = net.parametrizations.weight.original
    assert torch.equal(net.weight, w * nm_mask(w, 2, 4))
    with torch.no_grad():
        w.mul_(torch.rand_like(w))  # new magnitudes: the mask must follow
    keep = nm_mask(w, 2, 4)
    assert torch.equal(net.weight, torch.where(keep, w, torch.zeros(())))
    assert torch.equal(nm_layers(net)[""].mask, keep) and torch.equal(current_masks(net)[""], keep)


@PATHS
@pytest.mark.parametrize("decay", [0.0, 2e-4, 0.3])
@pytest.mark.parametrize("conv", [False, True])
def test_backward_is_ste_or_sr_ste_exactly(decay, conv, path_env):
    net = layer(decay, conv=conv)
    x = torch.randn(5, 8, 6, 6) if conv else torch.randn(5, 16)
    w = net.parametrizations.weight.original
    keep = nm_mask(w, 2, 4)
    # G: the gradient with respect to the sparse weight W̃, from a plain layer holding W̃
    plain = nn.Conv2d(8, 6, 3) if conv else nn.Linear(16, 6)
    with torch.no_grad():
        plain.weight.copy_(w * keep)
        plain.bias.copy_(net.bias)
    plain(x).square().sum().backward()
    net(x).square().sum().backward()
    expected = plain.weight.grad + decay * (~keep) * w.detach()
    assert torch.equal(w.grad, expected)
    if decay == 0.0:
        assert torch.equal(w.grad, plain.weight.grad)  # pruned weights get G as well (STE)
        assert (w.grad[~keep] != 0).any()


@pytest.mark.parametrize(
    ("build", "order", "fused"),
    [
        (lambda: nn.Linear(16, 6), "hwc", True),
        (lambda: nn.Conv2d(8, 6, 3), "chw", True),  # the flattened row is in memory order
        (lambda: nn.Conv2d(8, 6, 1), "hwc", True),  # a 1×1 tap: input channels are contiguous
        (lambda: nn.Conv2d(8, 6, 3), "hwc", False),  # channels at a tap are 9 entries apart
    ],
)
def test_the_compiled_pass_is_taken_where_groups_lie_in_memory_order(build, order, fused):
    """Else the "native" cases above would test PyTorch twice; and the two paths agree."""
    if not native.available():
        pytest.skip("no compiled selection here")
    torch.manual_seed(0)
    net = build()
    reparam.attach(net, "weight", NMMask(2, 4, order, 0.3))
    calls = []
    with pytest.MonkeyPatch.context() as patch:
        for name in ("masked_product", "sr_ste_gradient"):
            real = getattr(native, name)
            patch.setattr(native, name, lambda *a, real=real: calls.append(1) or real(*a))
        x = torch.randn(3, 16) if isinstance(net, nn.Linear) else torch.randn(3, 8, 5, 5)
        net(x).square().sum().backward()
    assert len(calls) == (2 if fused else 1)  # the gradient pass needs only contiguous tensors
    w = net.parametrizations.weight.original
    with native.disabled():
        assert torch.equal(net.weight, w * nm_mask(w, 2, 4, order))


@PATHS
@pytest.mark.parametrize("conv", [False, True])
def test_a_nan_weight_is_refused_by_name_on_both_paths(conv, path_env):
    net = layer(2e-4, conv=conv, order="chw")
    with torch.no_grad():
        net.parametrizations.weight.original[1, 2].fill_(float("nan"))
    with pytest.raises(ValueError, match="w contains NaN; NaN scores cannot be ranked"):
        _ = net.weight


def test_chw_order_groups_the_flattened_row():
    net = layer(0.0, order="chw", conv=True)
    w = net.parametrizations.weight.original
    assert torch.equal(net.weight != 0, nm_mask(w, 2, 4, order="chw") & (w != 0))


def test_state_dict_round_trip_and_remove_bakes_exact_zeros():
    net = layer(2e-4)
    state = net.state_dict()
    fresh = reparam.load_state_dict(nn.Linear(16, 6), state)
    (rebuilt,) = nm_layers(fresh).values()
    assert rebuilt.settings() == {
        "n": 2,
        "m": 4,
        "order": "hwc",
        "decay": 2e-4,
        "transposed": False,
    }
    assert torch.equal(fresh.weight, net.weight)
    baked = reparam.remove(fresh, NMMask)
    assert not reparam.find(baked) and isinstance(baked.weight, nn.Parameter)
    assert torch.equal(baked.weight, net.weight)
    assert (baked.weight.reshape(-1, 4).ne(0).sum(-1) <= 2).all()


def test_bad_options_raise_clearly():
    with pytest.raises(ValueError, match="n=4, m=4"):
        NMMask(4, 4)
    with pytest.raises(ValueError, match="order='nchw'"):
        NMMask(2, 4, "nchw")
    with pytest.raises(ValueError, match="decay"):
        NMMask(2, 4, "hwc", -1.0)
    with pytest.raises(ValueError, match="not divisible by m=4"):
        reparam.attach(nn.Linear(6, 2), "weight", NMMask(2, 4))
