"""Datasets: Fashion-MNIST (the book's default) and scikit-learn's digits (instant, for tiny demos).

Fashion-MNIST is looked for, in order, in

1. ``$SPARSITYLAB_DATA`` (a folder holding the four IDX files, ``.gz`` or not),
2. the user cache ``~/.cache/sparsitylab/fashion-mnist``,
3. the Debian/Ubuntu package ``dataset-fashion-mnist`` (``/usr/share/datasets/fashion-mnist``),
4. a download from the official mirror into the cache (only when ``download=True``; fetched with
   ``pooch``).

A folder named by ``$SPARSITYLAB_DATA`` must be complete (it is never silently skipped). Every file
is verified by the SHA-256 of its *decompressed* IDX bytes, so a recompressed copy (the Debian
package recompresses the archives) is accepted while a damaged one is not.
"""

from __future__ import annotations

import gzip
import hashlib
import os
import struct
import zlib
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, TensorDataset

from ._checks import check_int, check_real

FASHION_MNIST_CLASSES = (
    "T-shirt/top",
    "Trouser",
    "Pullover",
    "Dress",
    "Coat",
    "Sandal",
    "Shirt",
    "Sneaker",
    "Bag",
    "Ankle boot",
)
FASHION_MNIST_MIRROR = "http://fashion-mnist.s3-website.eu-central-1.amazonaws.com/"
DEBIAN_DIR = Path("/usr/share/datasets/fashion-mnist")

# SHA-256 of the decompressed IDX files (identical for the upstream and the Debian archives).
FASHION_MNIST_FILES = {
    "train-images-idx3-ubyte": "c59f468a2f672dc815687fe0f83887768d799fd8a3f3276145d20f83aa44d888",
    "train-labels-idx1-ubyte": "bad3541b69d912435c50bb6ba87bec294ff4f6a2e1246121d8633921760443d9",
    "t10k-images-idx3-ubyte": "5b4141f0afbad91edebe8549f8fcffe087ea10ca49f1dbef5c9a5cd8815ce37b",
    "t10k-labels-idx1-ubyte": "0402a96d92fd2663957122ceb108a494c5af83dab82d92729df917d7dec38c34",
}

# Normalisation constants of the Fashion-MNIST training set (pixel values scaled to [0, 1]).
FASHION_MNIST_MEAN, FASHION_MNIST_STD = 0.2860, 0.3530


class DatasetNotFoundError(FileNotFoundError):
    """Raised when Fashion-MNIST is nowhere to be found and cannot be downloaded."""


class ChecksumError(ValueError):
    """Raised when a data file's SHA-256 does not match the published one."""


# ----------------------------------------------------------------------------- IDX files

_IDX_DTYPES = {
    0x08: np.uint8,
    0x09: np.int8,
    0x0B: np.dtype(">i2"),
    0x0C: np.dtype(">i4"),
    0x0D: np.dtype(">f4"),
    0x0E: np.dtype(">f8"),
}


def parse_idx(raw: bytes) -> np.ndarray:
    """Parse the bytes of an IDX file (LeCun's MNIST format) into a NumPy array.

    Header: two zero bytes, a dtype code, the number of dimensions, then one big-endian
    uint32 per dimension; the data follow in C order.
    """
    if len(raw) < 4 or raw[0] != 0 or raw[1] != 0:
        raise ValueError("not an IDX file: the first two bytes must be zero")
    code, ndim = raw[2], raw[3]
    if code not in _IDX_DTYPES:
        raise ValueError(f"IDX dtype code 0x{code:02x} is unknown; allowed: {sorted(_IDX_DTYPES)}")
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise ValueError(f"IDX header claims {ndim} dimensions but the file has {len(raw)} bytes")
    shape = struct.unpack(f">{ndim}I", raw[4:header])
    dtype = np.dtype(_IDX_DTYPES[code])
    expected = header + int(np.prod(shape)) * dtype.itemsize
    if len(raw) != expected:
        raise ValueError(f"IDX file has {len(raw)} bytes, expected {expected} for shape {shape}")
    return (
        np.frombuffer(raw, dtype=dtype, offset=header)
        .reshape(shape)
        .astype(dtype.newbyteorder("="))
    )


def read_verified(path: Path, sha256: str) -> bytes:
    """Read an IDX file (``.gz`` or plain) and check the SHA-256 of its decompressed bytes.

    A truncated or corrupted archive, like a wrong checksum, raises :class:`ChecksumError` naming
    the file and the remedy.
    """
    raw = path.read_bytes()
    if raw[:2] == b"\x1f\x8b":  # gzip magic: decompress whatever the file is called
        try:
            raw = gzip.decompress(raw)
        except (EOFError, OSError, zlib.error) as err:  # truncated, or a flipped bit
            raise ChecksumError(f"{path}: not a readable gzip archive ({err}); {_REMEDY}") from err
    digest = hashlib.sha256(raw).hexdigest()
    if digest != sha256:
        raise ChecksumError(
            f"{path}: SHA-256 {digest} does not match the expected {sha256}; {_REMEDY}"
        )
    return raw


_REMEDY = "the file is damaged or not the original - delete it and fetch it again"


