"""Sparse storage formats: CSR, BSR, hierarchical blocks (HBS), N:M (teaching), 2:4 compressed
(hardware layout), compacted.

Every format is a frozen dataclass of torch tensors with ``from_dense`` / ``to_dense`` (an exact
round trip) and ``nbytes`` (bytes a kernel must read for the sparse operand), so the book can plot
storage cost against density. Tensors may live on any device; ``map`` moves them, and
:func:`to_array` / :func:`from_array` exchange them zero-copy with NumPy or CuPy via DLPack.

A layer's weight is packed with ``from_weight``, through its GEMM view (:mod:`sparsitylab.gemm`) in
the format's ``order``: CSR, BSR, HBS and compacted use ``"chw"`` (PyTorch's im2col order), the N:M
formats ``"hwc"``, where N:M groups are input channels at a fixed kernel tap (the layout of sparse
tensor cores). The packed matrix multiplies ``im2col(x, ..., order=fmt.order)``.

This module is the one place to import every format from: the N:M ones live in
:mod:`.nm_formats` (with the 2:4 metadata layout) and the shared base in :mod:`.format_base`.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Self

import torch

from .._checks import check_pair, check_tensor
from ..gemm import alive_columns, alive_rows, gemm_view
from .format_base import INDEX, _check_dense, _Format, dense_nbytes
from .nm_formats import NM, Sparse24


@dataclass(frozen=True)
class CSR(_Format):
    """Compressed sparse rows: ``row_ptr[M+1]``, ``col_idx[nnz]``, ``values[nnz]`` (int32 indices).

    ``row_order`` lists rows by decreasing length: Sputnik's row swizzle (Gale et al., SC'20),
    computed once here so kernels can schedule heavy rows first.
    """

    shape: tuple[int, int]
    row_ptr: torch.Tensor
    col_idx: torch.Tensor
    values: torch.Tensor
    row_order: torch.Tensor = field(metadata={"aux": True})

    @classmethod
    def from_dense(cls, dense: torch.Tensor) -> CSR:
        dense = _check_dense(dense)
        rows, cols = dense.nonzero(as_tuple=True)
        lengths = torch.bincount(rows, minlength=dense.shape[0])
        row_ptr = torch.zeros(dense.shape[0] + 1, dtype=torch.int64, device=dense.device)
        row_ptr[1:] = lengths.cumsum(0)
        order = torch.argsort(lengths, descending=True, stable=True)
        return cls(
            tuple(dense.shape),
            row_ptr.to(INDEX),
            cols.to(INDEX),
            dense[rows, cols].clone(),
            order.to(INDEX),
        )

    def to_dense(self) -> torch.Tensor:
        lengths = (self.row_ptr[1:] - self.row_ptr[:-1]).long()
        rows = torch.repeat_interleave(torch.arange(self.shape[0], device=lengths.device), lengths)
        out = torch.zeros(self.shape, dtype=self.values.dtype, device=self.values.device)
        out[rows, self.col_idx.long()] = self.values
        return out


@dataclass(frozen=True)
class BSR(_Format):
    """Block sparse rows: CSR over ``block = (br, bc)`` tiles; ``values[nnzb, br, bc]``.

    A block is stored when any of its entries is non-zero. Any block shape that divides the matrix
    works, rectangular ones included (e.g. 4×1 for the hierarchical block chapter).
    """

    shape: tuple[int, int]
    block: tuple[int, int]
    row_ptr: torch.Tensor
    col_idx: torch.Tensor
    values: torch.Tensor

    @classmethod
    def from_dense(cls, dense: torch.Tensor, block: tuple[int, int]) -> BSR:
        dense = _check_dense(dense)
        br, bc = _check_block(block, tuple(dense.shape))
        m, k = dense.shape
        tiles = dense.reshape(m // br, br, k // bc, bc).transpose(1, 2)  # [MB, KB, br, bc]
        keep = tiles.ne(0).flatten(2).any(2)
        block_rows, block_cols = keep.nonzero(as_tuple=True)
        row_ptr = torch.zeros(m // br + 1, dtype=torch.int64, device=dense.device)
        row_ptr[1:] = keep.sum(1).cumsum(0)
        return cls(
            (m, k),
            (br, bc),
            row_ptr.to(INDEX),
            block_cols.to(INDEX),
            tiles[block_rows, block_cols].contiguous(),
        )

    def to_dense(self) -> torch.Tensor:
        (m, k), (br, bc) = self.shape, self.block
        lengths = (self.row_ptr[1:] - self.row_ptr[:-1]).long()
        block_rows = torch.repeat_interleave(torch.arange(m // br, device=lengths.device), lengths)
        tiles = torch.zeros(
            m // br, k // bc, br, bc, dtype=self.values.dtype, device=self.values.device
        )
        tiles[block_rows, self.col_idx.long()] = self.values
        return tiles.transpose(1, 2).reshape(m, k)


@dataclass(frozen=True)
class HBS(_Format):
    """Hierarchical block sparse (Vooturi et al., HBsNN): A = Σ_k A_k, one :class:`BSR` per level,
    each with its own block shape; the levels hold disjoint entries.

    ``from_dense(dense, levels)`` (levels as pairs or in the paper's notation, "4x1/63+1x1/97")
    prunes ``dense`` itself with
    :func:`sparsitylab.sparsify.hierarchical.hierarchical_masks`; ``from_masks`` packs a matrix
    whose level masks are known (a trained HBS layer). ``nbytes`` adds the levels' bytes.
    """

    shape: tuple[int, int]
    levels: tuple[BSR, ...]

    @classmethod
    def from_dense(cls, dense: torch.Tensor, levels: Any) -> HBS:
        from ..sparsify.hierarchical import check_levels, hierarchical_masks, parse_config, union

        levels = parse_config(levels) if isinstance(levels, str) else check_levels(levels)
        dense = _check_dense(dense)
        masks = hierarchical_masks(dense, levels)
        pruned = torch.where(union(masks), dense, torch.zeros((), dtype=dense.dtype))
        return cls.from_masks(pruned, masks, [shape for shape, _ in levels])

    @classmethod
    def from_masks(
        cls, dense: torch.Tensor, masks: list[torch.Tensor], blocks: list[tuple[int, int]]
    ) -> HBS:
        """Level k = ``dense`` on ``masks[k]``, stored as BSR with ``blocks[k]``; every non-zero of
        ``dense`` must belong to exactly one level."""
        dense = _check_dense(dense)
        if len(masks) != len(blocks) or not masks:
            raise ValueError(
                f"give one block shape per level mask: {len(masks)} masks, {len(blocks)} blocks"
            )
        count = torch.zeros(dense.shape, dtype=torch.int64, device=dense.device)
        for mask in masks:
            count += gemm_view(mask).to(device=dense.device, dtype=torch.int64)
        if (count > 1).any() or ((count == 0) & dense.ne(0)).any():
            raise ValueError(
                "the level masks must be disjoint and cover every non-zero of dense "
                f"({int((count > 1).sum())} entries in two levels, "
                f"{int(((count == 0) & dense.ne(0)).sum())} non-zeros in none)"
            )
        zero = torch.zeros((), dtype=dense.dtype, device=dense.device)
        return cls(
            tuple(dense.shape),
            tuple(
                BSR.from_dense(torch.where(gemm_view(mask).to(dense.device), dense, zero), block)
                for mask, block in zip(masks, blocks)
            ),
        )

    def to_dense(self) -> torch.Tensor:
        out = self.levels[0].to_dense()
        for level in self.levels[1:]:
            out = out + level.to_dense()
        return out

    @property
    def nbytes(self) -> int:
        return sum(level.nbytes for level in self.levels)

    @property
    def density(self) -> float:
        stored = sum(level.values.numel() for level in self.levels)
        return stored / (self.shape[0] * self.shape[1])

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Self:
        return dataclasses.replace(self, levels=tuple(level.map(fn) for level in self.levels))


def _check_block(block: Any, shape: tuple[int, ...]) -> tuple[int, int]:
    if not isinstance(block, (tuple, list)):
        raise TypeError(f"block must be a pair of ints (rows, cols), got {block!r}")
    br, bc = check_pair(block, "block")
    if shape[0] % br or shape[1] % bc:
        raise ValueError(
            f"block={tuple(block)} must be positive and divide the matrix shape {shape}; "
            f"allowed: block rows dividing {shape[0]} and block cols dividing {shape[1]}"
        )
    return br, bc


@dataclass(frozen=True)
class Compacted(_Format):
    """Structured (row/column) sparsity as a small dense matrix: ``values = dense[rows][:, cols]``.

    By default the kept rows and columns are the alive ones (:mod:`sparsitylab.gemm`: filter and
    channel pruning); ``rows``/``cols`` may be given, distinct and in range, but must cover every
    non-zero.
    """

    shape: tuple[int, int]
    rows: torch.Tensor
    cols: torch.Tensor
    values: torch.Tensor

    @classmethod
    def from_dense(
        cls, dense: torch.Tensor, rows: torch.Tensor | None = None, cols: torch.Tensor | None = None
    ) -> Compacted:
        dense = _check_dense(dense)
        nonzero = dense.ne(0)
        rows = (
            alive_rows(dense).nonzero().flatten()
            if rows is None
            else _check_index(rows, "rows", dense.shape[0])
        )
        cols = (
            alive_columns(dense).nonzero().flatten()
            if cols is None
            else _check_index(cols, "cols", dense.shape[1])
        )
        kept = torch.zeros_like(nonzero)
        kept[rows.unsqueeze(1), cols] = True
        if bool((nonzero & ~kept).any()):
            raise ValueError(
                "rows/cols drop non-zero entries of dense; a compacted matrix must keep them all"
            )
        values = dense[rows][:, cols].contiguous()
        return cls(tuple(dense.shape), rows.to(INDEX), cols.to(INDEX), values)

    def to_dense(self) -> torch.Tensor:
        out = torch.zeros(self.shape, dtype=self.values.dtype, device=self.values.device)
        out[self.rows.long().unsqueeze(1), self.cols.long()] = self.values
        return out


def _check_index(index: Any, name: str, size: int) -> torch.Tensor:
    check_tensor(index, name, dims=(1,))
    if index.is_floating_point() or index.dtype == torch.bool:
        raise TypeError(f"{name} has dtype {index.dtype}; give integer indices")
    index = index.long()
    if index.numel() and (int(index.min()) < 0 or int(index.max()) >= size):
        raise ValueError(f"{name} holds indices outside [0, {size})")
    if index.unique().numel() != index.numel():
        raise ValueError(f"{name} holds duplicated indices; each row/column may be kept once")
    return index


def to_array(t: torch.Tensor, xp: Any) -> Any:
    """``t`` as an array of module ``xp`` (NumPy or CuPy), zero-copy via DLPack when devices match.

    A CPU tensor going to CuPy is copied to the current GPU (there is nothing to share).
    """
    t = t.contiguous()
    if xp.__name__ == "cupy" and not t.is_cuda:
        return xp.asarray(t.numpy())
    return xp.from_dlpack(t)


def from_array(a: Any) -> torch.Tensor:
    """A NumPy or CuPy array as a torch tensor sharing its memory (DLPack)."""
    return torch.from_dlpack(a)


__all__ = [
    "BSR",
    "CSR",
    "HBS",
    "NM",
    "Compacted",
    "Sparse24",
    "dense_nbytes",
    "from_array",
    "to_array",
]
