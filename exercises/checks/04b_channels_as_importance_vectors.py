"""Graders for ``exercises/04b_channels_as_importance_vectors.py``: each ``check_*`` takes the
student's module and raises AssertionError (or the stub's NotImplementedError) unless the
exercise is solved."""

from __future__ import annotations

from collections import OrderedDict

import torch
import torch.nn.functional as F
from torch import nn

from sparsitylab import models
from sparsitylab.methods.channels import importances
from sparsitylab.methods.slimming import NetworkSlimming
from sparsitylab.methods.soft_threshold import STR, STRBN
from sparsitylab.metrics import BATCHNORMS
from sparsitylab.reparam.soft_threshold import SoftThreshold, threshold_parameters
from sparsitylab.reparam.str_batchnorm import STRBatchNorm2d, to_batchnorm


def _scalar(value) -> torch.Tensor:
    got = torch.as_tensor(value).detach()
    assert got.numel() == 1, f"expected one value, got shape {tuple(got.shape)}"
    return got.reshape(())


def check_str_bn_affine(student) -> None:
    gamma, beta_hat = torch.tensor([0.9, -0.2, -0.7, 0.1]), torch.tensor([1.0, 2.0, 3.0, -4.0])
    weight, bias = student.str_bn_affine(gamma, beta_hat, torch.tensor(0.0))  # g = 0.5
    assert torch.allclose(weight, torch.tensor([0.4, 0.0, -0.2, 0.0])), "hand case: weight"
    assert torch.allclose(bias, torch.tensor([0.4, 0.0, -0.6, 0.0])), "hand case: bias"
    torch.manual_seed(0)
    for s in (-2.0, -0.5):
        bn = STRBatchNorm2d(16, s_init=s)
        with torch.no_grad():
            bn.weight.copy_(torch.randn(16) * torch.tensor([0.01, 1.0]).repeat(8))  # some pruned
            bn.bias.copy_(3 * torch.randn(16))
        plain = to_batchnorm(bn)
        weight, bias = student.str_bn_affine(bn.weight.detach(), bn.bias.detach(), torch.tensor(s))
        assert torch.allclose(weight, plain.weight), f"s={s}: weight differs from to_batchnorm"
        assert torch.allclose(bias, plain.bias), f"s={s}: bias differs from to_batchnorm"
        pruned = plain.weight == 0
        assert pruned.any(), "the grader's γ should prune some channels"
        assert (bias[pruned] == 0).all(), f"s={s}: pruned channels need bias exactly 0"
        out = F.batch_norm(torch.randn(4, 16, 3, 3), None, None, weight, bias, training=True)
        assert (out[:, pruned] == 0).all(), f"s={s}: a pruned channel must output exactly 0"


def _misnamed() -> nn.Sequential:
    """A model whose names lie about its module types, and with one frozen parameter."""
    net = nn.Sequential(
        OrderedDict(
            [
                ("bn1", nn.Conv2d(1, 4, 3, bias=False)),
                ("threshold", nn.BatchNorm2d(4)),
                ("flatten", nn.Flatten()),
                ("s", nn.Linear(4, 2)),
            ]
        )
    )
    net.s.bias.requires_grad_(False)
    return net


def _ids(params) -> set[int]:
    return {id(p) for p in params}


def _check_groups(student, model: nn.Module, thresholds: list[nn.Parameter], label: str) -> None:
    groups = student.groups_by_type(model, thresholds)
    assert isinstance(groups, list) and all(
        isinstance(g, dict) and "params" in g for g in groups
    ), f"{label}: return a list of dicts with a 'params' entry"
    placed = [id(p) for g in groups for p in g["params"]]
    trainable = _ids(p for p in model.parameters() if p.requires_grad)
    assert len(placed) == len(set(placed)), f"{label}: a parameter appears in two groups"
    assert set(placed) == trainable, f"{label}: every trainable parameter, and only those, once"
    try:
        torch.optim.SGD(groups, lr=0.1, momentum=0.9, weight_decay=5e-4)
    except (TypeError, ValueError) as error:
        raise AssertionError(f"{label}: torch.optim.SGD refuses the groups: {error}") from error
    expected = {
        "thresholds": _ids(thresholds),
        "BatchNorm": {
            id(p)
            for m in model.modules()
            if isinstance(m, BATCHNORMS)
            for p in m.parameters(recurse=False)
            if p.requires_grad and id(p) not in _ids(thresholds)
        },
    }
    for kind, ids in expected.items():
        group = [_ids(g["params"]) for g in groups if _ids(g["params"]) & ids]
        assert group == [ids], f"{label}: one group must hold exactly the {kind} parameters"


def check_groups_by_type(student) -> None:
    resnet = STR().prepare(models.resnet20())
    soft = [m.s for m in resnet.modules() if isinstance(m, SoftThreshold)]
    assert _ids(threshold_parameters(resnet)) == _ids(soft)  # the library finds them by type too
    _check_groups(student, resnet, threshold_parameters(resnet), "ResNet-20 with STR")
    misnamed = STR().prepare(_misnamed())
    _check_groups(student, misnamed, threshold_parameters(misnamed), "misleading names")
    bn = STRBN().prepare(models.resnet20())  # each threshold s is also a BatchNorm parameter
    thresholds = [m.s for m in bn.modules() if isinstance(m, STRBatchNorm2d)]
    _check_groups(student, bn, thresholds, "ResNet-20 with STR-BN")


def check_global_gamma_keep(student) -> None:
    gammas = {
        "a": torch.tensor([0.1, 0.5, 0.3]),
        "b": torch.tensor([0.05, 0.02]),
        "c": torch.tensor([0.9]),
    }
    got = student.global_gamma_keep(gammas, 0.5)  # k = 3: threshold 0.1
    expected = {"a": [False, True, True], "b": [True, False], "c": [True]}  # b keeps its largest
    for name, mask in expected.items():
        assert got[name].tolist() == mask, f"hand case, layer {name}: {got[name].tolist()}"
    none = student.global_gamma_keep(gammas, 0.0)
    assert all(m.all() for m in none.values()), "ratio 0 keeps every channel"
    torch.manual_seed(0)
    model = models.convnet_bn(widths=(8, 16, 32))
    with torch.no_grad():
        for bn in (model.bn1, model.bn2, model.bn3):
            bn.weight.copy_(
                torch.rand(bn.num_features) * torch.tensor([0.01, 1.0]).repeat(bn.num_features // 2)
            )
    for ratio in (0.3, 0.6, 0.9):
        method = NetworkSlimming(ratio, gamma_init=None)
        scores = importances(model, method._channels(model), "gamma")
        want = method.keep(model)
        got = student.global_gamma_keep(scores, ratio)
        for name in want:
            assert torch.equal(got[name].bool(), want[name]), (
                f"ratio {ratio}, {name}: differs from NetworkSlimming.keep"
            )
