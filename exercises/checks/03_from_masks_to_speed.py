"""Graders for ``exercises/03_from_masks_to_speed.py``: each ``check_*`` takes the student's
module and raises AssertionError (or the stub's NotImplementedError) unless the exercise is
solved."""

from __future__ import annotations

import pytest
import torch

from sparsitylab.deploy import formats
from sparsitylab.sparsify.masks import nm_mask, topk_mask


def _sparse(shape, density: float, seed: int, dtype=torch.float32) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    dense = torch.randn(shape, generator=g).to(dtype)
    return dense * (torch.rand(shape, generator=g) < density)


def check_csr_arrays(student) -> None:
    dense = torch.tensor([[0.0, 2.0, 0.0, 1.0], [0.0, 0.0, 0.0, 0.0], [3.0, 0.0, 0.0, 0.0]])
    row_ptr, col_idx, values = student.csr_arrays(dense)
    assert row_ptr.tolist() == [0, 2, 2, 3], (
        f"hand case: row_ptr has M + 1 = 4 entries, an empty row repeats its start; got "
        f"{row_ptr.tolist()}"
    )
    assert col_idx.tolist() == [1, 3, 0], f"hand case: col_idx, got {col_idx.tolist()}"
    assert values.tolist() == [2.0, 1.0, 3.0], f"hand case: values, got {values.tolist()}"
    assert row_ptr.dtype == col_idx.dtype == torch.int32, (
        f"store the indices as int32 (4 bytes each), got {row_ptr.dtype} and {col_idx.dtype}"
    )
    cases = [_sparse((8, 16), 0.25, 0), _sparse((33, 20), 0.1, 1), _sparse((5, 7), 0.9, 2)]
    w = torch.randn(16, 16)
    cases += [w * topk_mask(w, 0.75), _sparse((6, 8), 0.5, 3, torch.float64)]
    cases[1][4] = 0  # an empty row
    for dense in cases:
        csr = formats.CSR.from_dense(dense)
        row_ptr, col_idx, values = student.csr_arrays(dense)
        where = (
            f"a {tuple(dense.shape)} {dense.dtype} matrix with {int(dense.ne(0).sum())} non-zeros"
        )
        assert torch.equal(row_ptr.long(), csr.row_ptr.long()), f"{where}: row_ptr differs"
        assert torch.equal(col_idx.long(), csr.col_idx.long()), (
            f"{where}: col_idx differs (rows in their own order, columns increasing)"
        )
        assert values.dtype == dense.dtype, f"{where}: values must keep the dtype {dense.dtype}"
        assert torch.equal(values, csr.values), f"{where}: values differ"


def check_csr_nbytes(student) -> None:
    got = student.csr_nbytes((8, 16), 32)
    assert got == 4 * 9 + (4 + 4) * 32, (
        f"hand case 8×16 with 32 non-zeros: 9 row pointers + 32 columns + 32 values, 4 bytes "
        f"each = 292, got {got}"
    )
    got = student.csr_nbytes((4096, 4096), 1000, value_bytes=2, index_bytes=2)
    assert got == 2 * 4097 + 4 * 1000, f"fp16 values, 16-bit indices: 12 194 bytes, got {got}"
    for seed, (shape, density) in enumerate([((8, 16), 0.25), ((64, 48), 0.1), ((30, 31), 0.6)]):
        for dtype in (torch.float32, torch.float64, torch.float16):
            dense = _sparse(shape, density, seed, dtype)
            csr = formats.CSR.from_dense(dense)
            nnz = int(dense.ne(0).sum())
            value_bytes = dense.element_size()
            got = student.csr_nbytes(shape, nnz, value_bytes=value_bytes)
            assert got == csr.nbytes, (
                f"{shape} {dtype} with {nnz} non-zeros: CSR.nbytes is {csr.nbytes}, got {got}"
            )


def _with_nonzeros(shape, nnz: int, dtype) -> torch.Tensor:
    flat = torch.zeros(shape[0] * shape[1], dtype=dtype)
    flat[torch.randperm(flat.numel(), generator=torch.Generator().manual_seed(nnz))[:nnz]] = 1.5
    return flat.reshape(shape)


