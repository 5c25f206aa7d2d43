"""Quick/full budgets and the command line."""

from __future__ import annotations

import subprocess
import sys

import pytest

import sparsitylab
from sparsitylab import cli, modes


@pytest.mark.parametrize(
    "value, quick", [("1", True), ("true", True), ("0", False), ("", False), ("off", False)]
)
def test_pick_follows_env(monkeypatch, value, quick):
    monkeypatch.setenv(modes.ENV_VAR, value)
    assert modes.is_quick() is quick
    assert modes.pick(full=10, quick=1) == (1 if quick else 10)
    assert modes.mode_name() == ("quick" if quick else "full")


def test_bad_mode_value(monkeypatch):
    monkeypatch.setenv(modes.ENV_VAR, "maybe")
    with pytest.raises(ValueError, match="SPARSITYLAB_QUICK='maybe'"):
        modes.is_quick()


def test_cli_version_and_data_missing(capsys, no_data_anywhere):
    assert cli.main(["version"]) == 0
    assert capsys.readouterr().out.strip() == sparsitylab.__version__
    assert cli.main(["data", "find"]) == 1
    assert "Provide it in one of three ways" in capsys.readouterr().err


def test_cli_bench_list_and_unknown(capsys):
    assert cli.main(["bench", "--list"]) == 0
    assert "available benchmarks" in capsys.readouterr().out
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "no_such_benchmark"])
    assert exit_info.value.code == 2 and "unknown benchmark" in capsys.readouterr().err


def test_module_entry_point():
    out = subprocess.run(
        [sys.executable, "-m", "sparsitylab", "version"], capture_output=True, text=True, check=True
    )
    assert out.stdout.strip() == sparsitylab.__version__


@pytest.mark.parametrize(
    "argv, flag",
    [
        (["bench", "masks", "--sparsity", "1.5"], "--sparsity"),
        (["bench", "masks", "--repeats", "0"], "--repeats"),
        (["bench", "structured", "--threads", "0"], "--threads"),
        (["bench", "spmm", "--m", "0"], "--m"),
        (["bench", "spmm", "--threads", "two"], "--threads"),
    ],
)
def test_bad_benchmark_flags_are_one_line_errors_not_tracebacks(argv, flag, capsys):
    """They used to end in tracebacks of 15-31 lines from deep inside the benchmarks."""
    with pytest.raises(SystemExit) as exit_info:
        cli.main(argv)
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and f"argument {flag}" in err and "Traceback" not in err
    assert len([line for line in err.splitlines() if "error:" in line]) == 1
