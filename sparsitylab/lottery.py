"""Lottery tickets, driven over the runner: iterative magnitude pruning with the survivors reset to
W₀ (Frankle & Carbin 2019) or rewound to W_t (Frankle et al. 2020; the papers' θ₀ and θ_k),
and the controls.

::

    dense, start = lottery.train_dense(model, loaders, epochs=2, rewind_step=0)  # start = W₀
    rounds = lottery.iterate(dense, start, model, loaders, rounds=3, epochs=2, rate=0.2)
    control = lottery.retrain(model, loaders, rounds[-1].masks, reinitialised(model, seed=1),
                              epochs=2)                                # same mask, new weights

Every round is one :func:`sparsitylab.runner.run` of a :class:`~sparsitylab.methods.lottery.Ticket`
(start weights, then a fixed mask): the runner stays the one driver, this module only chains its
runs. Pruning follows :func:`~sparsitylab.methods.lottery.prune_survivors` (per layer, the output
layer at half the rate by default). Introduced in Chapter 10 (``book/10_growth``).
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn

from . import runner
from ._checks import check_int
from .coverage import Scope, weight_matrices
from .methods.lottery import Ticket, layer_rates, prune_survivors
from .train import Callback


@dataclass
class Round:
    """One trained network of a lottery experiment."""

    round: int  # pruning rounds behind it (0: the dense network)
    sparsity: float  # over the covered weight matrices
    test_acc: float
    masks: dict[str, torch.Tensor]
    run: runner.Run


class Snapshot(Callback):
    """Keeps the model's weights after ``step`` optimizer steps (0: before the first)."""

    def __init__(self, step: int):
        self.step = check_int(step, "rewind_step", minimum=0)
        self.state: dict[str, torch.Tensor] | None = None

    def _keep(self, model: nn.Module) -> None:
        self.state = {k: v.detach().clone() for k, v in model.state_dict().items()}

    def on_fit_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        if self.step == 0:
            self._keep(model)

    def after_step(self, model: nn.Module, step: int) -> None:
        if step == self.step:
            self._keep(model)


def train_dense(
    model: nn.Module, loaders: Any, *, epochs: int, rewind_step: int = 0, **options: Any
) -> tuple[runner.Run, dict[str, torch.Tensor]]:
    """Train ``model`` densely; return the run and W_t, its weights after t = ``rewind_step`` steps
    (W₀ for 0). ``options`` go to :func:`sparsitylab.runner.run`."""
    snapshot = Snapshot(rewind_step)
    callbacks = [*options.pop("callbacks", ()), snapshot]
    dense = runner.run("dense", model, loaders, epochs=epochs, callbacks=callbacks, **options)
    if snapshot.state is None:
        raise ValueError(
            f"rewind_step={rewind_step} is beyond the dense run's "
            f"{len(loaders.train) * epochs} steps"
        )
    return dense, snapshot.state


def retrain(
    model: nn.Module,
    loaders: Any,
    masks: Mapping[str, torch.Tensor],
    start: Mapping[str, torch.Tensor],
    *,
    epochs: int,
    **options: Any,
) -> runner.Run:
    """Train ``model``'s architecture from the weights ``start`` with ``masks`` fixed."""
    return runner.run(Ticket(masks, start), model, loaders, epochs=epochs, **options)


def iterate(
    dense: runner.Run,
    start: Mapping[str, torch.Tensor],
    model: nn.Module,
    loaders: Any,
    *,
    rounds: int,
    epochs: int,
    rate: float = 0.2,
    output_rate: float | None = None,
    scope: Scope = None,
    **options: Any,
) -> list[Round]:
    """Iterative magnitude pruning from the trained ``dense`` run: each round prunes ``rate`` of
    every layer's survivors (the output layer ``output_rate``, default ``rate / 2``), resets the
    survivors to ``start`` and trains ``epochs``. Returns the dense network and one
    :class:`Round` per pruning round."""
    rounds = check_int(rounds, "rounds", minimum=1)
    names = list(weight_matrices(dense.trained, scope))
    rates = layer_rates(names, rate, output_rate)
    out = [Round(0, dense.sparsity, dense.test_acc, {}, dense)]
    trained, masks = dense.trained, None
    for r in range(1, rounds + 1):
        masks = prune_survivors(trained, masks, rates, scope)
        run = retrain(model, loaders, masks, start, epochs=epochs, **options)
        out.append(Round(r, run.sparsity, run.test_acc, masks, run))
        trained = run.trained
    return out


__all__ = ["Round", "Snapshot", "iterate", "retrain", "train_dense"]
