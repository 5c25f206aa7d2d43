"""The lottery ticket's two pieces: pruning the survivors of a trained network, and restarting a
masked network from chosen weights.

Frankle & Carbin (ICLR 2019, https://arxiv.org/abs/1803.03635): train → prune p % of each layer's
surviving weights by |w| (20 % in their small networks, the output layer at half that rate) →
reset the survivors to their initial values W₀ → repeat. Rewinding (Frankle, Dziugaite, Roy &
Carbin, ICML 2020, https://arxiv.org/abs/1912.05671) resets to W_t, the weights after t steps of
the dense run, instead (the papers write θ₀ and θ_k; the book writes W for the weights, t for
the step). The control: the same mask from a fresh random initialisation.

- :func:`prune_survivors` — one pruning round (exact counts; pruned weights never come back);
- :class:`Ticket` — a method whose ``prepare`` loads the start weights and applies the mask; the
  runner then trains it with the mask fixed. :func:`sparsitylab.lottery.iterate` drives the rounds.
"""

from __future__ import annotations

import copy
from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .. import reparam
from .._checks import check_real
from ..coverage import Scope, check_scope, weight_matrices
from ..sparsify.masks import _keep_flat, pruned_count
from .base import Method


def layer_rates(
    names: list[str], rate: float, output_rate: float | None = None
) -> dict[str, float]:
    """Per-round pruning rate of each layer: ``rate``, the last (output) layer ``output_rate``
    (default ``rate / 2``, Frankle & Carbin's convention)."""
    rate = check_real(rate, "rate", 0.0, 1.0, open_max=True)
    last = rate / 2 if output_rate is None else output_rate
    last = check_real(last, "output_rate", 0.0, 1.0, open_max=True)
    return {n: (last if i == len(names) - 1 else rate) for i, n in enumerate(names)}


@torch.no_grad()
def prune_survivors(
    model: nn.Module,
    masks: Mapping[str, torch.Tensor] | None,
    rates: Mapping[str, float],
    scope: Scope = None,
) -> dict[str, torch.Tensor]:
    """New keep-masks: each layer loses ``pruned_count(survivors, rate)`` of its surviving weights,
    the smallest |w| of the trained ``model`` (ties: the later index goes). ``masks`` None: all
    weights survive (the first round). Pruned weights rank below every survivor, so they stay
    pruned."""
    matrices = weight_matrices(model, check_scope(scope))
    new = {}
    for name, rate in rates.items():
        weight = matrices[name].tensor.detach()
        alive = torch.ones_like(weight, dtype=torch.bool) if masks is None else masks[name]
        scores = torch.where(alive, weight.abs().float(), torch.tensor(-1.0))
        survivors = int(alive.sum())
        n_prune = weight.numel() - survivors + pruned_count(survivors, rate)
        if n_prune >= weight.numel():
            raise ValueError(
                f"rate={rate} would prune the last weights of layer {name!r} ({survivors} left)"
            )
        new[name] = _keep_flat(scores.reshape(-1), n_prune).reshape(weight.shape)
    return new


def reinitialised(model: nn.Module, seed: int) -> dict[str, torch.Tensor]:
    """The weights of a fresh initialisation of ``model``'s architecture (every module's own
    ``reset_parameters``, under ``seed``): the random re-initialisation control."""
    fresh = copy.deepcopy(model)
    state = torch.random.get_rng_state()
    torch.manual_seed(seed)
    try:
        for module in fresh.modules():
            if hasattr(module, "reset_parameters"):
                module.reset_parameters()
    finally:
        torch.random.set_rng_state(state)
    return {k: v.detach().clone() for k, v in fresh.state_dict().items()}


class Ticket(Method):
    """Train ``masks`` (layer name → keep-mask) from the weights ``start`` (a plain model's
    ``state_dict``: W₀, W_t or a re-initialisation); the masks stay fixed (pruned weights exactly
    zero)."""

    name = "ticket"

    def __init__(self, masks: Mapping[str, torch.Tensor], start: Mapping[str, torch.Tensor]):
        if not masks:
            raise ValueError("masks is empty: a ticket needs at least one masked layer")
        self.masks = {n: m.detach().to(torch.bool).clone() for n, m in masks.items()}
        self.start = {k: v.detach().clone() for k, v in start.items()}

    def prepare(self, model: nn.Module, example_input: Any = None) -> nn.Module:
        """Load ``start`` (plain keys), then apply the masks (in place)."""
        if reparam.find(model):
            raise ValueError("Ticket.prepare needs a plain model (no reparametrisation yet)")
        model.load_state_dict(self.start)
        device = next(model.parameters()).device
        return reparam.apply_masks(model, {n: m.to(device) for n, m in self.masks.items()})

    def freeze(self, model: nn.Module) -> None:
        """Nothing to do: the masks are fixed."""


__all__ = ["Ticket", "layer_rates", "prune_survivors", "reinitialised"]
