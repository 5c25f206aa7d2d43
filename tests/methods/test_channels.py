"""Channel pruning on importance vectors and Network Slimming: every budget and schedule gives
channel masks, pruned channels output exactly 0, Slimming's removal is exact (eval and train mode),
compaction keeps the outputs."""

from __future__ import annotations

import copy

import pytest
import torch

from sparsitylab import models, runner, train
from sparsitylab.methods.channels import (
    ChannelPruning,
    channel_importances,
    channel_masks,
    removable_batchnorms,
)
from sparsitylab.methods.slimming import NetworkSlimming, macs_fraction, match_macs, slimmed
from sparsitylab.sparsify.schedules import CubicSchedule, OneShot

BUILDERS = {
    "convnet_bn": lambda: models.convnet_bn(widths=(8, 12, 16)),
    "resnet20": models.resnet20,
}


def randomised(build, seed: int = 0) -> torch.nn.Module:
    """A model in eval mode with random BatchNorm parameters and statistics (β ≠ 0 everywhere)."""
    torch.manual_seed(seed)
    model = build().eval()
    with torch.no_grad():
        for bn in model.modules():
            if isinstance(bn, torch.nn.BatchNorm2d):
                bn.weight.uniform_(-1, 1)
                bn.bias.normal_()
                bn.running_mean.normal_()
                bn.running_var.uniform_(0.5, 2.0)
    return model


def test_importances_are_one_vector_per_removable_batchnorm():
    model = randomised(models.resnet20)
    scores = channel_importances(model)
    assert list(scores) == list(removable_batchnorms(model))
    assert all(name.endswith("branch.bn1") for name in scores)  # never a shortcut-coupled one
    for name, g in scores.items():
        assert torch.equal(g, model.get_submodule(name).weight.detach().abs())
    l1 = channel_importances(model, "l1")["blocks.s1b1.branch.bn1"]
    conv = model.get_submodule("blocks.s1b1.branch.conv1").weight.detach()
    assert torch.allclose(l1, conv.abs().sum((1, 2, 3)))
    with pytest.raises(ValueError, match="kind"):
        channel_importances(model, "taylor")


@pytest.mark.parametrize("budget", ["uniform", "global", "erk"])
def test_every_budget_gives_channel_masks_at_the_requested_sparsity(budget):
    model = randomised(models.resnet20)
    masks = channel_masks(model, 0.5, budget)
    total = sum(m.numel() for m in masks.values())
    pruned = sum(int((~m).sum()) for m in masks.values())
    assert abs(pruned - 0.5 * total) <= len(masks)  # per-layer rounding at most one per layer
    if budget == "uniform":
        assert all(abs((~m).float().mean().item() - 0.5) < 0.04 for m in masks.values())
    if budget == "global":  # one ranking: every kept |γ| ≥ every pruned |γ|
        scores = channel_importances(model)
        kept = torch.cat([scores[n][m] for n, m in masks.items()])
        gone = torch.cat([scores[n][~m] for n, m in masks.items()])
        assert kept.min() >= gone.max()


def test_erk_channel_budget_prunes_big_filters_more():
    model = randomised(models.resnet20)
    masks = channel_masks(model, 0.5, "erk")
    first, last = masks["blocks.s1b1.branch.bn1"], masks["blocks.s3b3.branch.bn1"]
    assert (~last).float().mean() > (~first).float().mean()  # 64×64×3×3 filters vs 16×16×3×3


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("schedule", ["one_shot", "cubic"])
def test_channel_pruning_zeroes_channels_and_compacts_exactly(name, schedule):
    model = randomised(BUILDERS[name])
    chosen = OneShot(0.5) if schedule == "one_shot" else CubicSchedule(0.0, 0.5, 0, 1, 2)
    method = ChannelPruning(chosen, "global")
    method.prepare(model)
    for step in (1, 2):
        method.after_step(model, step)
    final = method.finalize(model).eval()
    x = torch.randn(4, 1, 28, 28)
    for bn in removable_batchnorms(final).values():
        off = bn.weight == 0
        assert torch.equal(bn.bias[off], torch.zeros(int(off.sum())))
    pruned = sum(int((bn.weight == 0).sum()) for bn in removable_batchnorms(final).values())
    total = sum(bn.num_features for bn in removable_batchnorms(final).values())
    assert pruned == round(0.5 * total)
    small = method.compact(final, example_input=x)
    assert torch.allclose(small(x), final(x), atol=1e-5)
    assert sum(p.numel() for p in small.parameters()) < sum(p.numel() for p in final.parameters())


