"""STR-BN: pruned channels output exactly 0, finalize and compaction keep the outputs, only
channel-removable BatchNorms are converted (not the residual branch's last one)."""

from __future__ import annotations

import pytest
import torch

from sparsitylab import methods, models, runner, train
from sparsitylab.methods.channels import removable_batchnorms
from sparsitylab.methods.soft_threshold import STRBN
from sparsitylab.reparam.str_batchnorm import STRBatchNorm2d, from_batchnorm, to_batchnorm


def trained_bn(channels: int = 6) -> torch.nn.BatchNorm2d:
    torch.manual_seed(0)
    bn = torch.nn.BatchNorm2d(channels)
    with torch.no_grad():
        bn.weight.copy_(torch.linspace(-1.0, 1.0, channels))
        bn.bias.copy_(torch.randn(channels))
        bn.running_mean.copy_(torch.randn(channels))
        bn.running_var.copy_(torch.rand(channels) + 0.5)
    return bn.eval()


def test_very_negative_s_computes_the_original_batchnorm():
    bn = trained_bn()
    with torch.no_grad():
        bn.weight[2] = 0.0  # γ = 0: β̂ is set to 0 and the channel outputs β·0
    strbn = from_batchnorm(bn, s_init=-100.0).eval()
    x = torch.randn(4, 6, 5, 5)
    expected = bn(x)
    expected[:, 2] = 0.0
    assert torch.allclose(strbn(x), expected, atol=1e-6)


def test_pruned_channels_output_exactly_zero_and_finalize_matches():
    strbn = from_batchnorm(trained_bn(), s_init=-1.0).eval()  # threshold 0.27
    gamma_hat = strbn.effective_weight().detach()
    pruned = gamma_hat == 0
    assert 0 < int(pruned.sum()) < 6
    x = torch.randn(3, 6, 4, 4)
    out = strbn(x)
    assert (out[:, pruned] == 0).all() and (out[:, ~pruned] != 0).any()
    plain = to_batchnorm(strbn)
    assert type(plain) is torch.nn.BatchNorm2d
    assert torch.allclose(plain(x), out, atol=1e-6)
    assert (plain.weight[pruned] == 0).all() and (plain.bias[pruned] == 0).all()


def test_train_mode_updates_running_statistics_like_batchnorm():
    bn = torch.nn.BatchNorm2d(4).train()
    strbn = from_batchnorm(bn, -100.0).train()
    x = torch.randn(8, 4, 3, 3)
    assert torch.allclose(strbn(x), bn(x), atol=1e-6)
    assert torch.allclose(strbn.running_mean, bn.running_mean)
    assert int(strbn.num_batches_tracked) == 1


def test_only_channel_removable_batchnorms_are_converted():
    names = set(removable_batchnorms(models.resnet20()))
    assert names and all(name.endswith("branch.bn1") for name in names)
    assert set(removable_batchnorms(models.convnet_bn())) == {"bn1", "bn2", "bn3"}
    method = STRBN()
    net = method.prepare(models.resnet20())
    assert sum(isinstance(m, STRBatchNorm2d) for m in net.modules()) == 9
    groups = method.param_groups(net)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in net.parameters()) and len(set(ids)) == len(ids)
    train.SGD()(groups)


def test_str_bn_end_to_end_compacts_with_equal_outputs(digits):
    torch.manual_seed(0)
    net = models.convnet_bn(widths=(8, 16, 32))
    for bn in (net.bn1, net.bn2, net.bn3):  # spread γ so that the threshold 0.12 bites at once
        torch.nn.init.uniform_(bn.weight, 0.0, 1.0)
    method = STRBN(s_init=-2.0)
    run = runner.run(
        method,
        net,
        digits,
        epochs=2,
        optimizer=train.SGD(lr=0.05, weight_decay=1e-3),
        progress=False,
    )
    final, small = run.model, run.compacted
    assert not any(isinstance(m, STRBatchNorm2d) for m in final.modules())
    pruned = {name: int((final.get_submodule(name).weight == 0).sum()) for name in method.names}
    assert sum(pruned.values()) > 0, pruned
    x = next(iter(digits.test))[0][:32]
    with torch.no_grad():
        assert torch.allclose(small(x), final(x), atol=1e-5)
    kept = {name: small.get_submodule(name).num_features for name in method.names}
    widths = {"bn1": 8, "bn2": 16, "bn3": 32}
    assert all(kept[n] == widths[n] - pruned[n] for n in method.names), (kept, pruned)


def test_registry():
    assert isinstance(methods.build("str-bn", s_init=-50.0), STRBN)
    with pytest.raises(ValueError, match="affine"):
        STRBatchNorm2d(4, affine=False)


def test_freeze_makes_plain_batchnorms_whose_zeros_survive_fine_tuning(digits):
    method = STRBN(s_init=-0.7)  # threshold 0.33: some γ fall below it
    torch.manual_seed(0)
    model = models.convnet_bn(widths=(4, 6, 8))
    with torch.no_grad():
        for bn in (model.bn1, model.bn2, model.bn3):
            bn.weight.uniform_(0.0, 1.0)
    method.prepare(model)
    method.freeze(model)
    assert not any(isinstance(m, STRBatchNorm2d) for m in model.modules())
    pruned = {n: (model.get_submodule(n).weight == 0).clone() for n in method.names}
    assert sum(int(p.sum()) for p in pruned.values()) > 0
    train.fit(
        model,
        digits.train,
        1,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1),
        progress=False,
    )
    for n, p in pruned.items():
        bn = model.get_submodule(n)
        assert torch.equal(bn.weight[p], torch.zeros(int(p.sum())))
        assert torch.equal(bn.bias[p], torch.zeros(int(p.sum())))
