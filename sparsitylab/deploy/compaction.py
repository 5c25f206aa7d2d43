"""Compaction: turn structural zeros into a smaller *dense* model (Wen et al., NIPS 2016,
https://arxiv.org/abs/1608.03665, Table 4: the speedups of structured sparsity come from this).

A unit is removed only when that cannot change the output (eval mode; liveness as in
:mod:`sparsitylab.gemm`):

- an output unit (MLP neuron, conv filter) whose weight row and bias are zero, **and** every
  BatchNorm between it and the next weight layer maps 0 to 0 on its channel (β − γ·μ/√(σ² + ε) = 0;
  a filter group of :mod:`sparsitylab.sparsify.groups` owns γ and β, so an SSL-zeroed group
  satisfies this): it outputs exactly 0, and ReLU/pooling keep it 0, so the next layer's matching
  input columns multiply zeros;
- a channel whose BatchNorm has γ = 0 and β = 0 (STR-BN's pruned channels): the BatchNorm outputs
  exactly 0 on it whatever the filter computes, so the filter feeding it goes too;
- an output unit whose outgoing columns in the next layer are all zero: nobody reads it;
- an input neuron / pixel of the first layer whose column is zero (a :class:`Gather` picks the
  rest);
- a residual branch (any :class:`~sparsitylab.sparsify.groups.ResidualBlock`) whose parameters are
  all zero: ``drop_branch()``; one whose last conv is zero but whose last BatchNorm still adds a
  per-channel constant: a :class:`ConstantBranch`;
- shape fibers (GEMM columns) that are zero in every filter: the conv becomes a :class:`GemmConv2d`,
  an im2col GEMM that gathers only the surviving columns.

Units are removed only between two weight layers of one ``nn.Sequential`` joined by element-wise,
zero-preserving modules (:data:`PASS_THROUGH`) and BatchNorms of those units (resized with them).
Any other module in between (a Softmax, a residual block, a BatchNorm of a different width) is a
boundary: every unit that crosses it is kept, and its own inside is compacted on its own. A model
that is still reparametrised (masks attached) is refused with a ``TypeError``: bake it first
(``reparam.remove``). With ``example_input``, :func:`compact` checks the outputs on it before
returning.

The result is made of ordinary modules (Linear, Conv2d, BatchNorm, plus :class:`Gather` and
:class:`GemmConv2d`), keeps the layer names of the original, and trains, saves and loads like any
PyTorch model.
"""

from __future__ import annotations

import copy
from collections import OrderedDict
from dataclasses import dataclass

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..gemm import alive_columns, alive_inputs, alive_rows, gemm_view
from ..metrics import BATCHNORMS, layer_costs
from ..models import eval_mode
from ..sparsify.groups import ResidualBlock, branch_alive, row_squares
from .layers import ConstantBranch, Gather, GemmConv2d

WEIGHT_LAYERS = (nn.Linear, nn.Conv2d)
PASS_THROUGH = (
    nn.ReLU,
    nn.MaxPool2d,
    nn.AvgPool2d,
    nn.AdaptiveAvgPool2d,
    nn.AdaptiveMaxPool2d,
    nn.Flatten,
    nn.Dropout,
    nn.Identity,
)


