"""The growth benchmark's contenders are what they claim (the timed step never updates the mask,
the timed update does and keeps the count), and a tiny run writes its JSON (timings are not
tested)."""

from __future__ import annotations

import json
import math

import pytest

from sparsitylab import reparam
from sparsitylab.benchmarks import growth as bench


@pytest.mark.parametrize("label", ["SET", "RigL", "SNFS"])
def test_steps_keep_the_mask_and_updates_change_it_at_the_same_count(label):
    trainer = bench.Trainer(bench.MODELS["LeNet-5"], bench.METHODS[label], batch=8)
    before = {n: m.clone() for n, m in reparam.get_masks(trainer.model).items()}
    trainer.step()
    after_step = reparam.get_masks(trainer.model)
    assert all((after_step[n] == before[n]).all() for n in before)
    assert label == "SET" or trainer.grads  # RigL and SNFS read dense gradients
    trainer.update()
    after = reparam.get_masks(trainer.model)
    assert any((after[n] != before[n]).any() for n in before)
    assert sum(int(m.sum()) for m in after.values()) == sum(int(m.sum()) for m in before.values())


def test_bad_clock_and_threads_are_refused():
    with pytest.raises(ValueError, match="--clock thread measures one thread"):
        bench.main(["--threads", "2", "--repeats", "1"])


def test_tiny_run_writes_json(tmp_path):
    out = tmp_path / "growth.json"
    assert bench.main(["--repeats", "1", "--batch", "4", "--out", str(out)]) == 0
    record = json.loads(out.read_text())
    assert {"date", "cpu", "torch", "threads", "interval", "clock", "results"} <= set(record)
    assert set(record["results"]) == {"LeNet-5", "ConvNet-BN"}
    for row in record["results"].values():
        assert set(row) == {"static", "SET", "RigL", "SNFS"}
        assert row["static"]["epoch_ratio"] == 1.0 and row["static"]["update_s"] == 0.0
        for cell in row.values():
            assert all(math.isfinite(v) and v >= 0 for v in cell.values())
