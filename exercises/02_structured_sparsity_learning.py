"""Exercises for the chapter "Structured Sparsity Learning: group lasso, compaction, and real
speed".

Replace each ``raise NotImplementedError`` with your code, then grade your work with

    python exercises/grade.py 02_structured_sparsity_learning

Use plain PyTorch; the library's own functions (``sparsitylab.sparsify.groups``,
``sparsitylab.sparsify.penalties``, ``sparsitylab.methods.ssl``, ``sparsitylab.deploy.compaction``)
are what the grader compares you with, so do not call them here. Throughout, ``weight`` is a conv
weight W of shape (N, C, kh, kw) — filter n, channel c, kernel row m, kernel column k — whose GEMM
view is the N × (C·kh·kw) matrix ``W.flatten(1)``, and a group kind is one of

- ``"filter"``: W[n, :, :, :], a row of the GEMM view (N groups);
- ``"channel"``: W[:, c, :, :], a block of kh·kw columns (C groups);
- ``"shape"``: W[:, c, m, k], one column (C·kh·kw groups, in the column order (c, m, k)).

In exercises 1–3 the layer has no bias and no BatchNorm, so a group is just those weights
(the library's filter groups also own a bias and the γ, β of a following BatchNorm).
"""

from __future__ import annotations

import torch


def group_norms(weight: torch.Tensor, kind: str) -> torch.Tensor:
    """Exercise 1. The ℓ2 norm ‖w_g‖₂ of every group of ``kind`` of the conv ``weight``: a 1-D
    tensor with one entry per group, in group order (filters by n, channels by c, shapes by GEMM
    column). No Python loops over groups."""
    raise NotImplementedError("exercise 1: group norms")


def prox_group(weight: torch.Tensor, kind: str, threshold: float) -> torch.Tensor:
    """Exercise 2. The proximal step of group lasso (block soft-threshold) with threshold t = η·λ:

        w_g ← max(0, 1 − t/‖w_g‖₂) · w_g

    applied to every group of ``kind``. A group with ‖w_g‖₂ ≤ t becomes exactly zero (all of
    it); a zero group stays zero (no division by 0, no NaN). Return a new tensor of ``weight``'s
    shape; do not modify ``weight``.
    """
    raise NotImplementedError("exercise 2: the proximal group-lasso step")


def dying_groups(
    weight: torch.Tensor, kind: str, lr: float, lam: float, momentum: float
) -> torch.Tensor:
    """Exercise 3. Which groups one proximal step of SSL (``exact="prox"``) zeroes.

    Trained with SGD of learning rate η = ``lr`` and heavy-ball momentum μ = ``momentum``, a
    steady gradient moves a weight η/(1 − μ) per step, so SSL's proximal step uses the threshold
    t = η/(1 − μ) · λ (λ = ``lam``, the group's strength). Return a boolean tensor, one entry per
    group of ``kind`` in group order: True where the group is zero after the step (‖w_g‖₂ ≤ t).
    """
    raise NotImplementedError("exercise 3: the groups that die")


def compacted_macs(weight: torch.Tensor, bias: torch.Tensor | None, positions: int) -> int:
    """Exercise 4. The MACs per sample of a layer once compaction removed its dead rows and
    columns.

    ``weight`` is the weight of a Linear (out, in) or Conv2d (N, C, kh, kw) layer, ``bias`` its
    bias (or None) and ``positions`` its output positions per sample (H_out·W_out; 1 for Linear).
    In the GEMM view, a row (an output neuron or filter) is removed when its weights and its bias
    are all exactly zero (assume the next layer reads every output), and a column (an input
    feature, or a shape fibre) when it is zero in every row. The compacted layer is a dense
    rows' × columns' GEMM at every position: return positions · rows' · columns' as a Python int.
    """
    raise NotImplementedError("exercise 4: the MACs after compaction")