def _keep_at_least_one(keep: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """An all-False keep mask keeps its highest-score unit (a layer needs ≥ 1 unit; still exact)."""
    if keep.any():
        return keep
    keep = torch.zeros_like(keep)
    keep[int(score.argmax())] = True
    return keep


@torch.no_grad()
def batchnorm_zero_response(bn: nn.Module) -> torch.Tensor:
    """What an eval-mode BatchNorm outputs on each channel for an input of exactly 0: β − γ·μ/√(σ² +
    ε) (without running statistics a zero channel normalises to 0, leaving β)."""
    if bn.running_mean is not None:
        value = -bn.running_mean / torch.sqrt(bn.running_var + bn.eps)
    else:
        value = torch.zeros(bn.num_features, device=bn.weight.device if bn.affine else None)
    if bn.affine:
        value = value * bn.weight + bn.bias
    return value


def batchnorm_emits(bn: nn.Module, emits: torch.Tensor) -> torch.Tensor:
    """Which channels can be non-zero after an eval-mode BatchNorm, given which can be before.

    A channel with γ = 0 outputs exactly β whatever comes in (STR-BN prunes channels this way); one
    with γ ≠ 0 is non-zero when its input can be, or when it maps 0 to a non-zero value.
    """
    through = emits | batchnorm_zero_response(bn).ne(0)
    if not bn.affine:
        return through
    return torch.where(bn.weight.detach() != 0, through, bn.bias.detach() != 0)


@dataclass(frozen=True)
class ChannelSite:
    """A BatchNorm whose channels compaction can remove, with its neighbours: the weight layer
    feeding it, the one reading it, and the element-wise modules after it (names are full module
    names in the model)."""

    name: str
    bn: nn.Module
    producer: str
    consumer: str
    after: tuple[nn.Module, ...]


def channel_sites(model: nn.Module) -> dict[str, ChannelSite]:
    """Every BatchNorm whose channels compaction can remove: in an ``nn.Sequential``, after a weight
    layer of the same width and before another weight layer, with only element-wise modules in
    between. (A residual branch's last BatchNorm feeds the shortcut sum, so it is not one.)"""
    found = {}
    for prefix, seq in model.named_modules():
        if not isinstance(seq, nn.Sequential):
            continue
        children = list(seq.named_children())
        full = [f"{prefix}.{name}" if prefix else name for name, _ in children]
        positions = [i for i, (_, m) in enumerate(children) if isinstance(m, WEIGHT_LAYERS)]
        for i, j in zip(positions[:-1], positions[1:]):
            if _between(children, i, j) is None:
                continue
            for k in range(i + 1, j):
                if isinstance(children[k][1], BATCHNORMS):
                    after = tuple(m for _, m in children[k + 1 : j])
                    found[full[k]] = ChannelSite(full[k], children[k][1], full[i], full[j], after)
    return found


def channel_batchnorms(model: nn.Module) -> dict[str, nn.Module]:
    """Name → module of every BatchNorm in :func:`channel_sites` (the channels compaction can
    remove)."""
    return {name: site.bn for name, site in channel_sites(model).items()}


def _consumer_reads(consumer: nn.Module, units: int) -> torch.Tensor:
    """Which of ``units`` producer outputs the consumer reads (its matching input columns are
    non-zero)."""
    w = consumer.weight.detach()
    if isinstance(consumer, nn.Linear) and w.shape[1] != units:  # conv → Flatten → Linear
        if w.shape[1] % units:
            raise ValueError(
                f"{consumer} has {w.shape[1]} inputs, not a multiple of {units} producer units"
            )
        return w.view(w.shape[0], units, -1).ne(0).any(2).any(0)
    return alive_inputs(w)


def _between(children: list[tuple[str, nn.Module]], i: int, j: int) -> list[nn.Module] | None:
    """The BatchNorms between weight layers ``i`` and ``j``, or None when something else stands
    between them (a boundary: nothing is removed across it)."""
    units = children[i][1].weight.shape[0]
    bns = []
    for _, m in children[i + 1 : j]:
        if isinstance(m, BATCHNORMS) and m.num_features == units:
            bns.append(m)
        elif not isinstance(m, PASS_THROUGH):
            return None
    return bns


@torch.no_grad()
def keep_masks(
    seq: nn.Sequential, gather_inputs: bool = False
) -> dict[str, tuple[torch.Tensor, torch.Tensor]]:
    """For each weight layer of ``seq`` (by child name): (kept output units, kept input
    channels/features).

    A unit between producer P and consumer Q is kept iff it can be non-zero (P's row or bias is
    non-zero, or a BatchNorm in between maps 0 to a non-zero value) **and** Q reads it. Units
    crossing a boundary (see the module docstring) are all kept, as are the last layer's outputs;
    the first layer keeps all inputs unless ``gather_inputs``.
    """
    children = list(seq.named_children())
    positions = [i for i, (_, m) in enumerate(children) if isinstance(m, WEIGHT_LAYERS)]
    masks: dict[str, list[torch.Tensor]] = {}
    for i in positions:
        name, w = children[i][0], children[i][1].weight
        masks[name] = [
            torch.ones(w.shape[0], dtype=torch.bool, device=w.device),
            torch.ones(w.shape[1], dtype=torch.bool, device=w.device),
        ]
    if gather_inputs and positions:
        fed = alive_inputs(children[positions[0]][1].weight)
        masks[children[positions[0]][0]][1] = _keep_at_least_one(fed, fed.float())
    for i, j in zip(positions[:-1], positions[1:]):
        producer, bns = children[i][1], _between(children, i, j)
        if bns is None:
            continue
        emits = alive_rows(gemm_view(producer.weight), producer.bias)
        for bn in bns:
            emits = batchnorm_emits(bn, emits)
        keep = _keep_at_least_one(
            emits & _consumer_reads(children[j][1], len(emits)), row_squares(producer)
        )
        masks[children[i][0]][0] = keep
        masks[children[j][0]][1] = keep
    return {name: (out_keep, in_keep) for name, (out_keep, in_keep) in masks.items()}


def _select_layer(layer: nn.Module, out_keep: torch.Tensor, in_keep: torch.Tensor) -> nn.Module:
    """A copy of a Linear/Conv2d with only the kept outputs and inputs (inputs expanded over a
    Flatten)."""
    w = layer.weight.detach()
    if isinstance(layer, nn.Linear) and w.shape[1] != len(in_keep):
        in_keep = in_keep.repeat_interleave(w.shape[1] // len(in_keep))
    new = copy.deepcopy(layer)
    new.weight = nn.Parameter(w[out_keep][:, in_keep].clone())
    if layer.bias is not None:
        new.bias = nn.Parameter(layer.bias.detach()[out_keep].clone())
    if isinstance(new, nn.Linear):
        new.in_features, new.out_features = new.weight.shape[1], new.weight.shape[0]
    else:
        new.in_channels, new.out_channels = new.weight.shape[1], new.weight.shape[0]
    return new


def _select_batchnorm(bn: nn.Module, keep: torch.Tensor) -> nn.Module:
    new = copy.deepcopy(bn)
    new.num_features = int(keep.sum())
    for name in ("weight", "bias"):
        if getattr(bn, name) is not None:
            setattr(new, name, nn.Parameter(getattr(bn, name).detach()[keep].clone()))
    for name in ("running_mean", "running_var"):
        if getattr(bn, name) is not None:
            setattr(new, name, getattr(bn, name)[keep].clone())
    return new


@torch.no_grad()
def lower_if_column_sparse(layer: nn.Module) -> nn.Module:
    """A Conv2d with all-zero GEMM columns becomes a :class:`GemmConv2d` without them; else
    unchanged."""
    if not isinstance(layer, nn.Conv2d):
        return layer
    alive = alive_columns(gemm_view(layer.weight))
    if bool(alive.all()):
        return layer
    alive = _keep_at_least_one(alive, alive.float())
    return GemmConv2d.from_conv(layer, alive.nonzero().flatten())


@torch.no_grad()
def compact_sequential(
    seq: nn.Sequential, gather_inputs: bool = False, shapes: bool = True
) -> nn.Sequential:
    """A new, smaller Sequential computing the same function as ``seq``, with the same child names.

    A first-layer input :class:`Gather` is inserted as ``input_gather``; other children are
    compacted inside.
    """
    masks = keep_masks(seq, gather_inputs)
    first = next(iter(masks), None)
    out: list[tuple[str, nn.Module]] = []
    # the kept outputs of the last weight layer seen (for the BatchNorms after it)
    units: torch.Tensor | None = None
    for name, module in seq.named_children():
        if name in masks:
            out_keep, in_keep = masks[name]
            if name == first and gather_inputs and not bool(in_keep.all()):
                out.append(("input_gather", Gather(in_keep.nonzero().flatten(), dim=1)))
            layer = _select_layer(module, out_keep, in_keep)
            out.append((name, lower_if_column_sparse(layer) if shapes else layer))
            units = out_keep
        elif (
            isinstance(module, BATCHNORMS)
            and units is not None
            and module.num_features == len(units)
        ):
            out.append((name, _select_batchnorm(module, units)))
        elif isinstance(module, PASS_THROUGH + BATCHNORMS):
            out.append((name, copy.deepcopy(module)))
        else:
            units = None  # a boundary: BatchNorms after it belong to no pruned layer
            out.append((name, _compact_inside(copy.deepcopy(module), shapes)))
    return nn.Sequential(OrderedDict(out))


def _compact_inside(module: nn.Module, shapes: bool) -> nn.Module:
    """Compact every Sequential inside ``module`` (in place on a copy); ``module`` itself is a
    boundary."""
    if isinstance(module, nn.Sequential):
        return compact_sequential(module, False, shapes)
    for name, child in list(module.named_children()):
        setattr(module, name, _compact_inside(child, shapes))
    return module


def _last_conv_is_zero(branch: nn.Module) -> bool:
    if not isinstance(branch, nn.Sequential):
        return False
    convs = [m for m in branch if isinstance(m, nn.Conv2d)]
    after = list(branch)[list(branch).index(convs[-1]) + 1 :] if convs else []
    return (
        bool(convs)
        and not bool(alive_rows(gemm_view(convs[-1].weight), convs[-1].bias).any())
        and all(isinstance(m, BATCHNORMS) for m in after)
    )


@torch.no_grad()
def drop_zero_branches(model: nn.Module) -> list[str]:
    """Remove residual branches that compute nothing input-dependent; return their names.

    A branch whose parameters are all exactly zero outputs 0: ``drop_branch()``. A branch whose last
    conv is all zero outputs (eval mode) the constant β − γ·μ/√(σ² + ε) of its last BatchNorm: it
    becomes a :class:`ConstantBranch` (no weight layers left), or is dropped when that constant is
    0.
    """
    removed = []
    for name, block in model.named_modules():
        if (
            not isinstance(block, ResidualBlock)
            or block.branch is None
            or isinstance(block.branch, ConstantBranch)
        ):
            continue
        if not branch_alive(block):
            block.drop_branch()
        elif _last_conv_is_zero(block.branch):
            conv = next(m for m in block.branch if isinstance(m, nn.Conv2d))
            value = block.branch.eval()(
                torch.zeros(1, conv.in_channels, 1, 1, device=conv.weight.device)
            )
            if bool(value.ne(0).any()):
                block.branch = ConstantBranch(value)
            else:
                block.drop_branch()
        else:
            continue
        removed.append(name)
    return removed


def reparametrised_tensors(model: nn.Module) -> list[str]:
    """``layer.tensor`` names that still carry a ``torch.nn.utils.parametrize``
    reparametrisation."""
    return [
        f"{name}.{tensor}" if name else tensor
        for name, m in model.named_modules()
        if parametrize.is_parametrized(m)
        for tensor in m.parametrizations
    ]


@torch.no_grad()
def compact(
    model: nn.Module,
    gather_inputs: bool = True,
    shapes: bool = True,
    example_input: torch.Tensor | None = None,
) -> nn.Module:
    """A smaller dense copy of ``model`` whose outputs equal the original's (in eval mode);
    ``model`` is unchanged.

    Removes input-independent residual branches, then compacts every ``nn.Sequential`` (the root one
    may gather its surviving inputs when ``gather_inputs``); ``shapes`` lowers column-sparse convs
    to GEMM. With ``example_input`` the outputs of both models are compared on it (``RuntimeError``
    if they differ).
    """
    still = reparametrised_tensors(model)
    if still:
        raise TypeError(
            f"model is still reparametrised ({still}); bake the reparametrisations in first "
            "(sparsitylab.reparam.remove(model), or the method's finalize)"
        )
    small = copy.deepcopy(model).eval()
    drop_zero_branches(small)
    if isinstance(small, nn.Sequential):
        small = compact_sequential(small, gather_inputs, shapes)
    else:
        small = _compact_inside(small, shapes)
    small.eval()
    if example_input is not None:
        _check_same_outputs(model, small, example_input)
    return small


def _check_same_outputs(model: nn.Module, small: nn.Module, x: torch.Tensor) -> None:
    with eval_mode(model):
        expected = model(x)
    got = small(x)
    if got.shape != expected.shape or not torch.allclose(got, expected, rtol=1e-4, atol=1e-5):
        error = (got - expected).abs().max().item() if got.shape == expected.shape else float("nan")
        raise RuntimeError(
            f"compaction changed the outputs (max |difference| {error:.3g}); please report this "
            "as a bug with the model"
        )


def layer_macs(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 28, 28)) -> dict[str, int]:
    """Per-sample MACs of every Linear, Conv2d and GemmConv2d actually run: positions × weight
    size."""
    return {c.name: c.macs for c in layer_costs(model, input_shape, (*WEIGHT_LAYERS, GemmConv2d))}


__all__ = [
    "Gather",
    "GemmConv2d",
    "ChannelSite",
    "ConstantBranch",
    "PASS_THROUGH",
    "batchnorm_emits",
    "batchnorm_zero_response",
    "channel_batchnorms",
    "channel_sites",
    "compact",
    "compact_sequential",
    "drop_zero_branches",
    "keep_masks",
    "layer_macs",
    "lower_if_column_sparse",
    "reparametrised_tensors",
]
