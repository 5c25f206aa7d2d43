"""The GEMM view of a weight: the one place that says how a layer's weight is laid out as a matrix.

A ``Linear`` weight (out, in) already is the matrix of Y = W·X. A ``Conv2d`` weight (O, C, kh, kw)
is lowered to a GEMM, Y = W_mat · X_patches, with one row per filter (O rows) and C·kh·kw columns
(``Conv1d`` and ``Conv3d`` weights the same way, with one or three kernel dims). The columns can be
ordered two ways, and each user of the view states which:

- ``"chw"`` — column c·kh·kw + i·kw + j: PyTorch's and Caffe's im2col (``F.unfold``,
  ``W.flatten(1)``). SSL's groups, compaction and the CSR, BSR and compacted formats use it.
- ``"hwc"`` — column (i·kw + j)·C + c: the implicit GEMM of an NHWC convolution (cuDNN, CUTLASS,
  sparse tensor cores), where the C input channels of one kernel tap are consecutive.

**N:M groups are M consecutive columns of the GEMM view.** In ``"hwc"`` order they are M consecutive
input channels at a fixed (o, kh, kw) — the layout of NVIDIA ASP, of the NM-sparsity code since
March 2021 and of sparse tensor cores; in ``"chw"`` order they are M consecutive entries of the
flattened (c, kh, kw) row — the grouping of the N:M paper's original code (Zhou et al., ICLR 2021,
https://arxiv.org/abs/2102.04010). For a ``Linear`` layer both orders are the same: groups run along
the input dimension.

**Liveness** (one rule, used by compaction, formats, metrics and benchmarks): a row, column or input
channel is *alive* when at least one of its entries is non-zero (compared exactly; no squares that
could underflow).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F

from ._checks import check_choice, check_tensor

ORDERS = ("chw", "hwc")


def gemm_view(weight: torch.Tensor, order: str = "chw") -> torch.Tensor:
    """The GEMM matrix of a weight: (O, C, *kernel) → (O, C·∏kernel) in ``order``; a 2-D weight as
    it is.

    ``"chw"`` is a view of ``weight`` (no copy); ``"hwc"`` is a permuted copy.
    """
    check_tensor(weight, "weight", dims=(2, 3, 4, 5))
    check_choice(order, "order", ORDERS)
    if weight.dim() == 2:
        return weight
    return (
        weight.flatten(1) if order == "chw" else weight.movedim(1, -1).reshape(weight.shape[0], -1)
    )


def from_gemm_view(
    matrix: torch.Tensor, shape: tuple[int, ...] | torch.Size, order: str = "chw"
) -> torch.Tensor:
    """The inverse of :func:`gemm_view`: the weight of ``shape`` whose GEMM view in ``order`` is
    ``matrix``."""
    check_tensor(matrix, "matrix", dims=(2,))
    check_choice(order, "order", ORDERS)
    shape = tuple(shape)
    if (
        len(shape) not in (2, 3, 4, 5)
        or matrix.shape[0] != shape[0]
        or matrix.numel() != torch.Size(shape).numel()
    ):
        raise ValueError(
            f"matrix of shape {tuple(matrix.shape)} is not the GEMM view of a weight of shape "
            f"{shape}"
        )
    if len(shape) == 2:
        return matrix
    if order == "chw":
        return matrix.reshape(shape)
    out, channels, *kernel = shape
    return matrix.reshape(out, *kernel, channels).movedim(-1, 1).contiguous()


def im2col(
    x: torch.Tensor,
    kernel_size: tuple[int, int],
    stride=1,
    padding=0,
    dilation=1,
    order: str = "chw",
) -> torch.Tensor:
    """The patches (B, C·kh·kw, L) of ``x`` (B, C, H, W) with rows in ``order``, so that
    ``gemm_view(w, order) @ im2col(x, ...)`` is the (B, O, L) output of the convolution (L = output
    positions)."""
    check_choice(order, "order", ORDERS)
    patches = F.unfold(x, kernel_size, dilation=dilation, padding=padding, stride=stride)
    if order == "chw":
        return patches
    batch, channels = x.shape[:2]
    taps = patches.shape[1] // channels
    return (
        patches.view(batch, channels, taps, -1).transpose(1, 2).reshape(batch, taps * channels, -1)
    )


def alive_rows(matrix: torch.Tensor, *per_row: torch.Tensor | None) -> torch.Tensor:
    """Rows with a non-zero entry; ``per_row`` tensors (a bias, BatchNorm γ and β) count as part of
    their row."""
    alive = matrix.detach().ne(0).flatten(1).any(1)
    for extra in per_row:
        if extra is not None:
            alive = alive | extra.detach().ne(0)
    return alive


def alive_columns(matrix: torch.Tensor) -> torch.Tensor:
    """Columns of a 2-D matrix with a non-zero entry."""
    return matrix.detach().ne(0).any(0)


def alive_inputs(weight: torch.Tensor) -> torch.Tensor:
    """Input features (Linear) or input channels (Conv2d: any of its kh·kw columns) with a non-zero
    weight."""
    return weight.detach().ne(0).transpose(0, 1).flatten(1).any(1)


__all__ = [
    "ORDERS",
    "alive_columns",
    "alive_inputs",
    "alive_rows",
    "from_gemm_view",
    "gemm_view",
    "im2col",
]
