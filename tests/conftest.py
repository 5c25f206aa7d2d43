"""Shared pytest configuration: GPU tests skip without a CuPy device; data fixtures."""

from __future__ import annotations

import matplotlib
import pytest

matplotlib.use("Agg")


def pytest_collection_modifyitems(config, items):
    from sparsitylab.deploy.matmul import gpu_available

    if gpu_available():
        return
    skip = pytest.mark.skip(reason="needs a CUDA device visible to CuPy (none here)")
    for item in items:
        if "gpu" in item.keywords:
            item.add_marker(skip)


@pytest.fixture
def no_data_anywhere(tmp_path, monkeypatch):
    """Point every Fashion-MNIST location at empty folders."""
    import sparsitylab.data as d

    monkeypatch.setenv("SPARSITYLAB_DATA", str(tmp_path / "env"))
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(d, "DEBIAN_DIR", tmp_path / "debian")
    return tmp_path
