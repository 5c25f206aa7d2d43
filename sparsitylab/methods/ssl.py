"""SSL: Structured Sparsity Learning by group lasso (Wen et al., NIPS 2016,
https://arxiv.org/abs/1608.03665).

Life cycle on the shared :class:`~sparsitylab.methods.base.Method` interface::

    ssl = SSL({"filter": 5e-3, "shape": 5e-3})                    # λ_τ per group kind
    run = runner.run(ssl, model, loaders, epochs=2, finetune_epochs=1)
    # training: E_D + λ·R + Σ_τ λ_τ R_τ; freeze(): fix the learned zeros; fine-tune without the
    # penalty; finalize(): bake the masks in; compact(): the smaller dense model with the same
    # outputs

Exact zeros come either from the paper's rule (``exact="zero"``: |w| < 1e-4 → 0 after every update)
or from a proximal block soft-threshold after every update (``exact="prox"``; derived — not from the
paper). The proximal step reads the learning rate η and momentum μ of the optimizer that steps
(bound when training starts): the threshold is η·λ_τ/(1 − μ), as far as the gradient form moves a
group per step, so one λ means the same in both modes.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import torch
from torch import nn

from .._checks import check_choice
from ..coverage import parameter_names, structured_coverage
from ..deploy.compaction import compact, default_input
from ..sparsify.groups import Coupling, select_layers
from ..sparsify.penalties import ZEROUT_THRESHOLD, StructuredPenalty, prox_group_, prox_l1_
from . import register
from .base import Method

EXACT_MODES = ("zero", "prox")


@register
class SSL(Method):
    """Group-lasso training with exact zeros, structure freezing for fine-tuning, and compaction.

    strengths: {group kind: λ_τ} (kinds of :mod:`sparsitylab.sparsify.groups`; ``"coupled"``: the
    traced graph's coupled groups, on any model). ``l1``: λ of the ℓ1 term R. layers: {kind: names}
    to restrict a kind. exact: "zero" (paper) or "prox". threshold: the ZEROUT threshold of
    ``exact="zero"`` (None = plain (sub)gradient descent, no zeroing).

    ``prepare`` traces the model once on its example input (the library's models have a default):
    a filter group owns the BatchNorm its layer feeds on any model, and compaction removes every
    zero group however the model couples it.
    """

    name = "ssl"
    structured = True

    def __init__(
        self,
        strengths: Mapping[str, float],
        l1: float = 0.0,
        layers: Mapping[str, Sequence[str]] | None = None,
        exact: str = "zero",
        threshold: float | None = ZEROUT_THRESHOLD,
    ):
        self.exact = check_choice(exact, "exact", EXACT_MODES)
        self.objective = StructuredPenalty(
            strengths, l1, layers, threshold if exact == "zero" else None
        )
        self.optimizer: torch.optim.Optimizer | None = None
        self.frozen = False
        self.example: Any = None

    def prepare(self, model: nn.Module, example_input: Any = None) -> nn.Module:
        """Trace the model (its BatchNorms and coupled groups) and check every penalised kind has
        groups on it; the model itself is not changed."""
        self.example = default_input(model) if example_input is None else example_input
        self.objective.coupling = Coupling.of(model, self.example)
        for kind in self.objective.strengths:
            select_layers(model, kind, self.objective.layers.get(kind), self.objective.coupling)
        return model

    def coverage(self, model: nn.Module) -> dict[str, str]:
        """The parameters of every penalised group are covered."""
        coupling, members = self.objective.coupling, set()
        names = set(parameter_names(model))
        for kind in self.objective.strengths:
            layers = self.objective.layers.get(kind)
            for name, carrier in select_layers(model, kind, layers, coupling).items():
                if kind == "coupled":
                    members |= {m.tensor for m in carrier.members}
                else:
                    prefix = f"{name}." if name else ""
                    members |= {n for n in names if n.startswith(prefix)}
        return structured_coverage(model, members)

    def on_fit_start(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> None:
        self.optimizer = optimizer
        if self.exact == "prox" and not self.frozen:
            self.prox_step_size()  # refuse now an optimizer the proximal step cannot follow

    def penalty(self, model: nn.Module) -> torch.Tensor | float:
        if self.frozen or self.exact == "prox":  # prox: every term is a proximal step in after_step
            return 0.0
        return self.objective.penalty(model)

    @torch.no_grad()
    def after_step(self, model: nn.Module, step: int) -> None:
        if self.frozen:
            return  # the fixed masks keep the structure exact
        if self.exact == "zero":
            self.objective.after_step(model, step)
            return
        size = self.prox_step_size()
        coupling = self.objective.coupling
        for kind, lam in self.objective.strengths.items():
            prox_group_(model, kind, size * lam, self.objective.layers.get(kind), coupling)
        if self.objective.l1:
            prox_l1_(model, size * self.objective.l1)
        self._clear_momentum_of_zeros()

    def prox_step_size(self) -> float:
        """η/(1 − μ): under heavy-ball momentum μ a steady gradient moves a weight η/(1 − μ) per
        step, so this step shrinks a group as fast as the penalty's gradient would in
        ``exact="zero"`` (derived)."""
        if self.optimizer is None:
            raise RuntimeError(
                "exact='prox' reads the learning rate of the optimizer that steps; SSL binds it "
                "when training starts (train.fit calls on_fit_start)"
            )
        group = self.optimizer.param_groups[0]
        momentum = group.get("momentum", 0.0)
        if not 0.0 <= momentum < 1.0:
            raise ValueError(
                f"exact='prox' needs the optimizer's momentum in [0, 1) (its step size is "
                f"η/(1 − μ)); got momentum={momentum}"
            )
        return group["lr"] / (1.0 - momentum)

    @torch.no_grad()
    def _clear_momentum_of_zeros(self) -> None:
        """Zeroed groups forget their SGD momentum, else the stale velocity revives them next step
        (derived)."""
        for group in self.optimizer.param_groups:
            for p in group["params"]:
                buffer = self.optimizer.state.get(p, {}).get("momentum_buffer")
                if buffer is not None:
                    buffer.mul_(p != 0)

    def freeze(self, model: nn.Module) -> None:
        """Fix the learned structure (every zero of every parameter gets a fixed mask); the penalty
        is off from now on."""
        super().freeze(model)
        self.frozen = True

    def state_dict(self) -> dict:
        return {"frozen": self.frozen}

    def load_state_dict(self, state: dict) -> None:
        self.frozen = bool(state["frozen"])

    def compact(self, model: nn.Module, example_input: torch.Tensor | None = None) -> nn.Module:
        """The compacted dense model (:func:`sparsitylab.deploy.compaction.compact`) of a finalized
        model."""
        example = example_input if example_input is not None else self.example
        return compact(model, example_input=example)


__all__ = ["EXACT_MODES", "SSL"]
