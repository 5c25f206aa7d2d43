"""The magnitude-pruning method end to end on digits: prepare → fit(callbacks) → finalize."""

from __future__ import annotations

import pytest
import torch

from sparsitylab import data, metrics, models, reparam, train
from sparsitylab.methods.magnitude import MagnitudePruning, gradual, one_shot
from sparsitylab.sparsify.schedules import CubicSchedule


@pytest.fixture(scope="module")
def digits():
    tr, te = data.load_digits_split()
    return data.make_loader(tr, 64, shuffle=True), data.make_loader(te, 256)


def small_mlp():
    return models.mlp((64, 64, 32, 10))


def test_gradual_hits_final_sparsity_exactly_and_zeros_survive(digits):
    train_loader, _ = digits
    train.seed_everything(0)
    net = small_mlp()
    steps = 4 * len(train_loader)
    method = gradual(0.8, steps, budget="erk", n=5)
    net = method.prepare(net)
    history = train.fit(
        net,
        train_loader,
        4,
        optimizer=train.sgd(net, 0.05, 0.9, 5e-4),
        callbacks=[method],
        progress=False,
    )
    assert [t for t, _ in method.events] == method.schedule.pruning_steps()
    assert method.events[-1][1] == 0.8
    assert history["sparsity"][-1] == pytest.approx(0.8, abs=2e-3)  # ERK rounds per layer
    masks = reparam.get_masks(net)
    net = method.finalize(net)
    assert not reparam.is_masked(net)
    for name, mask in masks.items():
        assert (net.get_submodule(name).weight[~mask] == 0).all()


def test_one_shot_global_fine_tune_keeps_exact_count_and_recovers(digits):
    train_loader, test_loader = digits
    train.seed_everything(0)
    net = small_mlp()
    train.fit(net, train_loader, 3, progress=False)
    dense_acc = train.accuracy(net, test_loader)
    method = one_shot(0.9, "global")
    method.prepare(net)
    total = sum(m.weight.numel() for m in metrics.prunable_layers(net).values())
    pruned_acc = train.accuracy(net, test_loader)
    train.fit(net, train_loader, 3, callbacks=[method], progress=False)
    tuned_acc = train.accuracy(method.finalize(net), test_loader)
    nonzero = sum(m.weight.count_nonzero().item() for m in metrics.prunable_layers(net).values())
    assert nonzero == total - round(0.9 * total)
    assert tuned_acc > pruned_acc and tuned_acc > dense_acc - 0.1


def test_late_start_keeps_model_dense_until_t0(digits):
    train_loader, _ = digits
    net = small_mlp()
    method = MagnitudePruning(
        CubicSchedule(0.0, 0.5, start_step=10, delta=2, n=2), budget="uniform"
    )
    method.prepare(net)
    assert reparam.is_masked(net) and metrics.global_sparsity(net) == 0.0 and method.events == []
    train.fit(net, train_loader, 1, callbacks=[method], progress=False, max_steps=9)
    assert metrics.global_sparsity(net) == 0.0


def test_first_and_last_dense_and_bake_in_false(digits):
    net = small_mlp()
    method = one_shot(0.2, "uniform", first_dense=True, last_dense=True, bake_in=False)
    method.prepare(net)
    assert list(reparam.get_masks(net)) == ["3"]
    assert reparam.is_masked(method.finalize(net))
    assert metrics.global_sparsity(net) == pytest.approx(0.2, abs=1e-3)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="budget='nope'"):
        one_shot(0.5, "nope")
    with pytest.raises(TypeError, match="schedule"):
        MagnitudePruning(0.5)
    with pytest.raises(ValueError, match="sparsity"):
        one_shot(1.5)


def test_masked_model_state_dict_round_trip_after_training(digits):
    train_loader, test_loader = digits
    net = small_mlp()
    method = one_shot(0.7, "erk", bake_in=False)
    method.prepare(net)
    train.fit(net, train_loader, 1, callbacks=[method], progress=False)
    fresh = reparam.load_masked_state_dict(small_mlp(), net.state_dict())
    x = torch.randn(5, 64)
    torch.testing.assert_close(fresh(x), net(x))
