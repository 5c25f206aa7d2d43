"""Whole models whose layers compute through a sparse format: what "deploy as CSR / HBS / 2:4"
means for a network, so its inference latency can be measured end to end.

:func:`pack` copies a model and replaces chosen Linear / Conv2d layers by :class:`PackedLayer`,
which holds the layer's weight in a :mod:`sparsitylab.deploy.formats` format and computes the
layer with :func:`sparsitylab.deploy.matmul.layer_forward` (one sparse × dense product per layer,
im2col for convolutions). Everything else (pooling, BatchNorm, activations) runs unchanged::

    csr_model = pack(model, lambda name, layer: CSR.from_weight(layer.weight))
    torch.testing.assert_close(csr_model(x), model(x))     # same function, different kernels

On the CPU the formats run through ``torch.sparse`` (MKL CSR and BSR; 2:4 through its CSR view,
:func:`sparsitylab.deploy.matmul.sparse24_as_csr`), so the latency is that of PyTorch's CPU sparse
kernels, not of a GPU's.
"""

from __future__ import annotations

import copy
from collections.abc import Callable
from typing import Any

import torch
from torch import nn

from ..graph.tracer import call
from ..metrics import prunable_layers
from ..models import eval_mode
from .matmul import Backend, Format, layer_forward

Packer = Callable[[str, nn.Module], Format | None]


class PackedLayer(nn.Module):
    """A Linear or Conv2d computed from its weight packed in ``fmt`` (the bias stays dense)."""

    def __init__(self, layer: nn.Module, fmt: Format, backend: Backend | None | str = "cpu"):
        super().__init__()
        self.layer, self.fmt, self.backend = layer, fmt, backend

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return layer_forward(self.fmt, self.layer, x, self.backend)

    def extra_repr(self) -> str:
        return f"{type(self.fmt).__name__} {self.fmt.shape[0]}×{self.fmt.shape[1]}"


def unpackable(model: nn.Module, name: str, layer: nn.Module, called: set[str] | None) -> str:
    """Why ``layer`` cannot compute through a packed weight ("" when it can)."""
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            return f"a grouped convolution (groups={layer.groups}); the formats hold one GEMM"
        if isinstance(layer.padding, str) or layer.padding_mode != "zeros":
            return "padding other than numeric zero padding"
    parent, _, child = name.rpartition(".")
    owner = model.get_submodule(parent) if parent else model
    if hasattr(owner, "in_proj_weight") and child == "out_proj":
        return f"{type(owner).__name__} reads out_proj.weight directly (it never calls out_proj)"
    if isinstance(owner, (nn.TransformerEncoderLayer, nn.TransformerDecoderLayer)):
        return f"{type(owner).__name__}'s fused fast path reads {child}.weight directly"
    if called is not None and name not in called:
        return "never called as a module on the example input (its owner reads .weight directly)"
    return ""


def _called(model: nn.Module, example_input: Any) -> set[str]:
    called: set[str] = set()
    hooks = [
        m.register_forward_pre_hook(lambda mod, args, n=n: called.add(n))
        for n, m in model.named_modules()
    ]
    try:
        with eval_mode(model), torch.no_grad():
            call(model, example_input)
    finally:
        for h in hooks:
            h.remove()
    return called


def pack(
    model: nn.Module,
    packer: Packer,
    backend: Backend | None | str = "cpu",
    example_input: Any = None,
) -> nn.Module:
    """A copy of ``model`` (eval mode) in which every Linear / Conv2d layer for which
    ``packer(name, layer)`` returns a format computes through it; layers it returns None for stay
    as they are. ``model`` is unchanged.

    A layer the formats cannot run — a grouped convolution, string padding, a layer whose owner
    reads its ``.weight`` directly (``nn.MultiheadAttention``'s ``out_proj``; with
    ``example_input``, any layer the forward pass never calls) — is refused here with a
    ``ValueError`` naming it; make ``packer`` return None for it.
    """
    packed = copy.deepcopy(model).eval()
    called = None if example_input is None else _called(packed, example_input)
    chosen, refused = {}, {}
    for name, layer in prunable_layers(packed).items():
        fmt = packer(name, layer)
        if fmt is None:
            continue
        why = unpackable(packed, name, layer, called)
        if why:
            refused[name] = why
        else:
            chosen[name] = (layer, fmt)
    if refused:
        raise ValueError(
            "pack cannot run these layers through a format: "
            + "; ".join(f"{n}: {why}" for n, why in refused.items())
            + " — return None from packer for them"
        )
    for name, (layer, fmt) in chosen.items():
        parent, _, child = name.rpartition(".")
        owner = packed.get_submodule(parent) if parent else packed
        setattr(owner, child, PackedLayer(layer, fmt, backend))
    return packed


def packed_layers(model: nn.Module) -> list[str]:
    """Names of the layers of ``model`` that compute through a format."""
    return [name for name, m in model.named_modules() if isinstance(m, PackedLayer)]


__all__ = ["PackedLayer", "Packer", "pack", "packed_layers", "unpackable"]
