"""Exercises for the chapter "From masks to speed: storage formats and sparse kernels".

Replace each ``raise NotImplementedError`` with your code, then grade your work with

    python exercises/grade.py 03_from_masks_to_speed

Use plain PyTorch; the library's own formats (``sparsitylab.deploy.formats``) are what the grader
compares you with, so do not call them here. Throughout, ``dense`` is a 2-D floating-point matrix
of M rows and K columns, and "dense bytes" are M·K·(bytes per value).
"""

from __future__ import annotations

import torch


def csr_arrays(dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Exercise 1. The compressed-sparse-row arrays ``(row_ptr, col_idx, values)`` of ``dense``.

    Only the entries that are not exactly zero are stored, row by row in the matrix's own row
    order (no reordering: the longest-rows-first ``row_order`` of the library is separate kernel
    data) and by increasing column within a row. ``row_ptr`` has M + 1 entries: row i's non-zeros
    are ``values[row_ptr[i]:row_ptr[i + 1]]``, with ``row_ptr[0] = 0`` and ``row_ptr[M] = nnz``;
    ``col_idx`` holds their columns. Both index arrays are int32 tensors; ``values`` has the dtype
    of ``dense``.
    """
    raise NotImplementedError("exercise 1: the CSR arrays")


def csr_nbytes(shape: tuple[int, int], nnz: int, value_bytes: int = 4, index_bytes: int = 4) -> int:
    """Exercise 2. The bytes a kernel reads for a CSR matrix of ``shape`` with ``nnz`` non-zeros:
    the row pointers, the column indices (``index_bytes`` each) and the values (``value_bytes``
    each). Kernel scheduling data such as a row order is not counted. Return a Python int."""
    raise NotImplementedError("exercise 2: the bytes of CSR")


def csr_break_even_density(
    shape: tuple[int, int], value_bytes: int = 4, index_bytes: int = 4
) -> float:
    """Exercise 3. The density d = nnz / (M·K) at which CSR (as in exercise 2) takes exactly as many
    bytes as the dense matrix of the same value type; below it CSR is smaller. Treat nnz as a real
    number (no rounding) and return a Python float."""
    raise NotImplementedError("exercise 3: the break-even density of CSR")


def sparse24_compress(dense: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """Exercise 4. The 2:4 compressed form ``(values, metadata)`` that sparse tensor cores read.

    ``dense`` is 2:4 sparse along its rows: each group of 4 consecutive entries of a row holds at
    most 2 non-zeros; K is a multiple of 16. Every group keeps exactly two positions idx0 < idx1:
    its non-zeros, and when it has fewer than two, the lowest free positions (which then store
    explicit zeros). ``values`` (M, K/2), same dtype as ``dense``, holds the kept entries of each
    group in position order. ``metadata`` (M, K/16), dtype int16, packs one 4-bit nibble
    ``idx0 | idx1 << 2`` per group, four groups per 16-bit word: group g of a row goes to bits
    4·(g mod 4) … 4·(g mod 4) + 3 of word g // 4 (the first group in the lowest bits). A word of
    16 bits ≥ 2¹⁵ is stored as the int16 with the same bits (two's complement, i.e. minus 2¹⁶).
    """
    raise NotImplementedError("exercise 4: 2:4 values and metadata")
