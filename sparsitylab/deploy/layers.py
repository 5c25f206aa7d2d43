"""The modules compaction builds: smaller stand-ins for what it removed or lowered.

- :class:`Gather` — keeps the surviving input features or channels of a first layer;
- :class:`GemmConv2d` — a convolution lowered to an im2col GEMM over its surviving columns;
- :class:`ConstantBranch` — a residual branch whose last conv is zero (it outputs a constant).

All three are ordinary modules: they train, save and load like any other.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from ..gemm import gemm_view


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


class ConstantBranch(nn.Module):
    """A residual branch whose last conv is all zero: in eval mode it outputs one constant per
    channel."""

    def __init__(self, value: torch.Tensor):
        super().__init__()
        self.register_buffer("value", value.detach().clone())

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return self.value


__all__ = ["ConstantBranch", "Gather", "GemmConv2d"]
