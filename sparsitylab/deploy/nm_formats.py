"""N:M storage formats: general N:M along rows (teaching) and the 2:4 compressed layout of sparse
tensor cores.

The 2:4 layout follows the PTX ISA sparse-storage section (§9.7.14.6, "sparse matrix storage") and
PyTorch's ``torch/sparse/_semi_structured_conversions.py``: values ``[m, k/2]``; metadata
``[m, k/16]`` int16 words of four 4-bit nibbles, first group in the lowest nibble,
``nibble = idx0 | idx1 << 2`` with ``idx0 < idx1``. Both use the ``"hwc"`` order: N:M groups are
input channels at a fixed kernel tap.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch

from .._checks import check_nm
from .format_base import _check_dense, _Format


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
