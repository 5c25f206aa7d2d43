"""Growth rules: drop_grow keeps the count and matches a sort-based reference (ties by position);
apportion is exact, capped and proportional; random masks have exact counts; the cosine drop
fraction has RigL's values."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsitylab.sparsify.growth import apportion, cosine_fraction, drop_grow, random_masks


def reference_drop_grow(mask, drop_score, grow_score, drop, grow):
    """Stable sorts: drop the lowest-scored active entries (the later index first among ties),
    grow the highest-scored entries not kept (the earlier index first among ties)."""
    flat = mask.reshape(-1).tolist()
    d, g = drop_score.reshape(-1).tolist(), grow_score.reshape(-1).tolist()
    active = [i for i, on in enumerate(flat) if on]
    by_drop = sorted(active, key=lambda i: (d[i], -i))  # lowest first; ties: higher index first
    kept = set(active) - set(by_drop[:drop])
    candidates = sorted((i for i in range(len(flat)) if i not in kept), key=lambda i: (-g[i], i))
    new = kept | set(candidates[:grow])
    return torch.tensor([i in new for i in range(len(flat))]).reshape(mask.shape)


@st.composite
def cases(draw):
    n = draw(st.integers(2, 40))
    values = st.integers(0, 4)  # small integers: many ties
    mask = torch.tensor(draw(st.lists(st.booleans(), min_size=n, max_size=n)))
    if not mask.any():
        mask[0] = True
    d = torch.tensor(draw(st.lists(values, min_size=n, max_size=n)), dtype=torch.float32)
    g = torch.tensor(draw(st.lists(values, min_size=n, max_size=n)), dtype=torch.float32)
    active = int(mask.sum())
    drop = draw(st.integers(0, active))
    grow = draw(st.integers(0, n - active + drop))
    return mask, d, g, drop, grow


@settings(max_examples=300, deadline=None)
@given(cases())
def test_drop_grow_matches_a_sort_reference_and_has_the_exact_count(case):
    mask, d, g, drop, grow = case
    new = drop_grow(mask, d, g, drop, grow)
    assert torch.equal(new, reference_drop_grow(mask, d, g, drop, grow))
    assert int(new.sum()) == int(mask.sum()) - drop + grow


def test_drop_grow_default_keeps_the_count_and_may_regrow_what_it_just_dropped():
    mask = torch.tensor([True, True, False, False])
    weights = torch.tensor([0.1, 5.0, 0.0, 0.0])
    grads = torch.tensor([9.0, 0.0, 1.0, 2.0])  # the dropped entry 0 has the largest gradient
    assert drop_grow(mask, weights, grads, 1).tolist() == [True, True, False, False]
    grads[0] = 0.0
    assert drop_grow(mask, weights, grads, 1).tolist() == [False, True, False, True]


def test_drop_grow_refuses_bad_counts_and_shapes():
    mask = torch.tensor([True, False, True])
    score = torch.ones(3)
    with pytest.raises(ValueError, match="drop=3"):
        drop_grow(mask, score, score, 3)
    with pytest.raises(ValueError, match="grow=3"):
        drop_grow(mask, score, score, 1, 3)
    with pytest.raises(ValueError, match="grow_score has shape"):
        drop_grow(mask, score, torch.ones(4), 1)
    with pytest.raises(TypeError, match="boolean"):
        drop_grow(mask.float(), score, score, 1)


@settings(max_examples=300, deadline=None)
@given(
    st.lists(st.floats(0, 10), min_size=1, max_size=6),
    st.lists(st.integers(0, 50), min_size=6, max_size=6),
    st.floats(0, 1),
)
def test_apportion_is_exact_capped_and_proportional_where_uncapped(scores, rooms, share):
    names = [f"l{i}" for i in range(len(scores))]
    room = dict(zip(names, rooms))
    total = math.floor(share * sum(room.values()))
    given_ = apportion(total, dict(zip(names, scores)), room)
    assert sum(given_.values()) == total
    assert all(0 <= given_[n] <= room[n] for n in names)
    free = [n for n in names if given_[n] < room[n]]  # not capped: within 1 of its ideal share
    weight = dict(zip(names, scores))
    mass = sum(weight[n] for n in free)
    left = total - sum(given_[n] for n in names if n not in free)
    if free and mass > 0:
        for n in free:
            assert abs(given_[n] - left * weight[n] / mass) < 1 + 1e-9


def test_apportion_refuses_more_than_the_room():
    with pytest.raises(ValueError, match="total=11 exceeds"):
        apportion(11, {"a": 1.0, "b": 1.0}, {"a": 5, "b": 5})


def test_random_masks_have_exact_counts_and_depend_only_on_the_seed():
    shapes = {"a": (10, 7), "b": (3, 3, 5, 5)}
    sparsities = {"a": 0.9, "b": 0.35}
    one = random_masks(shapes, sparsities, torch.Generator().manual_seed(3))
    two = random_masks(shapes, sparsities, torch.Generator().manual_seed(3))
    other = random_masks(shapes, sparsities, torch.Generator().manual_seed(4))
    assert int(one["a"].sum()) == 70 - 63 and int(one["b"].sum()) == 225 - 79
    assert all(torch.equal(one[n], two[n]) for n in shapes)
    assert not torch.equal(one["b"], other["b"])


def test_cosine_fraction_has_rigls_values():
    assert cosine_fraction(0, 0.3, 100) == pytest.approx(0.3)
    assert cosine_fraction(50, 0.3, 100) == pytest.approx(0.15)
    assert cosine_fraction(100, 0.3, 100) == 0.0
    assert cosine_fraction(0, 0.5, 100, floor=0.005) == pytest.approx(0.5)
    assert cosine_fraction(99, 0.5, 100, floor=0.005) == pytest.approx(0.005, abs=2e-4)
