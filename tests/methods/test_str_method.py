"""The STR method: parameter groups by type (every parameter once, ResNet names included), the
no-decay warning, sparsification end to end on digits, and a finalized model with exact zeros."""

from __future__ import annotations

import pytest
import torch

from sparsitylab import methods, metrics, models, reparam, runner, train
from sparsitylab.methods.soft_threshold import STR, NoThresholdDecayWarning
from sparsitylab.reparam.soft_threshold import SoftThreshold


@pytest.mark.parametrize("build", [models.resnet20, models.convnet_bn, models.mlp])
def test_param_groups_hold_every_parameter_exactly_once(build):
    method = STR(bn_decay=False, threshold_decay=1e-3)
    net = method.prepare(build())
    groups = method.param_groups(net)
    ids = [id(p) for g in groups for p in g["params"]]
    assert sorted(ids) == sorted(id(p) for p in net.parameters() if p.requires_grad)
    assert len(ids) == len(set(ids))
    by = {g["group"]: g for g in groups}
    assert len(by["thresholds"]["params"]) == len(metrics.prunable_layers(net))
    assert by["thresholds"]["weight_decay"] == 1e-3
    if "batchnorm" in by:
        assert by["batchnorm"]["weight_decay"] == 0.0
    train.SGD()(groups)  # torch accepts the groups (it rejects a parameter in two)


def test_zero_threshold_decay_warns():
    method = STR(threshold_decay=0.0)
    net = method.prepare(models.mlp((16, 8, 4)))
    with pytest.warns(NoThresholdDecayWarning, match="stay dense"):
        method.on_fit_start(net, train.SGD()(method.param_groups(net)))


def test_str_sparsifies_and_finalize_bakes_shrunk_weights(digits):
    method = STR(s_init=-5.0)
    run = runner.run(
        method,
        models.mlp((64, 64, 32, 10)),
        digits,
        epochs=3,
        optimizer=train.SGD(lr=0.05, weight_decay=1e-3),
        progress=False,
    )
    assert not reparam.find(run.model) and reparam.find(run.trained, SoftThreshold)
    assert 0.05 < run.sparsity < 0.99 and run.test_acc > 0.8  # measured: 12 % sparse, 0.88
    assert run.sparsity == pytest.approx(metrics.sparsity(run.model))
    x = next(iter(digits.test))[0]
    with torch.no_grad():
        assert torch.allclose(run.model(x), run.trained(x), atol=1e-6)
    trained = run.trained.fc2.parametrizations.weight
    g = torch.sigmoid(trained[0].s.detach())
    w = trained.original.detach()
    assert torch.allclose(run.model.fc2.weight, torch.sign(w) * torch.relu(w.abs() - g))


def test_registry():
    assert isinstance(methods.build("str", s_init=-50.0), STR)
    with pytest.raises(ValueError, match="threshold_decay"):
        STR(threshold_decay=-1.0)
