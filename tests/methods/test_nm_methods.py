"""N:M methods end to end on digits: SR-STE / STE from scratch and the ASP recipe, through the
runner; the exported 2:4 layers multiply back to the masked outputs."""

from __future__ import annotations

import pytest
import torch

from sparsitylab import methods, models, reparam, runner, train
from sparsitylab.callbacks import MaskDivergence
from sparsitylab.deploy.emulation import EmulatedBackend
from sparsitylab.deploy.formats import Sparse24
from sparsitylab.deploy.matmul import layer_forward
from sparsitylab.gemm import gemm_view
from sparsitylab.methods.nm import ASP, NMSparsity
from sparsitylab.reparam.nm import NMMask, current_masks


def small_convnet():
    return models.convnet_bn(widths=(8, 16, 32))  # conv1 has one input channel: stays dense


def groups_of(weight, m=4, order="hwc"):
    return gemm_view(weight, order).reshape(-1, m)


def assert_n_of_m(model, plans, n=2, m=4):
    layers = dict(model.named_modules())
    for name, p in plans.items():
        weight = layers[name].weight
        if p.sparse:
            assert (groups_of(weight, m, p.order).ne(0).sum(-1) <= n).all(), name
        else:
            assert weight.ne(0).all(), name


@pytest.mark.parametrize("decay", [0.0, 2e-4])
def test_from_scratch_keeps_n_of_m_and_finalize_equals_trained(digits, decay):
    method = NMSparsity(2, 4, decay=decay)
    sad = MaskDivergence(current_masks)
    run = runner.run(
        method,
        small_convnet(),
        digits,
        epochs=2,
        optimizer=train.SGD(lr=0.05),
        callbacks=[sad],
        progress=False,
    )
    assert method.sparse_layers() == ["conv2", "conv3", "fc"]
    assert_n_of_m(run.model, method.plans)
    assert not reparam.find(run.model) and reparam.find(run.trained, NMMask)
    x = next(iter(digits.test))[0]
    with torch.no_grad():
        assert torch.allclose(run.model(x), run.trained(x), atol=1e-6)
    assert run.test_acc > 0.7  # 2 epochs on digits
    assert len(sad.epochs) == 3 and "sad_epoch" in run.history.records[0]
    assert sum(c for _, counts in sad.steps for c in counts.values()) == sum(
        r["sad_steps"] for r in run.history.records
    )


def test_sr_ste_flips_fewer_mask_bits_than_ste_at_a_strong_decay(digits):
    """SR-STE's decay pulls pruned weights toward 0, away from the kept ones: fewer flips."""
    flips = {}
    for decay in (0.0, 0.05):
        sad = MaskDivergence(current_masks)
        runner.run(
            NMSparsity(2, 4, decay=decay),
            models.mlp((64, 64, 32, 10)),
            digits,
            epochs=3,
            callbacks=[sad],
            progress=False,
        )
        flips[decay] = sum(c for _, counts in sad.steps for c in counts.values())
    assert flips[0.05] < 0.8 * flips[0.0], flips  # measured: 934 vs 1646 flips


def test_asp_trains_dense_then_fixes_one_shot_masks(digits):
    method = ASP()
    run = runner.run(method, small_convnet(), digits, epochs=1, finetune_epochs=1, progress=False)
    assert method.pruned and reparam.get_masks(run.trained).keys() == {"conv2", "conv3", "fc"}
    assert_n_of_m(run.model, method.plans)
    dense_stage = [r["sparsity"] for r in run.history.records if r["stage"] == "train"]
    assert dense_stage == [0.0]


def test_asp_prunes_the_trained_weights_by_magnitude(digits):
    trained = runner.run("dense", models.mlp((64, 64, 32, 10)), digits, epochs=1, progress=False)
    method = ASP()
    method.prepare(trained.model)
    final = method.finalize(trained.model)  # no re-training: one-shot masks only
    for name in ("fc1", "fc2", "fc3"):
        w = trained.model.get_submodule(name).weight
        keep = torch.zeros_like(w, dtype=torch.bool)
        top2 = w.abs().reshape(-1, 4).topk(2, dim=-1).indices
        keep.view(-1, 4).scatter_(-1, top2, True)
        assert torch.equal(final.get_submodule(name).weight, w * keep), name


def test_asp_rule_skips_what_nvidia_asp_skips():
    method = ASP(asp_rule=True)
    method.prepare(models.mlp())
    assert method.sparse_layers() == []
    method.prepare(models.convnet_bn())
    assert method.sparse_layers() == ["conv2", "conv3"]


def test_registry_builds_both_and_checks_options():
    assert isinstance(methods.build("nm", n=1, m=4, decay=0.0), NMSparsity)
    assert isinstance(methods.build("asp", first_dense=True), ASP)
    with pytest.raises(ValueError, match="policy"):
        NMSparsity(policy="pad").prepare(models.mlp())
    with pytest.raises(ValueError, match="n=5, m=4"):
        ASP(5, 4)


def test_freeze_turns_dynamic_masks_into_fixed_ones(digits):
    method = NMSparsity()
    net = method.prepare(models.mlp((64, 64, 32, 10)))
    before = current_masks(net)
    method.freeze(net)
    assert not reparam.find(net, NMMask)
    assert reparam.get_masks(net).keys() == before.keys()
    for name, keep in reparam.get_masks(net).items():
        assert torch.equal(keep, before[name])


@pytest.mark.parametrize("backend", ["cpu", "emulated"])
def test_trained_2_4_layers_export_and_multiply_back(digits, backend):
    run = runner.run(NMSparsity(), small_convnet(), digits, epochs=1, progress=False)
    be = EmulatedBackend() if backend == "emulated" else "cpu"
    for name, inputs in (("conv3", torch.randn(3, 16, 4, 4)), ("fc", torch.randn(5, 32))):
        layer = run.model.get_submodule(name)
        packed = Sparse24.from_weight(layer.weight)
        assert torch.equal(packed.to_dense(), gemm_view(layer.weight, "hwc"))
        with torch.no_grad():
            assert torch.allclose(
                layer_forward(packed, layer, inputs, be), layer(inputs), atol=1e-5
            )
