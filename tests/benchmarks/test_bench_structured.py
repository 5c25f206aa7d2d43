"""`sparsitylab bench structured`: the CLI runs, prints the efficiency summary and writes its
JSON."""

from __future__ import annotations

import json

import pytest

from sparsitylab.benchmarks import structured


def test_structured_benchmark_cli_writes_json(capsys, tmp_path):
    out = tmp_path / "speed.json"
    assert structured.main(["--batch", "2", "--min-run-time", "0.01", "--json", str(out)]) == 0
    assert "compacted speedup / ideal" in capsys.readouterr().out
    record = json.loads(out.read_text())
    assert (
        record["cpu"] and record["date"] and len(record["results"]) == len(structured.PAPER_LAYERS)
    )


@pytest.mark.parametrize("argv", [["--threads", "0"], ["--batch", "0"], ["--min-run-time", "0"]])
def test_bad_flags_exit_with_a_one_line_error(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        structured.main(argv)
    assert exit_info.value.code == 2 and "error:" in capsys.readouterr().err
