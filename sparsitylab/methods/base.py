"""The interface every sparsification method shares: prepare → train (callbacks) → finalize.

A method is a :class:`~sparsitylab.train.Callback`, so during :func:`~sparsitylab.train.fit` it can
add ``penalty(model)`` to the loss and act in ``after_step(model, step)``.
"""

from __future__ import annotations

from torch import nn

from ..train import Callback


class Method(Callback):
    """Base class: override what the method needs; the defaults do nothing."""

    def prepare(self, model: nn.Module) -> nn.Module:
        """Attach what the method needs (masks, reparametrisations) before training."""
        return model

    def finalize(self, model: nn.Module) -> nn.Module:
        """Make the result permanent (bake masks in, compact) after training."""
        return model
