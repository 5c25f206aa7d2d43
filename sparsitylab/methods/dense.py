"""The dense baseline as a method: nothing is pruned, so every comparison runs through the same
runner.

Every chapter compares a sparse model with a dense one trained on the same data for the same epochs;
running both with :func:`sparsitylab.runner.run` guarantees they see the same loop and the same data
order.
"""

from __future__ import annotations

from . import register
from .base import Method


@register
class Dense(Method):
    """Plain training: the life cycle with every phase empty."""

    name = "dense"


__all__ = ["Dense"]
