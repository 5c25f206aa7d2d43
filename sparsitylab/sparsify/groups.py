"""Group views of weight tensors for Structured Sparsity Learning (Wen et al., 2016).

A conv weight W has axes (filter n, channel c, height m, width k). Lowered to GEMM it is the N ×
(C·kh·kw) matrix :func:`sparsitylab.gemm.gemm_view` (``"chw"`` order): filters are its rows, shape
fibers W[:, c, m, k] its columns, channels blocks of kh·kw columns. SSL's groups (Wen et al., NIPS
2016, https://arxiv.org/abs/1608.03665):

==============  ========================================  ===================================
kind            one group                                 removes
==============  ========================================  ===================================
``filter``      W[n, :, :, :] (+ bias[n], + BN γ_n, β_n)  a GEMM row / an output channel
``channel``     W[:, c, :, :]                             an input channel (kh·kw columns)
``shape``       W[:, c, m, k]                             one GEMM column
``neuron_out``  Linear row W[j, :] (+ bias[j])            a hidden neuron (its inputs side)
``neuron_in``   Linear column W[:, i]                     an input neuron / pixel
``depth``       every parameter of a residual branch      a whole residual block
``coupled``     one unit of a traced coupled group        the unit from every member tensor
==============  ========================================  ===================================

``coupled`` groups (derived — DepGraph-style group lasso, Fang et al. CVPR 2023, not SSL's) are the
channel groups of :mod:`sparsitylab.graph` on any model: one group is everything a unit occupies
(producer rows and biases, norm γ and β, the readers' input columns — a residual stage's channel in
every block, an attention head), so a zero group is removed exactly by compaction. They, and the
BatchNorm a layer feeds on any model, come from a :class:`Coupling` (one traced forward pass);
without one, the BatchNorm of a layer is the next child of its ``nn.Sequential``.

A residual block is any module with a ``branch`` attribute (the residual branch, or None once
dropped) and a ``drop_branch()`` method (:class:`ResidualBlock`);
:class:`sparsitylab.models.BasicBlock` is one.

Departure (derived — not from the paper): a ``filter``/``neuron_out`` group also owns its bias
and the γ, β of a BatchNorm right after it, and a ``depth`` group owns the branch's BatchNorm
parameters. Then a zero group means an *exactly* zero output, so compaction is exact.
All norms are computed for every group of a layer at once (no loops over groups).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, runtime_checkable

import torch
from torch import nn

from .._checks import check_choice
from ..gemm import alive_columns, alive_inputs, alive_rows, gemm_view
from ..graph import ChannelGroup, trace
from ..metrics import BATCHNORMS
from .coupled import coupled_alive, coupled_squares

GroupKind = Literal["filter", "channel", "shape", "neuron_out", "neuron_in", "depth", "coupled"]
KINDS: tuple[str, ...] = (
    "filter",
    "channel",
    "shape",
    "neuron_out",
    "neuron_in",
    "depth",
    "coupled",
)
_WHERE = {
    "filter": "Conv2d layers",
    "channel": "Conv2d layers",
    "shape": "Conv2d layers",
    "neuron_out": "Linear layers other than the last",
    "neuron_in": "Linear layers",
    "depth": "residual blocks with a branch and a drop_branch() method",
    "coupled": "the coupled groups of a traced model (pass coupling=Coupling.of(model, x))",
}


@dataclass
class Coupling:
    """What a traced dependency graph adds to the groups: the BatchNorm each layer feeds
    (``norm_after``: layer name → BatchNorm name) and the coupled groups (by name)."""

    norm_after: dict[str, str] = field(default_factory=dict)
    coupled: dict[str, ChannelGroup] = field(default_factory=dict)

    @classmethod
    def of(cls, model: nn.Module, example_input: Any) -> Coupling:
        """Trace ``model`` on ``example_input`` once (:func:`sparsitylab.graph.trace`)."""
        graph = trace(model, example_input)
        return cls(dict(graph.norm_after), {g.name: g for g in graph.groups})


@runtime_checkable
class ResidualBlock(Protocol):
    """What depth groups need of a residual block: its branch (None once dropped) and a way to drop
    it."""

    branch: nn.Module | None

    def drop_branch(self) -> None: ...


def check_kind(kind: str) -> str:
    """Return ``kind`` if it is a known group kind, else raise ``ValueError``."""
    return check_choice(kind, "group kind", KINDS)


def safe_norm(squared: torch.Tensor) -> torch.Tensor:
    """√squared with value 0 and (sub)gradient 0 where squared = 0 (the paper's choice at ‖w_g‖ =
    0)."""
    positive = squared > 0
    return torch.where(
        positive,
        torch.where(positive, squared, torch.ones_like(squared)).sqrt(),
        torch.zeros_like(squared),
    )


def following_batchnorm(
    model: nn.Module, coupling: Coupling | None = None
) -> dict[nn.Module, nn.Module]:
    """Map each Conv2d/Linear whose output goes straight into a BatchNorm to that BN: from the
    traced graph when a ``coupling`` is given, else the next child of the same ``nn.Sequential``.
    """
    if coupling is not None:
        return {
            model.get_submodule(layer): model.get_submodule(bn)
            for layer, bn in coupling.norm_after.items()
        }
    pairs: dict[nn.Module, nn.Module] = {}
    for seq in (m for m in model.modules() if isinstance(m, nn.Sequential)):
        children = list(seq.children())
        for layer, nxt in zip(children[:-1], children[1:]):
            if isinstance(layer, (nn.Conv2d, nn.Linear)) and isinstance(nxt, BATCHNORMS):
                pairs[layer] = nxt
    return pairs


def row_parameters(layer: nn.Module, bn: nn.Module | None = None) -> list[torch.Tensor]:
    """The per-row tensors an output unit's group owns besides its weight row: bias, BN γ and β."""
    extra = [layer.bias] if layer.bias is not None else []
    if bn is not None and bn.affine:
        extra += [bn.weight, bn.bias]
    return extra