def check_csr_break_even_density(student) -> None:
    got = student.csr_break_even_density((8, 16))
    assert got == pytest.approx((4 * 128 - 4 * 9) / (8 * 128)), (
        f"hand case 8×16 fp32: (4·128 − 4·9) / (8·128) = 0.46484375, got {got}"
    )
    got = student.csr_break_even_density((4096, 4096), value_bytes=2, index_bytes=2)
    assert got == pytest.approx(0.5 - 4097 / (2 * 4096**2)), (
        "4096×4096, fp16 values and 16-bit indices: just below 0.5 (as the chapter says), got "
        f"{got}"
    )
    for shape in [(8, 16), (64, 64), (100, 37), (1, 10), (256, 128)]:
        for dtype in (torch.float32, torch.float64):
            value_bytes, cells = torch.empty((), dtype=dtype).element_size(), shape[0] * shape[1]
            expected = (value_bytes * cells - 4 * (shape[0] + 1)) / ((value_bytes + 4) * cells)
            dense_bytes = formats.dense_nbytes(shape, dtype)
            most = int(expected * cells)  # the most non-zeros at which CSR is not larger
            assert formats.CSR.from_dense(_with_nonzeros(shape, most, dtype)).nbytes <= dense_bytes
            assert formats.CSR.from_dense(_with_nonzeros(shape, most + 1, dtype)).nbytes > (
                dense_bytes
            )
            got = student.csr_break_even_density(shape, value_bytes=value_bytes)
            assert got == pytest.approx(expected), (
                f"{shape} {dtype}: CSR's bytes equal dense at density {expected:.6f} (the library "
                f"stores at most {most} non-zeros in no more bytes), got {got}"
            )


def check_sparse24_compress(student) -> None:
    row = [0.0, 1.5, 0.0, -2.0, 0.0, 0.0, 0.0, 0.0, 7.0, 0.0, 0.0, 0.0, 0.0, 0.0, 3.0, 4.0]
    dense = torch.tensor([row, [0.0] * 16])
    values, metadata = student.sparse24_compress(dense)
    assert values.tolist() == [[1.5, -2.0, 0.0, 0.0, 7.0, 0.0, 3.0, 4.0], [0.0] * 8], (
        "hand case: groups keep (1, 3), (0, 1), (0, 1) and (2, 3) — an empty or half-empty group "
        f"pads with its lowest free positions; got values {values.tolist()}"
    )
    assert metadata.dtype == torch.int16, f"metadata is int16, got {metadata.dtype}"
    # nibbles 0xD, 0x4, 0x4, 0xE, first group lowest: 0xE44D ≥ 2¹⁵ is stored as 0xE44D − 2¹⁶
    assert metadata.tolist() == [[0xE44D - (1 << 16)], [0x4444]], (
        f"hand case: metadata words {[0xE44D - (1 << 16), 0x4444]}, got {metadata.tolist()}"
    )
    g = torch.Generator().manual_seed(0)
    for shape in [(4, 16), (8, 32), (16, 64), (3, 48)]:
        for extra_zeros in (0.0, 0.4):
            w = torch.randn(shape, generator=g)
            w = w * nm_mask(w, 2, 4) * (torch.rand(shape, generator=g) >= extra_zeros)
            expected = formats.Sparse24.from_dense(w)
            values, metadata = student.sparse24_compress(w)
            where = f"a {shape} 2:4 matrix" + (" with extra zeros" if extra_zeros else "")
            assert tuple(values.shape) == (shape[0], shape[1] // 2), f"{where}: values (M, K/2)"
            assert tuple(metadata.shape) == (shape[0], shape[1] // 16), (
                f"{where}: metadata (M, K/16)"
            )
            assert torch.equal(values, expected.values), f"{where}: values differ"
            assert torch.equal(metadata, expected.metadata), f"{where}: metadata words differ"
            nbytes = values.numel() * values.element_size() + metadata.numel() * 2
            assert nbytes == expected.nbytes, f"{where}: {nbytes} bytes, expected {expected.nbytes}"
            assert nbytes / formats.dense_nbytes(shape) == pytest.approx(0.5 + 1 / 32), (
                "2:4 in fp32 stores 0.5 + 1/32 of the dense bytes"
            )
    half = torch.randn(8, 32, generator=g).half()
    half = half * nm_mask(half, 2, 4)
    values, metadata = student.sparse24_compress(half)
    expected = formats.Sparse24.from_dense(half)
    assert values.dtype == torch.float16 and torch.equal(values, expected.values), "fp16 values"
    assert torch.equal(metadata, expected.metadata), "fp16: metadata words differ"
