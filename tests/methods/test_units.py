"""Post-training head and MLP-unit pruning: the contribution importance against a unit-by-unit
computation, masks on every tensor of a removed unit, exact compaction, the runner end to end."""

from __future__ import annotations

import copy

import pytest
import torch
from torch import nn
from torch.utils.data import DataLoader, TensorDataset

from sparsitylab import runner
from sparsitylab.methods.units import UnitPruning, contributions, reader_inputs

transformers = pytest.importorskip("transformers")


def vit() -> nn.Module:
    torch.manual_seed(0)
    config = transformers.ViTConfig(
        image_size=8, patch_size=4, num_channels=1, num_labels=3, hidden_size=16,
        num_hidden_layers=2, num_attention_heads=4, intermediate_size=24,
    )  # fmt: skip
    return transformers.ViTForImageClassification(config).eval()


def loader_of(x: torch.Tensor) -> DataLoader:
    return DataLoader(TensorDataset(x, torch.zeros(len(x), dtype=torch.long)), batch_size=8)


def test_importance_is_the_norm_of_each_units_output_contribution():
    model, x = vit(), torch.randn(6, 1, 8, 8)
    method = UnitPruning(0.5, images=6)
    method.prepare(model, x[:2])
    groups = method.channels.groups
    assert sum(g.heads for g in groups.values()) == 2 and len(groups) == 4
    readers = sorted({m.module for g in groups.values() for m in g.of("reads")})
    inputs = reader_inputs(model, readers, x)
    for group in groups.values():
        (member,) = group.of("reads")
        w = model.get_submodule(member.module).weight.detach()
        index = group.unit_slices(member)
        by_hand = torch.stack(
            [torch.linalg.matrix_norm(inputs[member.module][:, i] @ w[:, i].T) for i in index]
        )
        torch.testing.assert_close(
            contributions(model, group, inputs), by_hand, rtol=1e-4, atol=1e-5
        )


@pytest.mark.parametrize(
    "kinds, heads, units", [("heads", 2, 24), ("units", 4, 12), ("all", 2, 12)]
)
def test_the_lowest_units_are_removed_and_compaction_is_exact(kinds, heads, units):
    model, x = vit(), torch.randn(8, 1, 8, 8)
    method = UnitPruning(0.5, kinds=kinds, images=8)
    pruned = method.prepare(copy.deepcopy(model), x[:2])
    method.calibrate(pruned, loader_of(x))
    final = method.finalize(pruned)
    small = method.compact(final, x[:2])
    torch.testing.assert_close(small(x).logits, final(x).logits, rtol=1e-5, atol=1e-5)
    for layer in small.vit.layers:
        assert layer.mlp.fc1.out_features == units
        assert layer.attention.q_proj.out_features == heads * 4
    for name, importance in method.importance.items():  # the kept units are the most important
        group = method.channels.groups[name]
        producer = final.get_submodule(group.producers[0].module).weight
        alive = producer.detach().abs().sum(1)[group.unit_slices(group.producers[0])].sum(1) > 0
        assert importance[alive].min() >= importance[~alive].max()


def test_the_runner_drives_unit_pruning():
    model, x = vit(), torch.randn(16, 1, 8, 8)
    loaders = type("L", (), {"train": loader_of(x), "test": loader_of(x)})()
    run = runner.run("units", model, loaders, method_options={"sparsity": 0.5, "images": 16},
                     progress=False)  # fmt: skip
    assert run.compacted is not None
    assert sum(p.numel() for p in run.compacted.parameters()) < sum(
        p.numel() for p in model.parameters()
    )


def test_a_model_without_linear_readers_is_refused_with_the_reason():
    model = nn.Sequential(nn.Conv2d(1, 4, 3), nn.ReLU(), nn.Conv2d(4, 2, 3))
    with pytest.raises(ValueError, match="no all group whose readers are Linear"):
        UnitPruning(0.5).prepare(model, torch.randn(1, 1, 6, 6))


def test_bad_options_are_named():
    with pytest.raises(ValueError, match="kinds"):
        UnitPruning(0.5, kinds="neurons")
    with pytest.raises(ValueError, match="sparsity"):
        UnitPruning(1.5)
