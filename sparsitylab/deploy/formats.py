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

The 2:4 layout follows the PTX ISA sparse-storage section (§9.7.14.6, "sparse matrix storage") and
PyTorch's ``torch/sparse/_semi_structured_conversions.py``: values ``[m, k/2]``; metadata
``[m, k/16]`` int16 words of four 4-bit nibbles, first group in the lowest nibble,
``nibble = idx0 | idx1 << 2`` with ``idx0 < idx1``.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, ClassVar, Self

import torch

from .._checks import check_nm, check_pair, check_tensor, check_values
from ..gemm import alive_columns, alive_rows, gemm_view

INDEX = torch.int32


def _check_dense(dense: Any, name: str = "dense") -> torch.Tensor:
    check_values(check_tensor(dense, name, dims=(2,), floating=True), name)
    if dense.numel() == 0:
        raise ValueError(
            f"{name} has shape {tuple(dense.shape)}; a sparse format needs at least one row and "
            f"column"
        )
    return dense


class _Format:
    """Shared helpers: tensor fields, byte size, device moves, packing a layer's weight."""

    shape: tuple[int, int]
    order: ClassVar[str] = "chw"

    @classmethod
    def from_weight(cls, weight: torch.Tensor, *args: Any) -> Self:
        """Pack a Linear or Conv2d weight: ``from_dense`` of its GEMM view in this format's
        ``order``."""
        return cls.from_dense(gemm_view(weight.detach(), cls.order), *args)  # type: ignore[attr-defined]

    def _tensors(self, with_aux: bool = True) -> dict[str, torch.Tensor]:
        return {
            f.name: getattr(self, f.name)
            for f in dataclasses.fields(self)  # type: ignore[arg-type]
            if isinstance(getattr(self, f.name), torch.Tensor)
            and (with_aux or not f.metadata.get("aux"))
        }

    @property
    def nbytes(self) -> int:
        """Bytes of the stored values and indices (auxiliary kernel data such as row orders
        excluded)."""
        return sum(t.numel() * t.element_size() for t in self._tensors(with_aux=False).values())

    @property
    def density(self) -> float:
        """Stored values (explicit zeros included) / dense elements."""
        return self.values.numel() / (self.shape[0] * self.shape[1])  # type: ignore[attr-defined]

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor]) -> Self:
        """A copy with ``fn`` applied to every tensor field, e.g. ``csr.map(lambda t:
        t.cuda())``."""
        return dataclasses.replace(self, **{k: fn(v) for k, v in self._tensors().items()})  # type: ignore


def dense_nbytes(shape: tuple[int, int], dtype: torch.dtype = torch.float32) -> int:
    """Bytes of the dense matrix: rows · cols · element size."""
    return shape[0] * shape[1] * torch.empty((), dtype=dtype).element_size()


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


