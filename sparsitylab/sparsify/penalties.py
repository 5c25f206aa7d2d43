"""Sparsity-inducing penalties and the steps that make their zeros exact.

SSL's objective (Wen et al., NIPS 2016, https://arxiv.org/abs/1608.03665), in the book's notation
(the loss L, L_D for the paper's E, E_D; τ a group *type* — filter, channel, shape, neuron,
depth —, g one group of it)::

    L(W) = L_D(W) + λ·R(W) + Σ_τ λ_τ Σ_l R_τ(W^(l)),     R_τ(W^(l)) = Σ_g ‖w^(g)‖₂

R is a non-structured term (ℓ2 = weight decay, or ℓ1 for the unstructured baseline) and R_τ the
group lasso over the groups of one type (:mod:`sparsitylab.sparsify.groups`). SGD on R_τ adds
λ_τ · w^(g)/‖w^(g)‖₂ to the gradient (subgradient 0 at ‖w^(g)‖ = 0). Two ways to get *exact* zeros:

- :func:`zero_small_` — the paper's practice: after **every** update set |w| < 1e-4 to 0;
- :func:`prox_group_` — the proximal step of group lasso (block soft-threshold, derived — not from
  the paper), w^(g) ← max(0, 1 − θ_τ/‖w^(g)‖) · w^(g), which zeroes a whole group at once when
  ‖w^(g)‖ ≤ θ_τ. For plain SGD the threshold is θ_τ = η·λ_τ; under heavy-ball momentum μ SSL uses
  θ_τ = η·λ_τ/(1 − μ) (:meth:`sparsitylab.methods.ssl.SSL.prox_step_size`), ten times η·λ_τ at
  μ = 0.9. These functions take θ_τ as given.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence

import torch
from torch import nn

from .._checks import check_real
from ..coverage import all_matrices
from ..train import Callback
from .coupled import scale_coupled_
from .groups import (
    Coupling,
    check_kind,
    following_batchnorm,
    group_norms,
    group_squares,
    row_parameters,
    safe_norm,
    select_layers,
)

ZEROUT_THRESHOLD = 1e-4


def check_strengths(strengths: Mapping[str, float]) -> dict[str, float]:
    """Validate ``{group kind: λ_τ ≥ 0}``."""
    return {
        check_kind(kind): check_real(lam, f"strengths[{kind!r}]", minimum=0.0)
        for kind, lam in strengths.items()
    }


def check_layers(
    layers: Mapping[str, Sequence[str]] | None, strengths: Mapping[str, float]
) -> dict[str, list[str]]:
    """Validate ``{group kind: module names}``: every kind must be one the penalty uses (a misspelt
    kind would otherwise leave the penalty on every layer); the names are checked against the model
    on use."""
    layers = dict(layers or {})
    for kind, names in layers.items():
        if kind not in strengths:
            raise ValueError(
                f"layers has a key {kind!r} that is not a penalised group kind; penalised: "
                f"{sorted(strengths)}"
            )
        if isinstance(names, str):
            raise TypeError(
                f"layers[{kind!r}]={names!r} must be a list of module names, not a string"
            )
    return {kind: list(names) for kind, names in layers.items()}


def group_lasso(
    model: nn.Module, kind: str, layers: list[str] | None = None, coupling: Coupling | None = None
) -> torch.Tensor:
    """R_τ = Σ_l Σ_g ‖w^(g)‖₂ for one group kind τ."""
    norms = group_norms(model, kind, layers, coupling)
    return torch.stack([n.sum() for n in norms.values()]).sum() if norms else torch.zeros(())


def l1_penalty(model: nn.Module) -> torch.Tensor:
    """R = Σ |w| over every weight matrix (the unstructured ℓ1 baseline); ``ValueError`` when the
    model has none."""
    matrices = all_matrices(model)
    if not matrices:
        raise ValueError(
            f"{type(model).__name__} has no weight matrix (Linear, convolution, attention or "
            "recurrent weight) for an ℓ1 penalty"
        )
    return torch.stack([w.tensor.abs().sum() for w in matrices.values()]).sum()


@torch.no_grad()
def zero_small_(model: nn.Module, threshold: float = ZEROUT_THRESHOLD) -> int:
    """Set every parameter entry with |w| < ``threshold`` to exactly 0 (SSL's ZEROUT); return how
    many are 0."""
    check_real(threshold, "threshold", minimum=0.0)
    zeros = 0
    for p in model.parameters():
        p.masked_fill_(p.abs() < threshold, 0.0)
        zeros += p.numel() - int(p.count_nonzero())
    return zeros


def _scale_rows_(layer: nn.Module, bn: nn.Module | None, scale: torch.Tensor) -> None:
    """Scale each output unit's whole group: its weight row and the tensors it owns
    (:func:`~sparsitylab.sparsify.groups.row_parameters`)."""
    layer.weight.mul_(scale.view(-1, *([1] * (layer.weight.dim() - 1))))
    for p in row_parameters(layer, bn):
        p.mul_(scale)


@torch.no_grad()
def prox_group_(
    model: nn.Module,
    kind: str,
    step: float,
    layers: list[str] | None = None,
    coupling: Coupling | None = None,
) -> None:
    """Block soft-threshold every group of ``kind``: w^(g) ← max(0, 1 − step/‖w^(g)‖) · w^(g).
    ``step`` is the threshold θ_τ: η·λ_τ for plain SGD, η·λ_τ/(1 − μ) as SSL calls it under
    momentum μ."""
    check_real(step, "step", minimum=0.0)
    modules = select_layers(model, kind, layers, coupling)
    bns = following_batchnorm(model, coupling)
    for name, sq in group_squares(model, kind, layers, coupling).items():
        norm = safe_norm(sq)
        scale = torch.where(
            norm > step,
            1 - step / torch.where(norm > 0, norm, torch.ones_like(norm)),
            torch.zeros_like(norm),
        )
        m = modules[name]
        if kind in ("filter", "neuron_out"):
            _scale_rows_(m, bns.get(m), scale)
        elif kind == "channel":
            m.weight.mul_(scale.view(1, -1, 1, 1))
        elif kind == "neuron_in":
            m.weight.mul_(scale.view(1, -1))
        elif kind == "shape":
            m.weight.mul_(scale.view(1, *m.weight.shape[1:]))
        elif kind == "coupled":
            scale_coupled_(model, m, scale)
        else:
            for p in m.branch.parameters():
                p.mul_(scale)


@torch.no_grad()
def prox_l1_(model: nn.Module, step: float) -> None:
    """Element-wise soft-threshold of every Linear/Conv2d weight: w ← sign(w)·max(0, |w| − step).
    ``step`` is the threshold: η·λ for plain SGD, η·λ/(1 − μ) as SSL calls it under momentum μ."""
    check_real(step, "step", minimum=0.0)
    for w in all_matrices(model).values():
        t = w.tensor
        t.copy_(torch.sign(t) * (t.abs() - step).clamp_min(0))


class StructuredPenalty(Callback):
    """λ·R + Σ_τ λ_τ·R_τ as a training :class:`Callback`, with the paper's 1e-4 zeroing after every
    step.

    strengths: {group kind: λ_τ}. ``l1``: λ of an ℓ1 term R (the unstructured baseline; ℓ2 is the
    optimizer's weight decay). ``layers``: {group kind: module names} to restrict a kind.
    ``threshold``: ZEROUT threshold (None = no zeroing). ``coupling``: the traced graph's
    BatchNorms and coupled groups (:class:`~sparsitylab.sparsify.groups.Coupling`), set by SSL.
    """

    def __init__(
        self,
        strengths: Mapping[str, float],
        l1: float = 0.0,
        layers: Mapping[str, list[str]] | None = None,
        threshold: float | None = ZEROUT_THRESHOLD,
    ):
        self.strengths = check_strengths(strengths)
        self.l1 = check_real(l1, "l1", minimum=0.0)
        self.layers = check_layers(layers, self.strengths)
        self.threshold = (
            None if threshold is None else check_real(threshold, "threshold", minimum=0.0)
        )
        self.coupling: Coupling | None = None  # set from a traced graph (SSL.prepare)

    def penalty(self, model: nn.Module) -> torch.Tensor | float:
        total: torch.Tensor | float = self.l1 * l1_penalty(model) if self.l1 else 0.0
        for kind, lam in self.strengths.items():
            if lam:
                total = total + lam * group_lasso(model, kind, self.layers.get(kind), self.coupling)
        return total

    def after_step(self, model: nn.Module, step: int) -> None:
        if self.threshold is not None:
            zero_small_(model, self.threshold)


__all__ = [
    "ZEROUT_THRESHOLD",
    "StructuredPenalty",
    "check_layers",
    "check_strengths",
    "group_lasso",
    "l1_penalty",
    "prox_group_",
    "prox_l1_",
    "zero_small_",
]
