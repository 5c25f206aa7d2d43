"""The mask benchmark's references agree with the library (timings are not tested)."""

from __future__ import annotations

import torch

from sparsitylab import models
from sparsitylab.benchmarks import masks as bench
from sparsitylab.sparsify.budgets import budget_masks
from sparsitylab.sparsify.masks import global_topk_masks, topk_mask


def test_references_agree_with_library():
    torch.manual_seed(0)
    w = torch.randint(-5, 5, (64, 48)).float()  # many ties
    assert torch.equal(bench.sort_reference_mask(w.abs(), 0.7), topk_mask(w, 0.7))
    assert int(bench.torch_topk_mask(w, 0.7).sum()) == int(topk_mask(w, 0.7).sum())
    ws = [torch.randn(8, 8), torch.randn(3, 5)]
    assert all(
        torch.equal(a, b)
        for a, b in zip(bench.global_sort_reference(ws, 0.6), global_topk_masks(ws, 0.6))
    )


def test_torch_prune_reference_matches_global_budget_without_ties():
    torch.manual_seed(0)
    net = models.mlp((16, 12, 10))
    ours = budget_masks(net, 0.8, "global")
    theirs = bench.torch_prune_global(net, 0.8)
    assert all(torch.equal(a, b) for a, b in zip(ours.values(), theirs))
