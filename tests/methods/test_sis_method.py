"""The SIS network pass: the problems it finds in the book's models, BatchNorm folding and writing
back, im2col patches, calibration on a tiny trained model (Θ ≤ η, exact zeros, η = 0 keeps the
outputs, reloading, the runner end to end) and bad options."""

from __future__ import annotations

import copy
import io

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sparsitylab import data, methods, models, reparam, runner
from sparsitylab.methods.sis import SIS, calibration_images
from sparsitylab.methods.sis_steps import folded, patches, plan_steps, rows, steps, write_back

# --- the problems of a model ---------------------------------------------------------------------


@pytest.mark.parametrize(
    "build, expected",
    [
        (models.mlp, [("fc1", "relu", False), ("fc2", "relu", False), ("fc3", "softmax", False)]),
        (
            lambda: models.mlp(activation="sigmoid"),
            [("fc1", "sigmoid", False), ("fc2", "sigmoid", False), ("fc3", "softmax", False)],
        ),
        (
            models.lenet5,
            [
                ("conv1", "identity", False),
                ("conv2", "identity", False),
                ("fc1", "relu", False),
                ("fc2", "softmax", False),
            ],
        ),
        (
            models.convnet_bn,
            [
                ("conv1", "relu", True),
                ("conv2", "relu", True),
                ("conv3", "relu", True),
                ("fc", "softmax", False),
            ],
        ),
    ],
)
def test_steps_of_the_book_models(build, expected):
    model = build()
    found = steps(model)
    assert [(s.name, s.activation, s.batchnorm is not None) for s in found] == expected
    children = dict(model.named_children())
    for s in found:
        assert s.layer is children[s.name]
        if s.batchnorm is not None:
            assert s.batchnorm is children[s.batchnorm_name]
    assert steps(model, last="identity")[-1].activation == "identity"


def test_steps_walk_any_model_and_say_what_they_skip():
    found, skipped = plan_steps(models.resnet20(), torch.randn(1, 1, 28, 28))
    names = [s.name for s in found]
    assert names[0] == "stem.conv" and names[-1] == "head.fc" and len(names) == 20
    assert found[0].batchnorm_name == "stem.bn" and found[0].activation == "relu"
    # a branch's last conv feeds its BatchNorm, whose output goes into the residual add
    second = next(s for s in found if s.name == "blocks.s1b1.branch.conv2")
    assert second.batchnorm_name == "blocks.s1b1.branch.bn2" and second.activation == "identity"
    assert found[-1].activation == "softmax" and not skipped
    grouped = nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.ReLU(), nn.Flatten(), nn.Linear(16, 2))
    found, skipped = plan_steps(grouped, torch.randn(1, 4, 4, 4))
    assert [s.name for s in found] == ["3"] and "grouped" in skipped["0"]
    with pytest.raises(ValueError, match="grouped"):
        steps(nn.Sequential(nn.Conv2d(4, 4, 3, groups=2), nn.ReLU()), torch.randn(1, 4, 5, 5))
    with pytest.raises(ValueError, match="no Linear, Conv1D or Conv2d"):
        steps(nn.Sequential(nn.ReLU(), nn.Flatten()), torch.randn(1, 3))


class BatchNormAct(nn.BatchNorm2d):
    """timm's BatchNormAct2d: a BatchNorm that applies its activation inside its own forward."""

    def __init__(self, channels: int):
        super().__init__(channels)
        self.act = nn.SiLU()

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.act(super().forward(x))


def test_a_layer_read_inside_a_module_is_no_output_layer():
    model = nn.Sequential(
        nn.Conv2d(1, 4, 3), BatchNormAct(4), nn.Flatten(), nn.Linear(4 * 4 * 4, 3)
    ).eval()
    found, _ = plan_steps(model, torch.randn(1, 1, 6, 6))
    assert [(s.name, s.activation) for s in found] == [("0", "identity"), ("3", "softmax")]


