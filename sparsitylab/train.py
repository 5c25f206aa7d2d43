"""Training: one loop every chapter and every method shares (evaluation, in
:mod:`sparsitylab.evaluation`, is re-exported here).

A sparsification method plugs into :func:`fit` through a :class:`Callback`:

- ``on_fit_start(model, optimizer)`` sees the optimizer that will step (a proximal step reads its
  LR);
- ``penalty(model)`` returns a term added to the loss (group lasso, L1 on BN scales, …);
- ``after_step(model, step)`` acts after each optimizer step (zero tiny weights, update a pruning
  schedule, …);
- ``on_epoch_end(model, epoch, record)`` may add numbers to the epoch's history record.

A non-finite loss stops training with :class:`NonFiniteLossError` naming the epoch and step (or,
with ``nonfinite="skip"``, that batch is skipped and counted). Reusable callbacks live in
:mod:`sparsitylab.callbacks`; :func:`sparsitylab.runner.run` drives a whole method with this loop.
"""

from __future__ import annotations

import math
import random
import time
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass, field

import numpy as np
import torch
from torch import nn
from torch.utils.data import DataLoader

from ._checks import check_choice, check_int, check_real
from .evaluation import (
    accuracy,
    correct,
    evaluate,
    logits_of,
    loss_and_hits,
    resolve_device,
    to_device,
)
from .graph.tracer import call
from .metrics import BATCHNORMS


def seed_everything(seed: int = 0, deterministic: bool = True) -> None:
    """Seed Python, NumPy and PyTorch; optionally ask PyTorch for deterministic kernels.

    ``deterministic=True`` calls ``torch.use_deterministic_algorithms(True, warn_only=True)``, a
    **process-wide** setting that stays on after this call returns: every later op in the process
    uses deterministic kernels where PyTorch has them and warns where it has none (some are slower).
    ``deterministic=False`` leaves the setting as it is;
    ``torch.use_deterministic_algorithms(False)`` turns it off.

    (Python's string hashing is seeded by ``PYTHONHASHSEED`` at interpreter start, which no function
    can change afterwards; ``make test`` sets it.)
    """
    random.seed(seed)
    np.random.seed(seed)
    torch.manual_seed(seed)
    if deterministic:
        torch.use_deterministic_algorithms(True, warn_only=True)


class NonFiniteLossError(FloatingPointError):
    """The training loss became NaN or ±inf; the message names the epoch and step."""


class Callback:
    """Hook points of :func:`fit`; subclass and override what a method needs."""

    def on_fit_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        pass

    def penalty(self, model: nn.Module) -> torch.Tensor | float:
        return 0.0

    def after_step(self, model: nn.Module, step: int) -> None:
        pass

    def on_epoch_end(self, model: nn.Module, epoch: int, record: dict[str, float]) -> None:
        pass


class Checkpointer:
    """Saving and resuming hook of :func:`fit` (:func:`sparsitylab.runner.run` implements it).

    ``restore(optimizer, scheduler)`` runs once, after the optimizer and LR scheduler exist and the
    callbacks' ``on_fit_start``, before the first batch: it may load their states (and the RNGs) and
    returns ``(epochs done, optimizer steps done)``, where training continues. ``save(epoch, step,
    optimizer, scheduler, record)`` runs at the end of every epoch, after the callbacks.
    """

    def restore(self, optimizer: torch.optim.Optimizer, scheduler: object) -> tuple[int, int]:
        return 0, 0

    def save(
        self,
        epoch: int,
        step: int,
        optimizer: torch.optim.Optimizer,
        scheduler: object,
        record: dict[str, float],
    ) -> None:
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


@dataclass(frozen=True)
class SGD:
    """SGD hyperparameters (the optimiser all the documents use); calling it on parameters, or on
    parameter groups whose own keys override these defaults, builds the ``torch.optim.SGD``."""

    lr: float = 0.05
    momentum: float = 0.9
    weight_decay: float = 5e-4
    nesterov: bool = False

    def __post_init__(self) -> None:
        check_real(self.lr, "lr", minimum=0.0)
        check_real(self.momentum, "momentum", 0.0, 1.0, open_max=True)
        check_real(self.weight_decay, "weight_decay", minimum=0.0)

    def __call__(self, params: Iterable[torch.Tensor] | Iterable[dict]) -> torch.optim.SGD:
        return torch.optim.SGD(
            params,
            lr=self.lr,
            momentum=self.momentum,
            weight_decay=self.weight_decay,
            nesterov=self.nesterov,
        )


def trainable(model: nn.Module) -> list[nn.Parameter]:
    """The parameters an optimizer should update (``requires_grad``), in definition order."""
    return [p for p in model.parameters() if p.requires_grad]


