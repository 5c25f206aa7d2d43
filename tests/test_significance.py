"""Paired comparisons and seed intervals (sparsitylab.significance), against hand computations,
brute force and scipy."""

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st
from scipy import stats

from sparsitylab import metrics, models, train
from sparsitylab.significance import pack_correct, unpack_correct


def _pair(n_both, n_only_a, n_only_b, n_neither):
    a = torch.tensor([1] * n_both + [1] * n_only_a + [0] * n_only_b + [0] * n_neither, dtype=bool)
    b = torch.tensor([1] * n_both + [0] * n_only_a + [1] * n_only_b + [0] * n_neither, dtype=bool)
    return a, b


def test_mcnemar_is_the_exact_binomial_test_of_the_disagreements():
    a, b = _pair(80, 10, 2, 8)
    result = metrics.mcnemar(a, b)
    assert (result.only_a, result.only_b) == (10, 2)
    # two-sided: 2 · P(X ≤ 2), X ~ Binomial(12, 1/2), by hand
    assert result.p_value == pytest.approx(2 * (1 + 12 + 66) / 4096)
    assert metrics.mcnemar(a, a).p_value == 1.0


def test_paired_bootstrap_matches_resampling_images_by_brute_force():
    a, b = _pair(300, 40, 25, 35)
    got = metrics.paired_bootstrap(a, b, resamples=20_000, seed=1)
    rng = np.random.default_rng(2)
    d = (a.int() - b.int()).numpy()
    brute = d[rng.integers(0, d.size, size=(20_000, d.size))].mean(axis=1)
    low, high = np.quantile(brute, [0.025, 0.975])
    assert got.estimate == pytest.approx((40 - 25) / 400)
    assert got.low == pytest.approx(low, abs=0.004) and got.high == pytest.approx(high, abs=0.004)
    # and its width is the paired standard error's (√(var d / n)), far below the unpaired one
    paired_se = d.std() / math.sqrt(d.size)
    assert (got.high - got.low) / (2 * 1.96) == pytest.approx(paired_se, rel=0.05)
    assert got.samples == 400 and got.excludes_zero is False


def test_a_clear_difference_excludes_zero_and_identical_models_give_a_point():
    a, b = _pair(300, 60, 5, 35)
    assert metrics.paired_bootstrap(a, b).excludes_zero
    same = metrics.paired_bootstrap(a, a)
    assert (same.estimate, same.low, same.high) == (0.0, 0.0, 0.0)


def test_seed_interval_is_the_student_t_interval_and_pairs_by_seed():
    values, baseline = [0.84, 0.86, 0.81], [0.80, 0.83, 0.79]
    got = metrics.seed_interval(values)
    low, high = stats.t.interval(0.95, 2, loc=np.mean(values), scale=stats.sem(values))
    assert (got.low, got.high) == (pytest.approx(low), pytest.approx(high))
    diff = metrics.seed_interval(values, baseline)
    assert diff.estimate == pytest.approx(0.03)
    d = np.subtract(values, baseline)
    assert diff.high - diff.estimate == pytest.approx(stats.t.ppf(0.975, 2) * stats.sem(d))
    assert diff.excludes_zero  # 0.04, 0.03, 0.02: consistent across seeds
    assert diff.points() == "+3.0 [+0.5, +5.5]"


@pytest.mark.parametrize(
    "call, error",
    [
        (lambda: metrics.seed_interval([0.8]), "at least 2 seeds"),
        (lambda: metrics.seed_interval([0.8, 0.9], [0.7]), "pair them seed by seed"),
        (lambda: metrics.seed_interval([0.8, 0.9], confidence=1.0), "confidence"),
        (lambda: metrics.paired_bootstrap(*_pair(1, 1, 1, 1), confidence=0), "confidence"),
        (lambda: metrics.paired_bootstrap(*_pair(1, 1, 1, 1), resamples=0), "resamples"),
        (lambda: metrics.mcnemar(torch.ones(3, dtype=bool), torch.ones(4, dtype=bool)), "same"),
        (lambda: metrics.mcnemar(torch.ones(3), torch.ones(3)), "bool"),
        (lambda: unpack_correct("ff", 20), "cannot encode 20"),
    ],
)
def test_bad_input_is_named(call, error):
    with pytest.raises((ValueError, TypeError), match=error):
        call()


@settings(max_examples=50, deadline=None)
@given(st.lists(st.booleans(), min_size=1, max_size=200))
def test_packed_correctness_round_trips(bits):
    correct = torch.tensor(bits, dtype=torch.bool)
    assert torch.equal(unpack_correct(pack_correct(correct), len(bits)), correct)


def test_correct_is_per_image_and_averages_to_the_accuracy():
    x, y = torch.randn(50, 1, 28, 28), torch.randint(0, 10, (50,))
    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(x, y), batch_size=16)
    torch.manual_seed(0)
    model = models.lenet5()
    hits = train.correct(model, loader)
    assert hits.dtype == torch.bool and hits.shape == (50,)
    assert float(hits.float().mean()) == pytest.approx(train.accuracy(model, loader))
    assert torch.equal(hits, model.eval()(x).argmax(1) == y)