def row_squares(layer: nn.Module, bn: nn.Module | None = None) -> torch.Tensor:
    """Σ over each output unit's group: ‖W[n]‖² + b_n² (+ γ_n² + β_n² of the following BN)."""
    squared = gemm_view(layer.weight).pow(2).sum(1)
    for extra in row_parameters(layer, bn):
        squared = squared + extra.pow(2)
    return squared


def channel_squares(weight: torch.Tensor) -> torch.Tensor:
    """‖W[:, c]‖² for every input channel c (Conv2d) or input neuron (Linear)."""
    return weight.pow(2).sum(0).flatten(1).sum(1) if weight.dim() == 4 else weight.pow(2).sum(0)


def column_squares(weight: torch.Tensor) -> torch.Tensor:
    """‖W[:, c, m, k]‖² for every shape fiber = every GEMM column, in (c, m, k) order."""
    return gemm_view(weight).pow(2).sum(0)


def branch_squares(block: ResidualBlock) -> torch.Tensor:
    """Squared norm of the depth group: every parameter of the residual branch (0 if dropped)."""
    params = [] if block.branch is None else list(block.branch.parameters())
    if not params:
        return torch.zeros(())
    return torch.stack([p.pow(2).sum() for p in params]).sum()


def branch_alive(block: ResidualBlock) -> bool:
    """Whether a residual block's branch holds a non-zero parameter (False once it is dropped)."""
    return block.branch is not None and any(bool(p.ne(0).any()) for p in block.branch.parameters())


def group_layers(
    model: nn.Module, kind: str, coupling: Coupling | None = None
) -> dict[str, nn.Module | ChannelGroup]:
    """What carries ``kind`` groups: modules (``neuron_out`` skips the last Linear, the class
    scores), or, for ``coupled``, the traced groups by name."""
    check_kind(kind)
    if kind == "coupled":
        return dict(coupling.coupled) if coupling is not None else {}
    if kind == "depth":
        return {
            name: b
            for name, b in model.named_modules()
            if isinstance(b, ResidualBlock)
            and b.branch is not None
            and any(True for _ in b.branch.parameters())
        }
    layer_type = nn.Conv2d if kind in ("filter", "channel", "shape") else nn.Linear
    layers = {name: m for name, m in model.named_modules() if isinstance(m, layer_type)}
    if kind == "neuron_out" and layers:
        layers.pop(list(layers)[-1])
    return layers


