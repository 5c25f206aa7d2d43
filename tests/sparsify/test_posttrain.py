"""Wanda's and SparseGPT's per-layer rules against hand-computed cases and a direct, slow
re-implementation of Optimal Brain Surgeon."""

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsitylab.sparsify import posttrain as pt
from sparsitylab.sparsify.masks import mask_from_scores


def test_wanda_keeps_the_largest_weight_times_input_norm_in_each_row():
    w = torch.tensor([[4.0, -1.0, 2.0, 0.5], [1.0, 1.0, -3.0, 2.0]])
    x = torch.tensor([[0.0, 3.0, 1.0, 4.0], [0.0, 4.0, 0.0, 3.0]])  # norms 0, 5, 1, 5
    # scores: row 0 → 0, 5, 2, 2.5 ; row 1 → 0, 5, 3, 10
    keep = pt.wanda_keep(w, pt.input_norms(x), sparsity=0.5)
    assert keep.tolist() == [[False, True, False, True], [False, True, False, True]]
    # magnitude alone would keep 4.0 (row 0) and -3.0 (row 1): the input norm is what changes it
    keep24 = pt.wanda_keep(w, pt.input_norms(x), n=1, m=2)
    assert keep24.tolist() == [[False, True, False, True], [False, True, False, True]]


def test_wanda_prunes_the_same_count_in_every_row():
    torch.manual_seed(0)
    w, x = torch.randn(7, 40), torch.randn(50, 40)
    keep = pt.wanda_keep(w, pt.input_norms(x), sparsity=0.6)
    assert (keep.sum(1) == 16).all()


def slow_obs(w, h, keep_rule, block):
    """SparseGPT written out from its definition, one weight at a time: for column j the inverse
    Hessian of the columns still to come, (H_{j:, j:})⁻¹, is inverted directly, and every pruned
    weight of that column is removed with the OBS update δ = −w_rj / [H⁻¹]_00 · H⁻¹_{0,:}; the
    mask of each block is chosen from the OBS saliency w² / [H⁻¹]_00 when the block (or N:M
    group) is reached."""
    w = w.clone()
    cols = w.shape[1]
    d = torch.stack([torch.linalg.inv(h[j:, j:])[0, 0] for j in range(cols)])
    keep = torch.ones_like(w, dtype=torch.bool)
    for j in range(cols):
        keep_rule(w, d, keep, j, block)
        hinv = torch.linalg.inv(h[j:, j:])
        for r in range(w.shape[0]):
            if not keep[r, j]:
                w[r, j:] -= w[r, j] / hinv[0, 0] * hinv[0, :]
    return torch.where(keep, w, torch.zeros(())), keep


def unstructured(sparsity):
    def rule(w, d, keep, j, block):
        if j % block == 0:
            scores = w[:, j : j + block].square() / d[j : j + block]  # OBS: w² / [H⁻¹]_00
            keep[:, j : j + block] = pt._block_keep(scores, sparsity)

    return rule


def n_of_m(n, m):
    def rule(w, d, keep, j, block):
        if j % m == 0:
            keep[:, j : j + m] = pt.nm_keep(w[:, j : j + m].square() / d[j : j + m], n, m)

    return rule


@pytest.mark.parametrize("pattern", ["50%", "70%", "2:4", "1:4"])
def test_sparsegpt_equals_a_direct_slow_obs(pattern):
    torch.manual_seed(1)
    rows, cols, samples, block = 6, 16, 40, 8
    x = torch.randn(samples, cols, dtype=torch.float64) @ torch.randn(
        cols, cols, dtype=torch.float64
    )
    w = torch.randn(rows, cols, dtype=torch.float64)
    h = pt.hessian(x)
    damped = h + 0.01 * h.diagonal().mean() * torch.eye(cols, dtype=torch.float64)
    if pattern.endswith("%"):
        s = int(pattern[:-1]) / 100
        got, keep = pt.sparsegpt(w, h, sparsity=s, block=block)
        want, want_keep = slow_obs(w, damped, unstructured(s), block)
    else:
        n, m = map(int, pattern.split(":"))
        got, keep = pt.sparsegpt(w, h, n=n, m=m, block=block)
        want, want_keep = slow_obs(w, damped, n_of_m(n, m), block)
    assert torch.equal(keep, want_keep)
    torch.testing.assert_close(got, want, rtol=1e-5, atol=1e-5)
    assert bool((got[~keep] == 0).all())


