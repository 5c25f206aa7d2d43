"""N:M selection and layer plans: the pairwise-rank selection against a stable sort and torch.ao,
the C_in policies, and the eligibility report on the book's models (hand-checked)."""

from __future__ import annotations

import math
import shutil

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsitylab import models
from sparsitylab.sparsify import masks, native
from sparsitylab.sparsify.masks import nm_mask, top_n_per_group
from sparsitylab.sparsify.nm import asp_eligible, eligibility, layer_plan, model_masks, plan

PROPERTY = settings(max_examples=60, deadline=None)


def sorted_keep(groups: torch.Tensor, n: int) -> torch.Tensor:
    """Reference: stable descending sort of |g| per row (ties keep the earlier), first n kept."""
    order = torch.argsort(groups.abs(), dim=-1, descending=True, stable=True)
    return torch.zeros(groups.shape, dtype=torch.bool).scatter_(-1, order[:, :n], True)


def select(groups: torch.Tensor, n: int, path: str, chunk: int = masks.GROUP_CHUNK) -> torch.Tensor:
    """top_n_per_group through one path: the compiled C loop, or PyTorch's (native switched off)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(masks, "GROUP_CHUNK", chunk)
        patch.setenv("SPARSITYLAB_NATIVE", "1" if path == "native" else "0")
        return top_n_per_group(groups, n)


def test_the_compiled_selection_is_built_where_there_is_a_c_compiler():
    """Else every "native" case below would silently test the PyTorch path twice."""
    if shutil.which("cc") is None and shutil.which("gcc") is None:
        pytest.skip("no C compiler here")
    assert native.available()


@PROPERTY
@given(
    st.sampled_from([(1, 2), (1, 4), (2, 4), (3, 4), (4, 8), (2, 8), (5, 16), (9, 20)]),
    st.integers(0, 40),
    st.sampled_from([3, 7, 1 << 16]),  # chunk sizes: groups straddle chunk boundaries
    st.sampled_from(["native", "torch"]),
    st.data(),
)
def test_pairwise_ranks_equal_a_stable_sort_with_ties(nm, count, chunk, path, data):
    n, m = nm
    dtype = data.draw(st.sampled_from([np.float32, np.float64]))
    values = data.draw(
        hnp.arrays(dtype, (count, m), elements=st.integers(-2, 2).map(float))
    )  # many exact ties, and ±x ties in magnitude
    groups = torch.from_numpy(values)
    keep = select(groups, n, path, chunk)
    assert torch.equal(keep, sorted_keep(groups, n))
    assert (keep.sum(-1) == n).all()


@PROPERTY
@given(
    st.sampled_from([(1, 4), (2, 4), (2, 8), (7, 16)]),
    st.integers(0, 30),
    st.data(),
)
def test_the_compiled_selection_ranks_nan_inf_and_signed_zero_as_pytorch_does(nm, count, data):
    n, m = nm
    special = [math.nan, math.inf, -math.inf, 0.0, -0.0, 1.0, -1.0, 1e-45]
    values = data.draw(hnp.arrays(np.float32, (count, m), elements=st.sampled_from(special)))
    groups = torch.from_numpy(values)
    assert torch.equal(select(groups, n, "native"), select(groups, n, "torch", chunk=5))


def test_the_compiled_selection_reads_strided_groups():
    torch.manual_seed(0)
    base = torch.randn(64, 8)
    strided = base.t().reshape(-1, 4)[::2]  # a copy of a transposed view, every other row
    assert torch.equal(select(base[:, ::2], 2, "native"), select(base[:, ::2], 2, "torch"))
    assert torch.equal(select(strided, 2, "native"), sorted_keep(strided, 2))


@PROPERTY
@given(
    st.sampled_from([(1, 4), (2, 4), (3, 4), (2, 8), (7, 16)]),
    st.integers(0, 30),
    st.sampled_from([np.float32, np.float64]),
    st.data(),
)
def test_the_fused_mask_and_product_equal_pytorchs_bit_for_bit(nm, count, dtype, data):
    """STE's forward in one pass: the keep-mask of the PyTorch path and ``groups * keep`` with the
    same bits (−0.0 for a pruned negative, NaN for a pruned infinity), and the NaN flag."""
    if not native.available():
        pytest.skip("no compiled selection here")
    n, m = nm
    special = [math.inf, -math.inf, 0.0, -0.0, 1.0, -1.0, 2.0, 1e-45, -3.5]
    values = data.draw(hnp.arrays(dtype, (count, m), elements=st.sampled_from(special)))
    if count and data.draw(st.booleans()):
        values[data.draw(st.integers(0, count - 1)), data.draw(st.integers(0, m - 1))] = math.nan
    groups = torch.from_numpy(values)
    keep, product, has_nan = native.masked_product(groups, n)
    assert torch.equal(keep, select(groups, n, "torch", chunk=5))
    expected = groups * keep
    bits = torch.int32 if dtype == np.float32 else torch.int64
    assert torch.equal(product.isnan(), expected.isnan())
    assert torch.equal(product.nan_to_num().view(bits), expected.nan_to_num().view(bits))
    assert has_nan == bool(groups.isnan().any())


@PROPERTY
@given(
    st.integers(0, 300),
    st.sampled_from([np.float32, np.float64]),
    st.sampled_from([0.0, 2e-4, 1e-3, 0.3, 1.0, 7.25]),
    st.data(),
)
def test_the_fused_sr_ste_gradient_equals_pytorchs_formula_bit_for_bit(size, dtype, decay, data):
    if not native.available():
        pytest.skip("no compiled selection here")
    floats = st.floats(-1e3, 1e3, width=32)
    w = torch.from_numpy(data.draw(hnp.arrays(dtype, size, elements=floats)))
    grad = torch.from_numpy(data.draw(hnp.arrays(dtype, size, elements=floats)))
    keep = torch.from_numpy(data.draw(hnp.arrays(np.bool_, size)))
    refined = native.sr_ste_gradient(grad, w, keep, decay)
    expected = grad + decay * (w - w * keep)
    bits = torch.int32 if dtype == np.float32 else torch.int64
    assert torch.equal(refined.view(bits), expected.view(bits))


def test_the_fused_paths_decline_what_they_cannot_read():
    """None (the caller takes the PyTorch path) for strided, half-precision or mismatched input."""
    if not native.available():
        pytest.skip("no compiled selection here")
    w = torch.randn(8, 8)
    assert native.masked_product(w.t().reshape(-1, 4)[::2], 2) is None  # strided rows
    assert native.masked_product(w.half().reshape(-1, 4), 2) is None
    keep = torch.ones(8, 8, dtype=torch.bool)
    assert native.sr_ste_gradient(w.t(), w, keep, 0.1) is None
    assert native.sr_ste_gradient(w.double(), w, keep, 0.1) is None
    assert native.sr_ste_gradient(w, w, keep.float(), 0.1) is None
    assert native.sr_ste_gradient(w[:4], w, keep, 0.1) is None
    with native.disabled():
        assert native.masked_product(w.reshape(-1, 4), 2) is None
        assert native.sr_ste_gradient(w, w, keep, 0.1) is None


def test_pairwise_ranks_handle_fp16_and_bf16_like_fp32():
    torch.manual_seed(0)
    groups = torch.randn(500, 4)
    for dtype in (torch.float16, torch.bfloat16, torch.float64):
        low = groups.to(dtype)
        assert torch.equal(top_n_per_group(low, 2), sorted_keep(low.float(), 2))


def test_nm_mask_matches_torch_ao_weight_norm_sparsifier_on_a_linear():
    """torch.ao's WeightNormSparsifier with (1, 4) blocks and 2 zeros per block is the 2:4 mask of a
    Linear along its inputs (tie-free weights)."""
    from torch.ao.pruning import WeightNormSparsifier

    torch.manual_seed(0)
    net = torch.nn.Sequential(torch.nn.Linear(32, 12))
    weight = net[0].weight.detach().clone()
    sparsifier = WeightNormSparsifier(
        sparsity_level=1.0, sparse_block_shape=(1, 4), zeros_per_block=2
    )
    sparsifier.prepare(net, [{"tensor_fqn": "0.weight"}])
    sparsifier.step()
    ao_keep = net[0].parametrizations.weight[0].mask.bool()
    assert torch.equal(nm_mask(weight, 2, 4), ao_keep)


@pytest.mark.parametrize(
    "shape, policy, order, expected",
    [
        ((8, 16), "dense", "hwc", "hwc"),
        ((8, 10), "flatten", "hwc", None),  # a Linear has no other axis
        ((8, 8, 3, 3), "dense", "hwc", "hwc"),
        ((8, 1, 5, 5), "dense", "hwc", None),  # LeNet conv1: C_in = 1
        ((8, 1, 5, 5), "flatten", "hwc", None),  # and in·kh·kw = 25 does not divide either
        ((8, 6, 2, 2), "dense", "hwc", None),
        ((8, 6, 2, 2), "flatten", "hwc", "chw"),  # 24 flattened entries divide
        ((8, 8, 3, 3), "dense", "chw", None),  # m = 16: in·kh·kw = 72 does not divide
        ((8, 4, 2, 2), "dense", "chw", "chw"),
    ],
)
def test_layer_plan_policies(shape, policy, order, expected):
    m = 16 if (order, shape) == ("chw", (8, 8, 3, 3)) else 4
    p = layer_plan("layer", torch.zeros(shape), m, policy, order)
    assert p.order == expected, p.reason
    assert p.reason  # every decision says why


def test_plan_never_groups_across_taps_silently():
    net = torch.nn.Sequential(torch.nn.Conv2d(6, 8, 2), torch.nn.Flatten(), torch.nn.Linear(8, 4))
    with pytest.raises(ValueError, match="6 input channels, not divisible by m=4"):
        nm_mask(net[0].weight, 2, 4)
    plans = plan(net, 4, "dense")
    assert plans["0"].order is None and plans["2"].order == "hwc"
    assert set(model_masks(net, 2, 4, plans)) == {"2"}
    flat = plan(net, 4, "flatten")
    keep = model_masks(net, 2, 4, flat)["0"]
    assert torch.equal(keep, nm_mask(net[0].weight, 2, 4, order="chw"))


def test_first_and_last_dense_by_choice():
    plans = plan(models.mlp(), 4, first_dense=True, last_dense=True)
    assert [p.sparse for p in plans.values()] == [False, True, False]
    assert "first layer" in plans["fc1"].reason and "last layer" in plans["fc3"].reason


def rows_by_layer(model, **kwargs):
    return {r.layer: r for r in eligibility(model, 2, 4, **kwargs)}


def test_asp_would_sparsify_nothing_in_the_mlp_and_lenet():
    for build in (models.mlp, models.lenet5):
        rows = rows_by_layer(build())
        assert not any(r.asp for name, r in rows.items() if name != "total")


def test_eligibility_of_convnet_bn_and_resnet20_by_hand():
    rows = rows_by_layer(models.convnet_bn())
    assert [rows[k].asp for k in ("conv1", "conv2", "conv3", "fc")] == [False, True, True, False]
    assert [rows[k].treatment for k in ("conv1", "conv2", "conv3", "fc")] == ["dense"] + [
        "N:M, hardware axis"
    ] * 3
    weights = {"conv1": 288, "conv2": 18432, "conv3": 73728, "fc": 1280}
    assert rows["total"].density == pytest.approx(
        (288 + 0.5 * (18432 + 73728 + 1280)) / sum(weights.values())
    )
    net = models.resnet20()
    rows = rows_by_layer(net)
    for name, layer in net.named_modules():
        if isinstance(layer, torch.nn.Conv2d):
            in_stage = name.startswith("blocks.")
            assert rows[name].asp == in_stage == asp_eligible(layer.weight), name
    assert not rows["stem.conv"].hardware_axis and not rows["head.fc"].asp


def test_eligibility_density_follows_first_dense():
    rows = rows_by_layer(models.mlp(), first_dense=True)
    assert rows["fc1"].density == 1.0 and rows["fc2"].density == 0.5
    total = 784 * 500 + 500 * 300 + 300 * 10
    assert rows["total"].density == pytest.approx((784 * 500 + 0.5 * (total - 784 * 500)) / total)
