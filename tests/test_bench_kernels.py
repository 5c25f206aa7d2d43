"""`sparsitylab bench kernels`: break-even arithmetic and a tiny end-to-end CPU run."""

from __future__ import annotations

import json

import pytest

from sparsitylab.benchmarks import kernels as bench


def fake_row(fmt, s, speedup, block=None):
    return bench.row(fmt, "x", s, 1.0 / speedup, 1.0, block)


def test_break_even_interpolates_and_reports_out_of_range():
    rows = [fake_row("csr", 0.5, 0.5), fake_row("csr", 0.9, 1.5),
            fake_row("bsr", 0.5, 2.0, (8, 8)), fake_row("bsr", 0.9, 4.0, (8, 8)),
            fake_row("compacted", 0.5, 0.2), fake_row("compacted", 0.9, 0.9)]
    assert bench.break_even(rows) == {"csr / x": pytest.approx(0.7), "bsr 8x8 / x": "< 0.5", "compacted / x": None}


def test_tiny_cpu_run_writes_json_and_plot(tmp_path):
    cfg = bench.Config(64, 64, 8, sparsities=(0.5, 0.9), blocks=((4, 1), (8, 8)), repeats=1)
    result = bench.run(cfg, gpu=False)
    names = {bench.series_name(r) for r in result["rows"]}
    assert {"csr / torch.sparse CSR (MKL)", "csr / SciPy CSR", "bsr 4x1 / MKL CSR (non-square blocks)",
            "bsr 8x8 / torch.sparse BSR (MKL)", "compacted / gather + torch.mm", "2:4 / CSR view (MKL)"} <= names
    assert all(r["speedup"] > 0 and r["median_ms"] > 0 for r in result["rows"])
    path = bench.save(result, tmp_path)
    assert json.loads(path.read_text())["config"]["m"] == 64 and path.with_suffix(".png").exists()
    assert "break-even" in bench.summary(result)
