"""The STR benchmark's contenders really carry thresholds, and a tiny run writes its JSON (timings
are not tested)."""

from __future__ import annotations

import json
import math

import pytest

from sparsitylab import cli
from sparsitylab.benchmarks import str as bench
from sparsitylab.reparam.soft_threshold import SoftThreshold
from sparsitylab.reparam.str_batchnorm import STRBatchNorm2d


def test_methods_put_thresholds_where_expected():
    lenet, convnet = (bench.MODELS[name][0] for name in ("LeNet-5", "ConvNet-BN"))
    soft = bench.METHODS["STR"]().prepare(lenet())
    assert sum(isinstance(m, SoftThreshold) for m in soft.modules()) == 4  # 2 conv, 2 fc
    bn = bench.METHODS["STR-BN"]().prepare(convnet())
    assert sum(isinstance(m, STRBatchNorm2d) for m in bn.modules()) == 3  # bn1-bn3
    with pytest.raises(ValueError, match="no channels this method can prune"):  # no BatchNorm
        bench.method_step(lenet, "STR-BN", 8)


def test_tiny_run_writes_json(tmp_path, capsys):
    out = tmp_path / "str.json"
    assert bench.main(["--repeats", "2", "--batch", "8", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert {"date", "cpu", "torch", "threads", "batch", "repeats", "step"} <= set(record)
    assert (record["batch"], record["repeats"], record["threads"]) == (8, 2, 1)
    assert set(record["step"]) == {"LeNet-5", "ConvNet-BN"}
    assert set(record["step"]["LeNet-5"]) == {"dense", "STR"}
    assert set(record["step"]["ConvNet-BN"]) == {"dense", "STR", "STR-BN"}
    for row in record["step"].values():
        assert row["dense"]["ratio"] == 1.0
        for cell in row.values():
            assert set(cell) == {"median_s", "ratio"}
            assert all(math.isfinite(v) and v > 0 for v in cell.values())
    printed = capsys.readouterr().out
    assert "goal ≤ 1.3×" in printed and "STR-BN" in printed


@pytest.mark.parametrize(
    "argv", [["--repeats", "0"], ["--batch", "-1"], ["--threads", "two"], ["--nope"]]
)
def test_bad_flags_exit_with_code_2(argv, capsys):
    with pytest.raises(SystemExit) as exit_info:
        bench.main(argv)
    assert exit_info.value.code == 2 and "error:" in capsys.readouterr().err


def test_cli_finds_the_benchmark(capsys):
    assert cli.main(["bench", "--list"]) == 0
    assert "str" in capsys.readouterr().out.split(": ", 1)[1].split(", ")
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["bench", "str", "--batch", "0"])
    assert exit_info.value.code == 2 and "argument --batch" in capsys.readouterr().err
