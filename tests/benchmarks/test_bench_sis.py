"""bench sis completes on a tiny random layer and writes its JSON (timings are not tested)."""

from __future__ import annotations

import json

import pytest

from sparsitylab.benchmarks import sis as bench


def test_tiny_run_writes_the_five_solves(tmp_path):
    out = tmp_path / "sis.json"
    assert bench.main(["--data", "random", "--samples", "40", "--json", str(out)]) == 0
    record = json.loads(out.read_text())
    assert record["benchmark"] == "sis" and record["samples"] == 40
    solvers = [r["solver"] for r in record["runs"]]
    assert solvers == [
        "majorise–minimise to η (solve_to_eta)",
        "FISTA + bisection to η",
        "FISTA at that penalty",
        "FISTA at that penalty, tol 1e-4",
        "Chambolle–Pock to η",
    ]
    for run in record["runs"][:2]:  # both keep only feasible solutions
        assert run["theta / eta"] <= 1.0 + 1e-6
    assert all(r["iterations"] > 0 and r["seconds"] > 0 for r in record["runs"])


def test_bad_flags_exit_with_usage_errors():
    with pytest.raises(SystemExit) as err:
        bench.main(["--samples", "0"])
    assert err.value.code == 2
