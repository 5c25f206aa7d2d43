"""One driver for every method: ``run(method, model, loaders, ...) -> Run``.

The phases of :class:`sparsitylab.methods.Method`, in order, on a copy of ``model`` (the caller's
model is never changed)::

    seed → prepare → calibrate (post-training methods) → [test accuracy "prepared"] → train (epochs,
    the method's callbacks) → freeze + fine-tune (finetune_epochs, a fresh optimizer, no method
    callbacks) → [BatchNorm recalibration] → finalize → compact → measure

and a :class:`Run` with everything a chapter tabulates: the trained, final and compacted models, the
history, test accuracy, weight sparsity (overall and per layer), parameters, non-zeros, MACs and
wall time.

Checkpoints and resuming: with ``checkpoint=PATH`` the runner saves a checkpoint
(:func:`sparsitylab.checkpoints.save_checkpoint`: model, optimizer, LR scheduler, method state,
every RNG and the train loader's shuffle generator; plus the stage, epoch, step and history) after
every epoch of both stages, through :class:`sparsitylab.train.Checkpointer`. ``resume=True``
repeats the deterministic start (seed, copy, prepare, calibrate), skips the stages and epochs the
checkpoint holds, restores everything into a freshly built optimizer and scheduler and continues:
on CPU with the same seed it ends in exactly the model of an uninterrupted run. A checkpoint taken
during fine-tuning also holds the model and method state at the end of training, so that ``freeze``
rebuilds the same structure before the fine-tuning state is loaded.
"""

from __future__ import annotations

import copy
import os
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils.data import DataLoader

from . import checkpoints, methods, reparam
from ._checks import check_int
from .callbacks import LogSparsity
from .checkpoints import read_checkpoint_extra
from .coverage import COVERED, parameter_names
from .methods import Method
from .metrics import count_macs, count_nonzeros, count_parameters, layer_sparsity, sparsity
from .train import (
    SGD,
    Callback,
    History,
    evaluate,
    fit,
    recalibrate_batchnorm,
    resolve_device,
    seed_everything,
)

OptimizerFactory = Callable[[Iterable[dict]], torch.optim.Optimizer]
DEFAULT_OPTIMIZER = SGD()  # lr 0.05, momentum 0.9, weight decay 5e-4


@dataclass
class Run:
    """The outcome of :func:`run`. Numbers describe ``model`` (the finalized one) unless named
    otherwise; the three models come back in eval mode."""

    method: str
    trained: nn.Module
    model: nn.Module
    compacted: nn.Module | None
    history: History
    test_acc: float | None
    test_loss: float | None
    prepared_acc: float | None
    sparsity: float
    layer_sparsity: dict[str, float]
    params: int
    nonzeros: int
    macs: int
    sparse_macs: int
    compacted_params: int | None
    compacted_macs: int | None
    seconds: float
    extra: dict[str, Any] = field(default_factory=dict)
    coverage: dict[str, str] = field(default_factory=dict)
    covered_sparsity: float | None = None
    model_sparsity: float | None = None

    @property
    def error(self) -> float | None:
        """Test error 1 − accuracy (None without a test loader)."""
        return None if self.test_acc is None else 1.0 - self.test_acc

    @property
    def deployable(self) -> nn.Module:
        """The model to deploy: the compacted one where the method has one, else the finalized
        one."""
        return self.compacted if self.compacted is not None else self.model

    def row(self) -> dict[str, Any]:
        """The numbers as one flat dict (a table row, or a JSON record)."""
        return {
            "method": self.method,
            "test_acc": self.test_acc,
            "prepared_acc": self.prepared_acc,
            "sparsity": self.sparsity,
            "params": self.params,
            "nonzeros": self.nonzeros,
            "macs": self.macs,
            "sparse_macs": self.sparse_macs,
            "compacted_params": self.compacted_params,
            "compacted_macs": self.compacted_macs,
            "seconds": self.seconds,
            **self.extra,
        }

    @property
    def dense(self) -> dict[str, str]:
        """The parameters the method left dense, with the reason for each."""
        return {name: why for name, why in self.coverage.items() if why != COVERED}

    def summary(self) -> str:
        """What a log or a notebook shows: accuracy, sparsity over the method's tensors and over the
        whole model, MACs, and what was left dense and why (grouped by reason)."""
        acc = (
            "no test set" if self.test_acc is None else f"test accuracy {100 * self.test_acc:.2f} %"
        )
        small = (
            ""
            if self.compacted_macs is None or not self.macs
            else f", compacted {self.compacted_macs / self.macs:.1%} of the MACs"
        )
        covered = sum(why == COVERED for why in self.coverage.values())
        line = (
            f"{self.method}: {acc}, weight sparsity {100 * self.sparsity:.2f} % "
            f"(the method's {covered} tensors: {100 * (self.covered_sparsity or 0.0):.2f} %; "
            f"whole model: {100 * (self.model_sparsity or 0.0):.2f} %), {self.nonzeros:,} of "
            f"{self.params:,} parameters non-zero{small} ({self.seconds:.0f} s)"
        )
        reasons: dict[str, int] = {}
        for why in self.dense.values():
            reasons[why] = reasons.get(why, 0) + 1
        if reasons:
            line += "\n  left dense: " + "; ".join(f"{n} × {why}" for why, n in reasons.items())
        return line


