"""SET, RigL, SNFS and the static control: the number of active weights never changes, regrown
weights start at 0 with no momentum, RigL grows where an independent dense gradient is largest,
SNFS moves density between layers, bad settings are refused, and a killed run resumes bit for
bit."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from runs import Interrupt, StopAfter, fresh_digits

from sparsitylab import methods, models, reparam, runner, train
from sparsitylab.methods.growth import SET, RigL, StaticSparse
from sparsitylab.methods.sparse_momentum import SNFS
from sparsitylab.sparsify.budgets import budget_sparsities
from sparsitylab.sparsify.masks import pruned_count

GROWING = {"set": SET, "rigl": RigL, "snfs": SNFS}


def mlp() -> torch.nn.Module:
    torch.manual_seed(0)
    return models.mlp((64, 48, 32, 10))


class Watch(train.Callback):
    """After every step: the active counts, and the effective weights at the newly grown
    positions and their momentum right after an update."""

    def __init__(self, method):
        self.method, self.counts, self.grown, self.optimizer = method, [], [], None

    def on_fit_start(self, model, optimizer):
        self.optimizer = optimizer
        self.before = {n: m.clone() for n, m in reparam.get_masks(model).items()}

    def after_step(self, model, step):
        masks = reparam.get_masks(model)
        self.counts.append(sum(int(m.sum()) for m in masks.values()))
        if self.method.updates and self.method.updates[-1]["step"] == step:
            for layer in self.method.names:
                new = masks[layer] & ~self.before[layer]
                module = model.get_submodule(layer)
                original = module.parametrizations.weight.original
                momentum = self.optimizer.state[original]["momentum_buffer"]
                self.grown.append(
                    (
                        float(module.weight[new].detach().abs().sum()),
                        float(momentum[new].abs().sum()),
                    )
                )
        self.before = {n: m.clone() for n, m in masks.items()}


@pytest.mark.parametrize("name", sorted(GROWING))
def test_the_count_never_changes_and_regrown_weights_start_at_zero(name):
    steps = 3 * len(fresh_digits().train)
    method = GROWING[name](
        0.8, total_steps=steps, update_every=5, end_fraction=0.75, budget="uniform"
    )
    model = mlp()
    expected = sum(
        w.numel() - pruned_count(w.numel(), 0.8) for w in (model.fc1.weight, model.fc2.weight,
                                                           model.fc3.weight)
    )  # fmt: skip
    watch = Watch(method)
    run = runner.run(method, model, fresh_digits(), epochs=3, callbacks=[watch], progress=False)
    assert set(watch.counts) == {expected}
    assert len(method.updates) == len(method.update_steps()) > 5
    assert all(u["flips"] > 0 for u in method.updates[:3])
    assert watch.grown and all(w == 0 and m == 0 for w, m in watch.grown)
    assert run.sparsity == pytest.approx(0.8, abs=0.01)  # grown weights moved off 0 afterwards


def test_rigl_grows_where_an_independent_dense_gradient_is_largest():
    model, loaders = mlp(), fresh_digits()
    method = RigL(0.9, total_steps=100, update_every=1, budget="uniform")
    method.prepare(model)
    optimizer = train.SGD(lr=0.1)(model.parameters())
    method.on_fit_start(model, optimizer)
    x, y = next(iter(loaders.train))
    plain = copy.deepcopy(reparam.remove_masks(reparam.clone(model)))  # no mask: W = W_eff
    F.cross_entropy(plain(x), y).backward()
    before = {n: m.clone() for n, m in reparam.get_masks(model).items()}
    optimizer.zero_grad()
    F.cross_entropy(model(x), y).backward()
    optimizer.step()
    method.after_step(model, 1)
    after, update = reparam.get_masks(model), method.updates[0]
    for layer in method.names:
        old, new = before[layer], after[layer]
        grown = new & ~old
        dense = plain.get_submodule(layer).weight.grad.abs()
        count = int(update["fraction"] * int(old.sum()))  # dropped, some of them regrown
        assert 0 < int((old & ~new).sum()) <= count and int(new.sum()) == int(old.sum())
        # every grown position beats every position left inactive (apart from the just-dropped)
        left_out = ~new & ~old
        assert dense[grown].min() >= dense[left_out].max()


def test_snfs_moves_density_between_layers_and_keeps_the_total():
    steps = 3 * len(fresh_digits().train)
    method = SNFS(0.8, total_steps=steps, update_every=5, budget="uniform")
    runner.run(method, mlp(), fresh_digits(), epochs=3, progress=False)
    first, last = method.updates[0]["density"], method.updates[-1]["density"]
    assert max(abs(first[n] - last[n]) for n in first) > 0.02
    assert method.fraction_at(0) == pytest.approx(0.5)


def test_static_sparse_never_updates_and_starts_at_the_erk_densities():
    model = models.lenet5()
    method = StaticSparse(0.9, total_steps=10)
    method.prepare(model)
    layers = budget_sparsities(models.lenet5(), 0.9, "erk")
    masks = reparam.get_masks(model)
    assert set(masks) == {n for n, s in layers.items() if s > 0}
    for name, mask in masks.items():
        assert int((~mask).sum()) == pruned_count(mask.numel(), layers[name])
    assert method.update_steps() == [] and not method.is_update_step(5)


def test_rigl_at_update_steps_counts_one_dense_gradient_in_its_flops():
    method = RigL(0.9, total_steps=1000, update_every=100)  # updates at 100 … 700: 7 of 1000
    assert method.update_steps() == list(range(100, 750, 100))
    assert method.step_flops(1.0, 10.0) == pytest.approx(0.993 * 3 + 0.007 * 12)
    assert StaticSparse(0.9, total_steps=1000).step_flops(1.0, 10.0) == 3.0
    snfs = SNFS(0.9, total_steps=1000, update_every=100)  # dense gradients until step 900
    assert snfs.step_flops(1.0, 10.0) == pytest.approx(0.901 * 12 + 0.099 * 3)


@pytest.mark.parametrize(
    "option, match",
    [
        ({"update_every": 0}, "update_every=0"),
        ({"drop_fraction": 0.0}, "drop_fraction=0.0"),
        ({"drop_fraction": 1.0}, "drop_fraction=1.0"),
        ({"end_fraction": 0.0}, "end_fraction=0.0"),
        ({"end_fraction": 1.5}, "end_fraction=1.5"),
        ({"budget": "global"}, "budget='global'"),
        ({"total_steps": 0}, "total_steps=0"),
    ],
)
def test_bad_settings_are_refused_by_name(option, match):
    settings = {"sparsity": 0.9, "total_steps": 100, **option}
    with pytest.raises(ValueError, match=match):
        RigL(**settings)


def test_a_density_that_empties_a_layer_and_a_frozen_layer_are_refused():
    with pytest.raises(ValueError, match="would empty layer"):
        SET(0.95, total_steps=10, budget="uniform").prepare(models.mlp((8, 4, 2)))
    model = models.mlp((8, 4, 2))
    model.fc1.weight.requires_grad_(False)
    with pytest.raises(ValueError, match=r"layers \['fc1'\] have no gradient"):
        RigL(0.5, total_steps=10, budget="uniform").prepare(model)


def test_methods_are_registered():
    assert {"set", "rigl", "snfs", "static-sparse"} <= set(methods.REGISTRY)
    method = methods.build("rigl", sparsity=0.9, total_steps=50)
    assert isinstance(method, RigL) and method.end_step == 37


@pytest.mark.parametrize("name", sorted(GROWING))
def test_a_killed_run_resumes_bit_for_bit(tmp_path, name):
    epochs = 3
    steps = epochs * len(fresh_digits().train)

    def go(checkpoint, resume=False, callbacks=()):
        method = GROWING[name](0.8, total_steps=steps, update_every=7, budget="uniform", seed=5)
        run = runner.run(
            method, mlp(), fresh_digits(), epochs=epochs, checkpoint=checkpoint, resume=resume,
            callbacks=callbacks, progress=False,
        )  # fmt: skip
        return run, method

    whole, method_a = go(tmp_path / "whole.pt")
    with pytest.raises(Interrupt):
        go(tmp_path / "cut.pt", callbacks=[StopAfter(2)])
    cut, method_b = go(tmp_path / "cut.pt", resume=True)
    for final in ("trained", "model"):
        a, b = (dict([*getattr(r, final).named_parameters(), *getattr(r, final).named_buffers()])
                for r in (whole, cut))  # fmt: skip
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert method_a.updates == method_b.updates
    assert torch.equal(method_a.generator.get_state(), method_b.generator.get_state())
