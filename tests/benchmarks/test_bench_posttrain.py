"""bench posttrain: its parts on small layers (the full run prunes 768 × 3072 GEMMs)."""

from __future__ import annotations

import json

import torch

from sparsitylab import cli
from sparsitylab.benchmarks import posttrain as bench


def test_every_rule_prunes_its_share():
    w, x = torch.randn(8, 16), torch.randn(32, 16)
    for name, call in bench.rules_for(w, x).items():
        result = call()
        pruned = result[0] if isinstance(result, tuple) else result
        assert int((pruned == 0).sum()) == w.numel() // 2, name


def test_peak_memory_sees_a_large_allocation():
    mb = bench.peak_memory_mb(lambda: torch.ones(64 * 2**20 // 4).add_(1))
    assert mb is None or mb >= 50  # a 64 MB tensor (None: no /proc on this system)


def test_main_writes_json(tmp_path, monkeypatch, capsys):
    monkeypatch.setattr(bench, "SHAPES", ((8, 32), (32, 8)))
    monkeypatch.setattr(bench, "TOKENS", 64)
    path = tmp_path / "posttrain.json"
    assert cli.main(["bench", "posttrain", "--repeats", "1", "--json", str(path)]) == 0
    saved = json.loads(path.read_text())
    assert set(saved["layers"]) == {
        f"{m} {p} {s}"
        for m in ("magnitude", "wanda", "sparsegpt")
        for p in ("50%", "2:4")
        for s in ("8×32", "32×8")
    }
    assert "goal ≤ 2 s" in capsys.readouterr().out