def _method(method: Method | str, options: Mapping[str, Any] | None) -> Method:
    if isinstance(method, str):
        return methods.build(method, **dict(options or {}))
    if not isinstance(method, Method):
        raise TypeError(
            f"method must be a Method or a registered name {sorted(methods.REGISTRY)}, "
            f"got {type(method).__name__}"
        )
    if options:
        raise ValueError("method_options are for a method given by name; this one is built already")
    return method


class _Stage(Callback):
    """Puts the stage's name into every epoch record (first, so later callbacks see it)."""

    def __init__(self, stage: str):
        self.stage = stage

    def on_epoch_end(self, model: nn.Module, epoch: int, record: dict[str, float]) -> None:
        record["stage"] = self.stage


def _generator(loader: DataLoader | None) -> bool:
    """Whether ``loader`` shuffles with its own generator (saved in checkpoints)."""
    return loader is not None and isinstance(getattr(loader, "generator", None), torch.Generator)


def _example_batch(loader: DataLoader | None, device: torch.device, size: int = 64) -> Any:
    """The first ``size`` inputs of ``loader`` (a tensor, or a dict / tuple of them). Drawing them
    leaves every random number generator as it was (a shuffled loader's order included), so the
    training that follows is the one it would have been."""
    if loader is None:
        return None
    generator = getattr(loader, "generator", None)
    saved = generator.get_state() if isinstance(generator, torch.Generator) else None
    rng = torch.get_rng_state()
    try:
        batch = next(iter(loader))
    finally:
        torch.set_rng_state(rng)
        if saved is not None:
            generator.set_state(saved)
    x = batch[0] if isinstance(batch, (tuple, list)) else batch
    return pytree.tree_map(lambda t: t[:size].to(device) if isinstance(t, torch.Tensor) else t, x)


def _covered_sparsity(model: nn.Module, coverage: dict[str, str]) -> float | None:
    """Exact zeros over the parameters the method covers."""
    values = parameter_names(model)
    chosen = [values[name] for name, why in coverage.items() if why == COVERED and name in values]
    total = sum(t.numel() for t in chosen)
    return 1 - sum(int(t.count_nonzero()) for t in chosen) / total if total else None


