"""Shared pytest configuration: GPU tests skip without a CuPy device; the data fixtures every test
shares."""

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
    """Point every Fashion-MNIST location at empty folders (and unset ``$SPARSITYLAB_DATA``)."""
    import sparsitylab.data as d

    monkeypatch.delenv(
        "SPARSITYLAB_DATA", raising=False
    )  # tests that point it at tmp_path/"env" set it
    monkeypatch.setenv("XDG_CACHE_HOME", str(tmp_path / "cache"))
    monkeypatch.setattr(d, "DEBIAN_DIR", tmp_path / "debian")
    return tmp_path


@pytest.fixture
def digits():
    """scikit-learn's 8×8 digits as loaders (train shuffled with seed 0, test, and the test set as
    val): an instant real dataset for end-to-end tests. A fresh loader per test keeps tests
    independent."""
    from sparsitylab import data

    train_split, test_split = data.load_digits_split()
    return data.Loaders(
        data.make_loader(train_split, 64, shuffle=True),
        data.make_loader(test_split, 256),
        data.make_loader(test_split, 256),
    )
