"""`make book` reports each chapter's execution time from the build's execution cache."""

from __future__ import annotations

import importlib.util
from datetime import datetime
from pathlib import Path
from types import SimpleNamespace

ROOT = Path(__file__).resolve().parents[1]
spec = importlib.util.spec_from_file_location("book_times", ROOT / "scripts" / "book_times.py")
book_times = importlib.util.module_from_spec(spec)
spec.loader.exec_module(book_times)


def record(uri, seconds, day):
    return SimpleNamespace(
        uri=uri, data={"execution_seconds": seconds}, created=datetime(2026, 1, day)
    )


def test_the_newest_record_of_each_chapter_is_reported_slowest_first():
    records = [
        record("/b/book/01_unstructured_pruning.ipynb", 100.0, 1),
        record("/b/book/01_unstructured_pruning.ipynb", 700.0, 2),  # newer: counts
        record("/b/book/02_structured_sparsity_learning.ipynb", 300.0, 1),
        SimpleNamespace(uri="/b/book/x.ipynb", data={}, created=datetime(2026, 1, 3)),
    ]
    times = book_times.latest_times(records)
    assert {k: v[0] for k, v in times.items()} == {
        "01_unstructured_pruning.ipynb": 700.0,
        "02_structured_sparsity_learning.ipynb": 300.0,
    }
    text = book_times.report(times, 600)
    lines = text.splitlines()
    assert "01_unstructured_pruning" in lines[1] and lines[1].endswith("OVER")
    assert "02_structured" in lines[2] and "OVER" not in lines[2]
    assert "1000 s  total, 2 chapters" in lines[3]


def test_a_missing_cache_is_reported_not_an_error(tmp_path, capsys):
    assert book_times.main([str(tmp_path / "none")]) == 0
    assert "nothing was executed" in capsys.readouterr().err
