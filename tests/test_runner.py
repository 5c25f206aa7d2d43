"""The runner drives every phase of any method the same way, on a copy, and measures the result."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn

from sparsitylab import data, methods, metrics, models, reparam, runner, train
from sparsitylab.callbacks import EvaluateEvery
from sparsitylab.methods import Method
from sparsitylab.methods.magnitude import one_shot


def small_mlp():
    torch.manual_seed(0)
    return models.mlp((64, 32, 10))


def test_the_callers_model_is_never_changed(digits):
    net = small_mlp()
    before = copy.deepcopy(net.state_dict())
    run = runner.run(one_shot(0.5), net, digits, epochs=1, progress=False)
    assert not reparam.is_masked(net) and all(
        torch.equal(before[k], v) for k, v in net.state_dict().items()
    )
    assert run.trained is not net and run.model is not run.trained


def test_run_numbers_are_recounts_of_the_final_model(digits):
    run = runner.run(one_shot(0.75, "uniform"), small_mlp(), digits, epochs=1, progress=False)
    weights = [m.weight for m in metrics.prunable_layers(run.model).values()]
    zeros = sum(int((w == 0).sum()) for w in weights)
    assert run.sparsity == zeros / sum(w.numel() for w in weights)
    assert run.params == sum(p.numel() for p in run.model.parameters())
    assert run.nonzeros == sum(int(p.count_nonzero()) for p in run.model.parameters())
    assert run.macs == 64 * 32 + 32 * 10 and run.sparse_macs == sum(
        int(w.count_nonzero()) for w in weights
    )
    assert (
        run.test_acc == train.evaluate(run.model, digits.test)["acc"]
        and run.error == 1 - run.test_acc
    )
    assert (
        run.layer_sparsity == metrics.layer_sparsity(run.model) and "test accuracy" in run.summary()
    )
    assert run.row()["sparsity"] == run.sparsity and run.seconds > 0


def test_a_dense_run_is_bit_identical_to_the_same_recipe_by_hand(digits):
    """The chapters switched to the runner without changing a number: the runner adds no
    randomness."""
    run = runner.run(
        "dense", small_mlp(), digits, epochs=2, optimizer=train.SGD(lr=0.1), progress=False
    )
    train.seed_everything(0)
    by_hand = small_mlp()
    fresh = data.make_loader(data.load_digits_split()[0], 64, shuffle=True)  # the same data order
    train.fit(by_hand, fresh, 2, optimizer=train.sgd(by_hand, lr=0.1), progress=False)
    for a, b in zip(run.model.parameters(), by_hand.parameters()):
        assert torch.equal(a, b)


class FromData(Method):
    """A toy post-training method: calibrate() prunes the first layer's weights from inputs that are
    constant on the data (their contribution could be folded into the bias)."""

    name = "toy-calibrated"

    def __init__(self):
        self.batches = 0

    def calibrate(self, model, loader):
        low = high = None
        for x, _ in loader:
            x = x.flatten(1)
            low = x.min(0).values if low is None else torch.minimum(low, x.min(0).values)
            high = x.max(0).values if high is None else torch.maximum(high, x.max(0).values)
            self.batches += 1
        varying = high > low
        reparam.apply_masks(model, {"fc1": varying.expand_as(model.fc1.weight).clone()})


def test_a_post_training_method_calibrates_on_the_training_data_without_training(digits):
    method = FromData()
    net = small_mlp()
    run = runner.run(method, net, digits, progress=False)  # epochs=0: no training at all
    assert method.batches == len(digits.train) and len(run.history) == 0
    dead_pixels = int((~run.model.fc1.weight.ne(0).any(0)).sum())
    assert dead_pixels > 0  # the 8×8 digits have always-empty corners
    kept = run.model.fc1.weight.ne(0).any(0)
    torch.testing.assert_close(
        run.model.fc1.weight[:, kept], net.fc1.weight[:, kept]
    )  # untrained, only masked


def test_fine_tuning_freezes_the_structure_and_callbacks_see_both_stages(digits):
    curve = EvaluateEvery(digits.test, every=5)
    run = runner.run(
        one_shot(0.6),
        small_mlp(),
        digits,
        epochs=1,
        finetune_epochs=1,
        callbacks=[curve],
        progress=False,
    )
    steps = [row[0] for row in curve.rows]
    assert steps == list(range(0, 2 * len(digits.train) + 1, 5)) and curve.frame().shape[1] == 3
    assert {r["stage"] for r in run.history.records} == {"train", "finetune"}
    assert run.sparsity == pytest.approx(0.6, abs=1e-3)


def test_methods_by_name_and_clear_errors(digits):
    assert {"dense", "magnitude", "ssl"} <= set(methods.REGISTRY)
    run = runner.run(
        "magnitude", small_mlp(), digits, epochs=1, method_options={"sparsity": 0.5}, progress=False
    )
    assert run.method == "magnitude" and run.sparsity == pytest.approx(0.5, abs=1e-3)
    with pytest.raises(ValueError, match="name='nope' is not known"):
        runner.run("nope", small_mlp(), digits)
    with pytest.raises(ValueError, match="method_options are for a method given by name"):
        runner.run(one_shot(0.5), small_mlp(), digits, method_options={"sparsity": 0.5})
    with pytest.raises(TypeError, match="method must be a Method"):
        runner.run(object(), small_mlp(), digits)
    with pytest.raises(ValueError, match="no .train loader"):
        runner.run("dense", small_mlp(), None, epochs=1)
    with pytest.raises(ValueError, match="epochs=-1"):
        runner.run("dense", small_mlp(), digits, epochs=-1)


def test_registry_rules():
    class Nameless(Method):
        pass

    with pytest.raises(TypeError, match="non-empty name"):
        methods.register(Nameless)

    class Clash(Method):
        name = "dense"

    with pytest.raises(ValueError, match="registered already"):
        methods.register(Clash)
    with pytest.raises(TypeError, match="Method subclass"):
        methods.register(nn.Linear)
