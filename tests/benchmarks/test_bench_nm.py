"""The N:M benchmark's baselines agree with the library, and a tiny run completes (timings are not
tested)."""

from __future__ import annotations

import json

import torch
from torch.nn.utils import parametrize

from sparsitylab import models, reparam
from sparsitylab.benchmarks import nm as bench
from sparsitylab.methods.nm import NMSparsity
from sparsitylab.sparsify.masks import nm_mask


def test_baselines_agree_with_nm_mask():
    torch.manual_seed(0)
    w = torch.randn(16, 32)
    assert torch.equal(bench.argsort_nm_mask(w, 2, 4), nm_mask(w, 2, 4))
    assert torch.equal(bench.topk_nm_mask(w, 2, 4), nm_mask(w, 2, 4))  # tie-free weights
    assert torch.equal(bench.torch_path_nm_mask(w, 2, 4), nm_mask(w, 2, 4))


def test_the_floor_holds_the_two_passes_on_the_n_m_layers_and_nothing_else():
    """Forward |W| on exactly the layers SR-STE masks, backward G + W; other layers untouched."""
    torch.manual_seed(0)
    sparse = NMSparsity(2, 4).prepare(models.lenet5())
    floor = bench.floor_model(models.lenet5, sparse)
    masked = {f.layer_name for f in reparam.find(sparse)}
    assert masked and masked == {
        name for name, m in floor.named_modules() if parametrize.is_parametrized(m)
    }
    for name in masked:
        layer = floor.get_submodule(name)
        w = layer.parametrizations.weight.original
        assert torch.equal(layer.weight, w.abs())
        grad = torch.randn_like(w)
        (layer.weight * grad).sum().backward()
        assert torch.equal(w.grad, grad + w.detach())


def test_tiny_run_writes_json(tmp_path, capsys):
    out = tmp_path / "nm.json"
    assert bench.main(["--size", "64", "--batch", "4", "--repeats", "1", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert set(record["step_ms"]) == {"MLP", "LeNet", "ConvNet-BN"}
    assert set(record["step_ms"]["MLP"]) == {
        "dense",
        "SR-STE",
        "STE",
        "SR-STE, PyTorch path",
        "floor: two passes",
    }
    out = capsys.readouterr().out
    assert "pairwise ranks" in out and "compiled C loop" in out
