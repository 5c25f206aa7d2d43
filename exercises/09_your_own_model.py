"""Exercises for the chapter "Your own model: the dependency graph, every method, and exact
compaction".

Replace each ``raise NotImplementedError`` with your code, then grade your work with

    python exercises/grade.py 09_your_own_model

A coupled group (``sparsitylab.graph.ChannelGroup``) is data: ``group.members`` lists
``Member(tensor, axis, role)`` and ``group.index[(tensor, axis)]`` is a (units, k) long tensor —
unit u occupies indices ``index[...][u]`` along that axis. Use torch; the grader compares you with
``sparsitylab.methods.channels`` and ``sparsitylab.deploy.surgery``, so do not call them here.
"""

from __future__ import annotations

import torch


def producer_norms(group, tensors: dict[str, torch.Tensor]) -> torch.Tensor:
    """Exercise 1. One importance per unit of ``group``: the ℓ2 norm of everything that produces
    it — for every member with role ``"produces"``, the unit's slices of that tensor (all other
    axes included) — summed over producers before the square root. ``tensors`` maps a tensor name
    to its value. (A residual stage's channel is produced by several convolutions: all count.)"""
    raise NotImplementedError("exercise 1: a unit's importance over its coupled producers")


def removal_masks(group, shapes: dict[str, tuple[int, ...]], removed: torch.Tensor) -> dict:
    """Exercise 2. For every member tensor of ``group``: a boolean keep-mask of its shape
    (``shapes[name]``), False on every slice of the units flagged True in ``removed`` (one bool per
    unit) along the member's axis, True elsewhere. A tensor that is a member twice (two axes) gets
    one mask with both. Return {tensor name: mask}."""
    raise NotImplementedError("exercise 2: the masks that remove units from every tensor")


def speedup_report(
    masked_s: float, compacted_s: float, dense_macs: int, compacted_macs: int
) -> tuple[float, float, float]:
    """Exercise 3. (measured speedup, ideal speedup, efficiency): the masked model's time over the
    compacted one's; the ideal is the MAC ratio dense / compacted; the efficiency is the fraction
    of the ideal the measurement reaches. Non-positive times or MACs raise ValueError."""
    raise NotImplementedError("exercise 3: the speedup a compaction buys, against its ideal")


def covered_share(coverage: dict[str, str], sizes: dict[str, int]) -> float:
    """Exercise 4. The share of a model's parameters (counted in entries, ``sizes[name]``) that a
    method covers: ``coverage[name] == "covered"``. Every name of ``coverage`` is in ``sizes``; an
    empty model raises ValueError."""
    raise NotImplementedError("exercise 4: the share of the parameters a method covers")
