"""The network pass of Wanda, SparseGPT and layer-wise magnitude: each layer gets the rule of
sparsify.posttrain on the inputs of the model pruned so far, convs in the hardware N:M order, and
the model comes back unchanged when a layer fails."""

from __future__ import annotations

import copy

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sparsitylab import methods, reparam, runner
from sparsitylab.methods.posttrain import LayerMagnitude, SparseGPT, Wanda
from sparsitylab.sparsify import posttrain as rules
from sparsitylab.sparsify.masks import nm_mask, topk_mask


def loader_of(x: torch.Tensor, batch: int = 16) -> DataLoader:
    return DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=batch)


def mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Linear(8, 12), nn.ReLU(), nn.Linear(12, 16), nn.ReLU(), nn.Linear(16, 4)
    )


@pytest.mark.parametrize(
    "method, rule",
    [
        (Wanda(0.5, images=32), lambda w, x: w * rules.wanda_keep(w, rules.input_norms(x), 0.5)),
        (SparseGPT(0.5, images=32), lambda w, x: rules.sparsegpt(w, rules.hessian(x), 0.5)[0]),
        (
            SparseGPT(n=2, m=4, images=32),
            lambda w, x: rules.sparsegpt(w, rules.hessian(x), n=2, m=4)[0],
        ),
    ],
    ids=["wanda", "sparsegpt", "sparsegpt-2:4"],
)
def test_every_layer_gets_the_rule_on_inputs_from_the_model_pruned_so_far(method, rule):
    model, x = mlp(), torch.randn(32, 8)
    expected = copy.deepcopy(model)
    with torch.no_grad():  # the pass written out: layer by layer, inputs through pruned layers
        inputs = x
        for i in (0, 2, 4):
            layer = expected[i]
            layer.weight.copy_(rule(layer.weight, inputs))
            inputs = expected[: i + 2](x) if i < 4 else None
    method.calibrate(model, loader_of(x))
    assert reparam.find(model)  # the zeros are held by masks
    for i in (0, 2, 4):
        torch.testing.assert_close(model[i].weight, expected[i].weight, rtol=1e-5, atol=1e-6)
    assert [r.layer for r in method.reports] == ["0", "2", "4"]
    assert all(r.sparsity == pytest.approx(0.5) for r in method.reports)


def test_conv_layers_are_pruned_in_the_hardware_n_m_order():
    torch.manual_seed(1)
    model = nn.Sequential(
        nn.Conv2d(4, 8, 3, padding=1), nn.ReLU(), nn.Conv2d(8, 8, 3), nn.Flatten(), nn.Linear(72, 3)
    )
    x = torch.randn(8, 4, 5, 5)
    for method in (Wanda(n=2, m=4, images=8), SparseGPT(n=2, m=4, images=8)):
        pruned = copy.deepcopy(model)
        method.calibrate(pruned, loader_of(x))
        for i in (0, 2):
            w = pruned[i].weight
            assert torch.equal(w != 0, nm_mask(w, 2, 4, "hwc") & (w != 0))
            assert int((w != 0).sum()) == w.numel() // 2


def test_sparsegpt_on_a_conv_is_sparsegpt_on_its_im2col_gemm():
    torch.manual_seed(2)
    conv = nn.Conv2d(4, 6, 3, padding=1)
    x = torch.randn(6, 4, 5, 5)
    model = nn.Sequential(conv)
    w_hwc = conv.weight.detach().permute(0, 2, 3, 1).reshape(6, -1)
    cols = F.unfold(x, 3, padding=1).transpose(1, 2).reshape(-1, 36)
    cols_hwc = cols.reshape(-1, 4, 3, 3).permute(0, 2, 3, 1).reshape(-1, 36)
    want, _ = rules.sparsegpt(w_hwc, rules.hessian(cols_hwc), 0.5)
    SparseGPT(0.5, images=6).calibrate(model, loader_of(x))
    got = model[0].weight.detach().permute(0, 2, 3, 1).reshape(6, -1)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-6)


def test_the_mask_alone_reconstructs_worse_than_sparsegpt():
    model, x = mlp(), torch.randn(64, 8)
    dense = model(x).detach()
    errors = {}
    for update in (True, False):
        pruned = copy.deepcopy(model)
        method = SparseGPT(0.5, images=64, update=update)
        method.calibrate(pruned, loader_of(x))
        errors[update] = float((pruned(x).detach() - dense).square().sum())
        assert all(r.sparsity == pytest.approx(0.5) for r in method.reports)
    assert errors[True] < errors[False]


def test_a_layer_the_pattern_does_not_tile_stays_dense_and_is_listed():
    model = nn.Sequential(nn.Conv2d(1, 8, 3), nn.Flatten(), nn.Linear(8 * 4 * 4, 4))
    method = Wanda(n=2, m=4, images=4)
    method.calibrate(model, loader_of(torch.randn(4, 1, 6, 6)))
    assert "0" in method.skipped and "not divisible by 4" in method.skipped["0"]
    assert bool((model[0].weight != 0).all())
    assert method.coverage(model)["0.weight"] == method.skipped["0"]
    assert method.coverage(model)["2.weight"] == "covered"


def test_the_runner_drives_every_post_training_method(digits):
    torch.manual_seed(0)
    model = nn.Sequential(nn.Flatten(), nn.Linear(64, 32), nn.ReLU(), nn.Linear(32, 10))
    before = copy.deepcopy(model.state_dict())
    for name in ("layer-magnitude", "wanda", "sparsegpt"):
        run = runner.run(
            name, model, digits, method_options={"sparsity": 0.6, "images": 64}, progress=False
        )
        assert run.sparsity == pytest.approx(0.6, abs=0.01) and not reparam.find(run.model)
        assert run.test_acc is not None
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert {"layer-magnitude", "wanda", "sparsegpt"} <= set(methods.REGISTRY)


