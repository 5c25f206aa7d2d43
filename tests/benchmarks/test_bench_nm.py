"""The N:M benchmark's baselines agree with the library, and a tiny run completes (timings are not
tested)."""

from __future__ import annotations

import json

import torch

from sparsitylab.benchmarks import nm as bench
from sparsitylab.sparsify.masks import nm_mask


def test_baselines_agree_with_nm_mask():
    torch.manual_seed(0)
    w = torch.randn(16, 32)
    assert torch.equal(bench.argsort_nm_mask(w, 2, 4), nm_mask(w, 2, 4))
    assert torch.equal(bench.topk_nm_mask(w, 2, 4), nm_mask(w, 2, 4))  # tie-free weights
    assert torch.equal(bench.torch_path_nm_mask(w, 2, 4), nm_mask(w, 2, 4))


def test_tiny_run_writes_json(tmp_path, capsys):
    out = tmp_path / "nm.json"
    assert bench.main(["--size", "64", "--batch", "4", "--repeats", "1", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert set(record["step_ms"]) == {"MLP", "LeNet", "ConvNet-BN"}
    assert set(record["step_ms"]["MLP"]) == {"dense", "SR-STE", "STE"}
    out = capsys.readouterr().out
    assert "pairwise ranks" in out and "compiled C loop" in out