class TiedHead(nn.Module):
    """A language model's shape: the output layer shares its weight with the embedding table."""

    def __init__(self):
        super().__init__()
        self.embed = nn.Embedding(12, 6)
        self.hidden = nn.Linear(6, 6)
        self.head = nn.Linear(6, 12, bias=False)
        self.head.weight = self.embed.weight

    def forward(self, ids: torch.Tensor) -> torch.Tensor:
        return self.head(torch.relu(self.hidden(self.embed(ids))))


def test_a_layer_tied_to_an_embedding_table_is_kept_and_the_table_untouched():
    model = TiedHead()
    ids = torch.randint(0, 12, (4, 5))
    found, skipped = plan_steps(model, ids)
    assert [s.name for s in found] == ["hidden"] and "embedding" in skipped["head"]
    table = model.embed.weight.detach().clone()
    loaders = data.Loaders(
        train=DataLoader(TensorDataset(ids, torch.randint(0, 12, (4, 5))), batch_size=4),
        val=None,
        test=None,
    )
    method = SIS(0.3, images=4, max_iter=50)
    run = runner.run(method, model, loaders, progress=False)
    assert torch.equal(run.model.embed.weight, table)
    assert run.coverage["embed.weight"].startswith("embedding table")
    assert run.coverage["hidden.weight"] == "covered"


def test_a_conv1d_layer_gets_the_solution_of_the_same_linear_layer():
    conv1d = pytest.importorskip("transformers.pytorch_utils").Conv1D
    torch.manual_seed(0)
    linear = nn.Sequential(nn.Linear(8, 6), nn.ReLU(), nn.Linear(6, 3))
    transposed = nn.Sequential(conv1d(6, 8), nn.ReLU(), conv1d(3, 6))
    with torch.no_grad():
        for a, b in ((linear[0], transposed[0]), (linear[2], transposed[2])):
            b.weight.copy_(a.weight.t())
            b.bias.copy_(a.bias)
    x = torch.randn(32, 8)
    loader = DataLoader(TensorDataset(x, torch.randint(0, 3, (32,))), batch_size=32)
    solved = {}
    for name, model in (("linear", linear), ("conv1d", transposed)):
        method = SIS(0.2, images=32, max_iter=200)
        method.calibrate(model, loader)
        solved[name] = reparam.remove(model)
        assert [s.activation for s in steps(model, x[:1])] == ["relu", "softmax"]
    for i in (0, 2):
        a, b = solved["linear"][i], solved["conv1d"][i]
        assert torch.allclose(a.weight, b.weight.t(), atol=1e-6)
        assert torch.equal(a.weight == 0, b.weight.t() == 0) and bool((a.weight == 0).any())


# --- folding, writing back, patches --------------------------------------------------------------


def trained_looking_convnet(seed: int = 0) -> nn.Sequential:
    """A small ConvNet-BN in eval mode with non-trivial BN statistics and affine parameters."""
    torch.manual_seed(seed)
    model = models.convnet_bn(widths=(4, 6, 8))
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                c = module.num_features
                module.weight.copy_(torch.randn(c))
                module.bias.copy_(torch.randn(c))
                module.running_mean.copy_(torch.randn(c))
                module.running_var.copy_(torch.rand(c) + 0.5)
    return model.eval()


def test_folded_then_write_back_unchanged_is_exact():
    model = trained_looking_convnet()
    x = torch.randn(3, 1, 8, 8)
    before = model(x)
    for step in steps(model):
        write_back(step, *folded(step))
    assert torch.allclose(model(x), before, atol=1e-5)


