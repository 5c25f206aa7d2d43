"""Graders for ``exercises/06_hierarchical_block_sparsity.py``."""

from __future__ import annotations

import pytest
import torch

from sparsitylab.deploy.perfmodel import IrfPoint, irf, predict
from sparsitylab.sparsify import hierarchical


def check_block_scores(student) -> None:
    torch.manual_seed(0)
    m = torch.randn(8, 12)
    got = student.block_scores(m, 4, 3)
    assert tuple(got.shape) == (2, 4), "one score per block"
    assert torch.allclose(got[1, 2], m[4:8, 6:9].abs().sum()), (
        "block (1, 2) = Σ|w| of rows 4–7, cols 6–8"
    )
    assert torch.allclose(student.block_scores(m, 1, 1), m.abs())


def check_two_level_masks(student) -> None:
    torch.manual_seed(0)
    figure1 = torch.tensor(
        [[9.0, 8.0, 0.1, 0.2], [7.0, 6.0, 0.3, 5.0], [0.4, 0.5, 4.0, 3.0], [0.6, 0.7, 2.0, 1.0]]
    )
    one, two = student.two_level_masks(figure1, (2, 2), 0.5, 0.75)
    assert one.int().tolist() == [[1, 1, 0, 0], [1, 1, 0, 0], [0, 0, 1, 1], [0, 0, 1, 1]], (
        "figure 1"
    )
    assert two.int().tolist() == [[0, 0, 0, 0], [0, 0, 0, 1], [0, 1, 0, 0], [1, 1, 0, 0]], (
        "figure 1"
    )
    for block, coarse, fine in [((4, 1), 0.63, 0.97), ((2, 2), 0.8, 0.8), ((4, 4), 0.5, 0.9)]:
        m = torch.randn(16, 24)
        expected = hierarchical.hierarchical_masks(m, [(block, coarse), ((1, 1), fine)])
        got = student.two_level_masks(m, block, coarse, fine)
        assert all(torch.equal(a, b) for a, b in zip(got, expected)), (block, coarse, fine)
        assert not (got[0] & got[1]).any(), "levels must be disjoint"


def check_retained_top(student) -> None:
    torch.manual_seed(0)
    w = torch.randn(40, 50)
    for config in ("4x1/60", "4x1/70+1x1/90", "1x1/60"):
        keep = hierarchical.union(
            hierarchical.hierarchical_masks(w, hierarchical.parse_config(config))
        )
        for f in (0.1, 0.3):
            expected = hierarchical.retained_top(w, keep, [f])[0]
            assert student.retained_top(w, keep, f) == pytest.approx(expected), (config, f)


def check_predicted_speedup(student) -> None:
    points = [IrfPoint((4, 1), s, 1.0, 1.0 / speedup) for s, speedup in [(0.5, 0.5), (0.9, 2.0)]]
    points += [IrfPoint((1, 1), s, 1.0, 1.0 / speedup) for s, speedup in [(0.5, 0.2), (0.99, 1.0)]]
    levels = [((4, 1), 0.37), ((1, 1), 0.03)]
    pairs = [(kept, irf(points, 1 - kept, block)) for block, kept in levels]
    assert student.predicted_speedup(pairs) == pytest.approx(predict(points, levels))
    assert student.predicted_speedup([(0.25, 1.0)]) == pytest.approx(4.0), "irf = 1: the ideal"