def test_gradual_channel_masks_are_nested():
    model = randomised(models.resnet20)
    method = ChannelPruning(CubicSchedule(0.0, 0.6, 0, 1, 3), "global", importance="l2")
    method.prepare(model)
    previous = None
    for step in (1, 2, 3):
        method.after_step(model, step)
        now = {n: bn.weight.detach() != 0 for n, bn in removable_batchnorms(model).items()}
        if previous is not None:
            assert all(bool((now[n] <= previous[n]).all()) for n in now)
        previous = now


@pytest.mark.parametrize("name", list(BUILDERS))
@pytest.mark.parametrize("mode", ["eval", "train"])
def test_slimming_removal_is_exact(name, mode):
    model = randomised(BUILDERS[name])
    method = NetworkSlimming(0.6, gamma_init=None)
    keep = method.keep(model)
    zeroed = copy.deepcopy(model)  # what Slimming decides: γ = 0 on the dropped channels
    with torch.no_grad():
        for n, bn in removable_batchnorms(zeroed).items():
            bn.weight[~keep[n]] = 0.0
    method.prune(model)
    x = torch.randn(6, 1, 28, 28)
    model.train(mode == "train")
    zeroed.train(mode == "train")
    assert torch.allclose(model(x), zeroed(x), atol=1e-5)
    small = method.compact(model.eval(), example_input=x)
    assert torch.allclose(small(x), zeroed.eval()(x), atol=1e-5)


def test_slimming_without_the_fold_would_change_the_outputs():
    """The reason for the fold: dropping β of removed channels (the public code) is not exact."""
    model = randomised(models.convnet_bn)
    keep = NetworkSlimming(0.5, gamma_init=None).keep(model)
    dropped = copy.deepcopy(model)
    with torch.no_grad():
        for n, bn in removable_batchnorms(dropped).items():
            bn.weight[~keep[n]] = 0.0
            bn.bias[~keep[n]] = 0.0
    x = torch.randn(4, 1, 28, 28)
    zeroed = copy.deepcopy(model)
    with torch.no_grad():
        for n, bn in removable_batchnorms(zeroed).items():
            bn.weight[~keep[n]] = 0.0
    assert (dropped(x) - zeroed(x)).abs().max() > 1e-3


def test_slimming_keeps_a_minimum_per_layer_and_uses_one_global_threshold():
    model = randomised(models.convnet_bn)
    with torch.no_grad():
        model.bn1.weight.fill_(1e-3)  # the global threshold would empty bn1
    keep = NetworkSlimming(0.3, gamma_init=None, min_channels=2).keep(model)
    assert int(keep["bn1"].sum()) == 2
    others = torch.cat(
        [model.get_submodule(n).weight.abs()[k] for n, k in keep.items() if n != "bn1"]
    )
    dropped = torch.cat(
        [model.get_submodule(n).weight.abs()[~k] for n, k in keep.items() if n != "bn1"]
    )
    assert others.min() > dropped.max()


def test_slimming_penalty_is_l1_on_gamma_and_gamma_starts_at_one_half():
    model = models.convnet_bn(widths=(4, 6, 8))
    method = NetworkSlimming(0.5, strength=1e-2)
    method.prepare(model)
    sites = removable_batchnorms(model)
    assert all(bool((bn.weight == 0.5).all()) for bn in sites.values())
    method.penalty(model).backward()
    for bn in sites.values():
        assert torch.allclose(bn.weight.grad, 1e-2 * torch.sign(bn.weight.detach()))


def test_slimming_through_the_runner_fine_tunes_a_compact_exact_model(digits):
    run = runner.run(
        NetworkSlimming(0.5, strength=1e-4),
        models.convnet_bn(widths=(4, 6, 8)),
        digits,
        epochs=1,
        finetune_epochs=1,
        optimizer=train.SGD(lr=0.01),
        progress=False,
    )
    assert run.compacted is not None and run.compacted_macs < run.macs
    x = next(iter(digits.test))[0][:8]
    assert torch.allclose(run.compacted(x), run.model(x), atol=1e-5)


def test_match_macs_finds_the_requested_fraction():
    model = randomised(models.convnet_bn)
    ratio, got = match_macs(lambda r: slimmed(model, r), model, 0.5)
    assert abs(got - 0.5) < 0.05
    assert macs_fraction(slimmed(model, ratio), model, (1, 1, 28, 28)) == pytest.approx(got)