# ----------------------------------------------------------------------------- finding the data


def cache_dir() -> Path:
    """The user cache folder (``$XDG_CACHE_HOME`` or ``~/.cache``) / sparsitylab / fashion-mnist."""
    return (
        Path(os.environ.get("XDG_CACHE_HOME", Path.home() / ".cache"))
        / "sparsitylab"
        / "fashion-mnist"
    )


def chosen_dir() -> Path | None:
    """The folder ``$SPARSITYLAB_DATA`` names, if it is set."""
    value = os.environ.get("SPARSITYLAB_DATA")
    return Path(value).expanduser() if value else None


def candidate_dirs() -> list[Path]:
    """The folders searched for Fashion-MNIST, in order."""
    chosen = chosen_dir()
    return ([chosen] if chosen else []) + [cache_dir(), DEBIAN_DIR]


def _file_in(folder: Path, stem: str) -> Path | None:
    for name in (stem + ".gz", stem):
        if (folder / name).is_file():
            return folder / name
    return None


def find_fashion_mnist() -> Path | None:
    """The first candidate folder that holds all four files, or None.

    A folder named by ``$SPARSITYLAB_DATA`` is never skipped: if it lacks a file, that is an error
    (:class:`DatasetNotFoundError` naming the missing files), not a reason to load another copy.
    """
    chosen = chosen_dir()
    if chosen is not None:
        missing = [stem for stem in FASHION_MNIST_FILES if _file_in(chosen, stem) is None]
        if missing:
            raise DatasetNotFoundError(
                f"SPARSITYLAB_DATA={chosen} lacks {missing} (.gz or plain); complete the folder "
                "or unset SPARSITYLAB_DATA to use another copy"
            )
    for folder in candidate_dirs():
        if all(_file_in(folder, stem) for stem in FASHION_MNIST_FILES):
            return folder
    return None


def damaged_files(folder: Path) -> dict[str, str]:
    """Every Fashion-MNIST file of ``folder`` that is missing or fails its check → what is wrong."""
    problems = {}
    for stem, sha in FASHION_MNIST_FILES.items():
        path = _file_in(folder, stem)
        if path is None:
            problems[stem] = "missing"
            continue
        try:
            read_verified(path, sha)
        except ChecksumError as err:
            problems[stem] = str(err)
    return problems


def not_found_message() -> str:
    searched = "\n".join(f"    - {d}" for d in candidate_dirs())
    return (
        "Fashion-MNIST was not found. Searched:\n" + searched + "\n"
        "Provide it in one of three ways:\n"
        "  1. set SPARSITYLAB_DATA to a folder holding the four IDX files "
        "(train-images-idx3-ubyte.gz, train-labels-idx1-ubyte.gz, t10k-images-idx3-ubyte.gz, "
        "t10k-labels-idx1-ubyte.gz);\n"
        "  2. on Debian/Ubuntu: sudo apt-get install dataset-fashion-mnist "
        f"(installs into {DEBIAN_DIR});\n"
        "  3. download with a checksum check into the user cache: "
        "`sparsitylab data download` (or load_fashion_mnist(download=True)); needs network access "
        f"to {FASHION_MNIST_MIRROR}"
    )


def download_fashion_mnist(
    folder: Path | None = None, mirror: str = FASHION_MNIST_MIRROR, downloader=None
) -> Path:
    """Fetch the four archives into ``folder`` (default: the user cache) and verify each.

    The fetching — a temporary file renamed into place, retries, a progress bar — is ``pooch``'s. A
    file already in the folder is verified first: a damaged one is fetched again, never reported as
    a success. ``downloader``: a ``pooch`` downloader (tests pass one that reads a local folder).
    """
    import pooch

    folder = Path(folder) if folder is not None else cache_dir()
    fetcher = pooch.create(
        path=folder,
        base_url=mirror,
        retry_if_failed=2,
        registry={f"{stem}.gz": None for stem in FASHION_MNIST_FILES},
    )
    for stem, sha in FASHION_MNIST_FILES.items():
        target = folder / f"{stem}.gz"
        if target.is_file():
            try:
                read_verified(target, sha)
                continue
            except ChecksumError:
                target.unlink()  # damaged (e.g. an interrupted copy): fetch it again
        try:
            path = Path(fetcher.fetch(target.name, downloader=downloader, progressbar=True))
        except OSError as err:
            raise DatasetNotFoundError(
                f"download of {target.name} from {mirror} failed ({err}).\n" + not_found_message()
            ) from err
        try:
            read_verified(path, sha)
        except ChecksumError:
            path.unlink(missing_ok=True)
            raise
    return folder


@dataclass(frozen=True)
class ImageSplit:
    """Images as float tensors (N, 1, H, W) in [0, 1] and integer labels (N,)."""

    images: torch.Tensor
    labels: torch.Tensor

    def __len__(self) -> int:
        return len(self.labels)

    def dataset(self, normalize: bool = True) -> TensorDataset:
        x = (self.images - FASHION_MNIST_MEAN) / FASHION_MNIST_STD if normalize else self.images
        return TensorDataset(x, self.labels)


