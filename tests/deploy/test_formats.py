"""Storage formats: exact round trips, N:M structure, byte sizes, the 2:4 nibble table, DLPack."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsitylab.deploy.formats import (
    BSR,
    CSR,
    NM,
    Compacted,
    Sparse24,
    dense_nbytes,
    from_array,
    to_array,
)
from sparsitylab.sparsify.masks import nm_mask

SETTINGS = settings(max_examples=40, deadline=None)
VALID_NIBBLES = {0b0100, 0b1000, 0b1001, 0b1100, 0b1101, 0b1110}  # idx0 < idx1, PTX ISA


def sparse_matrix(rows: int, cols: int, density: float, seed: int) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    values = torch.randn(rows, cols, generator=g)
    return values * (torch.rand(rows, cols, generator=g) < density)


matrices = st.builds(
    sparse_matrix,
    st.integers(1, 24),
    st.integers(1, 24),
    st.sampled_from([0.0, 0.1, 0.5, 1.0]),
    st.integers(0, 2**31 - 1),
)


def nm_matrix(rows: int, groups: int, n: int, m: int, seed: int) -> torch.Tensor:
    w = sparse_matrix(rows, groups * m, 0.8, seed)
    return w * nm_mask(w, n, m)


@SETTINGS
@given(matrices)
def test_csr_round_trip_bytes_and_row_order(dense):
    csr = CSR.from_dense(dense)
    assert torch.equal(csr.to_dense(), dense)
    nnz = int(dense.count_nonzero())
    assert csr.nbytes == nnz * (4 + 4) + 4 * (dense.shape[0] + 1)
    lengths = dense.ne(0).sum(1)[csr.row_order.long()]
    assert sorted(csr.row_order.tolist()) == list(range(dense.shape[0]))
    assert torch.all(lengths[:-1] >= lengths[1:])


@SETTINGS
@given(matrices, st.data())
def test_bsr_round_trip_any_dividing_block(dense, data):
    rows, cols = dense.shape
    br = data.draw(st.sampled_from([d for d in range(1, rows + 1) if rows % d == 0]))
    bc = data.draw(st.sampled_from([d for d in range(1, cols + 1) if cols % d == 0]))
    bsr = BSR.from_dense(dense, (br, bc))
    assert torch.equal(bsr.to_dense(), dense)
    tiles = dense.reshape(rows // br, br, cols // bc, bc).ne(0).any(3).any(1)
    nnzb = int(tiles.sum())
    assert bsr.values.shape == (nnzb, br, bc)
    assert bsr.nbytes == nnzb * br * bc * 4 + 4 * nnzb + 4 * (rows // br + 1)


@pytest.mark.parametrize("block", [(8, 8), (16, 16), (32, 32), (4, 1), (1, 4)])
def test_bsr_common_blocks_on_a_block_mask(block):
    dense = sparse_matrix(64, 96, 1.0, 3)
    dense[: block[0], : block[1]] = 0  # one fully empty block
    assert torch.equal(BSR.from_dense(dense, block).to_dense(), dense)


@pytest.mark.parametrize("block", [(3, 4), (4, 5)])
def test_bsr_rejects_blocks_that_do_not_divide(block):
    with pytest.raises(ValueError, match=r"block=.*divide the matrix shape \(8, 8\)"):
        BSR.from_dense(torch.ones(8, 8), block)


@pytest.mark.parametrize(
    "block,err",
    [
        ((0, 4), ValueError),
        ((-4, 4), ValueError),
        (4, TypeError),
        ((4,), TypeError),
        ((4.0, 4), TypeError),
        ("4x4", TypeError),
    ],
)
def test_bsr_rejects_malformed_blocks(block, err):
    with pytest.raises(err, match="block"):
        BSR.from_dense(torch.ones(8, 8), block)


@SETTINGS
@given(
    st.integers(1, 8),
    st.integers(1, 6),
    st.sampled_from([(1, 2), (2, 4), (1, 4), (4, 8), (3, 8), (7, 8)]),
    st.integers(0, 2**31 - 1),
)
def test_nm_holds_and_round_trips(rows, groups, nm, seed):
    n, m = nm
    dense = nm_matrix(rows, groups, n, m, seed)
    fmt = NM.from_dense(dense, n, m)
    assert torch.equal(fmt.to_dense(), dense)
    assert fmt.values.shape == (rows, groups, n)
    positions = fmt.indices.long()
    assert positions.max() < m and torch.all(positions[..., 1:] > positions[..., :-1])
    assert fmt.nbytes == rows * groups * n * (4 + 1)
    assert fmt.density == pytest.approx(n / m)


def test_nm_rejects_dense_that_is_not_nm():
    dense = torch.tensor([[1.0, 2.0, 3.0, 0.0]])
    with pytest.raises(ValueError, match="not 2:4 sparse: 1 groups"):
        NM.from_dense(dense, 2, 4)
    with pytest.raises(ValueError, match="multiple of m=4"):
        NM.from_dense(torch.zeros(2, 6), 2, 4)
    for n in (5, 4, 0):  # n > m, n = m (dense) and n = 0 (empty) are not N:M formats
        with pytest.raises(ValueError, match="1 ≤ n < m"):
            NM.from_dense(torch.zeros(2, 8), n, 4)
    with pytest.raises(
        ValueError, match="m ≤ 256"
    ):  # uint8 in-group indices would wrap and corrupt the matrix
        NM.from_dense(torch.zeros(2, 512), 2, 512)


@SETTINGS
@given(
    st.integers(1, 8),
    st.integers(1, 4),
    st.integers(0, 2**31 - 1),
    st.sampled_from([0.0, 0.5, 1.0]),
)
def test_sparse24_round_trip_valid_nibbles_and_bytes(rows, words, seed, extra_zeros):
    dense = nm_matrix(rows, 4 * words, 2, 4, seed)
    dense = dense * (
        torch.rand(dense.shape, generator=torch.Generator().manual_seed(seed)) >= extra_zeros * 0.5
    )
    fmt = Sparse24.from_dense(dense)
    assert torch.equal(fmt.to_dense(), dense)
    assert fmt.values.shape == (rows, 8 * words) and fmt.metadata.shape == (rows, words)
    assert fmt.metadata.dtype == torch.int16
    nibbles = {(int(w) & 0xFFFF) >> (4 * j) & 0xF for w in fmt.metadata.flatten() for j in range(4)}
    assert nibbles <= VALID_NIBBLES
    assert (
        fmt.nbytes == rows * 16 * words * (4 // 2) + rows * words * 2
    )  # values k/2·4 B + k/16·2 B per row
    assert fmt.nbytes / dense_nbytes(dense.shape) == pytest.approx(0.5 + 1 / 32)


def test_sparse24_nibbles_match_the_ptx_table():
    a, b = 1.5, -2.0
    dense = torch.tensor(
        [
            [a, b, 0, 0, a, 0, b, 0, 0, a, b, 0, a, 0, 0, b],  # (0,1) (0,2) (1,2) (0,3)
            [0, a, 0, b, 0, 0, a, b, 0, 0, 0, 0, 0, 0, 0, a],
        ]
    )  # (1,3) (2,3) zeros (3 only)
    fmt = Sparse24.from_dense(dense)
    words = [int(w) & 0xFFFF for w in fmt.metadata[:, 0]]
    assert words == [
        0b1100_1001_1000_0100,
        0b1100_0100_1110_1101,
    ]  # first group in the lowest nibble
    assert fmt.values[1, 4:8].tolist() == [
        0.0,
        0.0,
        0.0,
        a,
    ]  # all-zero group and the (0, 3) pad keep zeros


def test_sparse24_matches_pytorchs_converter_on_exact_2_4_matrices():
    """PyTorch's CUTLASS converter (the GPU oracle) gives the same values and,
    once its CUTLASS reordering is undone, the same metadata words. Groups with fewer than two
    non-zeros may be padded at other positions (both decode exactly), so they are left out."""
    conversions = pytest.importorskip(
        "torch.sparse._semi_structured_conversions",
        reason="PyTorch's 2:4 converter module is not available",
    )
    w = sparse_matrix(64, 128, 1.0, 7).half()
    w = w * nm_mask(w, 2, 4)
    values, reordered = conversions.sparse_semi_structured_from_dense_cutlass(w)
    rows, words = reordered.shape
    offsets = conversions._calculate_meta_reordering_scatter_offsets(
        rows, words, reordered.dtype, reordered.device
    )
    ours = Sparse24.from_dense(w)
    assert torch.equal(ours.values, values)
    assert torch.equal(ours.metadata, reordered.reshape(-1)[offsets].reshape(rows, words))


def test_sparse24_needs_rows_of_16():
    with pytest.raises(ValueError, match="multiple of 16"):
        Sparse24.from_dense(torch.zeros(2, 8))


@SETTINGS
@given(matrices)
def test_compacted_keeps_exactly_the_nonzero_rows_and_columns(dense):
    fmt = Compacted.from_dense(dense)
    assert torch.equal(fmt.to_dense(), dense)
    assert fmt.rows.tolist() == dense.ne(0).any(1).nonzero().flatten().tolist()
    assert fmt.cols.tolist() == dense.ne(0).any(0).nonzero().flatten().tolist()
    assert fmt.nbytes == fmt.values.numel() * 4 + 4 * (len(fmt.rows) + len(fmt.cols))


def test_compacted_rejects_rows_that_drop_nonzeros():
    dense = torch.eye(3)
    with pytest.raises(ValueError, match="drop non-zero entries"):
        Compacted.from_dense(dense, rows=torch.tensor([0, 1]))
    with pytest.raises(
        ValueError, match="duplicated"
    ):  # [0, 0, 1] has the right count but drops row 2
        Compacted.from_dense(dense, rows=torch.tensor([0, 0, 1]))
    with pytest.raises(ValueError, match="outside"):
        Compacted.from_dense(dense, cols=torch.tensor([0, 1, 3]))
    with pytest.raises(TypeError, match="integer indices"):
        Compacted.from_dense(dense, rows=torch.tensor([0.0, 1.0, 2.0]))


@pytest.mark.parametrize(
    "bad, error",
    [
        ([[1.0]], TypeError),
        (torch.ones(4), ValueError),
        (torch.ones(2, 2, dtype=torch.int64), TypeError),
        (torch.ones(0, 4), ValueError),
    ],
)
def test_bad_dense_input_is_named(bad, error):
    with pytest.raises(error, match="dense"):
        CSR.from_dense(bad)


def test_dlpack_exchange_with_numpy_is_zero_copy_both_ways():
    t = torch.arange(6, dtype=torch.float32).reshape(2, 3)
    a = to_array(t, np)
    a[0, 0] = 42.0
    assert t[0, 0] == 42.0
    back = from_array(a)
    back[1, 2] = -1.0
    assert t[1, 2] == -1.0


def test_map_moves_every_tensor_and_keeps_the_matrix():
    dense = sparse_matrix(8, 16, 0.5, 1)
    fmt = CSR.from_dense(dense).map(lambda t: t.double() if t.is_floating_point() else t)
    assert fmt.values.dtype == torch.float64 and torch.equal(fmt.to_dense(), dense.double())


# --- HBS ----------------------------------------------------------------------------------------


def test_hbs_round_trip_bytes_and_level_checks():
    from sparsitylab.deploy.formats import HBS
    from sparsitylab.sparsify.hierarchical import hierarchical_masks, parse_config, union

    torch.manual_seed(0)
    w = torch.randn(32, 48)
    levels = parse_config("4x1/65+1x1/95")
    masks = hierarchical_masks(w, levels)
    pruned = w * union(masks)
    fmt = HBS.from_masks(pruned, masks, [(4, 1), (1, 1)])
    assert torch.equal(fmt.to_dense(), pruned)
    assert fmt.nbytes == sum(level.nbytes for level in fmt.levels)
    assert fmt.density == pytest.approx(float(union(masks).float().mean()))
    assert torch.equal(HBS.from_dense(w, levels).to_dense(), pruned)  # prunes dense itself
    with pytest.raises(ValueError, match="disjoint"):
        HBS.from_masks(pruned, [masks[0], masks[0] | masks[1]], [(4, 1), (1, 1)])
    with pytest.raises(ValueError, match="cover"):
        HBS.from_masks(pruned, [masks[0]], [(4, 1)])


def test_spmm_refuses_to_narrow_b_and_widens_it_exactly():
    from sparsitylab.deploy.matmul import spmm

    a = CSR.from_dense(torch.tensor([[1.0, 0.0], [0.0, 2.0]]))
    with pytest.raises(TypeError, match="b has dtype torch.float64 but this product computes in"):
        spmm(a, torch.ones(2, 3, dtype=torch.float64), backend=None)
    half = torch.ones(2, 3, dtype=torch.float16)
    assert torch.equal(spmm(a, half, backend=None), torch.tensor([[1.0] * 3, [2.0] * 3]))
    wide = CSR.from_dense(torch.tensor([[1.0, 0.0], [0.0, 2.0]], dtype=torch.float64))
    assert spmm(wide, torch.ones(2, 1, dtype=torch.float64), backend=None).dtype == torch.float64
