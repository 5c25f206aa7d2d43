"""Fixed-mask reparametrisation: exact zeros through momentum/weight decay, save/load, bake-in."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from sparsitylab import metrics, models, reparam
from sparsitylab.sparsify.masks import topk_mask


def magnitude_masks(model, sparsity):
    return {
        name: topk_mask(m.weight, sparsity) for name, m in metrics.prunable_layers(model).items()
    }


def train_steps(model, optimizer, steps, seed=0):
    g = torch.Generator().manual_seed(seed)
    for _ in range(steps):
        x, y = torch.randn(16, 1, 28, 28, generator=g), torch.randint(0, 10, (16,), generator=g)
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()


@pytest.fixture
def lenet():
    torch.manual_seed(0)
    return models.lenet5()


def test_forward_equals_dense_model_with_zeroed_weights(lenet):
    masks = magnitude_masks(lenet, 0.7)
    dense = copy.deepcopy(lenet)
    with torch.no_grad():
        for name, mask in masks.items():
            dense.get_submodule(name).weight.mul_(mask)
    reparam.apply_masks(lenet, masks)
    x = torch.randn(4, 1, 28, 28)
    torch.testing.assert_close(lenet(x), dense(x))
    assert all(abs(s - 0.7) < 1e-3 for s in metrics.layer_sparsity(lenet).values())


def test_pruned_weights_stay_exactly_zero_through_momentum_and_weight_decay(lenet):
    opt = torch.optim.SGD(lenet.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-3)
    train_steps(lenet, opt, 3)  # momentum buffers are now non-zero everywhere
    masks = magnitude_masks(lenet, 0.9)
    reparam.apply_masks(lenet, masks)  # optimiser built BEFORE masking keeps working
    before = {n: lenet.get_submodule(n).weight.detach().clone() for n in masks}
    train_steps(lenet, opt, 10, seed=1)
    for name, mask in masks.items():
        layer = lenet.get_submodule(name)
        assert (layer.weight[~mask] == 0).all()  # exact zeros, not just small
        assert not torch.equal(layer.weight.detach(), before[name])  # kept weights did train
    nonzeros = sum(int(m.sum()) for m in masks.values())
    assert (
        metrics.count_nonzeros(reparam.remove_masks(lenet))
        - sum(m.bias.count_nonzero().item() for m in metrics.prunable_layers(lenet).values())
        == nonzeros
    )


def test_zeroing_weights_once_is_not_enough_control(lenet):
    """Control experiment: without the reparametrisation, momentum revives pruned weights."""
    opt = torch.optim.SGD(lenet.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-3)
    train_steps(lenet, opt, 3)
    masks = magnitude_masks(lenet, 0.9)
    with torch.no_grad():
        for name, mask in masks.items():
            lenet.get_submodule(name).weight.mul_(mask)
    train_steps(lenet, opt, 2, seed=1)
    assert metrics.sparsity(lenet) < 0.5


def test_loss_gradient_of_pruned_original_is_zero(lenet):
    masks = magnitude_masks(lenet, 0.8)
    reparam.apply_masks(lenet, masks)
    F.cross_entropy(lenet(torch.randn(8, 1, 28, 28)), torch.arange(8)).backward()
    for name, mask in masks.items():
        grad = lenet.get_submodule(name).parametrizations.weight.original.grad
        assert (grad[~mask] == 0).all() and grad[mask].abs().sum() > 0


def test_state_dict_round_trip_weights_only(lenet):
    reparam.apply_masks(lenet, magnitude_masks(lenet, 0.75))
    buffer = io.BytesIO()
    torch.save(lenet.state_dict(), buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)
    assert reparam.saved_stacks(state) == {
        name: ["FixedMask"] for name in metrics.prunable_layers(lenet)
    }
    fresh = reparam.load_state_dict(models.lenet5(), state)
    x = torch.randn(3, 1, 28, 28)
    torch.testing.assert_close(fresh(x), lenet(x))
    assert metrics.layer_sparsity(fresh) == metrics.layer_sparsity(lenet)
    with pytest.raises(
        RuntimeError
    ):  # a plain model cannot take the masked keys: that is why the helper exists
        models.lenet5().load_state_dict(state)


def test_update_replaces_mask_and_zeroes_original(lenet):
    reparam.apply_masks(lenet, magnitude_masks(lenet, 0.5))
    reparam.apply_masks(lenet, magnitude_masks(lenet, 0.9))
    fc = lenet.fc1
    assert len(fc.parametrizations.weight) == 1  # replaced, not stacked
    assert abs(metrics.layer_sparsity(lenet)["fc1"] - 0.9) < 1e-3
    assert (fc.parametrizations.weight.original[~reparam.get_masks(lenet)["fc1"]] == 0).all()


def test_remove_bakes_in_plain_parameters(lenet):
    reparam.apply_masks(lenet, magnitude_masks(lenet, 0.6))
    expected = metrics.layer_sparsity(lenet)
    reparam.remove_masks(lenet)
    assert not reparam.is_masked(lenet)
    assert not any("parametrizations" in k for k in lenet.state_dict())
    assert all(
        isinstance(m.weight, torch.nn.Parameter) for m in metrics.prunable_layers(lenet).values()
    )
    assert metrics.layer_sparsity(lenet) == expected


def test_remove_on_a_deep_copy_leaves_the_original_masked(lenet):
    reparam.apply_masks(lenet, magnitude_masks(lenet, 0.8))
    x = torch.randn(2, 1, 28, 28)
    expected = lenet(x)
    baked = reparam.remove_masks(copy.deepcopy(lenet))
    torch.testing.assert_close(lenet(x), expected)  # the original still has its weight property
    torch.testing.assert_close(baked(x), expected)
    assert reparam.is_masked(lenet) and not reparam.is_masked(baked)
    assert type(baked.conv1) is torch.nn.Conv2d and "Parametrized" in type(lenet.conv1).__name__
    reparam.remove_masks(lenet)  # and the other way round
    torch.testing.assert_close(lenet(x), expected)


def test_deepcopy_and_partial_masking(lenet):
    reparam.apply_masks(lenet, {"conv1": topk_mask(lenet.conv1.weight, 0.5)})
    clone = copy.deepcopy(lenet)
    assert list(reparam.get_masks(clone)) == ["conv1"]
    assert torch.equal(clone.conv1.weight, lenet.conv1.weight)


def test_biases_and_batchnorm_parameters_can_be_masked_saved_and_baked():
    torch.manual_seed(1)
    net = models.convnet_bn()  # bn1: BatchNorm2d(32), fc: Linear(128, 10)
    keep, keep_fc = torch.arange(32) % 2 == 0, torch.arange(10) < 7
    masks = {"bn1.weight": keep, "bn1.bias": keep, "fc.bias": keep_fc}
    reparam.apply_masks(net, masks)
    names = ["bn1", "bn1.bias", "fc.bias"]  # a weight mask is named by its layer
    assert sorted(reparam.get_masks(net)) == names
    opt = torch.optim.SGD(net.parameters(), lr=0.1, momentum=0.9, weight_decay=1e-3)
    for _ in range(3):
        opt.zero_grad()
        net(torch.randn(4, 1, 28, 28)).sum().backward()
        opt.step()
    bn, fc = net.bn1, net.fc
    assert (
        (bn.weight[~keep] == 0).all()
        and (bn.bias[~keep] == 0).all()
        and (fc.bias[~keep_fc] == 0).all()
    )
    assert bn.weight[keep].ne(0).all()
    state = net.state_dict()
    assert sorted(reparam.saved_stacks(state)) == names
    fresh = reparam.load_state_dict(models.convnet_bn(), state)
    x = torch.randn(2, 1, 28, 28)
    net.eval(), fresh.eval()
    torch.testing.assert_close(fresh(x), net(x))
    reparam.remove_masks(net)
    assert not reparam.is_masked(net) and isinstance(net.bn1.bias, torch.nn.Parameter)
    assert not any("parametrizations" in k for k in net.state_dict())
    torch.testing.assert_close(net(x), fresh(x))


@pytest.mark.parametrize(
    "masks,err,msg",
    [
        ({"nope": torch.ones(3, dtype=torch.bool)}, ValueError, "nope"),
        ({"pool1": torch.ones(3, dtype=torch.bool)}, ValueError, "no weight"),
        ({"conv1.nope": torch.ones(3, dtype=torch.bool)}, ValueError, "does not have"),
        ({"conv1.bias": torch.ones(3, dtype=torch.bool)}, ValueError, "shape"),
        ({"conv1": torch.ones(3, dtype=torch.bool)}, ValueError, "shape"),
        ({"conv1": [[1]]}, TypeError, "torch.Tensor"),
    ],
)
def test_bad_masks_raise(lenet, masks, err, msg):
    with pytest.raises(err, match=msg):
        reparam.apply_masks(lenet, masks)


def test_a_pruned_position_is_exactly_zero_even_when_the_stored_value_is_inf_or_nan(lenet):
    keep = topk_mask(lenet.fc2.weight, 0.5)
    reparam.apply_masks(lenet, {"fc2": keep})
    with torch.no_grad():
        original = lenet.fc2.parametrizations.weight.original
        original[~keep] = float("nan")
        original[~keep & (torch.arange(original.numel()).view(original.shape) % 2 == 0)] = float(
            "inf"
        )
    assert (lenet.fc2.weight[~keep] == 0).all() and torch.isfinite(
        lenet(torch.randn(2, 1, 28, 28))
    ).all()


def test_a_bad_mask_changes_nothing_not_even_the_good_ones_before_it():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 3), nn.Linear(3, 2))
    before = copy.deepcopy(model.state_dict())
    masks = {"0": torch.zeros(3, 4, dtype=torch.bool), "1": torch.ones(5, 5, dtype=torch.bool)}
    with pytest.raises(ValueError, match="masks\\['1'\\] has shape"):
        reparam.apply_masks(model, masks)
    assert not reparam.is_masked(model)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    with pytest.raises(ValueError, match="does not have"):
        reparam.apply_masks(model, {"0": masks["0"], "nope": torch.ones(1)})
    assert not reparam.is_masked(model)


def test_an_unmasked_weight_regrows_from_zero_even_after_momentum_moved_it():
    torch.manual_seed(1)
    model = nn.Sequential(nn.Linear(4, 3))
    keep = torch.rand(3, 4) > 0.5
    reparam.apply_masks(model, {"0": keep})
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9, weight_decay=0.1)
    original = model[0].parametrizations.weight.original
    with torch.no_grad():
        original.add_(1.0)  # a stored pruned entry that drifted (what momentum and decay do)
    for _ in range(3):
        optimizer.zero_grad()
        model(torch.randn(8, 4)).sum().backward()
        optimizer.step()
    assert bool((model[0].weight[~keep] == 0).all())  # hidden from every forward
    reparam.apply_masks(model, {"0": torch.ones(3, 4, dtype=torch.bool)})  # un-mask everything
    assert bool((original[~keep] == 0).all()), "regrown weights start from 0"
    assert bool((original[keep] != 0).all())  # the kept weights keep their trained values
