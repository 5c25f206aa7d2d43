"""`sparsitylab bench spmm`: break-even arithmetic and a tiny end-to-end CPU run."""

from __future__ import annotations

import json
import shutil

import pytest
import torch

from sparsitylab.benchmarks import spmm as bench


def fake_row(fmt, s, speedup, block=None):
    return bench.row(fmt, "x", s, 1.0 / speedup, 1.0, block)


def test_break_even_interpolates_and_reports_out_of_range():
    rows = [
        fake_row("csr", 0.5, 0.5),
        fake_row("csr", 0.9, 1.5),
        fake_row("bsr", 0.5, 2.0, (8, 8)),
        fake_row("bsr", 0.9, 4.0, (8, 8)),
        fake_row("compacted", 0.5, 0.2),
        fake_row("compacted", 0.9, 0.9),
    ]
    assert bench.break_even(rows) == {
        "csr / x": pytest.approx(0.7),
        "bsr 8x8 / x": "< 0.5",
        "compacted / x": None,
    }


def test_tiny_cpu_run_writes_json_and_plot(tmp_path):
    cfg = bench.Config(64, 64, 8, sparsities=(0.5, 0.9), blocks=((4, 1), (8, 8)), repeats=1)
    result = bench.run(cfg, gpu=False)
    names = {bench.series_name(r) for r in result["rows"]}
    assert {
        "csr / torch.sparse CSR (MKL)",
        "csr / SciPy CSR",
        "bsr 4x1 / MKL CSR (non-square blocks)",
        "bsr 8x8 / torch.sparse BSR (MKL)",
        "compacted / gather + torch.mm",
        "2:4 / CSR view (MKL)",
    } <= names
    assert all(r["speedup"] > 0 and r["median_ms"] > 0 for r in result["rows"])
    path = bench.save(result, tmp_path)
    assert json.loads(path.read_text())["config"]["m"] == 64 and path.with_suffix(".png").exists()
    assert "break-even" in bench.summary(result)


@pytest.mark.skipif(
    shutil.which("g++") is None, reason="g++ not found: the emulation harness needs it"
)
def test_gpu_half_runs_end_to_end_on_the_emulated_kernels(monkeypatch):
    """The GPU benchmark's logic (plans, rows, goals) with the CPU emulation standing in for CuPy,
    SciPy for cuSPARSE and a wall clock for CUDA events: ready to run where a GPU exists."""
    import time

    import scipy.sparse

    from sparsitylab.benchmarks import _spmm_gpu
    from sparsitylab.deploy.emulation import EmulatedBackend

    def wall_clock(repeats):
        def timed(fn):
            start = time.perf_counter()
            fn()
            return time.perf_counter() - start

        return timed

    monkeypatch.setattr(_spmm_gpu, "_timer", wall_clock)
    monkeypatch.setattr(
        _spmm_gpu, "_cusparse", lambda a: scipy.sparse.csr_matrix(a.numpy()).__matmul__
    )
    cfg = bench.Config(64, 64, 8, sparsities=(0.5, 0.9), blocks=((4, 1), (32, 32)), repeats=1)
    rows = _spmm_gpu.gpu_rows(cfg, torch.randn(64, 64), torch.randn(64, 8), EmulatedBackend())
    names = {bench.series_name(r) for r in bench.measured({"rows": rows})}
    assert {
        "csr / ours: csr_spmm",
        "csr / cuSPARSE (cupyx.scipy.sparse)",
        "bsr 32x32 / ours: bsr_spmm",
        "compacted / ours: fused gather-GEMM",
        "compacted / ours: gather + cuBLAS",
        "2:4 / ours: sparse24_spmm (CUDA cores)",
    } <= names
    goals = _spmm_gpu.goals(rows)
    assert set(goals["csr_speedup_over_cusparse_90_99"]) == {"0.9"}
    assert goals["bsr32_speedup_over_cublas_at_90"] > 0
    assert set(goals["compacted_fused_over_ideal"]) == {"0.5", "0.9"}
    assert all(
        isinstance(goals[k], bool) for k in ("csr_goal_met", "bsr32_goal_met", "compacted_goal_met")
    )
