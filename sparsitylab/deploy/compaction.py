"""Compaction: turn structural zeros into a smaller *dense* model (Wen et al., 2016; REFERENCE
§2.5).

What is removed, and why the outputs do not change (zero groups are exact zeros):

- an output unit (MLP neuron, conv filter) whose group — weight row, bias and the γ, β of a
  BatchNorm right after it (see :mod:`sparsitylab.sparsify.groups`) — is zero: it outputs exactly 0,
  and ReLU/pooling keep it 0, so the next layer's matching input columns multiply zeros;
- an output unit whose outgoing columns in the next layer are all zero: nobody reads it;
- an input neuron / pixel of the first layer whose column is zero (a :class:`Gather` picks the
  rest);
- a residual branch whose depth group is zero: ``BasicBlock.drop_branch()``; one whose last conv is
  zero but whose last BatchNorm still adds a per-channel constant: a :class:`ConstantBranch`;
- shape fibers (GEMM columns) that are zero in every filter: the conv becomes a
  :class:`GemmConv2d`, an im2col GEMM that gathers only the surviving columns.

The result is made of ordinary modules (Linear, Conv2d, BatchNorm, plus :class:`Gather` and
:class:`GemmConv2d`), so it trains, saves and loads like any PyTorch model.
"""

from __future__ import annotations

import copy

import torch
import torch.nn.functional as F
from torch import nn

from ..metrics import layer_costs
from ..models import BasicBlock
from ..sparsify.groups import (
    branch_squares,
    channel_squares,
    column_squares,
    gemm_view,
    row_squares,
)

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
    nn.modules.batchnorm._BatchNorm,
)


class Gather(nn.Module):
    """x ↦ x.index_select(dim, index): keeps the surviving input features or channels."""

    def __init__(self, index: torch.Tensor, dim: int = 1):
        super().__init__()
        self.dim = dim
        self.register_buffer("index", index.detach().clone().long())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return x.index_select(self.dim, self.index)


def _pair(value) -> tuple[int, int]:
    return (value, value) if isinstance(value, int) else tuple(value)


class GemmConv2d(nn.Module):
    """A convolution lowered to a compacted im2col GEMM: Y = W' · X[columns].

    ``weight`` is the N' × K' matrix of surviving rows and columns of the conv's GEMM view;
    ``columns`` are the surviving column indices (c·kh·kw + m·kw + k). The im2col gathers only
    those K' rows of patches, so the GEMM is N' × K' × (H_out·W_out) per sample.
    """

    def __init__(
        self,
        weight: torch.Tensor,
        bias: torch.Tensor | None,
        columns: torch.Tensor,
        in_channels: int,
        kernel_size,
        stride=1,
        padding=0,
        dilation=1,
    ):
        super().__init__()
        if weight.dim() != 2 or weight.shape[1] != len(columns):
            raise ValueError(
                f"weight shape {tuple(weight.shape)} must be (rows, len(columns)={len(columns)})"
            )
        self.weight = nn.Parameter(weight.detach().clone())
        self.bias = nn.Parameter(bias.detach().clone()) if bias is not None else None
        self.register_buffer("columns", columns.detach().clone().long())
        self.in_channels = in_channels
        self.kernel_size, self.stride = _pair(kernel_size), _pair(stride)
        self.padding, self.dilation = _pair(padding), _pair(dilation)

    @classmethod
    def from_conv(cls, conv: nn.Conv2d, columns: torch.Tensor) -> GemmConv2d:
        """Lower ``conv`` keeping only GEMM ``columns`` (a 1-D index tensor)."""
        if conv.groups != 1 or conv.padding_mode != "zeros" or isinstance(conv.padding, str):
            raise ValueError(
                f"conv {conv} must have groups=1, zero padding and numeric padding to be lowered"
            )
        return cls(
            gemm_view(conv.weight)[:, columns],
            conv.bias,
            columns,
            conv.in_channels,
            conv.kernel_size,
            conv.stride,
            conv.padding,
            conv.dilation,
        )

    def output_size(self, height: int, width: int) -> tuple[int, int]:
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
        )
        return (height + 2 * ph - dh * (kh - 1) - 1) // sh + 1, (
            width + 2 * pw - dw * (kw - 1) - 1
        ) // sw + 1

    def patch_index(self, height: int, width: int) -> torch.Tensor:
        """(K', L) flat indices into the zero-padded input (C, H+2p, W+2p) of every kept column ×
        position."""
        (kh, kw), (sh, sw), (ph, pw), (dh, dw) = (
            self.kernel_size,
            self.stride,
            self.padding,
            self.dilation,
        )
        hp, wp = height + 2 * ph, width + 2 * pw
        ho, wo = self.output_size(height, width)
        c, rest = self.columns // (kh * kw), self.columns % (kh * kw)
        m, k = rest // kw, rest % kw
        base = c * hp * wp + m * dh * wp + k * dw  # (K',)
        dev = self.columns.device
        pos = (torch.arange(ho, device=dev) * sh * wp)[:, None] + torch.arange(wo, device=dev) * sw
        return base[:, None] + pos.flatten()[None, :]  # (K', L)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        batch, channels, height, width = x.shape
        if channels != self.in_channels:
            raise ValueError(
                f"input has {channels} channels, GemmConv2d expects {self.in_channels}"
            )
        ph, pw = self.padding
        flat = F.pad(x, (pw, pw, ph, ph)).flatten(1) if ph or pw else x.flatten(1)
        patches = flat[:, self.patch_index(height, width)]  # (B, K', L)
        out = torch.matmul(self.weight, patches)  # (B, N', L)
        if self.bias is not None:
            out = out + self.bias[:, None]
        return out.view(batch, self.weight.shape[0], *self.output_size(height, width))


