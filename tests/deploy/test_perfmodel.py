"""The HBsNN performance model: irf interpolation, the speedup formula of §2.4, and a tiny
micro-benchmark (its numbers are not tested, only that it measures what it says)."""

from __future__ import annotations

import pytest
import torch

from sparsitylab.deploy.perfmodel import (
    IrfPoint,
    irf,
    irf_record,
    measure_irf,
    points_from_record,
    predict,
    random_block_sparse,
)


def points():
    # irf rises with sparsity for 4x1; constant 0.5 for 1x1 (synthetic, chosen by hand)
    out = []
    for s, speedup in [(0.5, 0.4), (0.7, 1.0), (0.9, 3.0)]:
        out.append(IrfPoint((4, 1), s, dense_ms=10.0, sparse_ms=10.0 / speedup))
    for s in (0.5, 0.9, 0.99):
        out.append(IrfPoint((1, 1), s, dense_ms=10.0, sparse_ms=10.0 * (1 - s) / 0.5))
    return out


def test_irf_is_speedup_times_density_and_interpolates():
    p = points()
    assert p[0].irf == pytest.approx(0.4 * 0.5)
    assert irf(p, 0.7, (4, 1)) == pytest.approx(0.3)
    assert irf(p, 0.6, (4, 1)) == pytest.approx((0.2 + 0.3) / 2)
    assert irf(p, 0.97, (1, 1)) == pytest.approx(0.5)


def test_predict_follows_equations_1_and_2():
    p = points()
    # 4x1/63 + 1x1/97: levels keep 0.37 and 0.03 of F_dense
    expected = 1.0 / (0.37 / irf(p, 0.63, (4, 1)) + 0.03 / irf(p, 0.97, (1, 1)))
    assert predict(p, [((4, 1), 0.37), ((1, 1), 0.03)]) == pytest.approx(expected)
    # one level at irf = 1 would give the ideal F_dense / F_sparse
    ideal = [IrfPoint((2, 2), s, 1.0, 1.0 - s) for s in (0.5, 0.9)]
    assert predict(ideal, [((2, 2), 0.25)]) == pytest.approx(4.0)


def test_no_extrapolation_and_unknown_blocks_raise():
    with pytest.raises(ValueError, match="outside the measured range"):
        irf(points(), 0.3, (4, 1))
    with pytest.raises(ValueError, match="was not measured"):
        irf(points(), 0.6, (8, 8))
    with pytest.raises(ValueError, match="empty"):
        predict(points(), [((4, 1), 0.0)])


def test_random_block_sparse_has_exact_block_sparsity():
    m = random_block_sparse((32, 16), (4, 2), 0.75)
    blocks = m.reshape(8, 4, 8, 2).ne(0).any(3).any(1)
    assert int(blocks.sum()) == 16  # 64 blocks, 48 pruned


def test_tiny_measurement_round_trips_through_json():
    torch.set_num_threads(1)
    pts = measure_irf([(1, 1), (4, 1)], [0.5, 0.9], shape=(64, 64), n=8, repeats=2)
    assert len(pts) == 4 and all(p.dense_ms > 0 and p.sparse_ms > 0 for p in pts)
    record = irf_record(pts, (64, 64), 8)
    assert record["threads"] == 1 and record["cpu"]
    assert points_from_record(record) == pts