def test_write_back_keeps_zeros_exact_and_computes_the_folded_map():
    model = trained_looking_convnet(1)
    step = steps(model)[0]
    w, b, scale = folded(step)
    assert torch.allclose(scale, step.batchnorm.weight / (step.batchnorm.running_var + 1e-5).sqrt())
    zeros = torch.rand(w.shape, generator=torch.Generator().manual_seed(0)) < 0.5
    w = w.masked_fill(zeros, 0.0)
    b = b + 0.1
    write_back(step, w, b, scale)
    assert torch.equal(step.layer.weight.reshape(w.shape) == 0, zeros)
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        u = step.batchnorm(step.layer(x))  # BN(conv(x)) with the written weights …
        gemm = patches(step, x) @ w.T + b  # … is W x + b on the patches
    assert torch.allclose(rows(step, u), gemm, atol=1e-5)


def test_write_back_scale_zero_channel_outputs_the_bias():
    model = trained_looking_convnet(2)
    step = steps(model)[1]
    with torch.no_grad():
        step.batchnorm.weight[3] = 0.0
    w, b, scale = folded(step)
    assert (w[3] == 0).all() and scale[3] == 0
    write_back(step, w, b, scale)
    assert (step.layer.weight[3] == 0).all()
    x = torch.randn(2, 4, 8, 8)
    with torch.no_grad():
        assert torch.allclose(step.batchnorm(step.layer(x))[:, 3], b[3].expand(2, 8, 8), atol=1e-6)


def test_write_back_layer_without_bias_or_batchnorm():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(8, 6, bias=False), nn.ReLU(), nn.Linear(6, 3))
    x = torch.randn(40, 8)
    SIS(0.1, images=40).calibrate(model, DataLoader(TensorDataset(x), batch_size=16))


@pytest.mark.parametrize(
    "conv",
    [
        dict(in_channels=3, out_channels=5, kernel_size=3),
        dict(in_channels=2, out_channels=4, kernel_size=(3, 2), stride=2, padding=1),
        dict(in_channels=2, out_channels=3, kernel_size=3, dilation=2, padding=(2, 1), bias=False),
        dict(in_channels=2, out_channels=3, kernel_size=(5, 3), padding="same"),
        dict(in_channels=2, out_channels=3, kernel_size=3, padding="valid"),
    ],
)
def test_patches_times_the_gemm_matrix_is_the_convolution(conv):
    torch.manual_seed(0)
    layer = nn.Conv2d(**conv)
    step = steps(nn.Sequential(layer))[0]
    x = torch.randn(2, conv["in_channels"], 9, 7)
    w, b, _ = folded(step)
    with torch.no_grad():
        expected = F.conv2d(
            x, layer.weight, layer.bias, layer.stride, layer.padding, layer.dilation
        )
        got = patches(step, x) @ w.T + b
    n, c, h, wd = expected.shape
    assert torch.allclose(got.reshape(n, h, wd, c).permute(0, 3, 1, 2), expected, atol=1e-5)
    assert torch.equal(rows(step, expected), expected.permute(0, 2, 3, 1).reshape(-1, c))


def test_patches_of_a_linear_layer_flatten_and_uneven_padding_is_refused():
    step = steps(nn.Sequential(nn.Linear(12, 3)))[0]
    x = torch.randn(4, 5, 12)  # a batch of sequences: every position is a sample
    assert torch.equal(patches(step, x), x.reshape(20, 12))
    same = nn.Sequential(nn.Conv2d(1, 2, 2, padding="same"), nn.Flatten(), nn.Linear(50, 2))
    found, skipped = plan_steps(same, torch.randn(1, 1, 5, 5))
    assert [s.name for s in found] == ["2"] and "zero padding" in skipped["0"]  # kept, reported
    step = type(found[0])("0", same[0], None, "identity")
    with pytest.raises(TypeError, match="zero padding"):
        patches(step, torch.randn(1, 1, 5, 5))


# --- calibration on a tiny trained model ---------------------------------------------------------

IMAGES = 96


@pytest.fixture(scope="module")
def digits_split():
    return data.load_digits_split()


