"""The dense baseline as a method: nothing is pruned, so every comparison runs through the same
runner.

Every chapter compares a sparse model with a dense one trained on the same data for the same epochs;
running both with :func:`sparsitylab.runner.run` guarantees they see the same loop and the same data
order.
"""

from __future__ import annotations

from torch import nn

from ..coverage import parameter_names
from . import register
from .base import Method


@register
class Dense(Method):
    """Plain training: the life cycle with every phase empty."""

    name = "dense"

    def coverage(self, model: nn.Module) -> dict[str, str]:
        """Nothing is pruned: every parameter is dense by design."""
        return dict.fromkeys(parameter_names(model), "the dense baseline prunes nothing")


__all__ = ["Dense"]
