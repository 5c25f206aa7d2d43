"""Hierarchical block masks (HBsNN §2.3): disjoint levels, exact per-level counts, cumulative
sparsity, the hierarchy rule, the paper's figure, the retained-top-k statistic and which of its
values are guaranteed by construction."""

from __future__ import annotations

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import assume, given, settings
from hypothesis import strategies as st

from sparsitylab.gemm import gemm_view
from sparsitylab.sparsify.hierarchical import (
    check_levels,
    guaranteed_top,
    hierarchical_masks,
    parse_config,
    retained_top,
    union,
)
from sparsitylab.sparsify.masks import block_mask, pruned_count

PROPERTY = settings(max_examples=60, deadline=None)


@st.composite
def weights_and_levels(draw):
    """A weight (Linear or Conv2d) with no zeros and 1–3 hierarchical levels that tile it."""
    depth = draw(st.integers(1, 3))
    factors = [(draw(st.sampled_from([1, 2])), draw(st.sampled_from([1, 2]))) for _ in range(depth)]
    shapes, bh, bw = [], 1, 1
    for fh, fw in reversed(factors):  # innermost first: each outer block is a multiple of the next
        bh, bw = bh * fh, bw * fw
        shapes.insert(0, (bh, bw))
    rows = shapes[0][0] * draw(st.integers(1, 4))
    conv = draw(st.booleans()) and shapes[0][1] in (1, 2, 4)
    if conv:
        c, k = draw(st.integers(1, 3)), draw(st.sampled_from([1, 2]))
        assume((c * k * k) % shapes[0][1] == 0)
        shape = (rows, c, k, k)
    else:
        shape = (rows, shapes[0][1] * draw(st.integers(1, 4)))
    values = draw(hnp.arrays(np.float32, shape, elements=st.floats(0.125, 4.0, width=32)))
    signs = draw(hnp.arrays(np.float32, shape, elements=st.sampled_from([-1.0, 1.0])))
    sparsities = [draw(st.floats(0.0, 0.99)) for _ in range(depth)]
    return torch.from_numpy(values * signs), list(zip(shapes, sparsities))


@PROPERTY
@given(weights_and_levels())
def test_levels_are_disjoint_and_exact(case):
    w, levels = case
    masks = hierarchical_masks(w, levels)
    assert len(masks) == len(levels)
    total = torch.zeros(w.shape, dtype=torch.int64)
    for mask in masks:
        total += mask.long()
    assert int(total.max()) <= 1  # disjoint
    matrix_rows, matrix_cols = gemm_view(w).shape
    taken_fraction = 0.0
    for mask, ((bh, bw), sparsity) in zip(masks, levels):
        blocks = (matrix_rows // bh) * (matrix_cols // bw)
        kept_blocks = blocks - pruned_count(blocks, sparsity)
        grid = gemm_view(mask).reshape(matrix_rows // bh, bh, matrix_cols // bw, bw)
        full = grid.all(dim=(1, 3))
        assert torch.equal(full, grid.any(dim=(1, 3)))  # a level keeps whole blocks
        if taken_fraction + kept_blocks * bh * bw / w.numel() <= 1.0 + 1e-9:
            # room enough: every kept block is new, so the level holds exactly its count
            assert int(full.sum()) == kept_blocks
            taken_fraction += kept_blocks * bh * bw / w.numel()
        else:
            break
    else:
        cumulative = 1.0 - float(union(masks).float().mean())
        assert cumulative == pytest.approx(1.0 - taken_fraction, abs=1e-6)


@PROPERTY
@given(weights_and_levels())
def test_one_level_is_block_mask(case):
    w, levels = case
    (shape, sparsity), *_ = levels
    assert torch.equal(
        hierarchical_masks(w, [(shape, sparsity)])[0], block_mask(w, shape, sparsity)
    )


def test_the_papers_figure_2x2_then_1x1():
    """Figure 1 of the paper: a 4×4 matrix, BS = [(2, 2), (1, 1)], SP = [50, 75]."""
    w = torch.tensor(
        [
            [9.0, 8.0, 0.1, 0.2],
            [7.0, 6.0, 0.3, 5.0],
            [0.4, 0.5, 4.0, 3.0],
            [0.6, 0.7, 2.0, 1.0],
        ]
    )
    level1, level2 = hierarchical_masks(w, [((2, 2), 0.5), ((1, 1), 0.75)])
    assert level1.int().tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]]
    # 25 % of the 16 single entries survive level 2: the 4 largest of what level 1 left — 5.0,
    # then 0.7, 0.6, 0.5 (the taken entries are zeros in the remainder)
    assert level2.int().tolist() == [[0, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0], [1, 1, 0, 0]]


def test_paper_arithmetic_kept_fractions_add():
    torch.manual_seed(0)
    w = torch.randn(64, 96)
    for config, kept in [
        ("4x1/60", 0.40),
        ("4x1/63+1x1/97", 0.40),
        ("4x1/65+1x1/95", 0.40),
        ("4x1/70+1x1/90", 0.40),
        ("4x1/80+1x1/80", 0.40),
        ("1x1/60", 0.40),
    ]:
        masks = hierarchical_masks(w, parse_config(config))
        assert float(union(masks).float().mean()) == pytest.approx(kept, abs=1e-3), config