def select_layers(
    model: nn.Module,
    kind: str,
    layers: Sequence[str] | None = None,
    coupling: Coupling | None = None,
) -> dict[str, nn.Module | ChannelGroup]:
    """The carriers of ``kind`` groups, restricted to ``layers``; a kind the model lacks, or a
    name that carries no such group, is an error (a penalty on nothing would silently be zero)."""
    available = group_layers(model, kind, coupling)
    if not available:
        raise ValueError(f"the model has no {kind!r} groups (they live in {_WHERE[kind]})")
    if layers is None:
        return available
    if isinstance(layers, str):
        raise TypeError(f"layers={layers!r} must be a list of module names, not a string")
    unknown = sorted(set(layers) - set(available))
    if unknown:
        raise ValueError(
            f"layers={unknown} carry no {kind!r} groups; available: {sorted(available)}"
        )
    return {name: available[name] for name in layers}


def group_squares(
    model: nn.Module,
    kind: str,
    layers: Sequence[str] | None = None,
    coupling: Coupling | None = None,
) -> dict[str, torch.Tensor]:
    """Squared group norms of ``kind`` per layer (1-D tensor, one entry per group; a scalar for
    depth; one entry per unit for a coupled group).

    ``layers`` restricts to those names (default: every carrier of the kind).
    """
    selected = select_layers(model, kind, layers, coupling)
    if kind in ("filter", "neuron_out"):
        bns = following_batchnorm(model, coupling)
        return {name: row_squares(m, bns.get(m)) for name, m in selected.items()}
    if kind in ("channel", "neuron_in"):
        return {name: channel_squares(m.weight) for name, m in selected.items()}
    if kind == "shape":
        return {name: column_squares(m.weight) for name, m in selected.items()}
    if kind == "coupled":
        return {name: coupled_squares(model, g) for name, g in selected.items()}
    return {name: branch_squares(b) for name, b in selected.items()}


def group_norms(
    model: nn.Module,
    kind: str,
    layers: Sequence[str] | None = None,
    coupling: Coupling | None = None,
) -> dict[str, torch.Tensor]:
    """‖w_g‖₂ for every group of ``kind``, per layer (differentiable; gradient 0 at zero groups)."""
    squares = group_squares(model, kind, layers, coupling)
    return {name: safe_norm(sq) for name, sq in squares.items()}


@torch.no_grad()
def group_alive(
    model: nn.Module,
    kind: str,
    layers: Sequence[str] | None = None,
    coupling: Coupling | None = None,
) -> dict[str, torch.Tensor]:
    """Per layer, which groups of ``kind`` hold a non-zero entry (the liveness rule of
    :mod:`sparsitylab.gemm`; a scalar for depth)."""
    selected = select_layers(model, kind, layers, coupling)
    if kind in ("filter", "neuron_out"):
        bns = following_batchnorm(model, coupling)
        return {
            name: alive_rows(gemm_view(m.weight), *row_parameters(m, bns.get(m)))
            for name, m in selected.items()
        }
    if kind in ("channel", "neuron_in"):
        return {name: alive_inputs(m.weight) for name, m in selected.items()}
    if kind == "shape":
        return {name: alive_columns(gemm_view(m.weight)) for name, m in selected.items()}
    if kind == "coupled":
        return {name: coupled_alive(model, g) for name, g in selected.items()}
    return {name: torch.tensor(branch_alive(b)) for name, b in selected.items()}


def zero_group_fraction(
    model: nn.Module,
    kind: str,
    layers: Sequence[str] | None = None,
    coupling: Coupling | None = None,
) -> dict[str, float]:
    """Fraction of groups of ``kind`` that are exactly zero, per layer."""
    return {
        name: 1.0 - alive.float().mean().item()
        for name, alive in group_alive(model, kind, layers, coupling).items()
    }


__all__ = [
    "Coupling",
    "GroupKind",
    "KINDS",
    "ResidualBlock",
    "branch_alive",
    "branch_squares",
    "channel_squares",
    "check_kind",
    "column_squares",
    "following_batchnorm",
    "group_alive",
    "group_layers",
    "group_norms",
    "group_squares",
    "row_parameters",
    "row_squares",
    "safe_norm",
    "select_layers",
    "zero_group_fraction",
]