def test_a_failing_layer_leaves_the_model_unchanged_and_is_named():
    model = mlp()
    x = torch.randn(32, 8)
    x[:, 1] = x[:, 0]  # rank-deficient inputs: H is singular without dampening
    before = copy.deepcopy(model.state_dict())
    with pytest.raises(ValueError, match="layer '0'.*not positive definite"):
        SparseGPT(0.5, images=32, damp=0.0).calibrate(model, loader_of(x))
    assert all(torch.equal(before[k], v) for k, v in model.state_dict().items())
    assert not reparam.find(model)


@pytest.mark.parametrize(
    "build, match",
    [
        (lambda: Wanda(), "either sparsity"),
        (lambda: Wanda(0.5, n=2, m=4), "either sparsity"),
        (lambda: SparseGPT(1.5), "sparsity"),
        (lambda: SparseGPT(n=4, m=4), "1 ≤ n < m"),
        (lambda: LayerMagnitude(0.5, images=0), "images"),
    ],
)
def test_bad_options_are_named(build, match):
    with pytest.raises(ValueError, match=match):
        build()


def test_an_empty_or_short_calibration_loader_is_named():
    with pytest.raises(ValueError, match="images=16 but the loader holds only 0"):
        Wanda(0.5, images=16).calibrate(mlp(), loader_of(torch.randn(0, 8)))
    with pytest.raises(ValueError, match="could not run on example_input"):
        Wanda(0.5, images=4).calibrate(mlp(), loader_of(torch.randn(8, 5)))


def test_refit_pass_fits_each_layer_to_the_dense_pre_activations_on_pruned_inputs():
    """refit=True written out: per layer, the magnitude mask at that layer's sparsity, then the
    kept weights and the bias refitted to the dense layer's output, on inputs through the layers
    already pruned and refitted."""
    model, x = mlp(), torch.randn(64, 8)
    sparsities = {"0": 0.25, "2": 0.5, "4": 0.75}
    dense, expected = copy.deepcopy(model), copy.deepcopy(model)
    with torch.no_grad():
        for i in (0, 2, 4):
            layer = expected[i]
            inputs = expected[:i](x)
            target = dense[: i + 1](x)
            keep = topk_mask(layer.weight, sparsities[str(i)])
            w, b = rules.refit(layer.weight * keep, layer.bias, keep, inputs, target, damp=0.01)
            layer.weight.copy_(w)
            layer.bias.copy_(b)
    method = LayerMagnitude(sparsities, images=64, refit=True)
    method.calibrate(model, loader_of(x))
    for i in (0, 2, 4):
        torch.testing.assert_close(model[i].weight, expected[i].weight, rtol=1e-5, atol=1e-6)
        torch.testing.assert_close(model[i].bias, expected[i].bias, rtol=1e-5, atol=1e-6)
    assert [round(r.sparsity, 2) for r in method.reports] == [0.25, 0.5, 0.75]
    for report in method.reports:  # the refit never does worse than the masked dense weights
        before, after = report.target_error
        assert after <= before + 1e-7
    plain = LayerMagnitude(sparsities, images=64)
    unrefitted = mlp()
    plain.calibrate(unrefitted, loader_of(x))
    assert all(r.target_error is None for r in plain.reports)
    torch.testing.assert_close(unrefitted[0].bias, dense[0].bias)  # no refit: biases untouched


def test_per_layer_sparsity_must_name_the_pass_layers():
    with pytest.raises(ValueError, match="unknown layers"):
        LayerMagnitude({"0": 0.5, "9": 0.5}, images=16).calibrate(
            mlp(), loader_of(torch.randn(16, 8))
        )
    with pytest.raises(ValueError, match="no entry for layer '2'"):
        LayerMagnitude({"0": 0.5, "4": 0.5}, images=16).calibrate(
            mlp(), loader_of(torch.randn(16, 8))
        )
    with pytest.raises(ValueError, match=r"sparsity\['0'\]"):
        LayerMagnitude({"0": 1.5})
    with pytest.raises(TypeError, match="refit"):
        LayerMagnitude(0.5, refit=1)
    with pytest.raises(ValueError, match="refit_damp"):
        LayerMagnitude(0.5, refit=True, refit_damp=-1.0)


def test_refit_pass_on_a_conv_model_leaves_the_model_unchanged_on_failure():
    torch.manual_seed(0)
    model = nn.Sequential(
        nn.Conv2d(2, 4, 3, padding=1), nn.ReLU(), nn.Flatten(), nn.Linear(4 * 5 * 5, 3)
    )
    x = torch.randn(24, 2, 5, 5)
    method = LayerMagnitude(0.5, images=24, refit=True)  # fc: 50 kept > 24 samples: damped
    before = copy.deepcopy(model)
    method.calibrate(model, loader_of(x))
    with torch.no_grad():  # refitting every layer keeps the outputs close
        dense_out, out = before(x), model(x)
    assert float((out - dense_out).square().mean()) < float(dense_out.square().mean())
    assert [r.target_error[1] <= r.target_error[0] + 1e-7 for r in method.reports] == [True] * 2
    failing = copy.deepcopy(before)
    constant = torch.ones(24, 2, 5, 5)  # every input constant: the undamped refit is singular
    with pytest.raises(ValueError, match="layer '0'"):
        LayerMagnitude(0.5, images=24, refit=True, refit_damp=0.0).calibrate(
            failing, loader_of(constant)
        )
    for a, b in zip(failing.parameters(), before.parameters()):
        torch.testing.assert_close(a, b)