def run(
    method: Method | str,
    model: nn.Module,
    loaders: Any,
    *,
    epochs: int = 0,
    finetune_epochs: int = 0,
    optimizer: OptimizerFactory = DEFAULT_OPTIMIZER,
    finetune_optimizer: OptimizerFactory | None = None,
    scheduler: str | Callable | None = "cosine",
    max_steps: int | None = None,
    seed: int | None = 0,
    callbacks: Sequence[Callback] = (),
    validate: bool = False,
    recalibrate_bn: bool = False,
    measure_prepared: bool = False,
    method_options: Mapping[str, Any] | None = None,
    progress: bool = True,
    device: str | torch.device | None = None,
    checkpoint: str | os.PathLike | None = None,
    resume: bool = False,
    wrap: Callable[[nn.Module], nn.Module] | None = None,
    save_checkpoints: bool = True,
) -> Run:
    """Drive ``method`` on a copy of ``model`` through its life cycle and measure the result.

    loaders: anything with ``.train`` and optionally ``.test`` and ``.val`` loaders
    (:class:`sparsitylab.data.Loaders`). epochs / max_steps: training with the method's callbacks (0
    epochs: none, e.g. a post-training method); finetune_epochs: then ``method.freeze`` and
    fine-tuning with a fresh optimizer and the LR schedule restarted. optimizer: builds the
    optimizer from the method's parameter groups (default ``SGD()``: lr 0.05, momentum 0.9, weight
    decay 5e-4); finetune_optimizer: the same for fine-tuning (default: ``optimizer``). seed:
    :func:`sparsitylab.train.seed_everything` before anything else (None: leave the RNGs alone).
    callbacks: extra callbacks for both stages. validate: evaluate ``loaders.val`` after every
    epoch. recalibrate_bn: re-estimate BatchNorm statistics on the training data after training.
    measure_prepared: test accuracy right after prepare/calibrate. checkpoint: a file to save a
    checkpoint to after every epoch; resume: continue from it (see the module docstring).
    wrap: wraps the prepared (or frozen) model, once per stage, into the module :func:`fit` calls
    for the forward and backward (DistributedDataParallel under torchrun); the method, callbacks and
    checkpoints keep the plain model. save_checkpoints: False reads ``checkpoint`` (to resume) but
    never writes it (the ranks other than 0 under torchrun).
    """
    method = _method(method, method_options)
    epochs, finetune_epochs = (
        check_int(epochs, "epochs", minimum=0),
        check_int(finetune_epochs, "finetune_epochs", minimum=0),
    )
    train_loader, test_loader = getattr(loaders, "train", None), getattr(loaders, "test", None)
    val_loader = getattr(loaders, "val", None) if validate else None
    if (epochs or finetune_epochs) and train_loader is None:
        raise ValueError(
            "loaders has no .train loader, but epochs or finetune_epochs ask for training"
        )
    start = time.perf_counter()
    if seed is not None:
        seed_everything(seed)
    device = resolve_device(device)
    model = copy.deepcopy(model).to(device)
    source = test_loader if test_loader is not None else train_loader
    example = _example_batch(source, device)
    method.prepare(model, _example_batch(source, device, 2))
    if train_loader is not None:
        method.calibrate(model, train_loader)
    prepared_acc = (
        evaluate(model, test_loader)["acc"]
        if measure_prepared and test_loader is not None
        else None
    )

    history = History()
    saved = read_checkpoint_extra(checkpoint) if resume and checkpoint is not None else None
    if resume and saved is None:
        raise ValueError("resume=True needs the checkpoint file to resume from")
    generators = {"train": train_loader.generator} if _generator(train_loader) else {}
    stages = [
        ("train", epochs, optimizer, [method]),
        ("finetune", finetune_epochs, finetune_optimizer or optimizer, []),
    ]
    trained = None
    for stage, stage_epochs, make_optimizer, own in stages:
        if not stage_epochs:
            continue
        if saved is not None and stage == "train" and saved["stage"] == "finetune":
            reparam.load_state_dict(model, saved["trained"]["model"])  # skip training
            method.load_state_dict(saved["trained"]["method"])
            history.records = [r for r in saved["history"] if r["stage"] == "train"]
            continue
        if stage == "finetune":
            if checkpoint is not None:  # a fine-tuning checkpoint rebuilds freeze from this
                trained = copy.deepcopy(
                    {"model": model.state_dict(), "method": method.state_dict()}
                )
            method.freeze(model)
        here = saved is not None and saved["stage"] == stage
        if here:  # the model's state first, so the optimizer is built on its parameters
            checkpoints.load_checkpoint(checkpoint, model, method=method, restore_rng=False)
            history.records = list(saved["history"])
        keeper = (
            checkpoints.StageCheckpointer(
                checkpoint,
                stage,
                model,
                method,
                generators,
                list(history.records),
                trained,
                here,
                save_checkpoints,
            )
            if checkpoint is not None
            else None
        )
        stage_history = fit(
            model,
            train_loader,
            stage_epochs,
            optimizer=make_optimizer(method.param_groups(model)),
            val_loader=val_loader,
            callbacks=[_Stage(stage), *own, LogSparsity(), *callbacks],
            scheduler=scheduler,
            device=device,
            progress=progress,
            desc=f"{method.name or type(method).__name__} {stage}",
            max_steps=max_steps if stage == "train" else None,
            checkpointer=keeper,
            forward=wrap(model) if wrap is not None else None,
        )
        history.records += [{**record, "stage": stage} for record in stage_history.records]
    if recalibrate_bn and train_loader is not None:
        recalibrate_batchnorm(model, train_loader)

    model.eval()
    final = method.finalize(model).eval()
    compacted = method.compact(final, example_input=example)
    if compacted is not None:
        compacted.eval()
    one = _example_batch(test_loader if test_loader is not None else train_loader, device, 1)
    costs = count_macs(final, one) if one is not None else None
    coverage = method.coverage(final)
    test = evaluate(final, test_loader) if test_loader is not None else {"acc": None, "loss": None}
    return Run(
        method=method.name or type(method).__name__,
        trained=model,
        model=final,
        compacted=compacted,
        history=history,
        test_acc=test["acc"],
        test_loss=test["loss"],
        prepared_acc=prepared_acc,
        sparsity=sparsity(final),
        layer_sparsity=layer_sparsity(final),
        params=count_parameters(final),
        nonzeros=count_nonzeros(final),
        macs=costs.dense if costs is not None else 0,
        sparse_macs=costs.sparse if costs is not None else 0,
        compacted_params=count_parameters(compacted) if compacted is not None else None,
        compacted_macs=count_macs(compacted, one).dense
        if compacted is not None and one is not None
        else None,
        seconds=time.perf_counter() - start,
        coverage=coverage,
        covered_sparsity=_covered_sparsity(final, coverage),
        model_sparsity=sparsity(final, of="parameters"),
    )


__all__ = ["OptimizerFactory", "Run", "read_checkpoint_extra", "run"]
