"""Layer budgets: uniform, global, ERK (against a transcription of RigL's reference loop)."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sparsitylab import metrics, models
from sparsitylab.sparsify import budgets
from sparsitylab.sparsify.masks import pruned_count

PROPERTY = settings(max_examples=50, deadline=None)  # per test, not a global profile

MLP = {"fc1": (500, 784), "fc2": (300, 500), "fc3": (10, 300)}
LENET = {"conv1": (20, 1, 5, 5), "conv2": (50, 20, 5, 5), "fc1": (500, 800), "fc2": (10, 500)}


def rigl_reference(shapes, sparsity, custom_dense=(), erk_power_scale=1.0):
    """google-research/rigl sparse_utils.get_sparsities_erdos_renyi, transcribed (dict of
    shapes)."""
    dense_layers = set(custom_dense)
    is_eps_valid = False
    while not is_eps_valid:
        divisor, rhs, raw_probabilities = 0, 0, {}
        for name, shape in shapes.items():
            n_param = math.prod(shape)
            n_zeros, n_ones = n_param * sparsity, n_param * (1 - sparsity)
            if name in dense_layers:
                rhs -= n_zeros
            else:
                rhs += n_ones
                raw_probabilities[name] = (sum(shape) / math.prod(shape)) ** erk_power_scale
                divisor += raw_probabilities[name] * n_param
        eps = rhs / divisor
        max_prob = max(raw_probabilities.values())
        if max_prob * eps > 1:
            for name, p in raw_probabilities.items():
                if p == max_prob:
                    dense_layers.add(name)
        else:
            is_eps_valid = True
    return {
        name: 0.0 if name in dense_layers else 1 - eps * raw_probabilities[name] for name in shapes
    }


def total_density(shapes, sparsities):
    sizes = {n: math.prod(s) for n, s in shapes.items()}
    return sum((1 - sparsities[n]) * sizes[n] for n in shapes) / sum(sizes.values())


layer_dims = st.tuples(st.integers(1, 64), st.integers(1, 64)) | st.tuples(
    st.integers(1, 32), st.integers(1, 16), st.sampled_from([1, 3, 5]), st.sampled_from([1, 3, 5])
)


@PROPERTY
@given(st.lists(layer_dims, min_size=1, max_size=6), st.floats(0.0, 0.99))
def test_erk_densities_sum_to_target_and_stay_in_range(dims, s):
    shapes = {str(i): d for i, d in enumerate(dims)}
    total = sum(math.prod(d) for d in dims)
    # only reachable requests: a tiny model (e.g. one weight at S = 0.5) would lose every weight,
    # which erk_sparsities rejects with a ValueError (tested in test_bad_inputs)
    assume(pruned_count(total, s) < total)
    out = budgets.erk_sparsities(shapes, s)
    assert all(0.0 <= v <= 1.0 for v in out.values())
    assert total_density(shapes, out) == pytest.approx(1 - s, rel=1e-9, abs=1e-12)
    # The reference loop has no S ≈ 0 case: when 1 − S rounds to 1 (hypothesis draws S = 1e-38),
    # its ε·p_max exceeds 1 by a rounding error, every layer is made dense and it divides by 0.
    # erk_sparsities accepts ε·p = 1 within 1e-12 instead, so the two are compared above S = 1e-9.
    if s > 1e-9:
        assert out == pytest.approx(rigl_reference(shapes, s), abs=1e-12)


@pytest.mark.parametrize("shapes", [MLP, LENET])
@pytest.mark.parametrize("s", [0.5, 0.8, 0.9, 0.98])
def test_erk_matches_rigl_on_book_models(shapes, s):
    out = budgets.erk_sparsities(shapes, s)
    assert out == pytest.approx(rigl_reference(shapes, s), abs=1e-12)
    assert total_density(shapes, out) == pytest.approx(1 - s)


def test_erk_re_solve_makes_small_layer_dense():
    out = budgets.erk_sparsities(MLP, 0.5)  # ε·p of the 300×10 output layer would exceed 1
    assert out["fc3"] == 0.0 and out["fc1"] > out["fc2"] > 0
    assert total_density(MLP, out) == pytest.approx(0.5)


def test_erk_custom_dense_and_power_scale_zero_is_uniform():
    out = budgets.erk_sparsities(LENET, 0.9, dense=["conv1"])
    assert out["conv1"] == 0.0 and total_density(LENET, out) == pytest.approx(0.1)
    flat = budgets.erk_sparsities(LENET, 0.9, power_scale=0.0)
    assert all(v == pytest.approx(0.9) for v in flat.values())


def test_uniform_compensates_for_dense_layers():
    assert budgets.uniform_sparsities(LENET, 0.9) == dict.fromkeys(LENET, 0.9)
    out = budgets.uniform_sparsities(LENET, 0.9, dense=["conv1", "fc2"])
    assert out["conv1"] == out["fc2"] == 0.0 and out["conv2"] == out["fc1"] > 0.9
    assert total_density(LENET, out) == pytest.approx(0.1)


def test_unreachable_or_bad_arguments_raise():
    with pytest.raises(ValueError, match="unreachable"):
        budgets.uniform_sparsities(MLP, 0.9, dense=["fc1"])  # the first layer holds 73% of the MLP
    with pytest.raises(ValueError, match=r"dense=\['fc9'\] is not known"):
        budgets.erk_sparsities(MLP, 0.5, dense=["fc9"])
    for bad in (-1, float("nan"), float("inf")):  # nan used to loop forever, inf to divide by zero
        with pytest.raises(ValueError, match="power_scale"):
            budgets.erk_sparsities(MLP, 0.5, power_scale=bad)
    with pytest.raises(ValueError, match="sparsity"):
        budgets.erk_sparsities(MLP, 1.5)
    with pytest.raises(ValueError, match="budget='random'"):
        budgets.budget_masks(models.mlp(), 0.5, budget="random")


@pytest.mark.parametrize("budget", budgets.BUDGETS)
@pytest.mark.parametrize("s", [0.5, 0.9, 0.98])
def test_budget_masks_hit_target(budget, s):
    torch.manual_seed(0)
    net = models.lenet5()
    masks = budgets.budget_masks(net, s, budget)
    shapes = budgets.layer_shapes(net)
    total = sum(math.prod(v) for v in shapes.values())
    kept = sum(int(m.sum()) for m in masks.values())
    if budget == "global":
        assert kept == total - pruned_count(total, s)  # exact in total
    else:  # exact per layer; the total can differ by the per-layer rounding only
        per_layer = budgets.budget_sparsities(net, s, budget)
        for name, m in masks.items():
            assert int(m.sum()) == m.numel() - pruned_count(m.numel(), per_layer[name])
        assert abs(kept - (total - s * total)) <= len(masks)


def test_global_budget_realised_sparsities_and_first_last_dense():
    torch.manual_seed(0)
    net = models.mlp()
    masks = budgets.budget_masks(net, 0.9, "global", last_dense=True)
    assert set(masks) == {"fc1", "fc2"}
    realised = budgets.budget_sparsities(net, 0.9, "global", last_dense=True)
    assert realised["fc3"] == 0.0
    assert total_density(MLP, realised) == pytest.approx(0.1, abs=1e-5)


def test_budget_masks_nested_when_recomputed_from_masked_model():
    from sparsitylab import reparam

    torch.manual_seed(0)
    net = models.lenet5()
    first = budgets.budget_masks(net, 0.5, "erk")
    reparam.apply_masks(net, first)
    second = budgets.budget_masks(net, 0.9, "erk")
    assert all((second[n] <= first[n]).all() for n in first)  # pruned weights stay pruned
    reparam.apply_masks(net, second)
    assert metrics.sparsity(net) == pytest.approx(0.9, abs=1e-4)


@pytest.mark.parametrize("budget", budgets.BUDGETS)
def test_a_request_the_dense_layers_make_exact_is_refused_not_turned_into_sparsity_one(budget):
    """Dense layers holding exactly 1 − S of the weights leave the others at sparsity 1.0: refused
    clearly."""
    net = models.mlp((6, 4, 2))  # fc1: 24 weights, fc2: 8 weights
    with pytest.raises(ValueError, match="unreachable"):
        budgets.budget_masks(
            net, 24 / 32, budget, first_dense=False, last_dense=True
        )  # 8 dense = 1 − S
    with pytest.raises(ValueError, match="unreachable"):
        budgets.budget_sparsities(net, 24 / 32, budget, last_dense=True)
    assert budgets.budget_sparsities(net, 0.7, budget, last_dense=True)["fc1"] < 1.0


def test_erk_layers_made_dense_can_make_a_request_unreachable():
    shapes = {
        "a": (2, 2),
        "b": (100, 100),
    }  # ε·p_a > 1 makes "a" dense; what is left must still keep something
    out = budgets.erk_sparsities(shapes, 0.9)
    assert out["a"] == 0.0 and 0 < out["b"] < 1
    with pytest.raises(ValueError, match="unreachable"):
        budgets.uniform_sparsities(shapes, 0.9999, dense=["a"])


def test_a_layer_that_rounding_would_empty_is_refused():
    net = models.mlp((10, 1, 10))  # fc1: 10 weights, fc2: 10 weights
    with pytest.raises(ValueError, match="lose every weight"):
        budgets.budget_masks(net, 0.96, "uniform")  # 0.96 · 10 rounds to all 10 of each layer
