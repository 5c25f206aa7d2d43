"""STR's target-sparsity mode: the exact correction hits round(S·N), keeps the layers' threshold
ratios, refuses impossible targets; the controller moves the thresholds' decay the right way, cuts
an overshoot back to the ramp, hits S at the ramp's end and holds the thresholds after it; from
s_init = −100 the network no longer collapses; the mode lands within ±0.5 points through the runner
and resumes bit for bit, for STR and STR-BN."""

from __future__ import annotations

import pytest
import torch
from runs import Interrupt, StopAfter, fresh_digits

from sparsitylab import metrics, models, runner, train
from sparsitylab.methods.soft_threshold import STR, STRBN
from sparsitylab.methods.target_sparsity import (
    DecayController,
    cubic_ramp,
    hit_target,
    sites,
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


def optimizer_for(model: torch.nn.Module, decay: float = 1e-3) -> torch.optim.Optimizer:
    return train.SGD(weight_decay=decay)(STR().param_groups(model))


def stepped(model: torch.nn.Module, optimizer: torch.optim.Optimizer) -> None:
    """One optimizer step, so that every parameter (the thresholds too) has momentum."""
    optimizer.zero_grad()
    model(torch.randn(4, 1, 28, 28)).square().sum().backward()
    optimizer.step()


def test_controller_raises_decay_behind_target_and_lowers_it_ahead():
    model = prepared()
    optimizer = optimizer_for(model)
    group = optimizer.param_groups[-1]
    control = DecayController(0.9, total_steps=100)
    assert control.update(model, optimizer, 30) is None  # behind: no rescale …
    assert group["weight_decay"] > 1e-3  # … but more decay
    hit_target(model, control.target(40) + 0.005)
    assert control.update(model, optimizer, 40) is None  # ahead of τ, under the ceiling
    assert group["weight_decay"] < 1e-3  # below λ_ref
    assert [t[0] for t in control.trace] == [30, 40]


def test_controller_cuts_an_overshoot_back_to_the_ramp_and_drops_the_momentum():
    model = prepared()
    optimizer = optimizer_for(model)
    stepped(model, optimizer)
    s = [x.s for x in sites(model)]
    assert all("momentum_buffer" in optimizer.state[p] for p in s)
    hit_target(model, 0.99)  # far ahead of the ramp, as momentum on s used to carry it
    control = DecayController(0.9, total_steps=100)
    factor = control.update(model, optimizer, 10)
    assert factor is not None and factor < 1
    assert threshold_sparsity(model) == pytest.approx(control.target(10), abs=1e-4)
    assert not any(p in optimizer.state for p in s)  # s restarts without the old momentum
    assert optimizer.param_groups[0]["params"][0] in optimizer.state  # the weights keep theirs


def test_controller_hits_s_at_the_ramp_end_holds_the_thresholds_then_hits_s_again():
    model = prepared()
    optimizer = optimizer_for(model)
    control = DecayController(0.9, total_steps=100)
    hit_target(model, 0.5)  # far behind: allowed before the ramp's end …
    assert control.update(model, optimizer, 59) is None
    assert control.update(model, optimizer, 60) > 1  # … then pruned to S at once
    assert threshold_sparsity(model) == pytest.approx(0.9, abs=1e-4)
    held = [x.s.clone() for x in sites(model)]
    for step in (61, 62):
        stepped(model, optimizer)  # moves s …
        assert control.update(model, optimizer, step) is None
        assert all(torch.equal(x.s, h) for x, h in zip(sites(model), held))  # … and back
    with torch.no_grad():  # the weights drift under the held thresholds
        for m in metrics.prunable_layers(model).values():
            m.parametrizations.weight.original.mul_(0.999)
    assert threshold_sparsity(model) > 0.9
    assert control.update(model, optimizer, 100) is not None  # the final exact rescale
    assert threshold_sparsity(model) == pytest.approx(0.9, abs=1e-4)


def test_controller_finds_the_thresholds_group_anew_after_the_optimizer_is_reloaded():
    """Loading an optimizer state replaces its group dicts: the controller must set the decay in
    the live group, not in the one it saw first."""
    model = prepared()
    optimizer = optimizer_for(model)
    control = DecayController(0.9, total_steps=100)
    control.update(model, optimizer, 30)
    optimizer.load_state_dict(optimizer.state_dict())
    optimizer.param_groups[-1]["weight_decay"] = 123.0
    control.update(model, optimizer, 31)
    assert optimizer.param_groups[-1]["weight_decay"] == control.trace[-1][-1] != 123.0


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
    assert method.corrections[-1][0] == steps  # the final exact correction, always recorded
    assert [t[0] for t in method.controller.trace] == list(range(1, steps + 1))


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


class Sparsity(train.Callback):
    """The thresholds' sparsity after every step (after the method's own after_step) and the
    sparsity of its most pruned site."""

    def __init__(self):
        self.overall: dict[int, float] = {}
        self.worst: dict[int, float] = {}

    def after_step(self, model, step):
        with torch.no_grad():
            found = sites(model)
            per = [
                float((x.magnitudes <= torch.sigmoid(x.s).view(-1, 1)).double().mean())
                for x in found
            ]
        self.overall[step] = threshold_sparsity(model)
        self.worst[step] = max(per)


@pytest.mark.parametrize("target, floor", [(0.8, 0.95), (0.95, 0.9)])
def test_default_s_init_no_longer_collapses_and_tracks_the_ramp(digits, target, floor):
    """s_init = −100 (the default): decay plus momentum used to throw every threshold to ~1 by
    step 20 (100 % pruned, ∂L/∂s = 0). Now ŝ never exceeds the ramp by more than the tolerance,
    stays near S once held, no layer dies, and the network learns (digits: dense ≈ 0.99, chance
    0.1; before the fix 0.37 at S = 0.95)."""
    epochs = 6
    steps = epochs * len(digits.train)
    method = STR(target_sparsity=target, total_steps=steps)
    record = Sparsity()
    torch.manual_seed(0)
    run = runner.run(
        method, models.convnet_bn(), digits, epochs=epochs, callbacks=[record], progress=False
    )
    tolerance, ramp_end = 0.01, method.controller.ramp_end
    for step, now in record.overall.items():
        tau = cubic_ramp(step, steps, target, 0.6)
        assert now <= tau + tolerance + 1e-9, (step, now, tau)
        if step >= ramp_end:
            assert now >= target - tolerance - 1e-9, (step, now)
    assert record.overall[steps] == pytest.approx(target, abs=1e-4)
    assert max(record.worst.values()) < 1.0  # no layer ever fully pruned
    assert max(record.worst.values()) <= target + 0.05
    assert run.test_acc > floor
    assert abs(run.sparsity - target) <= 0.005


def str_bn_model() -> torch.nn.Module:
    torch.manual_seed(0)
    model = models.convnet_bn(widths=(8, 12, 16))
    with torch.no_grad():  # γ below 1, so that sigmoid(s) < 1 can prune them
        for bn in (model.bn1, model.bn2, model.bn3):
            bn.weight.uniform_(0.1, 0.9)
    return model


def str_model() -> torch.nn.Module:
    torch.manual_seed(0)
    return models.mlp((64, 32, 10))


CASES = {
    "str": (lambda steps: STR(target_sparsity=0.9, total_steps=steps), str_model),
    "str-bn": (
        lambda steps: STRBN(s_init=-5.0, target_sparsity=0.5, total_steps=steps),
        str_bn_model,
    ),
}


# killed in epoch 2 or 3: resumed from step 22 (before the ramp's end, 40 of 66) or 44 (after it)
@pytest.mark.parametrize("stop", [2, 3])
@pytest.mark.parametrize("name", sorted(CASES))
def test_target_mode_resumes_bit_for_bit(tmp_path, name, stop):
    build, model = CASES[name]
    epochs = 3
    steps = epochs * len(fresh_digits().train)

    def go(checkpoint, resume=False, callbacks=()):
        method = build(steps)
        options = dict(epochs=epochs, optimizer=train.SGD(lr=0.05), progress=False)
        run = runner.run(
            method, model(), fresh_digits(), checkpoint=checkpoint, resume=resume,
            callbacks=callbacks, **options,
        )  # fmt: skip
        return run, method

    whole, method_a = go(tmp_path / "whole.pt")
    with pytest.raises(Interrupt):
        go(tmp_path / "cut.pt", callbacks=[StopAfter(stop)])
    cut, method_b = go(tmp_path / "cut.pt", resume=True)
    for final in ("trained", "model"):  # the thresholds too, and the exact zeros
        a, b = (dict([*getattr(r, final).named_parameters(), *getattr(r, final).named_buffers()])
                for r in (whole, cut))  # fmt: skip
        assert a.keys() == b.keys()
        assert all(torch.equal(a[k], b[k]) for k in a)
    assert method_a.state_dict() == method_b.state_dict()  # trace, corrections, λ_ref
    assert whole.test_acc == cut.test_acc
