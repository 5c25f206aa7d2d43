"""The magnitude-pruning method end to end on digits: by hand (prepare → fit → finalize) and through
the runner."""

from __future__ import annotations

from dataclasses import dataclass

import pytest
import torch

from sparsitylab import metrics, models, reparam, runner, train
from sparsitylab.methods.magnitude import MagnitudePruning, gradual, one_shot
from sparsitylab.sparsify.schedules import CubicSchedule


def small_mlp():
    return models.mlp((64, 64, 32, 10))


def test_gradual_hits_final_sparsity_exactly_and_zeros_survive(digits):
    train.seed_everything(0)
    net = small_mlp()
    steps = 4 * len(digits.train)
    method = gradual(0.8, steps, budget="erk", n=5)
    net = method.prepare(net)
    train.fit(
        net,
        digits.train,
        4,
        optimizer=train.sgd(net, 0.05, 0.9, 5e-4),
        callbacks=[method],
        progress=False,
    )
    assert [t for t, _ in method.events] == method.schedule.pruning_steps()
    assert method.events[-1][1] == 0.8
    assert metrics.sparsity(net) == pytest.approx(0.8, abs=2e-3)  # ERK rounds per layer
    masks = reparam.get_masks(net)
    final = method.finalize(net)
    assert not reparam.is_masked(final) and reparam.is_masked(net)  # finalize returns a new model
    for name, mask in masks.items():
        assert (final.get_submodule(name).weight[~mask] == 0).all()


def test_one_shot_global_fine_tune_keeps_exact_count_and_recovers(digits):
    dense = runner.run("dense", small_mlp(), digits, epochs=3, progress=False)
    run = runner.run(
        one_shot(0.9, "global"),
        dense.model,
        digits,
        epochs=3,
        measure_prepared=True,
        progress=False,
    )
    total = sum(m.weight.numel() for m in metrics.prunable_layers(run.model).values())
    nonzero = sum(
        m.weight.count_nonzero().item() for m in metrics.prunable_layers(run.model).values()
    )
    assert nonzero == total - round(0.9 * total)
    assert run.test_acc > run.prepared_acc and run.test_acc > dense.test_acc - 0.1
    assert run.compacted is None and run.history["sparsity"] == [pytest.approx(0.9, abs=1e-3)] * 3


def test_late_start_keeps_model_dense_until_t0(digits):
    net = small_mlp()
    method = MagnitudePruning(
        CubicSchedule(0.0, 0.5, start_step=10, delta=2, n=2), budget="uniform"
    )
    method.prepare(net)
    assert reparam.is_masked(net) and metrics.sparsity(net) == 0.0 and method.events == []
    train.fit(net, digits.train, 1, callbacks=[method], progress=False, max_steps=9)
    assert metrics.sparsity(net) == 0.0


def test_first_and_last_dense(digits):
    net = small_mlp()
    method = one_shot(0.2, "uniform", first_dense=True, last_dense=True)
    method.prepare(net)
    assert list(reparam.get_masks(net)) == ["fc2"]
    assert metrics.sparsity(net) == pytest.approx(0.2, abs=1e-3)


@dataclass(frozen=True)
class EveryOtherStep:
    """A schedule of one's own (the Schedule protocol): 0.5 from step 0, 0.7 from step 2."""

    final_sparsity: float = 0.7

    def sparsity_at(self, step: int) -> float:
        return 0.5 if step < 2 else 0.7

    def is_pruning_step(self, step: int) -> bool:
        return step in (0, 2)

    def pruning_steps(self) -> list[int]:
        return [0, 2]


def test_any_schedule_that_follows_the_protocol_works(digits):
    method = MagnitudePruning(EveryOtherStep(), budget="global")
    run = runner.run(method, small_mlp(), digits, epochs=1, max_steps=3, progress=False)
    assert method.events == [(0, 0.5), (2, 0.7)] and run.sparsity == pytest.approx(0.7, abs=1e-3)


def test_bad_arguments_raise():
    with pytest.raises(ValueError, match="budget='nope'"):
        one_shot(0.5, "nope")
    with pytest.raises(TypeError, match="schedule"):
        MagnitudePruning(0.5)
    with pytest.raises(ValueError, match="sparsity"):
        one_shot(1.5)
    with pytest.raises(ValueError, match="needs total_steps"):
        MagnitudePruning.from_options(0.5, schedule="gradual")


def test_masked_model_state_dict_round_trip_after_training(digits):
    run = runner.run(one_shot(0.7, "erk"), small_mlp(), digits, epochs=1, progress=False)
    fresh = reparam.load_state_dict(small_mlp(), run.trained.state_dict())
    x = torch.randn(5, 64)
    torch.testing.assert_close(fresh(x), run.trained(x))
    torch.testing.assert_close(run.model(x), run.trained(x))
