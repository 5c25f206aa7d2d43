"""The SIS network pass: which problems a model has, BatchNorm folding, im2col, calibration end to
end, the runner, and bad options."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sparsitylab import models, reparam, runner, train
from sparsitylab.data import Loaders
from sparsitylab.methods.sis import SIS, calibration_images, folded, patches, steps, write_back


def chain(model):
    return [(s.name, s.activation, s.batchnorm is not None) for s in steps(model)]


def test_steps_name_each_layer_its_activation_and_batchnorm():
    assert chain(models.mlp()) == [
        ("fc1", "relu", False),
        ("fc2", "relu", False),
        ("fc3", "softmax", False),
    ]
    assert [a for _, a, _ in chain(models.mlp(activation="sigmoid"))] == [
        "sigmoid",
        "sigmoid",
        "softmax",
    ]
    assert chain(models.lenet5()) == [
        ("conv1", "identity", False),
        ("conv2", "identity", False),
        ("fc1", "relu", False),
        ("fc2", "softmax", False),
    ]
    assert chain(models.convnet_bn())[:3] == [
        ("conv1", "relu", True),
        ("conv2", "relu", True),
        ("conv3", "relu", True),
    ]
    assert steps(models.mlp(), last="identity")[-1].activation == "identity"
    with pytest.raises(TypeError, match="nn.Sequential"):
        steps(models.resnet20())


def trained_convnet():
    torch.manual_seed(0)
    model = models.convnet_bn(widths=(4, 8, 8))
    x = torch.randn(16, 1, 28, 28)
    model.train()
    with torch.no_grad():
        for _ in range(3):  # non-trivial running statistics
            model(x)
        for m in model.modules():
            if isinstance(m, nn.BatchNorm2d):
                m.weight.uniform_(0.5, 1.5)
                m.bias.uniform_(-0.2, 0.2)
    return model.eval(), x


def test_fold_and_write_back_are_exact_with_batchnorm():
    model, x = trained_convnet()
    before = model(x)
    for step in steps(model):
        w, b, scale = folded(step)
        write_back(step, w, b, scale)
    assert torch.allclose(model(x), before, atol=1e-4)
    step = steps(model)[0]
    w, b, scale = folded(step)
    w[:, ::2] = 0.0
    write_back(step, w, b, scale)
    weight = step.layer.weight.reshape(w.shape[0], -1)
    assert torch.equal(weight[:, ::2], torch.zeros_like(weight[:, ::2]))


def test_patches_times_the_gemm_weight_is_the_convolution():
    conv = nn.Conv2d(3, 5, 3, stride=2, padding=1)
    x = torch.randn(4, 3, 9, 9)
    step = next(s for s in steps(nn.Sequential(conv, nn.ReLU())))
    rows = patches(step, x) @ conv.weight.reshape(5, -1).T + conv.bias
    out = conv(x)
    assert torch.allclose(rows, out.permute(0, 2, 3, 1).reshape(-1, 5), atol=1e-5)


def small_problem(seed=0):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(300, 1, 8, 8, generator=g)
    labels = (x.flatten(1)[:, :10].sum(dim=1) > 0).long() + 2 * (
        x.flatten(1)[:, 10:20].sum(dim=1) > 0
    ).long()
    loader = DataLoader(TensorDataset(x, labels), batch_size=50, shuffle=False)
    torch.manual_seed(seed)
    model = models.mlp((64, 24, 12, 4))
    train.fit(
        model,
        loader,
        5,
        optimizer=torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9),
        progress=False,
    )
    return model.eval(), loader, x


def test_calibrate_is_feasible_exact_and_bounded():
    model, loader, x = small_problem()
    pruned = copy.deepcopy(model)
    method = SIS(0.02, images=200)
    method.calibrate(pruned, loader)
    assert [r.layer for r in method.reports] == ["fc1", "fc2", "fc3"]
    for r in method.reports:
        assert r.theta <= r.eta * (1 + 1e-6)
        assert r.output_error <= r.theta * (1 + 1e-4) + 1e-9  # prox non-expansive
        layer = getattr(pruned, r.layer)
        assert float((layer.weight == 0).float().mean()) == pytest.approx(r.sparsity)
        assert float(layer.weight.detach().abs().sum()) <= float(
            getattr(model, r.layer).weight.detach().abs().sum()
        )
    assert reparam.find(pruned), "the zeros are held by fixed masks"
    # Training afterwards keeps every zero.
    zeros = {n: getattr(pruned, n).weight.detach() == 0 for n in ("fc1", "fc2", "fc3")}
    train.fit(
        pruned, loader, 1, optimizer=torch.optim.SGD(pruned.parameters(), lr=0.1), progress=False
    )
    for n, z in zeros.items():
        assert (getattr(pruned, n).weight.detach()[z] == 0).all()


def test_relu_at_eta_zero_with_dense_inputs_keeps_the_outputs():
    model, loader, x = small_problem(seed=1)
    pruned = copy.deepcopy(model)
    SIS(
        {"fc1": 0.0, "fc2": 0.0, "fc3": 1e-3},
        images=200,
        inputs="dense",
        solver="primal-dual",
        tol=1e-7,
        max_iter=20_000,
    ).calibrate(pruned, loader)
    xs = calibration_images(loader, 200)
    with torch.no_grad():
        dense_hidden = model.relu1(model.fc1(model.flatten(xs)))
        sparse_hidden = pruned.relu1(pruned.fc1(pruned.flatten(xs)))
    assert float((sparse_hidden - dense_hidden).norm() / dense_hidden.norm()) < 1e-3


def test_more_tolerance_gives_more_sparsity():
    model, loader, _ = small_problem(seed=2)
    sparsity = []
    for eta in [0.001, 0.01, 0.1]:
        pruned = copy.deepcopy(model)
        SIS(eta, images=200).calibrate(pruned, loader)
        weights = [getattr(pruned, n).weight.detach() for n in ("fc1", "fc2", "fc3")]
        sparsity.append(sum(int((w == 0).sum()) for w in weights) / sum(w.numel() for w in weights))
    assert sparsity == sorted(sparsity) and sparsity[-1] > sparsity[0]


def test_convnet_bn_calibration_folds_batchnorm_and_stays_exact(tmp_path):
    model, x = trained_convnet()
    loader = DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=8)
    pruned = copy.deepcopy(model)
    method = SIS(0.01, images=16, max_rows=2000)
    method.calibrate(pruned, loader)
    assert all(r.theta <= r.eta * (1 + 1e-6) for r in method.reports)
    final = method.finalize(pruned)
    assert not reparam.find(final)
    with torch.no_grad():
        assert torch.allclose(final(x), pruned(x), atol=1e-5)
    path = tmp_path / "sis.pt"
    torch.save(final.state_dict(), path)
    again = copy.deepcopy(model)
    again.load_state_dict(torch.load(path, weights_only=True))
    with torch.no_grad():
        assert torch.equal(again(x), final(x))


def test_the_runner_drives_sis_end_to_end():
    model, loader, _ = small_problem(seed=3)
    loaders = Loaders(train=loader, val=None, test=loader)
    result = runner.run(
        "sis", model, loaders, epochs=0, method_options={"eta": 0.01, "images": 200}, progress=False
    )
    assert result.sparsity > 0.1
    assert not reparam.find(result.model)
    assert result.test_acc is not None


@pytest.mark.parametrize(
    ("options", "match"),
    [
        ({"eta": -0.1}, "eta"),
        ({"eta": 0.01, "solver": "adam"}, "solver"),
        ({"eta": 0.01, "inputs": "both"}, "inputs"),
        ({"eta": 0.01, "images": 0}, "images"),
    ],
)
def test_bad_options_are_refused(options, match):
    with pytest.raises(ValueError, match=match):
        SIS(**options)


def test_calibration_errors_name_the_problem():
    model, loader, _ = small_problem(seed=4)
    with pytest.raises(ValueError, match="unknown layers"):
        SIS({"fc9": 0.1}).calibrate(copy.deepcopy(model), loader)
    with pytest.raises(ValueError, match="holds only 300"):
        SIS(0.1, images=301).calibrate(copy.deepcopy(model), loader)
    masked = copy.deepcopy(model)
    reparam.apply_masks(masked, {"fc1": masked.fc1.weight != 0})
    with pytest.raises(ValueError, match="already has a reparametrisation"):
        SIS(0.1, images=100).calibrate(masked, loader)
    with pytest.raises(ValueError, match="no entry for layer"):
        SIS({"fc1": 0.1}, images=100).calibrate(copy.deepcopy(model), loader)


def test_a_grouped_convolution_is_refused():
    model = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.ReLU())
    with pytest.raises(TypeError, match="grouped"):
        steps(model)


def test_patches_need_numeric_padding():
    conv = nn.Conv2d(1, 2, 3, padding="same")
    step = steps(nn.Sequential(conv))[0]
    with pytest.raises(TypeError, match="zero padding"):
        patches(step, torch.randn(1, 1, 5, 5))