@pytest.fixture(scope="module")
def trained_state(digits_split):
    """A (64, 32, 16, 10) MLP trained for 20 SGD steps on digits (seconds on one core)."""
    torch.manual_seed(0)
    model = models.mlp((64, 32, 16, 10))
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    loader = data.make_loader(digits_split[0], 64, shuffle=True)
    for i, (x, y) in enumerate(loader):
        loss = F.cross_entropy(model(x), y)
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        if i == 19:
            break
    return copy.deepcopy(model.state_dict())


def trained(state, sizes=(64, 32, 16, 10)):
    model = models.mlp(sizes)
    model.load_state_dict(state)
    return model


def calibration(split, images: int = IMAGES) -> tuple[DataLoader, torch.Tensor]:
    loader = data.make_loader(split, 32)
    return loader, calibration_images(loader, images)


def zero_share(model: nn.Module, layer: str) -> float:
    return float((getattr(model, layer).weight == 0).float().mean())


def test_calibrate_reports_feasible_budgets_and_exact_zeros(trained_state, digits_split):
    model = trained(trained_state).train()
    loader, x = calibration(digits_split[0])
    method = SIS(0.05, images=IMAGES)
    method.calibrate(model, loader)
    assert model.training  # the mode is restored
    assert [r.layer for r in method.reports] == ["fc1", "fc2", "fc3"]
    assert [r.activation for r in method.reports] == ["relu", "relu", "softmax"]
    for r in method.reports:
        assert r.theta <= r.eta * (1 + 1e-6)
        assert r.eta == pytest.approx(r.theta_dense + 0.05 * r.theta_zero)
        assert r.output_error <= r.theta * (1 + 1e-4) + 1e-6  # the bound Θ on the output error
        assert r.rows == IMAGES and r.solver == "majorise-minimise"
        assert r.shape == tuple(getattr(model, r.layer).weight.shape)
        assert zero_share(model, r.layer) == r.sparsity
        assert set(r.row()) >= {"layer", "eta", "theta", "sparsity", "converged"}
        assert method.solutions[r.layer].theta == r.theta
    assert sum(r.sparsity for r in method.reports) > 0


def test_calibrate_eta_zero_dense_inputs_keeps_the_outputs(trained_state, digits_split):
    model = trained(trained_state).eval()
    dense = copy.deepcopy(model)
    loader, x = calibration(digits_split[0])
    method = SIS(0.0, images=IMAGES, inputs="dense")
    method.calibrate(model, loader)
    assert all(r.theta <= r.eta * (1 + 1e-6) + 1e-12 for r in method.reports)
    with torch.no_grad():
        assert torch.allclose(model(x), dense(x), atol=1e-5)
        hidden = model.relu1(model.fc1(model.flatten(x)))
        assert torch.allclose(hidden, dense.relu1(dense.fc1(dense.flatten(x))), atol=1e-5)


def test_larger_eta_gives_at_least_the_sparsity(trained_state, digits_split):
    overall = []
    for eta in (0.01, 0.05, 0.2):
        model = trained(trained_state)
        method = SIS(eta, images=IMAGES)
        method.calibrate(model, calibration(digits_split[0])[0])
        zeros = sum(int((getattr(model, r.layer).weight == 0).sum()) for r in method.reports)
        overall.append(zeros / sum(getattr(model, r.layer).weight.numel() for r in method.reports))
    assert overall == sorted(overall) and overall[-1] > overall[0], overall


def test_calibrated_model_reloads_and_keeps_its_zeros(trained_state, digits_split):
    model = trained(trained_state)
    method = SIS(0.05, images=IMAGES)
    loader, x = calibration(digits_split[0])
    method.calibrate(model, loader)
    model.eval()
    with torch.no_grad():
        expected = model(x)
    final = method.finalize(model).eval()  # plain weights with exact zeros
    assert not reparam.find(final)
    buffer = io.BytesIO()
    torch.save(final.state_dict(), buffer)
    buffer.seek(0)
    fresh = models.mlp((64, 32, 16, 10)).eval()
    fresh.load_state_dict(torch.load(buffer, weights_only=True))
    with torch.no_grad():
        assert torch.equal(fresh(x), final(x))
        assert torch.allclose(final(x), expected, atol=1e-6)
    masked = reparam.load_state_dict(models.mlp((64, 32, 16, 10)), model.state_dict()).eval()
    with torch.no_grad():
        assert torch.equal(masked(x), expected)
    for r in method.reports:
        assert zero_share(fresh, r.layer) == r.sparsity


