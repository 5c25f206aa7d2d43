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


# ---- the least-squares refit on a fixed mask


def lstsq_rows(w, keep, x, t, damp=0.0, intercept=True):
    """The refit written out row by row with torch.linalg.lstsq on [X_K, 1] (and, for damp > 0,
    the ridge rows √λ·I with right-hand side √λ·w⁰_K stacked under it)."""
    xc = x - x.mean(0) if intercept else x
    lam = damp * float((xc.T @ xc).diagonal().mean())
    new, bias = torch.zeros_like(w), torch.zeros(w.shape[0], dtype=w.dtype)
    for r in range(w.shape[0]):
        cols = torch.nonzero(keep[r]).squeeze(1)
        design = torch.cat([x[:, cols], torch.ones(x.shape[0], 1, dtype=x.dtype)], 1)
        if not intercept:
            design = design[:, :-1]
        rhs = t[:, r]
        if damp > 0:
            ridge = torch.zeros(len(cols), design.shape[1], dtype=x.dtype)
            ridge[:, : len(cols)] = lam**0.5 * torch.eye(len(cols), dtype=x.dtype)
            design = torch.cat([design, ridge])
            rhs = torch.cat([rhs, lam**0.5 * w[r, cols]])
        solution = torch.linalg.lstsq(design, rhs[:, None], driver="gelsd").solution[:, 0]
        new[r, cols] = solution[: len(cols)]
        if intercept:
            bias[r] = solution[-1]
    return new, bias


@settings(max_examples=25, deadline=None)
@given(
    st.integers(1, 9),
    st.integers(1, 12),
    st.floats(0.0, 0.9),
    st.sampled_from([0.0, 0.1]),
    st.integers(0, 2**31 - 1),
)
def test_refit_matches_lstsq_row_by_row(rows, columns, sparsity, damp, seed):
    g = torch.Generator().manual_seed(seed)
    d = torch.float64
    w = torch.randn(rows, columns, generator=g, dtype=d)
    x = torch.randn(3 * columns + 5, columns, generator=g, dtype=d) + 0.5
    t = torch.randn(x.shape[0], rows, generator=g, dtype=d)
    keep = torch.rand(rows, columns, generator=g) >= sparsity
    new, bias = pt.refit(w, torch.zeros(rows, dtype=d), keep, x, t, damp=damp, max_elements=7)
    ref_w, ref_b = lstsq_rows(w, keep, x, t, damp)
    assert torch.allclose(new, ref_w, atol=1e-8) and torch.allclose(bias, ref_b, atol=1e-8)
    assert not bool(new[~keep].any())  # pruned entries stay exactly 0
    no_w, no_b = pt.refit(w, None, keep, x, t, damp=damp)
    assert no_b is None
    assert torch.allclose(no_w, lstsq_rows(w, keep, x, t, damp, intercept=False)[0], atol=1e-8)


def test_refit_with_nothing_kept_fits_the_bias_alone():
    g = torch.Generator().manual_seed(0)
    w, x = torch.randn(4, 6, generator=g), torch.randn(30, 6, generator=g)
    t = torch.randn(30, 4, generator=g) + torch.tensor([1.0, -2.0, 0.0, 3.0])
    keep = torch.zeros(4, 6, dtype=torch.bool)
    keep[2] = True  # one row keeps everything, the others nothing
    new, bias = pt.refit(w, torch.zeros(4), keep, x, t)
    assert not bool(new[[0, 1, 3]].any())
    assert torch.allclose(bias[[0, 1, 3]], t.mean(0)[[0, 1, 3]], atol=1e-6)
    ref_w, ref_b = lstsq_rows(w.double(), keep, x.double(), t.double())
    assert torch.allclose(new[2].double(), ref_w[2], atol=1e-5)
    assert torch.allclose(bias[2].double(), ref_b[2], atol=1e-5)
    assert new.dtype == w.dtype and bias.dtype == torch.float32
    empty, only_bias = pt.refit(w, torch.zeros(4), torch.zeros_like(keep), x, t)
    assert not bool(empty.any()) and torch.allclose(only_bias, t.mean(0), atol=1e-6)


def test_refit_reproduces_a_layer_whose_kept_weights_generate_the_targets():
    g = torch.Generator().manual_seed(1)
    w = torch.randn(20, 50, generator=g, dtype=torch.float64)
    keep = torch.rand(20, 50, generator=g) > 0.7
    x = torch.randn(200, 50, generator=g, dtype=torch.float64)
    b = torch.randn(20, generator=g, dtype=torch.float64)
    t = x @ (w * keep).T + b
    new, bias = pt.refit(torch.randn(20, 50, dtype=torch.float64), b * 0, keep, x, t)
    assert torch.allclose(new, w * keep, atol=1e-9) and torch.allclose(bias, b, atol=1e-9)


def test_refit_refuses_bad_input_by_name():
    w, x, t = torch.randn(3, 4), torch.randn(10, 4), torch.randn(10, 3)
    keep = torch.ones(3, 4, dtype=torch.bool)
    with pytest.raises(ValueError, match="keep"):
        pt.refit(w, None, keep.float(), x, t)
    with pytest.raises(ValueError, match="target"):
        pt.refit(w, None, keep, x, t[:, :2])
    with pytest.raises(ValueError, match="bias"):
        pt.refit(w, torch.zeros(2), keep, x, t)
    with pytest.raises(ValueError, match="columns"):
        pt.refit(w, None, keep, x[:, :3], t)
    with pytest.raises(ValueError, match="damp"):
        pt.refit(w, None, keep, x, t, damp=-1.0)
    dead = x.clone()
    dead[:, 1] = 2.0  # constant input: its centred column is 0, the system singular
    with pytest.raises(ValueError, match="damp > 0"):
        pt.refit(w, torch.zeros(3), keep, dead, t)
    assert pt.refit(w, torch.zeros(3), keep, dead, t, damp=0.01)[0].isfinite().all()
