"""Per-layer sensitivity scan: accuracy when one layer alone is magnitude-pruned (no fine-tuning).

The teaching anchor is MIT 6.5940 (EfficientML) Lab 1 (CalebDu/MIT6.5940-EfficientML:
Lab1-pruning/Lab1.ipynb, https://efficientml.ai): prune each layer in turn to sparsities 0.4…0.9,
measure accuracy, then hand-pick per-layer sparsities. Layers whose accuracy barely moves can be
pruned harder. :func:`sensitivity_budget` turns a scan into such a budget with one rule (largest
scanned sparsity whose accuracy drop is within a tolerance), as an alternative to picking by eye.
Introduced in Chapter 1 (``book/01_unstructured_pruning``).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader

from .._checks import check_real, check_sparsity
from ..metrics import prunable_layers
from ..train import accuracy
from .masks import topk_mask

MIT_LAB_SPARSITIES = (0.4, 0.5, 0.6, 0.7, 0.8, 0.9)


def sensitivity_scan(
    model: nn.Module,
    loader: DataLoader,
    sparsities: Sequence[float] = MIT_LAB_SPARSITIES,
    layers: Sequence[str] | None = None,
):
    """Accuracy of ``model`` with only layer l pruned to sparsity s, for every (l, s).

    Returns a pandas DataFrame (index: layer name, columns: sparsity) plus the dense accuracy in
    ``df.attrs["dense_acc"]``. The model must be unmasked; it is restored exactly afterwards. Cost:
    |layers|·|sparsities| evaluations of ``loader``.
    """
    import pandas as pd

    sparsities = [check_sparsity(s) for s in sparsities]
    if not sparsities:
        raise ValueError("sparsities is empty: give at least one sparsity to scan")
    available = prunable_layers(model)
    names = list(available) if layers is None else list(layers)
    unknown = [n for n in names if n not in available]
    if unknown:
        raise ValueError(
            f"layers {unknown} are not prunable layers; choose among {list(available)}"
        )
    masked = [n for n in names if parametrize.is_parametrized(available[n], "weight")]
    if masked:
        raise ValueError(
            f"layers {masked} are reparametrised; scan an unmasked model (reparam.remove_masks)"
        )
    rows = {}
    dense_acc = accuracy(model, loader)
    for name in names:
        weight = available[name].weight
        original = weight.detach().clone()
        try:
            accs = []
            for s in sparsities:
                with torch.no_grad():
                    weight.copy_(original * topk_mask(original, s))
                accs.append(accuracy(model, loader))
            rows[name] = accs
        finally:
            with torch.no_grad():
                weight.copy_(original)
    table = pd.DataFrame.from_dict(rows, orient="index", columns=sparsities)
    table.index.name, table.columns.name = "layer", "sparsity"
    table.attrs["dense_acc"] = dense_acc
    return table


def sensitivity_budget(scan, max_drop: float) -> dict[str, float]:
    """Per layer, the largest scanned sparsity whose accuracy is within ``max_drop`` of dense (0 if
    none)."""
    check_real(max_drop, "max_drop", 0.0, 1.0)  # an accuracy difference
    ok = scan.ge(scan.attrs["dense_acc"] - max_drop)
    sparsities = scan.columns.to_numpy(dtype=float)
    return {
        layer: float(sparsities[ok.loc[layer].to_numpy()].max(initial=0.0)) for layer in scan.index
    }


__all__ = ["MIT_LAB_SPARSITIES", "sensitivity_budget", "sensitivity_scan"]
