"""Reusable training callbacks (the hooks of :class:`sparsitylab.train.Callback`).

- :class:`LogSparsity` — adds the model's weight sparsity to every epoch record (the runner always
  uses it);
- :class:`EvaluateEvery` — every k optimizer steps (and once before the first), records the step,
  the weight sparsity and the accuracy on a loader: the curves of a pruning schedule.
- :class:`MaskDivergence` — SAD, the Sparse Architecture Divergence of the N:M paper: how many
  mask bits flip between consecutive steps, between epochs and relative to the final mask.

A chapter that needs something else writes its own three-line callback; that is part of the lesson.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping

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


Masks = Mapping[str, torch.Tensor]


def flips(a: Masks, b: Masks) -> dict[str, int]:
    """Per layer, the number of mask bits that differ between ``a`` and ``b`` (Hamming distance);
    both must hold the same layers with the same shapes."""
    if a.keys() != b.keys():
        raise ValueError(f"the masks hold different layers: {sorted(a)} vs {sorted(b)}")
    for name in a:
        if a[name].shape != b[name].shape:
            raise ValueError(
                f"masks[{name!r}] have shapes {tuple(a[name].shape)} and {tuple(b[name].shape)}"
            )
    return {name: int((a[name] != b[name]).sum()) for name in a}


class MaskDivergence(Callback):
    """SAD (Zhou et al., ICLR 2021): SAD_{i:j} = ‖E_j − E_i‖₁, the number of mask bits that flip
    between times i and j, per layer.

    ``masks(model)`` returns the current boolean masks by layer (for N:M training,
    :func:`sparsitylab.reparam.nm.current_masks`). The callback records:

    - every ``every`` optimizer steps, the flips since the previous record (``steps``: rows of
      ``(step, {layer: flips})``);
    - in each epoch's history record, ``sad_steps`` (the sum of those step-to-step flips over the
      epoch), ``sad_epoch`` (flips between this epoch's end and the previous one's, or the start)
      and ``sad_epoch_frac`` (that count over all masked weights — our normalisation), plus
      ``sad_epoch/<layer>`` per layer;
    - the mask at every epoch end, so :meth:`against_final` can count flips relative to the last.

    Steps are counted across every fit the callback takes part in.
    """

    def __init__(self, masks: Callable[[nn.Module], Masks], every: int = 1):
        self.masks, self.every = masks, check_int(every, "every", minimum=1)
        self.steps: list[tuple[int, dict[str, int]]] = []
        self.epochs: list[dict[str, torch.Tensor]] = []  # masks at the start, then each epoch end
        self.step = 0
        self._last: dict[str, torch.Tensor] | None = None
        self._epoch_steps: dict[str, int] = {}

    def _snapshot(self, model: nn.Module) -> dict[str, torch.Tensor]:
        return {
            name: m.detach().to("cpu", torch.bool, copy=True)
            for name, m in self.masks(model).items()
        }

    def on_fit_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if self._last is None:
            self._last = self._snapshot(model)
            self.epochs.append(self._last)

    def after_step(self, model: nn.Module, step: int) -> None:
        self.step += 1
        if self.step % self.every:
            return
        now = self._snapshot(model)
        changed = flips(self._last, now)
        self.steps.append((self.step, changed))
        for name, count in changed.items():
            self._epoch_steps[name] = self._epoch_steps.get(name, 0) + count
        self._last = now

    def on_epoch_end(self, model: nn.Module, epoch: int, record: dict[str, float]) -> None:
        now = self._snapshot(model)
        changed = flips(self.epochs[-1], now)
        total = sum(m.numel() for m in now.values())
        record["sad_steps"] = sum(self._epoch_steps.values())
        record["sad_epoch"] = sum(changed.values())
        record["sad_epoch_frac"] = record["sad_epoch"] / total if total else 0.0
        record.update({f"sad_epoch/{name}": count for name, count in changed.items()})
        self.epochs.append(now)
        self._epoch_steps = {}

    def against_final(self) -> list[dict[str, int]]:
        """For the start and every epoch end: flips per layer relative to the last epoch's mask."""
        if not self.epochs:
            return []
        return [flips(masks, self.epochs[-1]) for masks in self.epochs]

    def frame(self):
        """The step rows as a pandas DataFrame: one column per layer, plus ``total``, by step."""
        import pandas as pd

        frame = pd.DataFrame([counts for _, counts in self.steps], index=[s for s, _ in self.steps])
        frame.index.name = "step"
        frame["total"] = frame.sum(axis=1)
        return frame


__all__ = ["EvaluateEvery", "LogSparsity", "MaskDivergence", "flips"]
