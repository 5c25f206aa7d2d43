"""The fast paths of the masks agree exactly with their references (hypothesis).

- ``_keep_flat``'s sampled bracket (``_keep_bracketed``) runs on large inputs only; here the size
  threshold and the sample are shrunk so that tiny tensors with heavy ties, all-equal values,
  zeros, ±inf and every dtype take it, with and without bracket misses (margin 0), and with the
  ``alive`` flags that hierarchical pruning passes.
- ``hierarchical_masks`` never writes the remainder I_k out; it is checked against the paper's
  procedure that does (masked_fill of each level's blocks, block sums of the remainder).
"""

from __future__ import annotations

from contextlib import contextmanager

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsitylab.gemm import from_gemm_view, gemm_view
from sparsitylab.sparsify import masks, native
from sparsitylab.sparsify.hierarchical import hierarchical_masks
from sparsitylab.sparsify.masks import mask_from_scores, pruned_count, topk_mask

PROPERTY = settings(max_examples=80, deadline=None)
sparsities = st.floats(0.0, 1.0, allow_nan=False, exclude_max=True)
tied = st.integers(-3, 3).map(float)  # many exact ties, zeros included
spread = st.floats(-1e3, 1e3, allow_nan=False, width=32)
special = st.sampled_from([0.0, -0.0, 1.0, -1.0, float("inf"), float("-inf"), 1e-45, 2.5])
FLOATS = [torch.float32, torch.float64, torch.float16, torch.bfloat16]
BAND_SELECT = native.band_select


PATHS = pytest.mark.parametrize("path", ["native", "torch"])  # the compiled band pass, or PyTorch


@contextmanager
def sampled(sample: int = 64, sigmas: float = 5.0, path: str = "native"):
    """Every input takes the bracketed path, with a ``sample``-score sample; ``path`` "torch"
    switches the compiled band pass off (:mod:`sparsitylab.sparsify.native`)."""
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(masks, "SAMPLED_MIN", 1)
        patch.setattr(masks, "SAMPLE", sample)
        patch.setattr(masks, "MARGIN_SIGMAS", sigmas)
        patch.setenv("SPARSITYLAB_NATIVE", "1" if path == "native" else "0")
        yield


def flat_arrays(elements=tied, max_size=200):
    return hnp.arrays(np.float64, st.integers(1, max_size), elements=elements).map(torch.from_numpy)


def reference_keep(scores: torch.Tensor, n_prune: int) -> torch.Tensor:
    """Stable sort of −score: ties keep the lower index; the first n − n_prune are kept."""
    order = sorted(range(scores.numel()), key=lambda i: (-float(scores[i]), i))
    keep = torch.zeros(scores.numel(), dtype=torch.bool)
    keep[order[: scores.numel() - n_prune]] = True
    return keep


# --- the bracketed top-k ---------------------------------------------------------------------


@PATHS
@PROPERTY
@given(
    flat_arrays(st.one_of(tied, spread, special)),
    sparsities,
    st.sampled_from([4, 8, 64]),
    st.sampled_from([0.0, 5.0]),
    st.sampled_from(FLOATS + [torch.int64, torch.int16]),
)
def test_bracketed_keep_matches_the_stable_sort(path, values, s, sample, sigmas, dtype):
    if not dtype.is_floating_point:
        values = values.clamp(-100, 100).nan_to_num(0.0)
    scores = values.to(dtype)
    n_prune = pruned_count(scores.numel(), s)
    with sampled(sample, sigmas, path):
        keep = mask_from_scores(scores, s)
    assert int(keep.sum()) == scores.numel() - n_prune
    assert torch.equal(keep, reference_keep(scores.double(), n_prune))


@PATHS
@PROPERTY
@given(flat_arrays(st.one_of(tied, spread)), sparsities, st.sampled_from(FLOATS))
def test_bracketed_topk_mask_matches_the_stable_sort(path, w, s, dtype):
    w = w.to(dtype)
    with sampled(path=path):
        keep = topk_mask(w, s)
    assert torch.equal(keep, reference_keep(w.abs().double(), pruned_count(w.numel(), s)))


@PATHS
@pytest.mark.parametrize("value", [0.0, 1.0, float("inf")])
@pytest.mark.parametrize("n", [1, 2, 37, 300])
def test_bracketed_all_equal_scores_keep_the_first(path, value, n):
    scores = torch.full((n,), value)
    for s in (0.0, 0.3, 0.5, 0.97):
        with sampled(path=path):
            keep = mask_from_scores(scores, s)
        n_keep = n - pruned_count(n, s)
        assert keep[:n_keep].all() and not keep[n_keep:].any()