def sgd(
    model: nn.Module,
    lr: float = 0.05,
    momentum: float = 0.9,
    weight_decay: float = 5e-4,
    nesterov: bool = False,
) -> torch.optim.SGD:
    """SGD over all trainable parameters of ``model``."""
    return SGD(lr, momentum, weight_decay, nesterov)(trainable(model))


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
    nonfinite: str = "raise",
    checkpointer: Checkpointer | None = None,
    forward: nn.Module | None = None,
) -> History:
    """Train ``model`` with cross-entropy for ``epochs`` epochs and return its :class:`History`.

    ``scheduler``: "cosine" (per-step cosine decay to 0), None (constant LR) or a function
    ``(optimizer, total_steps) -> LR scheduler`` stepped once per batch. ``max_steps`` stops after
    that many optimizer steps (0: no training at all). ``nonfinite``: "raise" (stop with
    :class:`NonFiniteLossError`) or "skip" (skip the batch; the epoch record counts ``skipped``)
    when the loss plus penalties is NaN or ±inf. ``checkpointer``: a :class:`Checkpointer` that
    saves after every epoch and may resume an interrupted fit (the history then holds only the new
    epochs). ``forward``: the module to call for the training forward and backward, wrapping
    ``model`` (DistributedDataParallel under torchrun; default ``model`` itself); callbacks,
    validation and the checkpointer see ``model``. A train loader with a ``DistributedSampler``
    gets ``set_epoch(epoch)`` before every epoch.
    """
    check_int(epochs, "epochs", minimum=1)
    check_choice(nonfinite, "nonfinite", ("raise", "skip"))
    if len(train_loader) == 0:
        raise ValueError("train_loader is empty: there is nothing to train on")
    from tqdm.auto import tqdm

    device = resolve_device(device)
    model.to(device)
    optimizer = optimizer or sgd(model)
    total_steps = epochs * len(train_loader)
    if max_steps is not None:
        total_steps = min(check_int(max_steps, "max_steps", minimum=0), total_steps)
    history, step = History(), 0
    if total_steps == 0:
        return history
    if scheduler == "cosine":
        lr_sched = torch.optim.lr_scheduler.CosineAnnealingLR(optimizer, T_max=total_steps)
    elif scheduler is None:
        lr_sched = None
    elif callable(scheduler):
        lr_sched = scheduler(optimizer, total_steps)
    else:
        raise ValueError(f"scheduler={scheduler!r} must be 'cosine', None or a callable")
    for cb in callbacks:
        cb.on_fit_start(model, optimizer)
    done = checkpointer.restore(optimizer, lr_sched) if checkpointer is not None else (0, 0)
    if done[1] >= total_steps:  # resumed after the last step
        return history
    step = done[1]

    bar = tqdm(total=total_steps, initial=step, desc=desc, disable=not progress, leave=True)
    for epoch in range(done[0] + 1, epochs + 1):
        model.train()
        set_epoch = getattr(getattr(train_loader, "sampler", None), "set_epoch", None)
        if set_epoch is not None:  # a DistributedSampler: a new shuffle order every epoch
            set_epoch(epoch)
        start, loss_sum, correct, count, skipped = time.perf_counter(), 0.0, 0, 0, 0
        for x, y in train_loader:
            x, y = to_device(x, device), y.to(device)
            loss, hits, seen = loss_and_hits(logits_of(call(forward or model, x)), y)
            total = loss + sum(cb.penalty(model) for cb in callbacks)
            value = float(total.detach())
            if not math.isfinite(value):
                if nonfinite == "raise":
                    bar.close()
                    raise NonFiniteLossError(
                        f"the loss became {value} at epoch {epoch}, step {step + 1} (loss "
                        f"{loss.item()}); lower the learning rate or a penalty strength, or pass "
                        "nonfinite='skip'"
                    )
                skipped += 1
                continue
            optimizer.zero_grad(set_to_none=True)
            total.backward()
            optimizer.step()
            if lr_sched is not None:
                lr_sched.step()
            step += 1
            for cb in callbacks:
                cb.after_step(model, step)
            loss_sum += loss.item() * seen
            correct += hits
            count += seen
            bar.update(1)
            bar.set_postfix(epoch=epoch, loss=f"{loss_sum / count:.3f}")
            if step >= total_steps:
                break
        record = {
            "epoch": epoch,
            "train_loss": loss_sum / count if count else math.nan,
            "train_acc": correct / count if count else math.nan,
            "seconds": time.perf_counter() - start,
        }
        if skipped:
            record["skipped"] = skipped
        if val_loader is not None:
            val = evaluate(model, val_loader, device)
            record.update(val_loss=val["loss"], val_acc=val["acc"])
            bar.set_postfix(
                epoch=epoch, loss=f"{record['train_loss']:.3f}", val_acc=f"{val['acc']:.3f}"
            )
        for cb in callbacks:
            cb.on_epoch_end(model, epoch, record)
        history.records.append(record)
        if checkpointer is not None:
            checkpointer.save(epoch, step, optimizer, lr_sched, record)
        if step >= total_steps:
            break
    bar.close()
    return history


@torch.no_grad()
def recalibrate_batchnorm(
    model: nn.Module, loader: Iterable, max_batches: int | None = None
) -> nn.Module:
    """Recompute every BatchNorm's running mean/variance as plain averages over ``loader``
    (train-mode passes; the model's mode is restored).

    Pruning and group lasso change weights quickly, so the running statistics collected during
    training lag behind the weights; re-estimating them is the usual step after pruning (derived —
    not from a paper).
    """
    norms = [m for m in model.modules() if isinstance(m, BATCHNORMS)]
    saved = [(m, m.momentum) for m in norms]
    for m in norms:
        m.reset_running_stats()
        m.momentum = None  # cumulative average
    was_training = model.training
    model.train()
    device = next(model.parameters()).device
    try:
        for i, (x, *_) in enumerate(loader):
            if max_batches is not None and i >= max_batches:
                break
            call(model, to_device(x, device))
    finally:
        for m, momentum in saved:
            m.momentum = momentum
        model.train(was_training)
    return model


__all__ = [
    "SGD",
    "Callback",
    "Checkpointer",
    "History",
    "NonFiniteLossError",
    "accuracy",
    "correct",
    "evaluate",
    "fit",
    "recalibrate_batchnorm",
    "resolve_device",
    "seed_everything",
    "sgd",
    "trainable",
]
