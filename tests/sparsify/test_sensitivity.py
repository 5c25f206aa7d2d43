"""Sensitivity scan: one layer pruned at a time, model restored, budget rule."""

from __future__ import annotations

import pytest
import torch

from sparsitylab import data, models, reparam, train
from sparsitylab.sparsify.masks import topk_mask
from sparsitylab.sparsify.sensitivity import sensitivity_budget, sensitivity_scan


@pytest.fixture(scope="module")
def trained():
    train.seed_everything(0)
    tr, te = data.load_digits_split()
    net = models.mlp((64, 64, 32, 10))
    train.fit(net, data.make_loader(tr, 64, shuffle=True), 3, progress=False)
    return net, data.make_loader(te, 512)


def test_scan_matches_manual_pruning_and_restores_model(trained):
    net, loader = trained
    before = {k: v.clone() for k, v in net.state_dict().items()}
    scan = sensitivity_scan(net, loader, sparsities=[0.5, 0.95], layers=["fc1", "fc3"])
    assert list(scan.index) == ["fc1", "fc3"] and list(scan.columns) == [0.5, 0.95]
    assert all(torch.equal(before[k], v) for k, v in net.state_dict().items())
    with torch.no_grad():
        net.fc3.weight.mul_(topk_mask(net.fc3.weight, 0.95))
    assert scan.loc["fc3", 0.95] == train.accuracy(net, loader)
    net.load_state_dict(before)
    assert scan.attrs["dense_acc"] == train.accuracy(net, loader)
    assert scan.loc["fc1", 0.95] < scan.loc["fc1", 0.5] <= scan.attrs["dense_acc"] + 0.02


def test_budget_rule_picks_largest_within_tolerance():
    import pandas as pd

    scan = pd.DataFrame({0.4: [0.90, 0.89], 0.8: [0.89, 0.70]}, index=["a", "b"])
    scan.attrs["dense_acc"] = 0.90
    assert sensitivity_budget(scan, 0.01) == {"a": 0.8, "b": 0.4}
    assert sensitivity_budget(scan, 0.0) == {"a": 0.4, "b": 0.0}
    with pytest.raises(ValueError, match="max_drop"):
        sensitivity_budget(scan, -0.1)


def test_bad_arguments_raise(trained):
    net, loader = trained
    with pytest.raises(ValueError, match="not prunable"):
        sensitivity_scan(net, loader, layers=["conv1"])
    with pytest.raises(ValueError, match="empty"):
        sensitivity_scan(net, loader, sparsities=[])
    with pytest.raises(ValueError, match="sparsity"):
        sensitivity_scan(net, loader, sparsities=[1.2])
    masked = models.mlp((64, 64, 32, 10))
    reparam.apply_masks(masked, {"fc1": torch.ones(64, 64, dtype=torch.bool)})
    with pytest.raises(ValueError, match="reparametrised"):
        sensitivity_scan(masked, loader, layers=["fc1"])
