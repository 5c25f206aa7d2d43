"""Coupled groups as SSL groups: the norm of everything one unit of a traced channel group
occupies, and the proximal step that shrinks it (:mod:`sparsitylab.sparsify.groups`, kind
``coupled``).

A unit of a :class:`~sparsitylab.graph.ChannelGroup` occupies slices of several tensors: the rows
(and bias entries) of every weight producing it, the γ and β of the norms on it, the input columns
of every weight reading it. Its group norm is ‖(all of those slices)‖₂ — DepGraph's group norm
(Fang et al., CVPR 2023), derived here, not from SSL. Only parameters count; running statistics
are left alone. Computed for every unit of a group at once (no loop over units).
"""

from __future__ import annotations

import torch
from torch import nn

from ..graph import ChannelGroup, Member


def _tensor(model: nn.Module, member: Member) -> torch.Tensor | None:
    """The member's parameter (its effective value when reparametrised), or None for a buffer."""
    module_name, _, attr = member.tensor.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    if attr in module._buffers:
        return None
    return getattr(module, attr)


def _per_index(t: torch.Tensor, axis: int) -> torch.Tensor:
    """Σ of squares over every axis but ``axis``: one value per index of it."""
    return t.pow(2).movedim(axis, 0).reshape(t.shape[axis], -1).sum(1)


def coupled_squares(model: nn.Module, group: ChannelGroup) -> torch.Tensor:
    """‖w_u‖² for every unit u of ``group`` over all its parameter slices (differentiable)."""
    total = None
    for member in group.members:
        t = _tensor(model, member)
        if t is None:
            continue
        index = group.unit_slices(member).to(t.device)
        part = _per_index(t, member.axis)[index].sum(1)
        total = part if total is None else total + part
    return total if total is not None else torch.zeros(group.size)


@torch.no_grad()
def coupled_alive(model: nn.Module, group: ChannelGroup) -> torch.Tensor:
    """Which units hold a non-zero parameter entry (exact comparison, no squares)."""
    alive = torch.zeros(group.size, dtype=torch.bool)
    for member in group.members:
        t = _tensor(model, member)
        if t is None:
            continue
        nonzero = t.ne(0).movedim(member.axis, 0).reshape(t.shape[member.axis], -1).any(1)
        alive |= nonzero.cpu()[group.unit_slices(member)].any(1)
    return alive


@torch.no_grad()
def scale_coupled_(model: nn.Module, group: ChannelGroup, scale: torch.Tensor) -> None:
    """Multiply every parameter slice of unit u by ``scale[u]`` (in place)."""
    for member in group.members:
        t = _tensor(model, member)
        if t is None:
            continue
        per_index = torch.ones(t.shape[member.axis], device=t.device, dtype=t.dtype)
        index = group.unit_slices(member).to(t.device)
        per_index[index.reshape(-1)] = scale.to(t).repeat_interleave(index.shape[1])
        shape = [1] * t.dim()
        shape[member.axis] = -1
        t.mul_(per_index.view(shape))


__all__ = ["coupled_alive", "coupled_squares", "scale_coupled_"]
