"""Magnitude mask primitives: exact counts, ranking, ties, determinism, errors (hypothesis +
references)."""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsitylab.deploy.formats import CSR
from sparsitylab.gemm import gemm_view
from sparsitylab.sparsify import budgets, masks
from sparsitylab.sparsify.masks import (
    block_mask,
    global_topk_masks,
    mask_from_scores,
    nm_mask,
    pruned_count,
    topk_mask,
    zero_pruned,
)

PROPERTY = settings(max_examples=60, deadline=None)  # per test, not a global profile

sparsities = st.floats(0.0, 1.0, allow_nan=False, exclude_max=True)
shapes = hnp.array_shapes(min_dims=1, max_dims=4, min_side=1, max_side=7)
# small integer-valued floats: many exact ties, the hard case for exact counts
tied_values = st.integers(-3, 3).map(float)


def arrays(shape=shapes, elements=tied_values):
    return hnp.arrays(np.float32, shape, elements=elements).map(torch.from_numpy)


def reference_keep(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Naive reference: stable sort of -score (ties keep lower index), keep the first n - k."""
    flat = scores.reshape(-1)
    n_keep = flat.numel() - pruned_count(flat.numel(), sparsity)
    order = sorted(range(flat.numel()), key=lambda i: (-float(flat[i]), i))
    keep = torch.zeros(flat.numel(), dtype=torch.bool)
    keep[order[:n_keep]] = True
    return keep.reshape(scores.shape)


# --- pruned_count --------------------------------------------------------------------------------


def test_pruned_count_rounds_half_up():
    assert pruned_count(10, 0.25) == 3  # 2.5 → 3
    assert pruned_count(10, 0.9) == 9
    assert pruned_count(7, 0.99) == 7
    assert pruned_count(0, 0.5) == 0


@pytest.mark.parametrize("bad", [-0.1, 1.0, 1.5, float("nan")])
def test_sparsity_out_of_range_raises(bad):
    with pytest.raises(ValueError, match="sparsity"):
        topk_mask(torch.ones(4), bad)


@pytest.mark.parametrize("bad", ["0.5", None, True, torch.tensor([0.5, 0.1])])
def test_sparsity_wrong_type_raises(bad):
    with pytest.raises(TypeError, match="sparsity"):
        topk_mask(torch.ones(4), bad)


def test_non_tensor_and_nan_raise():
    with pytest.raises(TypeError, match="torch.Tensor"):
        topk_mask([1.0, 2.0], 0.5)
    with pytest.raises(ValueError, match="NaN"):
        topk_mask(torch.tensor([1.0, float("nan")]), 0.5)


# --- topk_mask -----------------------------------------------------------------------------------


@PROPERTY
@given(arrays(), sparsities)
def test_topk_exact_count_and_matches_reference(w, s):
    keep = topk_mask(w, s)
    assert keep.dtype == torch.bool and keep.shape == w.shape
    assert int(keep.sum()) == w.numel() - pruned_count(w.numel(), s)
    assert torch.equal(keep, reference_keep(w.abs(), s))


@PROPERTY
@given(arrays(elements=st.floats(-1e3, 1e3, allow_nan=False, width=32)), sparsities)
def test_topk_every_kept_magnitude_dominates_every_pruned(w, s):
    keep = topk_mask(w, s)
    if keep.any() and (~keep).any():
        assert w.abs()[keep].min() >= w.abs()[~keep].max()


@PROPERTY
@given(arrays(), sparsities)
def test_topk_deterministic_and_input_untouched(w, s):
    before = w.clone()
    assert torch.equal(topk_mask(w, s), topk_mask(w.clone(), s))
    assert torch.equal(w, before)


def test_topk_ties_keep_lower_index():
    keep = topk_mask(torch.tensor([1.0, -1.0, 1.0, 1.0, 5.0]), 0.4)  # prune 2 of the four tied 1s
    assert keep.tolist() == [True, True, False, False, True]


def test_topk_all_equal_weights_exact_count():
    keep = topk_mask(torch.zeros(1000), 0.737)
    assert int(keep.sum()) == 1000 - 737


def test_kthvalue_threshold_would_over_prune_but_topk_does_not():
    w = torch.tensor([0.5] * 6 + [2.0] * 4)
    naive = w.abs() > w.abs().kthvalue(3).values  # the classic thresholding: prunes all six ties
    assert int(naive.sum()) == 4
    assert int(topk_mask(w, 0.3).sum()) == 7


def test_mask_from_scores_keeps_largest_scores():
    scores = torch.tensor([[3.0, 1.0], [2.0, 4.0]])
    assert mask_from_scores(scores, 0.5).tolist() == [[True, False], [False, True]]


# --- global_topk_masks ---------------------------------------------------------------------------


@PROPERTY
@given(st.lists(arrays(), min_size=1, max_size=4), sparsities)
def test_global_exact_total_and_equals_topk_of_concatenation(ws, s):
    masks = global_topk_masks(ws, s)
    total = sum(w.numel() for w in ws)
    assert sum(int(m.sum()) for m in masks) == total - pruned_count(total, s)
    flat = topk_mask(torch.cat([w.reshape(-1) for w in ws]), s)
    assert torch.equal(torch.cat([m.reshape(-1) for m in masks]), flat)
    assert all(m.shape == w.shape for m, w in zip(masks, ws))


def test_global_mapping_in_mapping_out_and_layer_collapse():
    ws = {"big": torch.full((4, 4), 10.0), "small": torch.full((2, 2), 0.1)}
    masks = global_topk_masks(ws, 0.2)
    assert list(masks) == ["big", "small"]
    assert masks["small"].sum() == 0 and masks["big"].all()  # a whole layer emptied: layer collapse


def test_global_empty_raises():
    with pytest.raises(ValueError, match="empty"):
        global_topk_masks([], 0.5)


# --- block_mask ----------------------------------------------------------------------------------


@PROPERTY
@given(
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(1, 4),
    st.integers(1, 4),
    sparsities,
    st.data(),
)
def test_block_mask_whole_blocks_exact_block_count(bh, bw, nr, nc, s, data):
    w = data.draw(arrays(st.just((bh * nr, bw * nc))))
    keep = block_mask(w, (bh, bw), s)
    blocks = keep.reshape(nr, bh, nc, bw).permute(0, 2, 1, 3).reshape(nr, nc, -1)
    assert (blocks.all(-1) | ~blocks.any(-1)).all()  # each block all kept or all pruned
    kept_blocks = blocks.all(-1)
    assert int(kept_blocks.sum()) == nr * nc - pruned_count(nr * nc, s)
    sums = w.abs().reshape(nr, bh, nc, bw).sum((1, 3))
    assert torch.equal(kept_blocks, reference_keep(sums, s))


def test_block_mask_conv_viewed_as_filters_by_columns():
    w = torch.zeros(4, 2, 3, 3)
    w[1] = 1.0  # filter 1 is the only non-zero row of the K × C·R·S matrix
    keep = block_mask(w, (1, 18), 0.75)
    assert keep.shape == w.shape and keep[1].all() and int(keep.sum()) == 18


@pytest.mark.parametrize(
    "shape,block", [((6, 8), (4, 4)), ((8, 6), (4, 4)), ((4, 2, 3, 3), (2, 4))]
)
def test_block_mask_not_dividing_raises(shape, block):
    with pytest.raises(ValueError, match="does not divide"):
        block_mask(torch.ones(shape), block, 0.5)


@pytest.mark.parametrize(
    "block,err",
    [
        ((0, 2), ValueError),
        (-1, ValueError),
        ((2,), TypeError),
        ((2, 2, 2), TypeError),
        ((1.5, 2), TypeError),
        ("22", TypeError),
    ],
)
def test_block_mask_bad_block_shape_raises(block, err):
    with pytest.raises(err, match="block_shape"):
        block_mask(torch.ones(4, 4), block, 0.5)


@pytest.mark.parametrize("shape", [(8,), (2, 2, 2, 2, 2, 2)])
def test_block_mask_needs_a_linear_or_conv_weight(shape):
    with pytest.raises(ValueError, match="2-D .Linear. or 3- to 5-D .conv."):
        block_mask(torch.ones(shape), 2, 0.5)


# --- nm_mask -------------------------------------------------------------------------------------


@PROPERTY
@given(
    st.sampled_from([(1, 2), (2, 4), (1, 4), (4, 8), (3, 4), (1, 8)]),
    st.integers(1, 5),
    st.integers(1, 3),
    st.data(),
)
def test_nm_linear_exact_n_per_group_and_largest(nm, rows, groups, data):
    n, m = nm
    w = data.draw(arrays(st.just((rows, groups * m))))
    keep = nm_mask(w, n, m)
    g_keep, g_w = keep.reshape(rows, groups, m), w.abs().reshape(rows, groups, m)
    assert (g_keep.sum(-1) == n).all()
    for r in range(rows):
        for g in range(groups):
            assert torch.equal(g_keep[r, g], reference_keep(g_w[r, g], 1 - n / m))


@PROPERTY
@given(st.integers(1, 3), st.integers(1, 2), st.integers(1, 3), st.data())
def test_nm_conv_groups_input_channels_nhwc(out, groups, k, data):
    w = data.draw(
        arrays(st.just((out, 4 * groups, k, k)), st.floats(-1, 1, allow_nan=False, width=32))
    )
    keep = nm_mask(w, 2, 4)
    nhwc = keep.permute(0, 2, 3, 1).reshape(-1, 4)  # (out, kh, kw, in) rows cut into groups of 4
    assert (nhwc.sum(-1) == 2).all()
    expected = nm_mask(w.permute(0, 2, 3, 1).reshape(-1, 4 * groups), 2, 4)
    assert torch.equal(keep.permute(0, 2, 3, 1).reshape(-1, 4 * groups), expected)
    assert torch.equal(
        gemm_view(keep, "hwc"), nm_mask(gemm_view(w, "hwc"), 2, 4)
    )  # the GEMM view, stated once


@PROPERTY
@given(st.integers(1, 3), st.integers(1, 3), st.sampled_from([(1, 2), (2, 4), (2, 8)]), st.data())
def test_nm_conv_flat_order_groups_consecutive_chw_entries(out, channels, nm, data):
    n, m = nm
    w = data.draw(
        arrays(st.just((out, channels * m, 1, 2)), st.floats(-1, 1, allow_nan=False, width=32))
    )
    keep = nm_mask(w, n, m, order="chw")
    assert (keep.flatten(1).reshape(out, -1, m).sum(-1) == n).all()
    assert torch.equal(keep.flatten(1), nm_mask(w.flatten(1), n, m))


def test_nm_ties_keep_earlier_and_orders_agree_on_linear():
    w = torch.ones(1, 8)
    assert nm_mask(w, 2, 4).tolist() == [[True, True, False, False] * 2]
    assert torch.equal(nm_mask(w, 2, 4, order="chw"), nm_mask(w, 2, 4, order="hwc"))


@pytest.mark.parametrize(
    "n,m,err,msg",
    [
        (3, 2, ValueError, "n=3"),
        (-1, 4, ValueError, "n=-1"),
        (4, 4, ValueError, "n=4"),
        (0, 4, ValueError, "n=0"),
        (2, 0, ValueError, "m=0"),
        (2.0, 4, TypeError, "n=2.0"),
        (2, True, TypeError, "m=True"),
    ],
)
def test_nm_bad_n_m_raise(n, m, err, msg):
    with pytest.raises(err, match=msg):
        nm_mask(torch.ones(2, 8), n, m)


def test_nm_not_divisible_and_bad_order_raise():
    with pytest.raises(ValueError, match="not divisible by m=4"):
        nm_mask(torch.ones(2, 6), 2, 4)
    with pytest.raises(ValueError, match="6 input channels, not divisible by m=4"):
        nm_mask(torch.ones(2, 6, 2, 2), 2, 4)  # 24 flat entries would divide; channels do not
    with pytest.raises(ValueError, match="order='nhwc'"):
        nm_mask(torch.ones(2, 8), 2, 4, order="nhwc")
    with pytest.raises(ValueError, match="2-D .Linear. or 3- to 5-D .conv."):
        nm_mask(torch.ones(8), 2, 4)


# --- zero_pruned ---------------------------------------------------------------------------------


def test_zero_pruned_zeroes_exactly_even_inf_and_nan_and_checks_shape():
    w = torch.randn(3, 4)
    keep = topk_mask(w, 0.5)
    out = zero_pruned(w, keep)
    assert int((out != 0).sum()) == 6 and torch.equal(out[keep], w[keep])
    w[~keep] = torch.tensor([float("inf"), float("nan"), -float("inf"), float("nan"), 1.0, 2.0])
    assert (zero_pruned(w, keep)[~keep] == 0).all()  # w * mask would give NaN here
    with pytest.raises(ValueError, match="does not match"):
        zero_pruned(w, keep.T)


@pytest.mark.parametrize("dtype", [torch.int8, torch.int64, torch.uint8])
def test_integer_weights_are_rejected_but_integer_scores_rank_exactly(dtype):
    with pytest.raises(TypeError, match="floating-point"):
        topk_mask(torch.tensor([-128, 1, 2, 3]).to(dtype), 0.25)
    with pytest.raises(TypeError, match="floating-point"):
        global_topk_masks([torch.ones(4, dtype=dtype)], 0.5)
    base = 2**25 if dtype == torch.int64 else 0  # above 2**24, float32 would tie these
    keep = mask_from_scores(torch.tensor([base + 1, base, base + 3, base + 2]).to(dtype), 0.5)
    assert keep.tolist() == [False, False, True, True]


def test_dtypes_and_device_preserved():
    w = torch.randn(16, dtype=torch.float64)
    keep = topk_mask(w, 0.25)
    assert keep.device == w.device and int(keep.sum()) == 16 - math.floor(0.25 * 16 + 0.5)


# --- determinism and argument checks for every mask function -------------------------------------

MASK_FUNCTIONS = {
    "topk": lambda w, s: topk_mask(w, s),
    "scores": lambda w, s: mask_from_scores(w, s),
    "global": lambda w, s: global_topk_masks([w, w[:1]], s)[0],
    "block": lambda w, s: block_mask(w, (1, 1), s),
}


@pytest.mark.parametrize("fn", MASK_FUNCTIONS.values(), ids=MASK_FUNCTIONS.keys())
@PROPERTY
@given(w=arrays(hnp.array_shapes(min_dims=2, max_dims=2, min_side=1, max_side=6)), s=sparsities)
def test_every_mask_function_is_deterministic(fn, w, s):
    assert torch.equal(fn(w, s), fn(w.clone(), s))


@pytest.mark.parametrize("fn", MASK_FUNCTIONS.values(), ids=MASK_FUNCTIONS.keys())
@pytest.mark.parametrize(
    "bad,err",
    [
        (-0.01, ValueError),
        (1.01, ValueError),
        (float("nan"), ValueError),
        ("0.5", TypeError),
        (None, TypeError),
    ],
)
def test_every_mask_function_rejects_bad_sparsity(fn, bad, err):
    with pytest.raises(err, match="sparsity"):
        fn(torch.ones(4, 4), bad)


@PROPERTY
@given(
    st.sampled_from([2, 4]),
    st.sampled_from([(1, 2), (2, 4), (3, 4), (2, 8)]),
    st.sampled_from(["hwc", "chw"]),
    st.data(),
)
def test_nm_exact_count_along_the_gemm_view_and_deterministic(ndim, nm, order, data):
    n, m = nm
    shape = [data.draw(st.integers(1, 3)), m * data.draw(st.integers(1, 3))] + [
        data.draw(st.integers(1, 2))
    ] * (ndim - 2)
    w = data.draw(arrays(st.just(tuple(shape))))
    keep = nm_mask(w, n, m, order=order)
    assert (gemm_view(keep, order).reshape(-1, m).sum(-1) == n).all()
    assert torch.equal(keep, nm_mask(w.clone(), n, m, order=order))


def test_a_tensor_without_values_or_with_nan_is_named():
    with pytest.raises(ValueError, match="w is on the meta device"):
        masks.topk_mask(torch.empty(3, 4, device="meta"), 0.5)
    nan = torch.tensor([[float("nan"), 1.0]])
    with pytest.raises(ValueError, match="tensors\\['fc2'\\] contains NaN"):
        masks.global_topk_masks({"fc1": torch.ones(2, 2), "fc2": nan}, 0.5)
    with pytest.raises(ValueError, match="scores\\['fc2'\\] contains NaN"):
        budgets.scores_masks({"fc1": torch.ones(2, 2), "fc2": nan}, 0.5, "uniform")
    with pytest.raises(ValueError, match="dense is on the meta device"):
        CSR.from_dense(torch.empty(3, 4, device="meta"))
