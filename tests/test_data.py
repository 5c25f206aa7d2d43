"""Data: IDX parsing, checksums, the search order and the one clear error, splits and loaders."""

from __future__ import annotations

import gzip
import hashlib
import struct
from pathlib import Path

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


def use_env_folder(monkeypatch, root):
    monkeypatch.setenv("SPARSITYLAB_DATA", str(root / "env"))
    return root / "env"


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
    checksums, arrays = write_fake_dataset(use_env_folder(monkeypatch, no_data_anywhere))
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
    write_fake_dataset(use_env_folder(monkeypatch, no_data_anywhere))
    assert d.find_fashion_mnist() == no_data_anywhere / "env"


def test_checksum_failure_names_the_file(no_data_anywhere, monkeypatch):
    checksums, _ = write_fake_dataset(
        use_env_folder(monkeypatch, no_data_anywhere), corrupt="t10k-labels-idx1-ubyte"
    )
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
    assert str(no_data_anywhere / "cache") in message


def local_downloader(source):
    """A pooch downloader that copies from a local folder (tests never touch the network)."""

    def download(url, output_file, pooch):
        data = (source / url.rsplit("/", 1)[1]).read_bytes()
        if hasattr(output_file, "write"):
            output_file.write(data)
        else:
            Path(output_file).write_bytes(data)

    return download


def refusing_downloader(url, output_file, pooch):
    raise OSError("network is unreachable")


def test_failed_download_leaves_no_partial_file(no_data_anywhere):
    folder = no_data_anywhere / "cache" / "sparsitylab" / "fashion-mnist"
    with pytest.raises(
        d.DatasetNotFoundError, match="download of .* failed .network is unreachable"
    ):
        d.download_fashion_mnist(folder, downloader=refusing_downloader)
    assert not [p for p in folder.rglob("*") if p.is_file()]


def test_download_verifies_and_renames(no_data_anywhere, monkeypatch, tmp_path):
    source = tmp_path / "mirror"
    checksums, _ = write_fake_dataset(source)
    monkeypatch.setattr(d, "FASHION_MNIST_FILES", checksums)
    folder = d.download_fashion_mnist(
        mirror="http://mirror.invalid/", downloader=local_downloader(source)
    )
    assert sorted(p.name for p in folder.iterdir()) == sorted(f"{s}.gz" for s in checksums)
    train, _ = d.load_fashion_mnist()
    assert len(train) == 12


def test_download_replaces_a_truncated_archive_in_the_cache(
    no_data_anywhere, monkeypatch, tmp_path
):
    """A cache holding a truncated archive used to be reported as a successful download."""
    source = tmp_path / "mirror"
    checksums, _ = write_fake_dataset(source)
    monkeypatch.setattr(d, "FASHION_MNIST_FILES", checksums)
    cache = d.cache_dir()
    cache.mkdir(parents=True)
    first = next(iter(checksums))
    (cache / f"{first}.gz").write_bytes((source / f"{first}.gz").read_bytes()[:40])  # cut short
    assert set(d.damaged_files(cache)) == set(checksums)
    d.download_fashion_mnist(downloader=local_downloader(source))
    assert d.damaged_files(cache) == {}


@pytest.mark.parametrize("damage", ["truncate", "flip"])
def test_a_damaged_gzip_names_the_file_and_the_remedy(no_data_anywhere, monkeypatch, damage):
    checksums, _ = write_fake_dataset(use_env_folder(monkeypatch, no_data_anywhere))
    monkeypatch.setattr(d, "FASHION_MNIST_FILES", checksums)
    path = no_data_anywhere / "env" / "train-labels-idx1-ubyte.gz"
    raw = bytearray(path.read_bytes())
    if damage == "truncate":
        raw = raw[: len(raw) // 2]
    else:
        raw[len(raw) // 2] ^= 0xFF
    path.write_bytes(bytes(raw))
    with pytest.raises(
        d.ChecksumError, match=r"train-labels-idx1-ubyte.gz: .*delete it and fetch it again"
    ):
        d.load_fashion_mnist()  # used to be a bare EOFError / BadGzipFile naming no file


def test_an_incomplete_sparsitylab_data_folder_is_an_error_not_skipped(
    no_data_anywhere, monkeypatch
):
    checksums, _ = write_fake_dataset(no_data_anywhere / "cache" / "sparsitylab" / "fashion-mnist")
    write_fake_dataset(use_env_folder(monkeypatch, no_data_anywhere))
    monkeypatch.setattr(d, "FASHION_MNIST_FILES", checksums)
    (no_data_anywhere / "env" / "t10k-labels-idx1-ubyte.gz").unlink()
    with pytest.raises(
        d.DatasetNotFoundError, match=r"SPARSITYLAB_DATA=.* lacks \['t10k-labels-idx1-ubyte'\]"
    ):
        d.find_fashion_mnist()  # used to fall through to the cache copy silently


def test_cli_data_find_verifies_and_download_errors_are_one_line(
    no_data_anywhere, monkeypatch, capsys
):
    from sparsitylab import cli

    checksums, _ = write_fake_dataset(
        use_env_folder(monkeypatch, no_data_anywhere), corrupt="t10k-images-idx3-ubyte"
    )
    monkeypatch.setattr(d, "FASHION_MNIST_FILES", checksums)
    assert cli.main(["data", "find"]) == 1  # used to exit 0 on a damaged folder
    assert "t10k-images-idx3-ubyte" in capsys.readouterr().err

    def offline(*args, **kwargs):
        raise d.DatasetNotFoundError(
            "download of train-images-idx3-ubyte.gz failed (no network).\nmore lines"
        )

    monkeypatch.setattr(d, "download_fashion_mnist", offline)
    with pytest.raises(SystemExit) as exit_info:
        cli.main(["data", "download"])
    err = capsys.readouterr().err
    assert exit_info.value.code == 2 and "failed (no network)" in err and "more lines" not in err
    assert "Traceback" not in err


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
