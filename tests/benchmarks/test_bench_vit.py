"""bench vit: the stored model is loaded only when its bytes are the recorded ones."""

from __future__ import annotations

import json

import pytest
import torch

pytest.importorskip("transformers")

from sparsitylab.benchmarks import vit as bench  # noqa: E402


def test_a_stored_model_reloads_to_the_same_outputs_and_a_changed_file_is_refused(tmp_path):
    model = bench.vit().eval()
    raw, digest = bench.sha256_of(model.state_dict())
    assert bench.sha256_of(model.state_dict())[1] == digest  # the same bytes every time
    path = tmp_path / "vit.pt"
    path.write_bytes(raw)
    path.with_suffix(".json").write_text(json.dumps({"sha256": digest}))
    loaded, record = bench.load(path)
    x = torch.randn(2, 1, 28, 28)
    assert torch.equal(loaded(x).logits, model(x).logits) and record["sha256"] == digest
    path.write_bytes(raw[:-1] + bytes([raw[-1] ^ 1]))
    with pytest.raises(ValueError, match="not the recorded"):
        bench.load(path)


def test_the_stored_book_model_matches_its_record():
    from pathlib import Path

    stored = Path(__file__).resolve().parents[2] / "data" / "vit_fashion.pt"
    model, record = bench.load(stored)
    assert record["config"] == bench.CONFIG and record["test_acc"] > 0.8
    assert sum(p.numel() for p in model.parameters()) > 100_000