@PATHS
@PROPERTY
@given(
    flat_arrays(st.one_of(tied, spread).map(abs)),
    st.data(),
    sparsities,
    st.sampled_from([4, 64]),
    st.sampled_from([0.0, 5.0]),
)
def test_alive_flags_score_zero_and_are_never_kept(path, scores, data, s, sample, sigmas):
    alive = torch.tensor(
        data.draw(st.lists(st.booleans(), min_size=scores.numel(), max_size=scores.numel()))
    )
    n_prune = pruned_count(scores.numel(), s)
    with sampled(sample, sigmas, path):
        keep = masks._keep_flat(scores, n_prune, alive)
    remainder = torch.where(alive, scores, torch.zeros((), dtype=scores.dtype))
    assert torch.equal(keep, reference_keep(remainder, n_prune) & alive)


def test_the_compiled_band_pass_is_taken_where_it_can_run():
    """Else every "native" case here would test the PyTorch path twice."""
    if not native.available():
        pytest.skip("no C compiler here")
    calls = []
    with sampled(), pytest.MonkeyPatch.context() as patch:
        patch.setattr(native, "band_select", lambda *a: calls.append(1) or BAND_SELECT(*a))
        mask_from_scores(torch.arange(50.0), 0.5)
    assert calls


@PATHS
def test_large_inputs_take_the_bracket_and_leave_the_rng_alone(path, monkeypatch):
    monkeypatch.setenv("SPARSITYLAB_NATIVE", "1" if path == "native" else "0")
    torch.manual_seed(1)
    scores = torch.randn(masks.SAMPLED_MIN + 5).abs()
    state = torch.get_rng_state()
    for s in (0.05, 0.5, 0.63, 0.97):
        n_prune = pruned_count(scores.numel(), s)
        assert masks._keep_bracketed(scores, n_prune, None) is not None
        keep = masks._keep_flat(scores, n_prune)
        assert torch.equal(keep, masks._keep_exact(scores, n_prune))
    assert torch.equal(torch.get_rng_state(), state)
    tied_scores = torch.randint(0, 3, (masks.SAMPLED_MIN + 5,)).float()
    n_prune = pruned_count(tied_scores.numel(), 0.5)
    assert torch.equal(
        masks._keep_flat(tied_scores, n_prune), masks._keep_exact(tied_scores, n_prune)
    )


# --- hierarchical masks without the written-out remainder ------------------------------------


def written_out_levels(w: torch.Tensor, levels) -> list[torch.Tensor]:
    """The paper's procedure as first implemented: I_{k+1} = I_k with M_k's entries set to 0."""
    remainder = gemm_view(w).abs()
    rows, cols = remainder.shape
    taken = torch.zeros(rows, cols, dtype=torch.bool)
    out = []
    for (bh, bw), s in levels:
        grid = remainder.reshape(rows // bh, bh, cols // bw, bw)
        sums = grid.sum(dim=(1, 3)).reshape(-1)
        blocks = reference_keep(sums, pruned_count(sums.numel(), s))
        blocks = blocks.reshape(rows // bh, 1, cols // bw, 1).expand(grid.shape)
        keep = blocks.reshape(rows, cols) & ~taken
        out.append(from_gemm_view(keep, w.shape))
        remainder = remainder.masked_fill(keep, 0.0)
        taken |= keep
    return out


@st.composite
def tiled_weights(draw):
    depth = draw(st.integers(1, 3))
    shapes, bh, bw = [], 1, 1
    for _ in range(depth):
        bh, bw = bh * draw(st.sampled_from([1, 2])), bw * draw(st.sampled_from([1, 2]))
        shapes.insert(0, (bh, bw))
    shape = (shapes[0][0] * draw(st.integers(1, 4)), shapes[0][1] * draw(st.integers(1, 4)))
    w = draw(hnp.arrays(np.float32, shape, elements=st.one_of(tied, spread)))
    levels = [(shape_k, draw(sparsities)) for shape_k in shapes]
    return torch.from_numpy(w), levels


@PATHS
@PROPERTY
@given(tiled_weights(), st.sampled_from([4, 64]), st.sampled_from([0.0, 5.0]))
def test_hierarchical_masks_match_the_written_out_remainder(path, case, sample, sigmas):
    w, levels = case
    with sampled(sample, sigmas, path):
        got = hierarchical_masks(w, levels)
    for mine, theirs in zip(got, written_out_levels(w, levels), strict=True):
        assert torch.equal(mine, theirs)


@PATHS
def test_hierarchical_masks_at_size_match_the_written_out_remainder(path, monkeypatch):
    monkeypatch.setenv("SPARSITYLAB_NATIVE", "1" if path == "native" else "0")
    torch.manual_seed(0)
    w = torch.randn(512, 1024)
    w[:, :64] = 0.0  # a zero stripe: ties at 0 in the fine level
    for levels in ([((4, 1), 0.63), ((1, 1), 0.97)], [((4, 4), 0.9), ((2, 1), 0.5), ((1, 1), 0.2)]):
        for mine, theirs in zip(hierarchical_masks(w, levels), written_out_levels(w, levels)):
            assert torch.equal(mine, theirs)
