"""bench hbs completes on tiny sizes and writes its JSON (timings are not tested)."""

from __future__ import annotations

import json

from sparsitylab.benchmarks import hbs as bench


def test_tiny_run_writes_irf_json(tmp_path, monkeypatch):
    monkeypatch.setattr(bench, "SPARSITIES", [0.5, 0.9])
    out = tmp_path / "irf.json"
    argv = ["--size", "64", "--n", "8", "--mask-size", "64", "--repeats", "2", "--json", str(out)]
    assert bench.main(argv) == 0
    record = json.loads(out.read_text())
    assert {tuple(p["block"]) for p in record["points"]} == set(bench.BLOCKS)
    assert set(record["mask_ms"]) == {
        bench.TWO,
        bench.WIDE,
        bench.FINE,
        bench.TWO_BEFORE,
        bench.WIDE_BEFORE,
        bench.TWO_TORCH,
        bench.WIDE_TORCH,
    }
    # the keys the chapter reads
    assert {
        "hierarchical_masks 4x1/63 + 1x1/97",
        "block_mask 4x1/60 (one level)",
        "block_mask 1x1/60 (one level)",
    } <= set(record["mask_ms"])
    assert set(record["mask_ratio"]) >= {"two levels / one 4x1 block_mask"}


def test_masks_only_updates_the_mask_fields_and_keeps_the_rest(tmp_path):
    out = tmp_path / "irf.json"
    out.write_text(json.dumps({"points": [1, 2], "mask_ms": {"old": 1.0}}))
    argv = ["--mask-size", "64", "--repeats", "3", "--masks-only", "--json", str(out)]
    assert bench.main(argv) == 0
    record = json.loads(out.read_text())
    assert record["points"] == [1, 2] and bench.TWO in record["mask_ms"]
    assert "old" not in record["mask_ms"] and record["mask_size"] == 64
