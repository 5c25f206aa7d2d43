"""Group views of weight tensors for Structured Sparsity Learning (Wen et al., 2016).

A conv weight W has axes (filter n, channel c, height m, width k). Lowered to GEMM it is the
N × (C·kh·kw) matrix ``W.flatten(1)``: filters are its rows, shape fibers W[:, c, m, k] its
columns, channels blocks of kh·kw columns. SSL's groups (REFERENCE §1.4):

=============  ======================================  =============================================
kind           one group                               removes
=============  ======================================  =============================================
``filter``     W[n, :, :, :] (+ bias[n], + BN γ_n, β_n)  a GEMM row / an output channel
``channel``    W[:, c, :, :]                           an input channel (kh·kw GEMM columns)
``shape``      W[:, c, m, k]                           one GEMM column
``neuron_out`` Linear row W[j, :] (+ bias[j])          a hidden neuron (from its inputs side)
``neuron_in``  Linear column W[:, i]                   an input neuron / pixel (from its outputs side)
``depth``      every parameter of a residual branch    a whole residual block
=============  ======================================  =============================================

Departure (derived — not from the paper): a ``filter``/``neuron_out`` group also owns its bias
and the γ, β of a BatchNorm right after it, and a ``depth`` group owns the branch's BatchNorm
parameters. Then a zero group means an *exactly* zero output, so compaction is exact.
All norms are computed for every group of a layer at once (no loops over groups).
"""

from __future__ import annotations

from typing import Literal

import torch
from torch import nn

from ..models import BasicBlock

GroupKind = Literal["filter", "channel", "shape", "neuron_out", "neuron_in", "depth"]
KINDS: tuple[str, ...] = ("filter", "channel", "shape", "neuron_out", "neuron_in", "depth")
_LAYER_TYPE = {
    "filter": nn.Conv2d,
    "channel": nn.Conv2d,
    "shape": nn.Conv2d,
    "neuron_out": nn.Linear,
    "neuron_in": nn.Linear,
    "depth": BasicBlock,
}


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is a known group kind, else raise ``ValueError``."""
    if kind not in KINDS:
        raise ValueError(f"group kind={kind!r} is unknown; choose one of {KINDS}")
    return kind


def gemm_view(weight: torch.Tensor) -> torch.Tensor:
    """The im2col GEMM matrix of a conv weight: (N, C, kh, kw) → (N, C·kh·kw); a Linear weight as
    is."""
    if weight.dim() not in (2, 4):
        raise ValueError(
            f"weight of shape {tuple(weight.shape)} must be 2-D (Linear) or 4-D (Conv2d)"
        )
    return weight.flatten(1)


def safe_norm(squared: torch.Tensor) -> torch.Tensor:
    """√squared with value 0 and (sub)gradient 0 where squared = 0 (the paper's choice at ‖w_g‖ =
    0)."""
    positive = squared > 0
    return torch.where(
        positive,
        torch.where(positive, squared, torch.ones_like(squared)).sqrt(),
        torch.zeros_like(squared),
    )


def following_batchnorm(model: nn.Module) -> dict[nn.Module, nn.Module]:
    """Map each Conv2d/Linear that is directly followed by a BatchNorm in an ``nn.Sequential`` to
    that BN."""
    pairs: dict[nn.Module, nn.Module] = {}
    for seq in (m for m in model.modules() if isinstance(m, nn.Sequential)):
        children = list(seq.children())
        for layer, nxt in zip(children[:-1], children[1:]):
            if isinstance(layer, (nn.Conv2d, nn.Linear)) and isinstance(
                nxt, nn.modules.batchnorm._BatchNorm
            ):
                pairs[layer] = nxt
    return pairs


def row_squares(layer: nn.Module, bn: nn.Module | None = None) -> torch.Tensor:
    """Σ over each output unit's group: ‖W[n]‖² + b_n² (+ γ_n² + β_n² of the following BN)."""
    squared = gemm_view(layer.weight).pow(2).sum(1)
    if layer.bias is not None:
        squared = squared + layer.bias.pow(2)
    if bn is not None and bn.affine:
        squared = squared + bn.weight.pow(2) + bn.bias.pow(2)
    return squared


def channel_squares(weight: torch.Tensor) -> torch.Tensor:
    """‖W[:, c]‖² for every input channel c (Conv2d) or input neuron (Linear)."""
    return weight.pow(2).sum(0).flatten(1).sum(1) if weight.dim() == 4 else weight.pow(2).sum(0)


def column_squares(weight: torch.Tensor) -> torch.Tensor:
    """‖W[:, c, m, k]‖² for every shape fiber = every GEMM column, in (c, m, k) order."""
    return gemm_view(weight).pow(2).sum(0)


def branch_squares(block: BasicBlock) -> torch.Tensor:
    """Squared norm of the depth group: every parameter of the residual branch (0 if dropped)."""
    if block.branch is None:
        return torch.zeros(())
    return torch.stack([p.pow(2).sum() for p in block.branch.parameters()]).sum()


def group_layers(model: nn.Module, kind: str) -> dict[str, nn.Module]:
    """The modules carrying ``kind`` groups; ``neuron_out`` skips the last Linear (the class
    scores)."""
    layer_type = _LAYER_TYPE[check_kind(kind)]
    layers = {name: m for name, m in model.named_modules() if isinstance(m, layer_type)}
    if kind == "neuron_out" and layers:
        layers.pop(list(layers)[-1])
    if kind == "depth":
        layers = {name: b for name, b in layers.items() if b.branch is not None}
    return layers


def group_squares(
    model: nn.Module, kind: str, layers: list[str] | None = None
) -> dict[str, torch.Tensor]:
    """Squared group norms of ``kind`` per layer (1-D tensor, one entry per group; a scalar for
    depth).

    ``layers`` restricts to those module names (default: every module the kind applies to).
    """
    available = group_layers(model, kind)
    if layers is not None:
        unknown = sorted(set(layers) - set(available))
        if unknown:
            raise ValueError(
                f"layers={unknown} carry no {kind!r} groups; available: {sorted(available)}"
            )
        available = {name: available[name] for name in layers}
    if kind in ("filter", "neuron_out"):
        bns = following_batchnorm(model)
        return {name: row_squares(m, bns.get(m)) for name, m in available.items()}
    if kind in ("channel", "neuron_in"):
        return {name: channel_squares(m.weight) for name, m in available.items()}
    if kind == "shape":
        return {name: column_squares(m.weight) for name, m in available.items()}
    return {name: branch_squares(b) for name, b in available.items()}


def group_norms(
    model: nn.Module, kind: str, layers: list[str] | None = None
) -> dict[str, torch.Tensor]:
    """‖w_g‖₂ for every group of ``kind``, per layer (differentiable; gradient 0 at zero groups)."""
    return {name: safe_norm(sq) for name, sq in group_squares(model, kind, layers).items()}


@torch.no_grad()
def zero_group_fraction(
    model: nn.Module, kind: str, layers: list[str] | None = None
) -> dict[str, float]:
    """Fraction of groups of ``kind`` that are exactly zero, per layer."""
    return {
        name: (sq == 0).float().mean().item()
        for name, sq in group_squares(model, kind, layers).items()
    }


__all__ = [
    "GroupKind",
    "KINDS",
    "check_kind",
    "gemm_view",
    "safe_norm",
    "following_batchnorm",
    "row_squares",
    "channel_squares",
    "column_squares",
    "branch_squares",
    "group_layers",
    "group_squares",
    "group_norms",
    "zero_group_fraction",
]
