"""Data: IDX parsing, checksums, the search order and the one clear error, splits and loaders."""

from __future__ import annotations

import gzip
import hashlib
import struct

import numpy as np
import pytest
import torch

import sparsitylab.data as d


def idx_bytes(array: np.ndarray) -> bytes:
    header = bytes([0, 0, 0x08, array.ndim]) + struct.pack(f">{array.ndim}I", *array.shape)
    return header + array.astype(np.uint8).tobytes()


def test_parse_idx_roundtrip_images_and_labels():
    images = np.arange(2 * 3 * 4, dtype=np.uint8).reshape(2, 3, 4)
    labels = np.array([7, 1, 9], dtype=np.uint8)
    assert np.array_equal(d.parse_idx(idx_bytes(images)), images)
    assert np.array_equal(d.parse_idx(idx_bytes(labels)), labels)


def test_parse_idx_big_endian_int32():
    values = np.array([1, -2, 70000], dtype=">i4")
    raw = bytes([0, 0, 0x0C, 1]) + struct.pack(">I", 3) + values.tobytes()
    assert d.parse_idx(raw).tolist() == [1, -2, 70000]


@pytest.mark.parametrize(
    "raw, message",
    [
        (b"\x01\x00\x08\x01", "first two bytes"),
        (b"\x00\x00\x42\x01\x00\x00\x00\x01\x00", "dtype code"),
        (b"\x00\x00\x08\x02\x00\x00\x00\x02", "header"),
        (b"\x00\x00\x08\x01\x00\x00\x00\x05\x01\x02", "expected 13"),
    ],
)
def test_parse_idx_rejects_malformed(raw, message):
    with pytest.raises(ValueError, match=message):
        d.parse_idx(raw)


def write_fake_dataset(folder, n_train=12, n_test=5, corrupt=None):
    """Write four small IDX .gz files and return the matching checksum table."""
    folder.mkdir(parents=True, exist_ok=True)
    rng = np.random.default_rng(0)
    arrays = {
        "train-images-idx3-ubyte": rng.integers(0, 256, (n_train, 28, 28)),
        "train-labels-idx1-ubyte": rng.integers(0, 10, n_train),
        "t10k-images-idx3-ubyte": rng.integers(0, 256, (n_test, 28, 28)),
        "t10k-labels-idx1-ubyte": rng.integers(0, 10, n_test),
    }
    checksums = {}
    for stem, array in arrays.items():
        raw = idx_bytes(array)
        checksums[stem] = hashlib.sha256(raw).hexdigest()
        if stem == corrupt:
            raw = raw[:-1] + bytes([raw[-1] ^ 0xFF])
        (folder / f"{stem}.gz").write_bytes(gzip.compress(raw))
    return checksums, arrays


def test_load_from_env_folder_with_checksums(no_data_anywhere, monkeypatch):
    checksums, arrays = write_fake_dataset(no_data_anywhere / "env")
    monkeypatch.setattr(d, "FASHION_MNIST_FILES", checksums)
    train, test = d.load_fashion_mnist()
    assert train.images.shape == (12, 1, 28, 28) and test.images.shape == (5, 1, 28, 28)
    assert (
        train.images.dtype == torch.float32 and train.images.min() >= 0 and train.images.max() <= 1
    )
    expected = torch.from_numpy(arrays["train-images-idx3-ubyte"].astype(np.float32) / 255)
    assert torch.equal(train.images[:, 0], expected)
    assert train.labels.tolist() == arrays["train-labels-idx1-ubyte"].tolist()


def test_search_order_prefers_env_then_cache(no_data_anywhere, monkeypatch):
    checksums, _ = write_fake_dataset(no_data_anywhere / "cache" / "sparsitylab" / "fashion-mnist")
    monkeypatch.setattr(d, "FASHION_MNIST_FILES", checksums)
    assert d.find_fashion_mnist() == no_data_anywhere / "cache" / "sparsitylab" / "fashion-mnist"
    write_fake_dataset(no_data_anywhere / "env")
    assert d.find_fashion_mnist() == no_data_anywhere / "env"