def test_zeros_survive_training_after_calibration(trained_state, digits_split):
    model = trained(trained_state)
    method = SIS(0.1, images=IMAGES)
    method.calibrate(model, calibration(digits_split[0])[0])
    zeros = {r.layer: getattr(model, r.layer).weight == 0 for r in method.reports}
    optimizer = torch.optim.SGD(model.parameters(), lr=0.1)
    for x, y in data.make_loader(digits_split[0], 64):
        optimizer.zero_grad()
        F.cross_entropy(model(x), y).backward()
        optimizer.step()
    for layer, mask in zeros.items():
        assert (getattr(model, layer).weight[mask] == 0).all(), layer


def test_sigmoid_mlp_and_primal_dual(digits_split):
    torch.manual_seed(0)
    model = models.mlp((64, 16, 10), activation="sigmoid")
    method = SIS(0.05, images=64, solver="primal-dual", max_iter=3000)
    method.calibrate(model, calibration(digits_split[0], 64)[0])
    assert [r.activation for r in method.reports] == ["sigmoid", "softmax"]
    for r in method.reports:
        assert r.solver == "primal-dual"
        assert r.theta <= r.eta * (1 + 1e-2)
        assert r.output_error <= r.theta * (1 + 1e-4) + 1e-6
        assert zero_share(model, r.layer) == r.sparsity


def test_convnet_bn_calibration(digits_split):
    torch.manual_seed(0)
    model = models.convnet_bn(widths=(4, 6, 8))
    model.train()
    with torch.no_grad():  # BN running statistics from a few batches
        for x, _ in data.make_loader(digits_split[0], 64):
            model(x)
    model.eval()
    dense = copy.deepcopy(model)
    loader, x = calibration(digits_split[0], 24)
    method = SIS(0.1, images=24, max_rows=1000)
    method.calibrate(model, loader)
    assert [(r.layer, r.activation) for r in method.reports] == [
        ("conv1", "relu"),
        ("conv2", "relu"),
        ("conv3", "relu"),
        ("fc", "softmax"),
    ]
    assert [r.rows for r in method.reports] == [1000, 1000, 24 * 16, 24]  # 8×8, 8×8, 4×4, 1
    for r in method.reports:
        assert r.theta <= r.eta * (1 + 1e-6)
        assert zero_share(model, r.layer) == r.sparsity
    assert sum(r.sparsity for r in method.reports) > 0
    exact = copy.deepcopy(dense)
    SIS(0.0, images=24, inputs="dense").calibrate(exact, loader)
    with torch.no_grad():
        assert torch.allclose(exact(x), dense(x), atol=1e-5)


def test_runner_drives_sis_end_to_end(trained_state, digits):
    model = trained(trained_state)
    before = copy.deepcopy(model.state_dict())
    run = runner.run(
        "sis",
        model,
        digits,
        epochs=0,
        method_options={"eta": 0.05, "images": IMAGES},
        progress=False,
    )
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())  # a copy
    assert run.method == "sis" and run.test_acc is not None
    assert 0 < run.sparsity < 1 and not reparam.find(run.model)
    for layer in ("fc1", "fc2", "fc3"):
        assert run.layer_sparsity[layer] == pytest.approx(zero_share(run.model, layer))
    trained_on = runner.run(
        "sis",
        model,
        digits,
        epochs=1,
        max_steps=3,
        method_options={"eta": 0.05, "images": IMAGES},
        progress=False,
    )
    # what this run's calibration zeroed (it drew the loader's next images: other zeros)
    masks = reparam.get_masks(trained_on.trained)
    assert set(masks) == {"fc1", "fc2", "fc3"}
    for layer, keep in masks.items():  # the zeros are held through training
        assert (getattr(trained_on.model, layer).weight[~keep] == 0).all(), layer
        assert 0 < float((~keep).float().mean()) <= zero_share(trained_on.model, layer)


