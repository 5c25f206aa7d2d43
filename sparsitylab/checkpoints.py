"""Checkpoints that survive a crash and resume to the same state.

:func:`save_checkpoint` writes, atomically (:func:`sparsitylab.files.atomic_save`): the model's
``state_dict`` (reparametrisations and masks included, see :mod:`sparsitylab.reparam`), the
optimizer's and LR scheduler's states, the method's own state (``Method.state_dict``), the random
number generators (Python, NumPy, torch, CUDA, and any ``torch.Generator`` such as a DataLoader's
shuffle generator), and your extras (step, epoch, history). A process killed while writing leaves
the previous checkpoint intact. :func:`load_checkpoint` restores all of it from
``torch.load(weights_only=True)``: build the model (a plain one; masks are rebuilt by class) and the
optimizer *after* it, then pass both. :class:`StageCheckpointer` is how the runner uses them: one
checkpoint per epoch of a stage, and the stage, epoch and history as its extras
(:func:`read_checkpoint_extra`).
"""

from __future__ import annotations

import os
import random
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import nn

from . import reparam
from .files import atomic_save
from .methods import Method
from .train import Checkpointer

FORMAT = "sparsitylab.checkpoint/1"


def rng_state(generators: Mapping[str, torch.Generator] | None = None) -> dict[str, Any]:
    """Every random number generator's state, as tensors and plain data (loadable with
    weights_only)."""
    kind, keys, position, has_gauss, cached = np.random.get_state()
    return {
        "python": random.getstate(),
        "numpy": (kind, torch.from_numpy(keys.copy()), position, has_gauss, cached),
        "torch": torch.get_rng_state(),
        "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else [],
        "generators": {name: g.get_state() for name, g in (generators or {}).items()},
    }


def set_rng_state(
    state: Mapping[str, Any], generators: Mapping[str, torch.Generator] | None = None
) -> None:
    """Restore what :func:`rng_state` saved (``generators`` by the names they were saved under)."""
    random.setstate(state["python"])
    kind, keys, position, has_gauss, cached = state["numpy"]
    np.random.set_state((kind, keys.numpy(), position, has_gauss, cached))
    torch.set_rng_state(state["torch"])
    if state["cuda"] and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(state["cuda"])
    for name, generator in (generators or {}).items():
        if name not in state["generators"]:
            raise KeyError(
                f"the checkpoint holds no generator {name!r}; it has {sorted(state['generators'])}"
            )
        generator.set_state(state["generators"][name])


def save_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    method: Method | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    extra: Mapping[str, Any] | None = None,
) -> Path:
    """Write a checkpoint atomically; ``extra`` holds plain data (step, epoch, history records)."""
    return atomic_save(
        {
            "format": FORMAT,
            "model": model.state_dict(),
            "optimizer": None if optimizer is None else optimizer.state_dict(),
            "scheduler": None if scheduler is None else scheduler.state_dict(),
            "method": None if method is None else method.state_dict(),
            "rng": rng_state(generators),
            "extra": dict(extra or {}),
        },
        path,
    )


def load_checkpoint(
    path: str | os.PathLike,
    model: nn.Module,
    optimizer: torch.optim.Optimizer | None = None,
    scheduler: Any = None,
    method: Method | None = None,
    generators: Mapping[str, torch.Generator] | None = None,
    restore_rng: bool = True,
) -> dict[str, Any]:
    """Restore a checkpoint into ``model`` (and the optimizer, scheduler, method, RNGs); return
    ``extra``."""
    saved = torch.load(path, weights_only=True, map_location="cpu")
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ValueError(f"{path} is not a sparsitylab checkpoint (no {FORMAT!r} marker)")
    reparam.load_state_dict(model, saved["model"])
    for name, target in (("optimizer", optimizer), ("scheduler", scheduler), ("method", method)):
        if target is None:
            continue
        if saved[name] is None:
            raise ValueError(f"{path} holds no {name} state, but a {name} was given to restore")
        target.load_state_dict(saved[name])
    if restore_rng:
        set_rng_state(saved["rng"], generators)
    return saved["extra"]


# ----------------------------------------------------------------------------- the runner's stages


class StageCheckpointer(Checkpointer):
    """Saves one stage's checkpoint after every epoch; resumes the stage the checkpoint holds."""

    def __init__(
        self,
        path: str | os.PathLike,
        stage: str,
        model: nn.Module,
        method: Method,
        generators: dict[str, torch.Generator],
        records: list[dict],
        trained: dict[str, Any] | None,
        resume: bool,
        write: bool = True,
    ):
        self.write = write
        self.path, self.stage, self.model, self.method = path, stage, model, method
        self.generators, self.records, self.trained, self.resume = (
            generators,
            records,
            trained,
            resume,
        )

    def restore(self, optimizer: torch.optim.Optimizer, scheduler: Any) -> tuple[int, int]:
        if not self.resume:
            return 0, 0
        extra = load_checkpoint(
            self.path, self.model, optimizer, scheduler, self.method, self.generators
        )
        return int(extra["epoch"]), int(extra["step"])

    def save(
        self, epoch: int, step: int, optimizer: Any, scheduler: Any, record: dict[str, float]
    ) -> None:
        self.records.append({**record, "stage": self.stage})
        if not self.write:
            return
        extra = {"stage": self.stage, "epoch": epoch, "step": step, "history": self.records}
        if self.trained is not None:
            extra["trained"] = self.trained
        save_checkpoint(
            self.path, self.model, optimizer, scheduler, self.method, self.generators, extra
        )


def read_checkpoint_extra(path: str | os.PathLike) -> dict[str, Any]:
    """The plain data (stage, epoch, step, history) of a checkpoint the runner wrote."""
    saved = torch.load(path, weights_only=True, map_location="cpu")
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ValueError(f"{path} is not a sparsitylab checkpoint")
    return saved["extra"]


__all__ = [
    "FORMAT",
    "StageCheckpointer",
    "load_checkpoint",
    "read_checkpoint_extra",
    "rng_state",
    "save_checkpoint",
    "set_rng_state",
]
