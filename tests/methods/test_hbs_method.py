"""HBS pruning + fixed-mask retraining end to end on digits, and the export to the HBS format."""

from __future__ import annotations

import pytest
import torch

from sparsitylab import methods, metrics, models, reparam, runner, train
from sparsitylab.deploy.matmul import spmm
from sparsitylab.gemm import gemm_view
from sparsitylab.methods.hbs import HierarchicalBlockPruning, step_decay
from sparsitylab.sparsify.hierarchical import union
from sparsitylab.sparsify.masks import pruned_count


def test_prune_retrain_export(digits):
    trained = runner.run("dense", models.mlp((64, 64, 32, 10)), digits, epochs=1, progress=False)
    method = HierarchicalBlockPruning("4x1/63+1x1/97")
    run = runner.run(
        method,
        trained.model,
        digits,
        epochs=2,
        optimizer=train.SGD(lr=0.0005),
        scheduler=step_decay,
        progress=False,
    )
    assert set(method.level_masks) == {"fc2"}
    assert set(method.skipped) == {"fc1", "fc3"} and "first layer" in method.skipped["fc1"]
    assert "not tiled" in method.skipped["fc3"]
    fc2 = run.model.fc2.weight
    keep = union(method.level_masks["fc2"])
    assert torch.equal(fc2 != 0, keep & (fc2 != 0)) and not reparam.find(run.model)
    kept = 4 * (512 - pruned_count(512, 0.63)) + (2048 - pruned_count(2048, 0.97))  # exact counts
    assert int(keep.sum()) == kept and int(fc2.ne(0).sum()) <= kept
    assert metrics.layer_sparsity(run.model)["fc2"] == pytest.approx(1 - kept / 2048)
    packed = method.export(run.model)["fc2"]
    assert torch.equal(packed.to_dense(), gemm_view(fc2))
    b = torch.randn(64, 5)
    assert torch.allclose(spmm(packed, b, "cpu"), fc2 @ b, atol=1e-5)
    assert method.config == "4x1/63+1x1/97"


def test_step_decay_divides_at_half_and_three_quarters():
    opt = torch.optim.SGD([torch.zeros(1, requires_grad=True)], lr=1.0)
    sched = step_decay(opt, 8)
    lrs = []
    for _ in range(8):
        lrs.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert lrs == pytest.approx([1, 1, 1, 1, 0.1, 0.1, 0.01, 0.01])


def test_registry_and_bad_levels():
    assert isinstance(methods.build("hbs", levels="4x1/60"), HierarchicalBlockPruning)
    with pytest.raises(ValueError, match="not hierarchical"):
        HierarchicalBlockPruning([((4, 1), 0.6), ((2, 2), 0.5)])
