"""The one GEMM view of a weight: both column orders, their inverses, im2col, liveness, and the N:M
path from a masked conv to the 2:4 format and back to the conv's output."""

from __future__ import annotations

import pytest
import torch
import torch.nn.functional as F
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsitylab.deploy import matmul
from sparsitylab.deploy.formats import BSR, CSR, NM, Compacted, Sparse24
from sparsitylab.gemm import (
    alive_columns,
    alive_inputs,
    alive_rows,
    from_gemm_view,
    gemm_view,
    im2col,
)
from sparsitylab.sparsify.masks import nm_mask


def test_chw_columns_are_channel_major_and_hwc_columns_are_channel_minor():
    w = torch.arange(2 * 3 * 2 * 2, dtype=torch.float32).view(2, 3, 2, 2)
    chw, hwc = gemm_view(w, "chw"), gemm_view(w, "hwc")
    assert chw.shape == hwc.shape == (2, 12)
    assert torch.equal(chw[:, 1 * 4 + 1 * 2 + 0], w[:, 1, 1, 0])  # column c·kh·kw + i·kw + j
    assert torch.equal(hwc[:, (1 * 2 + 0) * 3 + 1], w[:, 1, 1, 0])  # column (i·kw + j)·C + c
    assert chw.data_ptr() == w.data_ptr()  # "chw" is a view, no copy
    linear = torch.randn(4, 5)
    assert gemm_view(linear, "chw") is linear and gemm_view(linear, "hwc") is linear
    with pytest.raises(ValueError, match="2 or 3 or 4 or 5 dimensions"):
        gemm_view(torch.zeros(3))
    with pytest.raises(ValueError, match="order='nchw'"):
        gemm_view(w, "nchw")


@settings(max_examples=30, deadline=None)
@given(
    shape=st.tuples(st.integers(1, 4), st.integers(1, 4), st.integers(1, 3), st.integers(1, 3)),
    order=st.sampled_from(["chw", "hwc"]),
    stride=st.integers(1, 2),
    padding=st.integers(0, 1),
)
def test_inverse_and_im2col_reproduce_the_convolution(shape, order, stride, padding):
    w = torch.randn(shape)
    assert torch.equal(from_gemm_view(gemm_view(w, order), w.shape, order), w)
    x = torch.randn(2, shape[1], 7, 6)
    y = F.conv2d(x, w, stride=stride, padding=padding)
    patches = im2col(x, shape[2:], stride=stride, padding=padding, order=order)
    torch.testing.assert_close((gemm_view(w, order) @ patches).view_as(y), y, atol=1e-5, rtol=1e-5)


def test_liveness_is_exact_not_squared():
    m = torch.tensor([[0.0, 1e-30, 0.0], [0.0, 0.0, 0.0]])
    assert alive_rows(m).tolist() == [True, False] and alive_columns(m).tolist() == [
        False,
        True,
        False,
    ]
    assert alive_rows(m, torch.tensor([0.0, 2.0])).tolist() == [
        True,
        True,
    ]  # a bias keeps a row alive
    conv = torch.zeros(2, 3, 2, 2)
    conv[1, 2, 0, 1] = 1.0
    assert alive_inputs(conv).tolist() == [False, False, True]


@pytest.mark.parametrize("out_channels,in_channels", [(4, 16), (32, 32)])  # 9·C divisible by 16
def test_a_conv_masked_2_4_packs_into_the_24_format_and_multiplies_back_exactly(
    out_channels, in_channels
):
    """nm_mask groups a conv along input channels; Sparse24.from_weight packs it through the same
    view."""
    torch.manual_seed(0)
    w = torch.randn(out_channels, in_channels, 3, 3)
    masked = w * nm_mask(w, 2, 4)  # default order "hwc": the hardware grouping
    packed = Sparse24.from_weight(masked)  # would raise if any group held more than 2
    assert packed.order == "hwc" and torch.equal(packed.to_dense(), gemm_view(masked, "hwc"))
    x = torch.randn(2, in_channels, 6, 6)
    patches = im2col(x, (3, 3), padding=1, order=packed.order)
    expected = F.conv2d(x, masked, padding=1)
    for b in range(2):
        product = matmul.spmm(packed, patches[b], backend=None)
        torch.testing.assert_close(
            product, gemm_view(masked, "hwc") @ patches[b], atol=1e-5, rtol=1e-5
        )
        torch.testing.assert_close(product.view_as(expected[b]), expected[b], atol=1e-4, rtol=1e-4)
    assert torch.equal(NM.from_weight(masked, 2, 4).to_dense(), gemm_view(masked, "hwc"))


def test_the_paper_era_flat_grouping_is_not_24_in_the_hardware_view():
    torch.manual_seed(1)
    w = torch.randn(4, 16, 3, 3)
    flat = w * nm_mask(w, 2, 4, order="chw")
    assert torch.equal(
        NM.from_dense(gemm_view(flat, "chw"), 2, 4).to_dense(), gemm_view(flat, "chw")
    )
    with pytest.raises(ValueError, match="not 2:4 sparse"):
        Sparse24.from_weight(flat)  # groups of 4 input channels hold up to 4 survivors


def test_row_column_formats_pack_in_im2col_order():
    w = torch.randn(6, 4, 2, 2)
    w[:, 1] = 0
    for fmt in (CSR.from_weight(w), BSR.from_weight(w, (2, 4)), Compacted.from_weight(w)):
        assert fmt.order == "chw" and torch.equal(fmt.to_dense(), w.flatten(1))
