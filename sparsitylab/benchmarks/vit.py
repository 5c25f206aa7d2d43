"""``sparsitylab bench vit``: train the book's small Vision Transformer on Fashion-MNIST once, and
store it in ``data/`` for the post-training chapter.

Post-training pruning starts from a *trained* model, and a chapter should not spend its minutes
training one. This command trains Hugging Face's ViT (:func:`vit`: 7×7 patches — 16 tokens and a
class token —, 64 features, 4 layers of 4 heads, MLPs of 256 units; 0.2 M parameters) with AdamW
and a cosine schedule on the 55 000 training images (the validation split of
:func:`sparsitylab.data.train_val_split` held out), deterministically from seed 0, and writes

- ``data/vit_fashion.pt`` — the ``state_dict`` (load it with ``weights_only=True``);
- ``data/vit_fashion.json`` — its SHA-256, the accuracy on the 10 000 test images and on the
  first 1 000 of them (what the chapter re-checks), the training settings, the machine, the date.

Run it with ``sparsitylab bench vit [--epochs 12] [--threads 2] [--out data/vit_fashion.pt]``.
"""

from __future__ import annotations

import argparse
import hashlib
import io
import json
import os
import platform
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import torch
from torch import nn

from .. import data, train
from ..files import atomic_write_bytes, atomic_write_json
from ..timing import cpu_name, threads
from . import positive_int

CONFIG = dict(
    image_size=28, patch_size=7, num_channels=1, hidden_size=64, num_hidden_layers=4,
    num_attention_heads=4, intermediate_size=256, num_labels=10,
)  # fmt: skip
CHECK_IMAGES = 1000  # the test images whose accuracy a reader re-checks


def vit() -> nn.Module:
    """The ViT of :data:`CONFIG`, random init from seed 0 (Hugging Face ``transformers``)."""
    try:
        import transformers
    except ImportError as error:  # an optional dependency (the test extra installs it)
        raise SystemExit(
            "bench vit builds a Hugging Face ViT: pip install 'transformers>=5,<6'"
        ) from error
    transformers.logging.set_verbosity_error()
    torch.manual_seed(0)
    return transformers.ViTForImageClassification(transformers.ViTConfig(**CONFIG))


def sha256_of(state: dict[str, torch.Tensor]) -> tuple[bytes, str]:
    """The bytes ``torch.save`` writes for ``state`` and their SHA-256."""
    buffer = io.BytesIO()
    torch.save(state, buffer)
    raw = buffer.getvalue()
    return raw, hashlib.sha256(raw).hexdigest()


def load(path: str | os.PathLike) -> tuple[nn.Module, dict[str, Any]]:
    """The stored ViT and its record; ``ValueError`` when the file is not the one recorded."""
    path = Path(path)
    record = json.loads(path.with_suffix(".json").read_text())
    raw = path.read_bytes()
    digest = hashlib.sha256(raw).hexdigest()
    if digest != record["sha256"]:
        raise ValueError(f"{path} has SHA-256 {digest}, not the recorded {record['sha256']}")
    model = vit()
    model.load_state_dict(torch.load(io.BytesIO(raw), weights_only=True))
    return model.eval(), record


def train_vit(epochs: int, batch: int = 128, lr: float = 2e-3) -> tuple[nn.Module, dict[str, Any]]:
    """Train :func:`vit` on Fashion-MNIST's training split (module docstring)."""
    train.seed_everything(0)
    train_split, test_split = data.load_fashion_mnist()
    train_split, _ = data.train_val_split(train_split)
    loader = data.make_loader(train_split, batch, shuffle=True, seed=0)
    test_loader = data.make_loader(test_split, 1000)
    model = vit()
    optimizer = torch.optim.AdamW(model.parameters(), lr=lr, weight_decay=0.05)
    started = time.perf_counter()
    train.fit(model, loader, epochs, optimizer, desc="ViT")
    seconds = time.perf_counter() - started
    check = data.make_loader(data.subset(test_split, CHECK_IMAGES), 1000)
    record = {
        "config": CONFIG,
        "epochs": epochs,
        "batch": batch,
        "lr": lr,
        "optimizer": "AdamW (weight decay 0.05), cosine schedule",
        "train_images": len(train_split),
        "test_acc": train.accuracy(model, test_loader),
        "check_images": CHECK_IMAGES,
        "check_acc": train.accuracy(model, check),
        "train_seconds": seconds,
    }
    return model, record


def main(argv: list[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="sparsitylab bench vit",
        description=__doc__,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--epochs", type=positive_int, default=12, help="training epochs")
    parser.add_argument("--threads", type=positive_int, default=2, help="torch threads")
    parser.add_argument("--out", default="data/vit_fashion.pt", help="where to write the weights")
    args = parser.parse_args(argv)
    with threads(args.threads):
        model, record = train_vit(args.epochs)
    raw, digest = sha256_of(model.state_dict())
    out = Path(args.out)
    atomic_write_bytes(raw, out)
    record.update(
        sha256=digest,
        cpu=cpu_name(),
        machine=platform.machine(),
        threads=args.threads,
        torch=torch.__version__,
        date=datetime.now(UTC).isoformat(timespec="seconds"),
    )
    atomic_write_json(record, out.with_suffix(".json"))
    print(
        f"ViT ({sum(p.numel() for p in model.parameters()) / 1e6:.2f} M parameters), "
        f"{args.epochs} epochs in {record['train_seconds']:.0f} s: test accuracy "
        f"{100 * record['test_acc']:.2f} % → {out} (sha256 {digest[:12]}…)"
    )
    return 0


__all__ = ["CHECK_IMAGES", "CONFIG", "load", "main", "sha256_of", "train_vit", "vit"]