def _keep_at_least_one(keep: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """An all-False keep mask keeps its highest-score unit (a layer needs ≥ 1 unit; still exact)."""
    if keep.any():
        return keep
    keep = torch.zeros_like(keep)
    keep[int(score.argmax())] = True
    return keep


def _consumer_alive(consumer: nn.Module, units: int) -> torch.Tensor:
    """Which of ``units`` producer outputs the consumer reads (its matching input columns are
    non-zero)."""
    w = consumer.weight.detach()
    if isinstance(consumer, nn.Linear) and w.shape[1] != units:  # conv → Flatten → Linear
        if w.shape[1] % units:
            raise ValueError(
                f"{consumer} has {w.shape[1]} inputs, not a multiple of {units} producer units"
            )
        return w.view(w.shape[0], units, -1).pow(2).sum((0, 2)) > 0
    return channel_squares(w) > 0


@torch.no_grad()
def keep_masks(
    seq: nn.Sequential, gather_inputs: bool = False
) -> dict[int, tuple[torch.Tensor, torch.Tensor]]:
    """For each weight layer (by index in ``seq``): (kept output units, kept input
    channels/features).

    A unit between producer P and consumer Q is kept iff P's group is non-zero **and** Q reads it.
    The last layer keeps all outputs; the first keeps all inputs unless ``gather_inputs``.
    """
    children = list(seq.children())
    positions = [i for i, m in enumerate(children) if isinstance(m, WEIGHT_LAYERS)]
    for i, j in zip(positions[:-1], positions[1:]):
        odd = [type(m).__name__ for m in children[i + 1 : j] if not isinstance(m, PASS_THROUGH)]
        if odd:
            raise TypeError(
                f"cannot compact across {odd} between layers {i} and {j}; "
                f"allowed in between: {[t.__name__ for t in PASS_THROUGH]}"
            )
    masks: dict[int, list[torch.Tensor]] = {}
    for i in positions:
        w = children[i].weight
        masks[i] = [
            torch.ones(w.shape[0], dtype=torch.bool),
            torch.ones(w.shape[1], dtype=torch.bool),
        ]
    if gather_inputs and positions:
        first = children[positions[0]].weight
        sq = channel_squares(first)
        masks[positions[0]][1] = _keep_at_least_one(sq > 0, sq)
    for i, j in zip(positions[:-1], positions[1:]):
        producer = children[i]
        bn = (
            children[i + 1]
            if isinstance(children[i + 1], nn.modules.batchnorm._BatchNorm)
            else None
        )
        sq = row_squares(producer, bn)
        keep = _keep_at_least_one((sq > 0) & _consumer_alive(children[j], len(sq)), sq)
        masks[i][0] = keep
        masks[j][1] = keep
    return {i: (out_keep, in_keep) for i, (out_keep, in_keep) in masks.items()}


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
    alive = column_squares(layer.weight) > 0
    if bool(alive.all()):
        return layer
    alive = _keep_at_least_one(alive, column_squares(layer.weight))
    return GemmConv2d.from_conv(layer, alive.nonzero().flatten())


@torch.no_grad()
def compact_sequential(
    seq: nn.Sequential, gather_inputs: bool = False, shapes: bool = True
) -> nn.Sequential:
    """A new, smaller Sequential computing the same function as ``seq`` (see the module
    docstring)."""
    children = list(seq.children())
    masks = keep_masks(seq, gather_inputs)
    out: list[nn.Module] = []
    for i, module in enumerate(children):
        if i in masks:
            out_keep, in_keep = masks[i]
            if i == min(masks) and gather_inputs and not bool(in_keep.all()):
                out.append(Gather(in_keep.nonzero().flatten(), dim=1))
            layer = _select_layer(module, out_keep, in_keep)
            out.append(lower_if_column_sparse(layer) if shapes else layer)
        elif isinstance(module, nn.modules.batchnorm._BatchNorm) and (i - 1) in masks:
            out.append(_select_batchnorm(module, masks[i - 1][0]))
        else:
            out.append(copy.deepcopy(module))
    return nn.Sequential(*out)


class ConstantBranch(nn.Module):
    """A residual branch whose last conv is all zero: in eval mode it outputs one constant per
    channel."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.register_buffer("value", value.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value


def _last_conv_is_zero(branch: nn.Sequential) -> bool:
    convs = [m for m in branch if isinstance(m, nn.Conv2d)]
    after = list(branch)[list(branch).index(convs[-1]) + 1 :] if convs else []
    return (
        bool(convs)
        and not bool(convs[-1].weight.any())
        and (convs[-1].bias is None or not bool(convs[-1].bias.any()))
        and all(isinstance(m, nn.modules.batchnorm._BatchNorm) for m in after)
    )


@torch.no_grad()
def drop_zero_branches(model: nn.Module) -> list[str]:
    """Remove residual branches that compute nothing input-dependent; return their names.

    A branch whose depth group is exactly zero outputs 0: ``drop_branch()``. A branch whose last
    conv is all zero outputs (eval mode) the constant β − γ·μ/√(σ² + ε) of its last BatchNorm: it
    becomes a :class:`ConstantBranch` (no weight layers left), or is dropped when that constant is
    0.
    """
    removed = []
    for name, block in model.named_modules():
        if (
            not isinstance(block, BasicBlock)
            or block.branch is None
            or isinstance(block.branch, ConstantBranch)
        ):
            continue
        if float(branch_squares(block)) == 0.0:
            block.drop_branch()
        elif _last_conv_is_zero(block.branch):
            in_channels = next(m for m in block.branch if isinstance(m, nn.Conv2d)).in_channels
            value = block.branch.eval()(
                torch.zeros(1, in_channels, 1, 1, device=block.branch[0].weight.device)
            )
            block.branch = ConstantBranch(value) if bool(value.any()) else None
        else:
            continue
        removed.append(name)
    return removed


@torch.no_grad()
def compact(model: nn.Module, gather_inputs: bool = True, shapes: bool = True) -> nn.Module:
    """A smaller dense copy of ``model`` whose outputs equal the original's (in eval mode).

    Removes input-independent residual branches, then compacts every ``nn.Sequential`` (the root one
    may gather its surviving inputs when ``gather_inputs``); ``shapes`` lowers column-sparse convs
    to GEMM.
    """
    model = copy.deepcopy(model).eval()
    drop_zero_branches(model)
    if isinstance(model, nn.Sequential):
        return compact_sequential(model, gather_inputs, shapes).eval()
    parents = [
        (name, m) for name, m in model.named_modules() if isinstance(m, nn.Sequential) and name
    ]
    for name, seq in parents:
        if any(isinstance(c, WEIGHT_LAYERS) for c in seq.children()):
            parent_name, _, attr = name.rpartition(".")
            parent = model.get_submodule(parent_name) if parent_name else model
            setattr(parent, attr, compact_sequential(seq, False, shapes))
    return model.eval()


def layer_macs(model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 28, 28)) -> dict[str, int]:
    """Per-sample MACs of every Linear, Conv2d and GemmConv2d actually run: positions × weight
    size."""
    return {c.name: c.macs for c in layer_costs(model, input_shape, (*WEIGHT_LAYERS, GemmConv2d))}


__all__ = [
    "Gather",
    "GemmConv2d",
    "ConstantBranch",
    "keep_masks",
    "lower_if_column_sparse",
    "compact_sequential",
    "drop_zero_branches",
    "compact",
    "layer_macs",
]