def test_sparsegpt_reconstructs_exactly_when_inputs_are_duplicated():
    # inputs [A, A]: the second copy of each feature can carry the first copy's weight, so pruning
    # the first half loses nothing; SparseGPT finds that half (its columns have tiny w² / [H⁻¹]_00)
    torch.manual_seed(2)
    a = torch.randn(64, 5, dtype=torch.float64)
    x = torch.cat([a, a], 1)
    w = torch.randn(4, 10, dtype=torch.float64)
    pruned, keep = pt.sparsegpt(w, pt.hessian(x), sparsity=0.5, damp=1e-9)
    assert not keep[:, :5].any() and keep[:, 5:].all()
    assert pt.reconstruction_error(x, w, pruned) < 1e-8
    # the mask alone (no update) loses half of the output: the update is what reconstructs
    masked, _ = pt.sparsegpt(w, pt.hessian(x), sparsity=0.5, damp=1e-9, update=False)
    assert pt.reconstruction_error(x, w, masked) > 0.1
    # Wanda has no update: it cannot do better than a mask
    keep_w = pt.wanda_keep(w, pt.input_norms(x), sparsity=0.5)
    assert pt.reconstruction_error(x, w, w * keep_w) > 0.01


def test_sparsegpt_beats_its_own_mask_without_update_on_random_layers():
    torch.manual_seed(3)
    x, w = torch.randn(300, 32) @ torch.randn(32, 32), torch.randn(16, 32)
    h = pt.hessian(x)
    updated, keep = pt.sparsegpt(w, h, sparsity=0.5, block=8)
    plain, keep2 = pt.sparsegpt(w, h, sparsity=0.5, block=8, update=False)
    assert torch.equal(keep, keep2) and torch.equal(plain, w * keep)
    assert pt.reconstruction_error(x, w, updated) < pt.reconstruction_error(x, w, plain)


@settings(max_examples=25, deadline=None)
@given(
    rows=st.integers(1, 6),
    groups=st.integers(1, 6),
    sparsity=st.sampled_from([0.0, 0.25, 0.5, 0.9]),
    block=st.sampled_from([4, 8, 128]),
    seed=st.integers(0, 2**16),
)
def test_sparsegpt_prunes_exactly_its_share_and_keeps_zeros_exact(
    rows, groups, sparsity, block, seed
):
    g = torch.Generator().manual_seed(seed)
    cols = 4 * groups
    x, w = torch.randn(20, cols, generator=g), torch.randn(rows, cols, generator=g)
    pruned, keep = pt.sparsegpt(w, pt.hessian(x), sparsity=sparsity, block=block)
    expected = sum(
        pt.pruned_count(rows * min(block, cols - s), sparsity) for s in range(0, cols, block)
    )
    assert int((~keep).sum()) == expected
    assert bool((pruned[~keep] == 0).all()) and torch.isfinite(pruned).all()
    pruned24, keep24 = pt.sparsegpt(w, pt.hessian(x), n=2, m=4, block=block)
    assert (keep24.reshape(rows, groups, 4).sum(-1) == 2).all()


def test_a_dead_input_gets_its_weights_zeroed_and_the_rest_is_finite():
    torch.manual_seed(4)
    x = torch.randn(30, 8)
    x[:, 3] = 0
    w = torch.randn(5, 8)
    pruned, keep = pt.sparsegpt(w, pt.hessian(x), sparsity=0.25)
    assert bool((pruned[:, 3] == 0).all()) and torch.isfinite(pruned).all()
    assert not keep[:, 3].any() and torch.equal(keep, pruned != 0)  # the mask says what is zero


@pytest.mark.parametrize(
    "call,match",
    [
        (
            lambda: pt.sparsegpt(torch.randn(3, 4), pt.hessian(torch.randn(2, 4)), 0.5, damp=0.0),
            "not positive definite",
        ),
        (lambda: pt.sparsegpt(torch.randn(3, 6), torch.eye(6), n=2, m=4), "not divisible by m=4"),
        (lambda: pt.sparsegpt(torch.randn(3, 4), torch.eye(5), 0.5), "h has shape"),
        (lambda: pt.sparsegpt(torch.randn(3, 4), torch.eye(4)), "either sparsity"),
        (lambda: pt.sparsegpt(torch.randn(3, 4), torch.eye(4), 0.5, n=2, m=4), "either sparsity"),
        (lambda: pt.wanda_keep(torch.randn(3, 4), torch.ones(5), 0.5), "columns"),
        (lambda: pt.hessian(torch.zeros(0, 4)), "no calibration sample"),
        (lambda: pt.sparsegpt(torch.randn(3, 8), torch.eye(8), n=2, m=4, block=6), "multiple of m"),
    ],
)
def test_bad_input_is_named(call, match):
    with pytest.raises(ValueError, match=match):
        call()


def test_wanda_compared_across_the_layer_is_magnitude_when_every_input_has_the_same_norm():
    torch.manual_seed(5)
    w = torch.randn(6, 12)
    same = pt.wanda_keep(w, torch.full((12,), 3.0), sparsity=0.5, group="layer")
    assert torch.equal(same, mask_from_scores(w.abs(), 0.5))
    assert int((~same).sum()) == 36 and not (same.sum(1) == 6).all()  # rows differ: one threshold
    with pytest.raises(ValueError, match="group"):
        pt.wanda_keep(w, torch.ones(12), sparsity=0.5, group="column")
