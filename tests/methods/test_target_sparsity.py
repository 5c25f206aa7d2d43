"""STR's target-sparsity mode: the exact correction hits round(S·N), keeps the layers' threshold
ratios, refuses impossible targets; the controller moves the thresholds' decay the right way; the
whole mode lands within ±0.5 points through the runner, for STR and STR-BN."""

from __future__ import annotations

import pytest
import torch

from sparsitylab import metrics, models, runner, train
from sparsitylab.methods.soft_threshold import STR, STRBN
from sparsitylab.methods.target_sparsity import (
    DecayController,
    cubic_ramp,
    hit_target,
    threshold_sparsity,
)
from sparsitylab.reparam.soft_threshold import thresholds


def prepared(granularity: str = "layer") -> torch.nn.Module:
    torch.manual_seed(0)
    return STR(s_init=-4.0, granularity=granularity).prepare(models.lenet5())


@pytest.mark.parametrize("granularity", ["layer", "channel"])
@pytest.mark.parametrize("target", [0.0, 0.37, 0.9, 0.99])
def test_hit_target_prunes_exactly_round_s_n(granularity, target):
    model = prepared(granularity)
    before = thresholds(model)
    factor = hit_target(model, target)
    n = sum(m.weight.numel() for m in metrics.prunable_layers(model).values())
    assert abs(metrics.sparsity(model) - target) <= 1.0 / n + 1e-12
    assert threshold_sparsity(model) == pytest.approx(metrics.sparsity(model), abs=1e-12)
    after = thresholds(model)
    for name in before:  # one common factor: the learned ratios between thresholds stay
        assert torch.allclose(after[name], factor * before[name], rtol=1e-4)


def test_hit_target_refuses_a_threshold_sigmoid_cannot_reach():
    model = prepared()
    with torch.no_grad():
        for m in metrics.prunable_layers(model).values():
            m.parametrizations.weight.original.mul_(100.0)  # |w| up to ~10: needs g > 1
    with pytest.raises(ValueError, match="sigmoid"):
        hit_target(model, 0.9)


def test_hit_target_needs_thresholds():
    with pytest.raises(ValueError, match="no STR thresholds"):
        hit_target(models.lenet5(), 0.5)


def test_cubic_ramp_starts_at_zero_and_holds_s_after_the_ramp():
    assert cubic_ramp(0, 100, 0.9, 0.5) == 0.0
    assert cubic_ramp(50, 100, 0.9, 0.5) == pytest.approx(0.9)
    assert cubic_ramp(80, 100, 0.9, 0.5) == pytest.approx(0.9)
    values = [cubic_ramp(t, 100, 0.9, 0.5) for t in range(51)]
    assert values == sorted(values)


def test_controller_raises_decay_behind_target_and_lowers_it_ahead():
    model = prepared()
    group = {"weight_decay": 1e-3}
    control = DecayController(0.9, total_steps=100, every=1)
    control.update(model, group, 50)  # target 0.9, model almost dense: far behind
    assert group["weight_decay"] > 1e-3
    hit_target(model, 0.95)
    control.update(model, group, 60)  # now ahead of 0.9
    assert group["weight_decay"] < 1e-3  # below λ_ref
    assert [t[0] for t in control.trace] == [50, 60]


def test_controller_checks_its_settings():
    with pytest.raises(ValueError, match="total_steps"):
        DecayController(0.9, total_steps=0)
    with pytest.raises(ValueError, match="total_steps"):
        STR(target_sparsity=0.9)


@pytest.mark.parametrize("target", [0.8, 0.95])
def test_str_target_mode_lands_within_half_a_point(digits, target):
    steps = 2 * len(digits.train)
    method = STR(s_init=-5.0, target_sparsity=target, total_steps=steps)
    run = runner.run(
        method,
        models.mlp((64, 32, 10)),
        digits,
        epochs=2,
        optimizer=train.SGD(lr=0.05),
        progress=False,
    )
    assert abs(run.sparsity - target) <= 0.005
    assert [t for t, _ in method.corrections] == [method.controller.ramp_end, steps]
    assert method.controller.trace  # the controller ran


def test_str_bn_target_mode_counts_channels(digits):
    steps = len(digits.train)
    method = STRBN(s_init=-5.0, target_sparsity=0.5, total_steps=steps)
    torch.manual_seed(0)
    model = models.convnet_bn(widths=(8, 12, 16))
    with torch.no_grad():  # γ below 1: a threshold sigmoid(s) < 1 can prune half of them
        for bn in (model.bn1, model.bn2, model.bn3):
            bn.weight.uniform_(0.1, 0.9)
    run = runner.run(
        method,
        model,
        digits,
        epochs=1,
        optimizer=train.SGD(lr=0.05),
        progress=False,
    )
    gammas = [m.weight for n, m in run.model.named_modules() if n in method.names]
    pruned = sum(int((g == 0).sum()) for g in gammas) / sum(g.numel() for g in gammas)
    assert abs(pruned - 0.5) <= 0.5 / sum(g.numel() for g in gammas) + 1e-12  # the nearest count
    assert run.compacted_macs < run.macs


def test_hit_target_works_from_an_underflowed_threshold():
    """sigmoid(−100) is 0 in float32: the rescale must still find a finite threshold."""
    torch.manual_seed(0)
    model = STR(s_init=-100.0).prepare(models.lenet5())
    hit_target(model, 0.5)
    assert abs(metrics.sparsity(model) - 0.5) < 1e-4
    assert all(bool(torch.isfinite(g).all()) for g in thresholds(model).values())