def test_two_levels_retain_the_top_weights_better_than_one():
    torch.manual_seed(0)
    w = torch.randn(128, 128)
    one = union(hierarchical_masks(w, parse_config("4x1/60")))
    two = union(hierarchical_masks(w, parse_config("4x1/80+1x1/80")))
    top10_one, top10_two = retained_top(w, one, [0.1])[0], retained_top(w, two, [0.1])[0]
    assert top10_two == 1.0 > top10_one  # 20 % of single weights hold the whole top 10 %


TOPS = [0.1, 0.2, 0.3, 0.4, 0.5, 1.0]


@PROPERTY
@given(weights_and_levels())
def test_guaranteed_retention_is_always_met(case):
    w, levels = case
    keep = union(hierarchical_masks(w, levels))
    flags, kept = guaranteed_top(levels, TOPS, w.numel()), retained_top(w, keep, TOPS)
    for f, sure, share in zip(TOPS, flags, kept):
        if sure and w.numel() > pruned_count(w.numel(), 1 - f):  # a non-empty top-f set
            assert share == 1.0, (f, levels)


def test_guaranteed_retention_of_the_papers_configurations():
    """A trailing 1×1 level of density d guarantees every top-f with f ≤ d; nothing else does."""
    expected = {
        "4x1/60": [False] * 4,
        "4x1/63+1x1/97": [False] * 4,
        "4x1/65+1x1/95": [False] * 4,
        "4x1/70+1x1/90": [True, False, False, False],
        "4x1/80+1x1/80": [True, True, False, False],
        "8x8/80+1x1/80": [True, True, False, False],
        "1x1/60": [True] * 4,
        "1x1/90+1x1/90": [True, True, False, False],  # two 1×1 levels: their densities add
    }
    for config, flags in expected.items():
        assert guaranteed_top(parse_config(config), [0.1, 0.2, 0.3, 0.4], 500 * 800) == flags
    assert guaranteed_top(parse_config("4x1/60"), [0.0], 10) == [True]  # an empty top set


def test_a_fine_level_short_of_the_top_set_can_lose_part_of_it():
    """Not guaranteed is not a promise of a loss, but a loss can happen: the top 25 % are one
    large entry in each 4×1 block (column); the coarse level keeps the two columns with the larger
    sums, and a 1×1 level of one entry rescues only one of the other two."""
    w = torch.tensor([[3.0, 2.9, 2.8, 2.7]]).repeat(4, 1)
    w[1:, :2], w[1:, 2:] = 0.1, 1.0
    levels = [((4, 1), 0.5), ((1, 1), 15 / 16)]
    keep = union(hierarchical_masks(w, levels))
    assert guaranteed_top(levels, [0.25], w.numel()) == [False]
    assert retained_top(w, keep, [0.25]) == [0.75]  # 2.9 is lost


@PROPERTY
@given(st.integers(0, 2**16), st.sampled_from([(4, 1), (2, 2), (8, 8)]), st.integers(1, 9))
def test_moving_density_to_the_fine_level_never_loses_top_weights(seed, block, step):
    """At one cumulative sparsity, a coarse level of fewer blocks plus a larger 1×1 level keeps at
    least as much of every top-f set (derived: the coarse blocks are nested, and the extra single
    entries are the largest of what is left)."""
    torch.manual_seed(seed)
    w = torch.randn(32, 64)
    bh, bw = block
    blocks = (32 // bh) * (64 // bw)
    kept_before = None
    for coarse_blocks in list(range(blocks // 2, 0, -step))[:5]:  # fewer and fewer coarse blocks
        fine = w.numel() // 2 - coarse_blocks * bh * bw  # cumulative density 50 %
        levels = [(block, 1 - coarse_blocks / blocks)]
        if fine:
            levels.append(((1, 1), 1 - fine / w.numel()))
        masks = hierarchical_masks(w, levels)
        assert int(union(masks).sum()) == w.numel() // 2
        kept = retained_top(w, union(masks), TOPS)
        if kept_before is not None:
            assert all(a >= b for a, b in zip(kept, kept_before)), (block, coarse_blocks)
        kept_before = kept


def test_guaranteed_top_bad_inputs():
    with pytest.raises(ValueError, match=r"fractions\[1\]"):
        guaranteed_top(parse_config("1x1/60"), [0.1, 1.5], 100)
    with pytest.raises(ValueError, match="numel"):
        guaranteed_top(parse_config("1x1/60"), [0.1], 0)
    with pytest.raises(TypeError, match="fractions"):
        guaranteed_top(parse_config("1x1/60"), ["0.1"], 100)


def test_conv_weights_flatten_k_by_crs():
    torch.manual_seed(0)
    w = torch.randn(8, 3, 2, 2)
    (mask,) = hierarchical_masks(w, [((4, 3), 0.5)])
    rows = gemm_view(mask).reshape(2, 4, 4, 3).all(dim=(1, 3))
    assert int(rows.sum()) == 4  # 8 blocks of 4 filters × 3 flattened (c, r, s) entries


@pytest.mark.parametrize(
    "levels, error, match",
    [
        ([((4, 1), 0.6), ((2, 2), 0.5)], ValueError, "not hierarchical"),
        ([], ValueError, "empty"),
        ([((4, 1), 1.0)], ValueError, "sparsity"),
        ([((4, 1),)], TypeError, "must be a pair"),
    ],
)
def test_bad_levels_raise(levels, error, match):
    with pytest.raises(error, match=match):
        check_levels(levels)


def test_bad_configs_and_shapes_raise():
    with pytest.raises(ValueError, match="notation"):
        parse_config("4x1-60")
    with pytest.raises(ValueError, match="does not tile"):
        hierarchical_masks(torch.randn(10, 8), parse_config("4x1/60"))
