"""Lottery tickets: each round prunes exactly its rate of every layer's survivors (the output layer
at half), pruned weights never return, a ticket starts from θ₀ or θ_k on its mask, the rewind
snapshot is the dense run's weights after k steps, and bad settings are refused."""

from __future__ import annotations

import pytest
import torch
from runs import fresh_digits

from sparsitylab import lottery, models, reparam, runner, train
from sparsitylab.methods.lottery import Ticket, layer_rates, prune_survivors, reinitialised
from sparsitylab.sparsify.masks import pruned_count


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return models.mlp((64, 40, 30, 10))


OPTIONS = dict(optimizer=train.SGD(lr=0.05), progress=False)


def test_rounds_prune_their_rate_of_the_survivors_and_never_bring_weights_back():
    model = mlp()
    rates = layer_rates(["fc1", "fc2", "fc3"], 0.2)
    assert rates == {"fc1": 0.2, "fc2": 0.2, "fc3": 0.1}
    masks = None
    alive = {n: getattr(model, n).weight.numel() for n in rates}
    for _ in range(4):
        new = prune_survivors(model, masks, rates)
        for name, mask in new.items():
            alive[name] -= pruned_count(alive[name], rates[name])
            assert int(mask.sum()) == alive[name]
            if masks is not None:
                assert not (mask & ~masks[name]).any()  # nested
        masks = new
        with torch.no_grad():  # the next round ranks other magnitudes
            for layer in (model.fc1, model.fc2, model.fc3):
                layer.weight.mul_(torch.rand_like(layer.weight))


def test_a_rate_that_empties_a_layer_is_refused():
    model = models.mlp((4, 2, 2))
    masks = {"fc1": torch.tensor([[True] + [False] * 3, [False] * 4]), "fc2": torch.ones(2, 2) > 0}
    with pytest.raises(ValueError, match="last weights of layer 'fc1'"):
        prune_survivors(model, masks, {"fc1": 0.6, "fc2": 0.1})
    with pytest.raises(ValueError, match="rate=1.0"):
        layer_rates(["fc1"], 1.0)


class FirstWeights(train.Callback):
    def on_fit_start(self, model, optimizer):
        self.weights = {n: model.get_submodule(n).weight.detach().clone() for n in ("fc1", "fc3")}


def test_a_ticket_trains_its_mask_from_the_given_start():
    model = mlp()
    theta0 = {k: v.clone() for k, v in model.state_dict().items()}
    masks = prune_survivors(model, None, layer_rates(["fc1", "fc2", "fc3"], 0.5))
    seen = FirstWeights()
    run = lottery.retrain(
        model, fresh_digits(), masks, theta0, epochs=1, callbacks=[seen], **OPTIONS
    )
    for name in ("fc1", "fc3"):
        expected = torch.where(masks[name], theta0[f"{name}.weight"], 0.0)
        assert torch.equal(seen.weights[name], expected)
        assert torch.equal(reparam.get_masks(run.trained)[name], masks[name])
        assert not run.model.get_submodule(name).weight[~masks[name]].any()


def test_the_rewind_snapshot_is_the_dense_run_after_k_steps():
    flat = dict(OPTIONS, scheduler=None)  # max_steps would shorten a cosine schedule
    dense, theta_k = lottery.train_dense(mlp(), fresh_digits(), epochs=1, rewind_step=5, **flat)
    short = runner.run("dense", mlp(), fresh_digits(), epochs=1, max_steps=5, **flat)
    assert all(torch.equal(theta_k[k], v) for k, v in short.trained.state_dict().items())
    _, theta0 = lottery.train_dense(mlp(), fresh_digits(), epochs=1, **OPTIONS)
    assert all(torch.equal(theta0[k], v) for k, v in mlp().state_dict().items())
    with pytest.raises(ValueError, match="rewind_step=10000 is beyond"):
        lottery.train_dense(mlp(), fresh_digits(), epochs=1, rewind_step=10_000, **OPTIONS)


def test_iterate_chains_rounds_to_the_compound_sparsity():
    loaders = fresh_digits()
    dense, theta0 = lottery.train_dense(mlp(), loaders, epochs=1, **OPTIONS)
    rounds = lottery.iterate(dense, theta0, mlp(), loaders, rounds=2, epochs=1, rate=0.5,
                             **OPTIONS)  # fmt: skip
    assert [r.round for r in rounds] == [0, 1, 2]
    fc1 = [1 - r.masks["fc1"].float().mean().item() for r in rounds[1:]]
    assert fc1 == pytest.approx([0.5, 0.75], abs=1e-3)
    assert rounds[2].sparsity > rounds[1].sparsity > 0.4
    assert all(0 <= r.test_acc <= 1 for r in rounds)


def test_reinitialisation_is_a_fresh_draw_that_depends_on_the_seed():
    model = mlp()
    a, b, c = reinitialised(model, 1), reinitialised(model, 1), reinitialised(model, 2)
    assert all(torch.equal(a[k], b[k]) for k in a)
    assert not torch.equal(a["fc1.weight"], c["fc1.weight"])
    assert not torch.equal(a["fc1.weight"], model.state_dict()["fc1.weight"])
    with pytest.raises(ValueError, match="masks is empty"):
        Ticket({}, a)
