"""bench graph: its parts on tiny models (the full run builds a ResNet-50)."""

from __future__ import annotations

import json

import torch
from torch import nn

from sparsitylab import cli
from sparsitylab.benchmarks import graph as bench
from sparsitylab.metrics import count_macs


def tiny() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(
        nn.Conv2d(3, 16, 3, padding=1),
        nn.BatchNorm2d(16),
        nn.ReLU(),
        nn.Conv2d(16, 16, 3, padding=1),
        nn.ReLU(),
        nn.AdaptiveAvgPool2d(1),
        nn.Flatten(),
        nn.Linear(16, 10),
    ).eval()


def test_matched_pruning_reaches_the_macs_and_stays_exact():
    x = torch.randn(4, 3, 8, 8)
    masked, small, ratio, sparsity = bench.matched(tiny(), x, 0.5, steps=8)
    assert abs(ratio - 0.5) < 0.1 and 0 < sparsity < 1
    assert count_macs(small, x[:1]).dense < count_macs(masked, x[:1]).dense
    assert torch.allclose(small(x), masked(x), atol=1e-5)


def test_main_writes_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "resnet50", tiny)
    monkeypatch.setattr(bench, "small_resnet", tiny)
    monkeypatch.setattr(bench, "small_vit", tiny)
    monkeypatch.setattr(bench.torch, "randn", lambda *shape, **kw: torch.ones(shape[0], 3, 8, 8))
    path = tmp_path / "graph.json"
    assert cli.main(["bench", "graph", "--repeats", "1", "--json", str(path)]) == 0
    saved = json.loads(path.read_text())
    assert saved["cost"]["total_forwards"] > 0 and set(saved["speed"]) == {
        "ResNet-18 (64×64)",
        "ViT-Tiny (64×64)",
    }
    assert "forward passes" in capsys.readouterr().out