# --- bad options ---------------------------------------------------------------------------------


def test_bad_options_raise_clear_errors(trained_state, digits_split):
    with pytest.raises(ValueError, match="eta"):
        SIS(-0.1)
    with pytest.raises(ValueError, match=r"eta\['fc1'\]"):
        SIS({"fc1": -1.0})
    with pytest.raises(TypeError, match="eta"):
        SIS("0.1")
    with pytest.raises(ValueError, match="solver"):
        SIS(solver="admm")
    with pytest.raises(ValueError, match="inputs"):
        SIS(inputs="noisy")
    with pytest.raises(ValueError, match="last"):
        SIS(last="relu")
    with pytest.raises(ValueError, match="images"):
        SIS(images=0)
    with pytest.raises(ValueError, match="method name"):
        methods.build("sis-typo")
    assert isinstance(methods.build("sis", eta=0.1), SIS)
    loader = calibration(digits_split[0])[0]
    model = trained(trained_state)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match=r"unknown layers \['fc9'\]"):
        SIS({"fc1": 0.1, "fc2": 0.1, "fc3": 0.1, "fc9": 0.1}, images=IMAGES).calibrate(
            model, loader
        )
    with pytest.raises(ValueError, match=r"images=100000 but the loader holds only \d+"):
        SIS(images=100_000).calibrate(model, loader)
    grouped = nn.Sequential(nn.Flatten(), nn.Unflatten(1, (4, 4, 4)), nn.Conv2d(4, 4, 3, groups=2))
    with pytest.raises(ValueError, match="no Linear, Conv1D or Conv2d layer SIS can .*grouped"):
        SIS(images=IMAGES).calibrate(grouped, loader)
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    SIS(0.05, images=IMAGES).calibrate(model, loader)
    with pytest.raises(ValueError, match="reparametrisation"):
        SIS(0.05, images=IMAGES).calibrate(model, loader)  # calibrated already: masked


def test_incomplete_eta_mapping_fails_before_changing_the_model(trained_state, digits_split):
    model = trained(trained_state)
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="no entry for layer 'fc2'"):
        SIS({"fc1": 0.1}, images=IMAGES).calibrate(model, calibration(digits_split[0])[0])
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())


def test_per_layer_target_sparsities(trained_state, digits_split):
    model = trained(trained_state)
    targets = {"fc1": 0.7, "fc2": 0.4, "fc3": 0.2}
    method = SIS(sparsity=targets, images=IMAGES)
    method.calibrate(model, calibration(digits_split[0])[0])
    for r in method.reports:
        assert abs(zero_share(model, r.layer) - targets[r.layer]) <= 0.01, r
        assert r.eta == r.theta  # the tolerance at which the layer reaches its target
        assert r.output_error <= r.theta * (1 + 1e-4) + 1e-6
    with pytest.raises(ValueError, match="solver='fista'"):
        SIS(sparsity=0.5, solver="primal-dual")
    with pytest.raises(ValueError, match="no entry for layer 'fc2'"):
        SIS(sparsity={"fc1": 0.5, "fc3": 0.5}, images=IMAGES).calibrate(
            trained(trained_state), calibration(digits_split[0])[0]
        )
    with pytest.raises(ValueError, match="unknown layers"):
        SIS(sparsity={"fc9": 0.5}, images=IMAGES).calibrate(
            trained(trained_state), calibration(digits_split[0])[0]
        )
