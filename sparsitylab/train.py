"""Training and evaluation: one loop every chapter and every method shares.

A sparsification method plugs into :func:`fit` through a :class:`Callback`:

- ``penalty(model)`` returns a term added to the loss (group lasso, L1 on BN scales, …);
- ``after_step(model, step)`` acts after each optimizer step (re-apply masks, zero tiny
  weights, update a pruning schedule, …);
- ``on_epoch_end(model, epoch, record)`` may add numbers to the epoch's history record.
"""

from __future__ import annotations

import os
import random
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
import torch.nn.functional as F
from torch import nn
from torch.utils.data import DataLoader


def seed_everything(seed: int = 0, deterministic: bool = True) -> None:
    """Seed Python, NumPy and PyTorch; optionally ask PyTorch for deterministic kernels."""
    os.environ.setdefault("PYTHONHASHSEED", str(seed))
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


def resolve_device(device: str | torch.device | None = None) -> torch.device:
    """``None`` → CUDA when available, else CPU. An unavailable CUDA device is an error."""
    if device is None:
        return torch.device("cuda" if torch.cuda.is_available() else "cpu")
    device = torch.device(device)
    if device.type == "cuda" and not torch.cuda.is_available():
        raise ValueError(f"device={device} requested but CUDA is not available; use 'cpu'")
    if device.type not in ("cpu", "cuda"):
        raise ValueError(f"device={device} is not supported; use 'cpu' or 'cuda'")
    return device


class Callback:
    """Hook points of :func:`fit`; subclass and override what a method needs."""

    def penalty(self, model: nn.Module) -> torch.Tensor | float:
        return 0.0

    def after_step(self, model: nn.Module, step: int) -> None:
        pass

    def on_epoch_end(self, model: nn.Module, epoch: int, record: dict[str, float]) -> None:
        pass


@dataclass
class History:
    """Per-epoch records: ``epoch``, ``train_loss``, ``train_acc``, ``val_loss``, ``val_acc``,
    ``seconds`` and whatever callbacks add. ``history["val_acc"]`` gives one column."""

    records: list[dict[str, float]] = field(default_factory=list)

    def __getitem__(self, key: str) -> list[float]:
        return [r[key] for r in self.records if key in r]

    def __len__(self) -> int:
        return len(self.records)

    def last(self, key: str) -> float:
        return self[key][-1]


@torch.no_grad()
def evaluate(
    model: nn.Module, loader: DataLoader, device: str | torch.device | None = None
) -> dict[str, float]:
    """Mean cross-entropy and accuracy of ``model`` over ``loader`` (model put in eval mode)."""
    device = resolve_device(device if device is not None else next(model.parameters()).device)
    model.eval()
    loss_sum, correct, count = 0.0, 0, 0
    for x, y in loader:
        x, y = x.to(device), y.to(device)
        logits = model(x)
        loss_sum += F.cross_entropy(logits, y, reduction="sum").item()
        correct += (logits.argmax(1) == y).sum().item()
        count += len(y)
    if count == 0:
        raise ValueError("loader is empty: nothing to evaluate")
    return {"loss": loss_sum / count, "acc": correct / count}


def accuracy(model: nn.Module, loader: DataLoader) -> float:
    """Shorthand for ``evaluate(model, loader)["acc"]``."""
    return evaluate(model, loader)["acc"]


def sgd(
    model: nn.Module,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    nesterov: bool = False,
) -> torch.optim.SGD:
    """SGD over all trainable parameters (the optimiser all the documents use)."""
    return torch.optim.SGD(
        [p for p in model.parameters() if p.requires_grad],
        lr=lr,
        momentum=momentum,
        weight_decay=weight_decay,
        nesterov=nesterov,
    )


def fit(
    model: nn.Module,
    train_loader: DataLoader,
    epochs: int,
    optimizer: torch.optim.Optimizer | None = None,
    val_loader: DataLoader | None = None,
    callbacks: Sequence[Callback] = (),
    scheduler: str | Callable[[torch.optim.Optimizer, int], object] | None = "cosine",
    device: str | torch.device | None = None,
    progress: bool = True,
    desc: str = "train",
    max_steps: int | None = None,
) -> History:
    """Train ``model`` with cross-entropy for ``epochs`` epochs and return its :class:`History`.

    ``scheduler``: "cosine" (per-step cosine decay to 0), None (constant LR) or a function
    ``(optimizer, total_steps) -> LR scheduler`` stepped once per batch.
    ``max_steps`` stops early (used by tests and quick demos).
    """
    if epochs < 1:
        raise ValueError(f"epochs={epochs} must be ≥ 1")
    from tqdm.auto import tqdm

    device = resolve_device(device)
    model.to(device)
    optimizer = optimizer or sgd(model)
    total_steps = (
        epochs * len(train_loader)
        if max_steps is None
        else min(max_steps, epochs * len(train_loader))
    )
    if scheduler == "cosine":
        lr_sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=max(total_steps, 1))
    elif scheduler is None:
        lr_sched = None
    elif callable(scheduler):
        lr_sched = scheduler(optimizer, total_steps)
    else:
        raise ValueError(f"scheduler={scheduler!r} must be 'cosine', None or a callable")

    history, step = History(), 0
    bar = tqdm(total=total_steps, desc=desc, disable=not progress, leave=True)
    for epoch in range(1, epochs + 1):
        model.train()
        start, loss_sum, correct, count = time.perf_counter(), 0.0, 0, 0
        for x, y in train_loader:
            x, y = x.to(device), y.to(device)
            logits = model(x)
            loss = F.cross_entropy(logits, y)
            total = loss + sum(cb.penalty(model) for cb in callbacks)
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            if lr_sched is not None:
                lr_sched.step()
            step += 1
            for cb in callbacks:
                cb.after_step(model, step)
            loss_sum += loss.item() * len(y)
            correct += (logits.argmax(1) == y).sum().item()
            count += len(y)
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss_sum / count:.3f}")
            if step >= total_steps:
                break
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / count,
            "train_acc": correct / count,
            "seconds": time.perf_counter() - start,
        }
        if val_loader is not None:
            val = evaluate(model, val_loader, device)
            record.update(val_loss=val["loss"], val_acc=val["acc"])
            bar.set_postfix(
                epoch=epoch, loss=f"{record['train_loss']:.3f}", val_acc=f"{val['acc']:.3f}"
            )
        for cb in callbacks:
            cb.on_epoch_end(model, epoch, record)
        history.records.append(record)
        if step >= total_steps:
            break
    bar.close()
    return history


__all__ = [
    "seed_everything",
    "resolve_device",
    "Callback",
    "History",
    "evaluate",
    "accuracy",
    "sgd",
    "fit",
]
