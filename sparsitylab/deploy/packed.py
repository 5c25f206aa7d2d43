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

import torch
from torch import nn

from ..metrics import prunable_layers
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


def pack(model: nn.Module, packer: Packer, backend: Backend | None | str = "cpu") -> nn.Module:
    """A copy of ``model`` (eval mode) in which every prunable layer for which ``packer(name,
    layer)`` returns a format computes through it; layers it returns None for stay as they are.
    ``model`` is unchanged."""
    packed = copy.deepcopy(model).eval()
    for name, layer in prunable_layers(packed).items():
        fmt = packer(name, layer)
        if fmt is None:
            continue
        parent, _, child = name.rpartition(".")
        owner = packed.get_submodule(parent) if parent else packed
        setattr(owner, child, PackedLayer(layer, fmt, backend))
    return packed


def packed_layers(model: nn.Module) -> list[str]:
    """Names of the layers of ``model`` that compute through a format."""
    return [name for name, m in model.named_modules() if isinstance(m, PackedLayer)]


__all__ = ["PackedLayer", "Packer", "pack", "packed_layers"]
