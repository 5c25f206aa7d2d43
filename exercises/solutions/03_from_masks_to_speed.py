"""Solutions to ``exercises/03_from_masks_to_speed.py`` (for instructors)."""

from __future__ import annotations

import torch


def csr_arrays(dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    nonzero = dense != 0
    row_ptr = torch.zeros(dense.shape[0] + 1, dtype=torch.int64, device=dense.device)
    row_ptr[1:] = nonzero.sum(1).cumsum(0)
    columns = torch.arange(dense.shape[1], device=dense.device).expand(dense.shape)
    # boolean indexing walks the matrix in row-major order: rows in order, columns increasing
    return row_ptr.to(torch.int32), columns[nonzero].to(torch.int32), dense[nonzero].clone()


def csr_nbytes(shape: tuple[int, int], nnz: int, value_bytes: int = 4, index_bytes: int = 4) -> int:
    return index_bytes * (shape[0] + 1) + (index_bytes + value_bytes) * nnz


def csr_break_even_density(
    shape: tuple[int, int], value_bytes: int = 4, index_bytes: int = 4
) -> float:
    # index_bytes·(M + 1) + (index_bytes + value_bytes)·d·M·K = value_bytes·M·K
    cells = shape[0] * shape[1]
    return (value_bytes * cells - index_bytes * (shape[0] + 1)) / (
        (value_bytes + index_bytes) * cells
    )


def sparse24_compress(dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    rows, k = dense.shape
    groups = dense.reshape(rows, k // 4, 4)
    # non-zeros first, then the free positions, each in position order (a stable sort of a 0/1 key)
    order = torch.argsort((groups == 0).long(), dim=-1, stable=True)
    keep = order[..., :2].sort(-1).values  # idx0 < idx1
    values = groups.gather(-1, keep).reshape(rows, k // 2)
    nibbles = (keep[..., 0] | (keep[..., 1] << 2)).reshape(rows, k // 16, 4)
    words = sum(nibbles[..., j] << (4 * j) for j in range(4))
    words = torch.where(words >= 1 << 15, words - (1 << 16), words)
    return values, words.to(torch.int16)