def load_fashion_mnist(download: bool = False) -> tuple[ImageSplit, ImageSplit]:
    """Load Fashion-MNIST as ``(train, test)`` splits of 60 000 and 10 000 images.

    Raises :class:`DatasetNotFoundError` naming every way to provide the data when it is absent.
    """
    folder = find_fashion_mnist()
    if folder is None:
        if not download:
            raise DatasetNotFoundError(not_found_message())
        folder = download_fashion_mnist()
    arrays = {
        stem: parse_idx(read_verified(_file_in(folder, stem), sha))  # type: ignore[arg-type]
        for stem, sha in FASHION_MNIST_FILES.items()
    }

    def split(prefix: str) -> ImageSplit:
        images = (
            torch.from_numpy(arrays[f"{prefix}-images-idx3-ubyte"].copy())
            .float()
            .div_(255)
            .unsqueeze(1)
        )
        labels = torch.from_numpy(arrays[f"{prefix}-labels-idx1-ubyte"].astype(np.int64))
        return ImageSplit(images, labels)

    return split("train"), split("t10k")


def load_digits_split(test_fraction: float = 0.25, seed: int = 0) -> tuple[ImageSplit, ImageSplit]:
    """scikit-learn's 8×8 digits (1 797 images, shipped with the package: no download).

    Pixel values 0..16 are scaled to [0, 1]; the split is deterministic for a given seed.
    """
    from sklearn.datasets import load_digits

    digits = load_digits()
    images = torch.from_numpy(digits.images.astype(np.float32) / 16.0).unsqueeze(1)
    labels = torch.from_numpy(digits.target.astype(np.int64))
    train_idx, test_idx = split_indices(len(labels), test_fraction, seed)
    return ImageSplit(images[train_idx], labels[train_idx]), ImageSplit(
        images[test_idx], labels[test_idx]
    )


# ----------------------------------------------------------------------------- splits and loaders


def split_indices(n: int, fraction: float, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    """A deterministic shuffle of ``range(n)`` cut into (1 - fraction, fraction) parts."""
    if not 0 < check_real(fraction, "fraction", 0.0, 1.0) < 1:
        raise ValueError(f"fraction={fraction} must lie strictly between 0 and 1")
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(seed))
    n_second = max(1, round(n * fraction))
    return perm[n_second:], perm[:n_second]


def train_val_split(
    split: ImageSplit, val_fraction: float = 1 / 12, seed: int = 0
) -> tuple[ImageSplit, ImageSplit]:
    """Deterministic train/validation split (default 55 000 / 5 000 for Fashion-MNIST)."""
    keep, val = split_indices(len(split), val_fraction, seed)
    return (
        ImageSplit(split.images[keep], split.labels[keep]),
        ImageSplit(split.images[val], split.labels[val]),
    )


def subset(split: ImageSplit, n: int | None, seed: int = 0) -> ImageSplit:
    """A deterministic random subset of ``n`` examples (all of them when n is None or too big)."""
    if n is None or check_int(n, "n", minimum=1) >= len(split):
        return split
    idx = torch.randperm(len(split), generator=torch.Generator().manual_seed(seed))[:n]
    return ImageSplit(split.images[idx], split.labels[idx])


def make_loader(
    split: ImageSplit,
    batch_size: int = 128,
    shuffle: bool = False,
    seed: int = 0,
    normalize: bool = True,
) -> DataLoader:
    """A DataLoader over an in-memory split; shuffling is reproducible through ``seed``.

    The shuffle generator is seeded once, here: a fresh loader with the same seed gives the same
    order, while iterating one loader again continues the sequence (a new order each epoch).
    """
    check_int(batch_size, "batch_size", minimum=1)
    generator = torch.Generator().manual_seed(seed) if shuffle else None
    return DataLoader(
        split.dataset(normalize), batch_size=batch_size, shuffle=shuffle, generator=generator
    )


@dataclass(frozen=True)
class Loaders:
    train: DataLoader
    val: DataLoader
    test: DataLoader


def fashion_mnist_loaders(
    batch_size: int = 128,
    train_size: int | None = None,
    test_size: int | None = None,
    val_fraction: float = 1 / 12,
    seed: int = 0,
    download: bool = False,
) -> Loaders:
    """Train / validation / test loaders for Fashion-MNIST, optionally on deterministic subsets."""
    train, test = load_fashion_mnist(download=download)
    train, val = train_val_split(train, val_fraction, seed)
    train = subset(train, train_size, seed)
    return Loaders(
        make_loader(train, batch_size, shuffle=True, seed=seed),
        make_loader(val, 1024),
        make_loader(subset(test, test_size, seed), 1024),
    )


__all__ = [
    "FASHION_MNIST_CLASSES",
    "DatasetNotFoundError",
    "ChecksumError",
    "ImageSplit",
    "Loaders",
    "parse_idx",
    "read_verified",
    "find_fashion_mnist",
    "damaged_files",
    "download_fashion_mnist",
    "load_fashion_mnist",
    "load_digits_split",
    "split_indices",
    "train_val_split",
    "subset",
    "make_loader",
    "fashion_mnist_loaders",
]
