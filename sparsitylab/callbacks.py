"""Reusable training callbacks (the hooks of :class:`sparsitylab.train.Callback`).

- :class:`LogSparsity` — adds the model's weight sparsity to every epoch record (the runner always
  uses it);
- :class:`EvaluateEvery` — every k optimizer steps (and once before the first), records the step,
  the weight sparsity and the accuracy on a loader: the curves of a pruning schedule.

A chapter that needs something else writes its own three-line callback; that is part of the lesson.
"""

from __future__ import annotations

import torch
from torch import nn
from torch.utils.data import DataLoader

from ._checks import check_int
from .metrics import sparsity
from .train import Callback, accuracy


class LogSparsity(Callback):
    """``record["sparsity"]``: the weight sparsity of the model at the end of every epoch."""

    def on_epoch_end(self, model: nn.Module, epoch: int, record: dict[str, float]) -> None:
        record["sparsity"] = sparsity(model)


class EvaluateEvery(Callback):
    """Rows (step, sparsity, accuracy on ``loader``) at step 0 and every ``every`` optimizer steps.

    Steps are counted across every :func:`~sparsitylab.train.fit` the callback takes part in
    (training, then fine-tuning), so the curve continues. ``rows`` holds the tuples; :meth:`frame`
    gives a DataFrame.
    """

    def __init__(self, loader: DataLoader, every: int):
        self.loader, self.every = loader, check_int(every, "every", minimum=1)
        self.rows: list[tuple[int, float, float]] = []
        self.steps = 0

    def _record(self, model: nn.Module) -> None:
        self.rows.append((self.steps, sparsity(model), accuracy(model, self.loader)))

    def on_fit_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if not self.rows:
            self._record(model)

    def after_step(self, model: nn.Module, step: int) -> None:
        self.steps += 1
        if self.steps % self.every == 0:
            self._record(model)

    def frame(self):
        """The rows as a pandas DataFrame with columns step, sparsity, acc."""
        import pandas as pd

        return pd.DataFrame(self.rows, columns=["step", "sparsity", "acc"])


__all__ = ["EvaluateEvery", "LogSparsity"]