def test_checksum_failure_names_the_file(no_data_anywhere, monkeypatch):
    checksums, _ = write_fake_dataset(no_data_anywhere / "env", corrupt="t10k-labels-idx1-ubyte")
    monkeypatch.setattr(d, "FASHION_MNIST_FILES", checksums)
    with pytest.raises(d.ChecksumError, match="t10k-labels-idx1-ubyte.gz: SHA-256"):
        d.load_fashion_mnist()


def test_missing_data_names_all_three_ways(no_data_anywhere):
    with pytest.raises(d.DatasetNotFoundError) as err:
        d.load_fashion_mnist()
    message = str(err.value)
    assert "SPARSITYLAB_DATA" in message
    assert "apt-get install dataset-fashion-mnist" in message
    assert "sparsitylab data download" in message
    assert str(no_data_anywhere / "env") in message


def test_failed_download_leaves_no_partial_file(no_data_anywhere, monkeypatch):
    def refuse(*args, **kwargs):
        raise OSError("network is unreachable")

    monkeypatch.setattr(d.urllib.request, "urlopen", refuse)
    with pytest.raises(d.DatasetNotFoundError, match="download of .* failed"):
        d.load_fashion_mnist(download=True)
    assert not list((no_data_anywhere / "cache").rglob("*.part"))


def test_download_verifies_and_renames(no_data_anywhere, monkeypatch, tmp_path):
    source = tmp_path / "mirror"
    checksums, _ = write_fake_dataset(source)
    monkeypatch.setattr(d, "FASHION_MNIST_FILES", checksums)

    class Response:
        def __init__(self, url, timeout):
            self.data = (source / url.rsplit("/", 1)[1]).read_bytes()
            self.headers = {"Content-Length": str(len(self.data))}

        def __enter__(self):
            return self

        def __exit__(self, *exc):
            return False

        def read(self, n):
            chunk, self.data = self.data[:n], self.data[n:]
            return chunk

    monkeypatch.setattr(d.urllib.request, "urlopen", Response)
    folder = d.download_fashion_mnist(mirror="http://mirror.invalid/")
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s}.gz" for s in checksums)
    train, _ = d.load_fashion_mnist()
    assert len(train) == 12


def test_real_fashion_mnist_if_installed():
    if d.find_fashion_mnist() is None:
        pytest.skip("Fashion-MNIST is not installed on this machine")
    train, test = d.load_fashion_mnist()
    assert train.images.shape == (60000, 1, 28, 28) and test.images.shape == (10000, 1, 28, 28)
    assert torch.bincount(test.labels).tolist() == [1000] * 10
    assert abs(train.images.mean().item() - d.FASHION_MNIST_MEAN) < 1e-3
    assert abs(train.images.std().item() - d.FASHION_MNIST_STD) < 1e-3


def test_digits_split_is_deterministic_and_disjoint():
    a_train, a_test = d.load_digits_split(seed=3)
    b_train, b_test = d.load_digits_split(seed=3)
    assert torch.equal(a_train.images, b_train.images) and torch.equal(a_test.labels, b_test.labels)
    assert len(a_train) + len(a_test) == 1797 and a_train.images.shape[1:] == (1, 8, 8)


def test_split_indices_partition():
    keep, val = d.split_indices(100, 0.2, seed=1)
    assert len(val) == 20 and sorted(torch.cat([keep, val]).tolist()) == list(range(100))
    with pytest.raises(ValueError, match="fraction=1.5"):
        d.split_indices(10, 1.5)


def test_subset_and_loader():
    train, _ = d.load_digits_split()
    small = d.subset(train, 50, seed=0)
    assert len(small) == 50 and torch.equal(small.images, d.subset(train, 50, seed=0).images)
    assert d.subset(train, None) is train
    with pytest.raises(ValueError, match="n=0"):
        d.subset(train, 0)
    with pytest.raises(ValueError, match="batch_size=0"):
        d.make_loader(small, batch_size=0)
    first = [y.tolist() for _, y in d.make_loader(small, 16, shuffle=True, seed=5)]
    again = [y.tolist() for _, y in d.make_loader(small, 16, shuffle=True, seed=5)]
    assert first == again and sum(len(b) for b in first) == 50
