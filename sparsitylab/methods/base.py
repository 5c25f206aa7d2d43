"""The life cycle every sparsification method of the book fits, and the contract of each phase.

::

    model = method.prepare(model, x)    # attach reparametrisations (masks, thresholds), in place;
                                        # x: an example input (structured methods trace the model)
    method.calibrate(model, loader)     # post-training methods: sparsify from data, no training
    fit(model, loader, epochs, callbacks=[method])  # on_fit_start, penalty, after_step, epoch end
    method.freeze(model)                # optional: fix the structure for fine-tuning …
    fit(model, loader, epochs)          # … and fine-tune without the method's callbacks
    final = method.finalize(model)      # a NEW ordinary model with exact zeros
    small = method.compact(final)       # a NEW smaller dense model, or None (unstructured methods)

Contracts:

- ``prepare``, ``calibrate`` and ``freeze`` change the model **in place** (``prepare`` returns it,
  for chaining);
- ``finalize`` and ``compact`` **never** change their argument: they return new models, so the
  caller's model is never half-changed by a failure. ``finalize``'s result has no reparametrisation
  left and computes the same function as the trained model; ``compact``'s result computes the same
  function as ``finalize``'s.

:func:`sparsitylab.runner.run` drives these phases for any method; the defaults below do nothing
where a method has nothing to do, so each method overrides only its own phases.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import reparam
from ..coverage import coverage
from ..train import Callback, trainable


class Method(Callback):
    """Base class of the sparsification methods (see the module docstring for the life cycle).

    ``name`` is the method's key in :data:`sparsitylab.methods.REGISTRY`; ``structured`` says
    whether :meth:`compact` gives a smaller dense model.
    """

    name: ClassVar[str] = ""
    structured: ClassVar[bool] = False

    def prepare(self, model: nn.Module, example_input: Any = None) -> nn.Module:
        """Attach what the method needs (masks, reparametrisations) before training; in place.

        ``example_input`` (a batch the model accepts) lets structured methods trace the model's
        dependency graph (:mod:`sparsitylab.graph`); the library's own models have a default.
        """
        return model

    def coverage(self, model: nn.Module) -> dict[str, str]:
        """Every parameter → ``"covered"`` or why this method leaves it dense
        (:func:`sparsitylab.coverage.coverage` under the method's ``scope``)."""
        return coverage(model, getattr(self, "scope", None))

    def calibrate(self, model: nn.Module, loader: DataLoader) -> None:
        """Post-training methods sparsify a trained model from data here (in place); others do
        nothing."""

    def param_groups(self, model: nn.Module) -> list[dict]:
        """Optimizer parameter groups: every trainable parameter once; methods with their own
        parameters (thresholds) give them their own group and settings."""
        return [{"params": trainable(model)}]

    @torch.no_grad()
    def freeze(self, model: nn.Module) -> None:
        """Fix the learned structure for fine-tuning (in place).

        Default: every parameter holding zeros — weights, and biases and BatchNorm γ, β — gets a
        fixed mask (:func:`sparsitylab.reparam.apply_masks`), so its zeros stay exact and receive no
        gradient.
        """
        reparam.apply_masks(
            model,
            {
                name: p != 0
                for name, p in model.named_parameters()
                if ".parametrizations." not in name and not bool(p.all())
            },
        )

    def finalize(self, model: nn.Module) -> nn.Module:
        """A new ordinary model with every reparametrisation baked in (exact zeros); ``model`` is
        unchanged."""
        return reparam.remove(reparam.clone(model))

    def state_dict(self) -> dict:
        """The method's own state as plain data, for checkpoints (masks and thresholds live in the
        model)."""
        return {}

    def load_state_dict(self, state: dict) -> None:
        """Restore what :meth:`state_dict` returned."""

    def compact(
        self, model: nn.Module, example_input: torch.Tensor | None = None
    ) -> nn.Module | None:
        """A new smaller dense model computing what ``model`` (a finalized one) computes, or None
        when the method's sparsity is unstructured."""
        return None


__all__ = ["Method"]