def _group_keep(dense: torch.Tensor, n: int, m: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Per group of ``m`` along a row: the ``n`` kept positions (ascending) and their values.

    Non-zeros are kept first; a group with fewer than ``n`` of them is padded with the lowest free
    positions, which store explicit zeros (as the 2:4 hardware format requires).
    """
    rows, k = dense.shape
    groups = dense.reshape(rows, k // m, m)
    nonzero = groups.ne(0)
    too_many = int((nonzero.sum(-1) > n).sum())
    if too_many:
        raise ValueError(
            f"dense is not {n}:{m} sparse: {too_many} groups of {m} hold more than {n} "
            f"non-zeros (apply an N:M mask first, e.g. sparsitylab.sparsify.masks.nm_mask, with "
            f"the same order)"
        )
    position = torch.arange(m, device=dense.device)
    priority = nonzero.long() * m + (m - 1 - position)  # non-zeros first, then lowest positions
    keep = priority.topk(n, dim=-1).indices.sort(-1).values
    return keep, groups.gather(-1, keep)


MAX_M = 256  # in-group indices are stored as uint8


def _check_nm(dense: torch.Tensor, n: Any, m: Any) -> None:
    n, m = check_nm(n, m)
    if m > MAX_M:
        raise ValueError(
            f"m={m} is too large: the N:M format stores in-group indices as uint8, so m ≤ {MAX_M}"
        )
    if dense.shape[1] % m:
        raise ValueError(
            f"the row length {dense.shape[1]} must be a multiple of m={m} for {n}:{m} groups"
        )


def _scatter_groups(
    shape: tuple[int, int], m: int, positions: torch.Tensor, values: torch.Tensor
) -> torch.Tensor:
    rows, k = shape
    groups = torch.zeros(rows, k // m, m, dtype=values.dtype, device=values.device)
    groups.scatter_(-1, positions.long(), values)
    return groups.reshape(rows, k)


@dataclass(frozen=True)
class NM(_Format):
    """General N:M along rows, for teaching: ``values[rows, k/m, n]`` and in-group ``indices``
    (uint8, m ≤ 256)."""

    order: ClassVar[str] = "hwc"
    shape: tuple[int, int]
    n: int
    m: int
    values: torch.Tensor
    indices: torch.Tensor

    @classmethod
    def from_dense(cls, dense: torch.Tensor, n: int, m: int) -> NM:
        dense = _check_dense(dense)
        _check_nm(dense, n, m)
        keep, values = _group_keep(dense, n, m)
        return cls(tuple(dense.shape), n, m, values.contiguous(), keep.to(torch.uint8))

    def to_dense(self) -> torch.Tensor:
        return _scatter_groups(self.shape, self.m, self.indices, self.values)


NIBBLES_PER_WORD = 4  # int16 metadata word = 4 groups of 4 = 16 dense columns


@dataclass(frozen=True)
class Sparse24(_Format):
    """2:4 compressed as for sparse tensor cores: ``values[m, k/2]``, ``metadata[m, k/16]`` int16.

    Group ``g`` of a row keeps positions ``idx0 < idx1``; its nibble ``idx0 | idx1 << 2`` sits in
    bits ``4(g mod 4) … 4(g mod 4)+3`` of word ``g // 4`` (PTX ISA §9.7.14.6; PyTorch's converter).
    """

    order: ClassVar[str] = "hwc"
    shape: tuple[int, int]
    values: torch.Tensor
    metadata: torch.Tensor

    @classmethod
    def from_dense(cls, dense: torch.Tensor) -> Sparse24:
        dense = _check_dense(dense)
        if dense.shape[1] % 16:
            raise ValueError(
                f"2:4 metadata packs 16 columns per int16 word; the row length {dense.shape[1]} "
                "must be a multiple of 16 (use NM for other lengths)"
            )
        keep, values = _group_keep(dense, 2, 4)
        nibbles = (keep[..., 0] | (keep[..., 1] << 2)).reshape(dense.shape[0], -1, NIBBLES_PER_WORD)
        shifts = 4 * torch.arange(NIBBLES_PER_WORD, device=dense.device)
        words = (nibbles << shifts).sum(-1)  # 0 … 0xFFFF
        words = torch.where(words >= 1 << 15, words - (1 << 16), words)  # same bits as int16
        return cls(
            tuple(dense.shape),
            values.reshape(dense.shape[0], -1).contiguous(),
            words.to(torch.int16),
        )

    def positions(self) -> torch.Tensor:
        """Decoded in-group positions ``[m, k/4, 2]`` (int64)."""
        words = self.metadata.long() & 0xFFFF
        shifts = 4 * torch.arange(NIBBLES_PER_WORD, device=words.device)
        nibbles = ((words.unsqueeze(-1) >> shifts) & 0xF).reshape(self.shape[0], -1)
        return torch.stack([nibbles & 3, nibbles >> 2], -1)

    def to_dense(self) -> torch.Tensor:
        return _scatter_groups(
            self.shape, 4, self.positions(), self.values.reshape(self.shape[0], -1, 2)
        )


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
