"""Unit labels: which prunable *unit* each index of a tensor belongs to.

Every axis of every parameter and buffer starts with fresh unit ids (one per index). As the model's
ATen ops run, the ids travel with the data: a ``Labeling`` says, for the dims it covers, which unit
each position belongs to (constant along every other dim). Ops that make two positions inseparable
(the two operands of an add, a weight's input columns and the activations they multiply, q and k of
one attention head) *link* their ids; at the end the connected components of the links are the
units a structured method can remove together (:mod:`sparsitylab.graph.groups`).

A labeling also carries ``nz``: whether the unit's value *may be non-zero* at that position, derived
statically from the parameters (a zero weight row produces zeros, ReLU keeps them, a BatchNorm with
γ = β = 0 emits zeros). Compaction uses it to find the units that are exactly zero where they are
read. Id ``-1`` marks a position that belongs to no unit (data, padding): linking a unit to it pins
the unit (:data:`PIN`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch

PIN = 0  # the unit id every unit that cannot be removed is linked to
UNLABELED = -1  # a position that belongs to no unit


@dataclass
class Labeling:
    """Unit ids (int64) and may-be-non-zero flags (bool) over ``dims`` of a tensor (ascending);
    constant along the tensor's other dims. ``ids.shape == nz.shape == [size of d for d in dims]``.
    """

    dims: tuple[int, ...]
    ids: torch.Tensor
    nz: torch.Tensor

    def map(self, fn: Callable[[torch.Tensor], torch.Tensor], dims: Sequence[int]) -> Labeling:
        """The same transform applied to ids and flags, now over ``dims``."""
        return Labeling(tuple(dims), fn(self.ids), fn(self.nz))

    def full(self, shape: Sequence[int]) -> tuple[torch.Tensor, torch.Tensor]:
        """ids and flags materialised over the whole tensor ``shape``."""
        view = [shape[d] if d in self.dims else 1 for d in range(len(shape))]
        return (
            self.ids.reshape(view).expand(tuple(shape)),
            self.nz.reshape(view).expand(tuple(shape)),
        )


def axis_labeling(ids: torch.Tensor, nz: torch.Tensor, axis: int) -> Labeling:
    """A labeling along one axis."""
    return Labeling((axis,), ids, nz)


def over(lab: Labeling, dims: Sequence[int], shape: Sequence[int]) -> Labeling:
    """``lab`` expanded to cover ``dims`` (a superset of its own) of a tensor of ``shape``."""
    dims = tuple(sorted(dims))
    view = [shape[d] if d in lab.dims else 1 for d in dims]
    sizes = [shape[d] for d in dims]
    return Labeling(
        dims,
        lab.ids.reshape(view).expand(sizes).contiguous(),
        lab.nz.reshape(view).expand(sizes).contiguous(),
    )


def canonical(lab: Labeling) -> Labeling | None:
    """Drop the dims along which ids and flags are constant; None when nothing is labeled."""
    if bool((lab.ids == UNLABELED).all()):
        return None
    ids, nz, dims = lab.ids, lab.nz, list(lab.dims)
    for position in reversed(range(len(dims))):
        first_ids, first_nz = ids.narrow(position, 0, 1), nz.narrow(position, 0, 1)
        if ids.shape[position] == 1 or (
            bool((ids == first_ids).all()) and bool((nz == first_nz).all())
        ):
            ids, nz = first_ids.squeeze(position), first_nz.squeeze(position)
            del dims[position]
    return Labeling(tuple(dims), ids, nz)


def from_full(ids: torch.Tensor, nz: torch.Tensor) -> Labeling | None:
    """A canonical labeling from ids and flags given over every dim of a tensor."""
    return canonical(Labeling(tuple(range(ids.dim())), ids, nz))


def broadcast(lab: Labeling, shape: Sequence[int], out_shape: Sequence[int]) -> Labeling:
    """``lab`` of a tensor of ``shape`` seen in the broadcast result of ``out_shape``."""
    shift = len(out_shape) - len(shape)
    dims = tuple(d + shift for d in lab.dims)
    sizes = [out_shape[d] for d in dims]
    return Labeling(
        dims,
        lab.ids.expand(sizes).contiguous() if lab.ids.shape != tuple(sizes) else lab.ids,
        lab.nz.expand(sizes).contiguous() if lab.nz.shape != tuple(sizes) else lab.nz,
    )


def clusters(labelings: list[Labeling]) -> list[list[Labeling]]:
    """Labelings grouped by overlapping dims (transitively): each group must be unified."""
    groups: list[tuple[set[int], list[Labeling]]] = []
    for lab in labelings:
        dims, members = set(lab.dims), [lab]
        keep = []
        for other_dims, other in groups:
            if other_dims & dims:
                dims |= other_dims
                members = other + members
            else:
                keep.append((other_dims, other))
        groups = [*keep, (dims, members)]
    return [members for _, members in groups]


def merge_along(
    lab: Labeling, merged: Sequence[int], link: Callable[[torch.Tensor, torch.Tensor], None]
) -> Labeling | None:
    """Collapse ``merged`` dims: every id along them is linked to the first one (one unit per
    position of the remaining dims); flags are OR-ed. None when no dim remains."""
    keep = [d for d in lab.dims if d not in merged]
    positions = [lab.dims.index(d) for d in merged if d in lab.dims]
    if not positions:
        return lab
    order = [lab.dims.index(d) for d in keep] + positions
    ids = lab.ids.permute(order).reshape(*[lab.ids.shape[lab.dims.index(d)] for d in keep], -1)
    nz = lab.nz.permute(order).reshape(ids.shape)
    first = ids[..., :1].expand_as(ids)
    link(first.reshape(-1), ids.reshape(-1))
    if not keep:
        return None
    return Labeling(tuple(keep), ids[..., 0].contiguous(), nz.any(-1))


__all__ = [
    "PIN",
    "UNLABELED",
    "Labeling",
    "axis_labeling",
    "broadcast",
    "canonical",
    "clusters",
    "from_full",
    "merge_along",
    "over",
]
