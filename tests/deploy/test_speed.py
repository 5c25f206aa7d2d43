"""A layer's GEMM timed dense, as CSR and compacted: shapes, ideal ratio, intensity (no timing
asserts)."""

from __future__ import annotations

import pytest

from sparsitylab.deploy import speed


def test_layer_speed_shapes_ideal_ratio_and_intensity():
    w = speed.structured_weight(12, 30, kept_rows=5, kept_cols=7, seed=3)
    rows, cols = speed.kept_rows_cols(w)
    assert (len(rows), len(cols)) == (5, 7) and int(w.count_nonzero()) == 35
    r = speed.layer_speed("toy", w.view(12, 30, 1, 1), positions=4, batch=2, min_run_time=0.01)
    assert (r.shape, r.compact_shape) == ("12×30", "5×7") and r.ideal == pytest.approx(360 / 35)
    assert r.sparsity_csr == pytest.approx(1 - 35 / 360) and r.columns == 8
    assert r.intensity == pytest.approx(2 * 35 * 8 / (4 * (35 + 12 * 8)))
    assert r.dense_ms > 0 and r.csr_ms > 0 and r.compact_ms > 0
    with pytest.raises(ValueError, match="positions"):
        speed.layer_speed("toy", w, positions=0)
    table = speed.speed_table([r])
    assert list(table.index) == ["toy"] and table.loc["toy", "ideal"] == pytest.approx(360 / 35)
