"""Rules for ops that only move data: views, permutes, slices, pads, indexing, cat and stack.

Where each output element comes from is found by running the op itself on a *probe* — a tensor of
the input's shape holding each element's flat position — so every movement op (and any new one)
maps labels exactly. What the probe cannot tell is whether the op still does the right thing once
units are removed, which depends on the constants in the model's code:

- positions taken by a fixed index (``x[:, 3]``, ``x[:, :16]``, a pad, a gather) would shift, so the
  units in front of them are pinned;
- a dim split into equal pieces (a reshape into heads, ``chunk``, ``split``) must stay rectangular:
  either whole rows (heads) go, or the same column of every row (:meth:`Tracer.rect`);
- ``cat`` and ``stack`` need every input equally wide on the other dims: those labels are linked.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .labels import UNLABELED, Labeling, broadcast, clusters, from_full, merge_along, over
from .tracer import State, Tracer

COPIES = ("alias", "detach", "clone", "_to_copy", "contiguous", "lift_fresh", "lift_fresh_copy")
POSITIONAL = (
    "select",
    "index_select",
    "index",
    "gather",
    "roll",
    "unfold",
    "diagonal",
    "take",
    "as_strided",
    "pixel_shuffle",
    "pixel_unshuffle",
)
SPLITS = ("split", "unsafe_split", "split_with_sizes", "unsafe_split_with_sizes", "tensor_split")
MOVES = (
    "view",
    "_unsafe_view",
    "reshape",
    "_reshape_alias",
    "view_copy",
    "permute",
    "transpose",
    "t",
    "unsqueeze",
    "squeeze",
    "expand",
    "slice",
    "narrow",
    "unbind",
    "constant_pad_nd",
    "flip",
    "repeat",
    "movedim",
    "channel_shuffle",
    *COPIES,
    *POSITIONAL,
    *SPLITS,
)


def _dim(dim: int, ndim: int) -> int:
    return dim + ndim if dim < 0 else dim


def mapped(lab: Labeling, shape: Sequence[int], probe: torch.Tensor) -> Labeling | None:
    """The labeling of an op's output, given the probe output (flat input positions, −1 for
    padding)."""
    ids, nz = (x.reshape(-1) for x in lab.full(shape))
    flat = probe.reshape(-1).long()
    padded = flat < 0
    safe = flat.clamp_min(0)
    out_ids = torch.where(padded, torch.full_like(safe, UNLABELED), ids[safe])
    out_nz = torch.where(padded, torch.zeros_like(padded), nz[safe])
    return from_full(out_ids.view(probe.shape), out_nz.view(probe.shape))


def _probe(func, x: torch.Tensor, args: tuple, kwargs: dict, name: str):
    positions = torch.arange(x.numel()).view(x.shape)
    rest = list(args[1:])
    if name == "constant_pad_nd":
        rest = [rest[0], -1]
        kwargs = {}
    return func(positions, *rest, **kwargs)


def _pin_along(ctx: Tracer, state: State, dim: int, upto: int | None, why: str) -> None:
    """``dim`` must keep its size: a labeling over ``dim`` alone has the units at positions
    [0, upto) pinned (all when ``upto`` is None); one that also spans other dims is merged along
    ``dim`` (its units then span the dim whole, so removing them never changes its size)."""
    for lab in state.labelings:
        if dim not in lab.dims:
            continue
        if lab.dims != (dim,):
            merge_along(lab, [dim], ctx.link)
            continue
        size = lab.ids.shape[0]
        stop = size if upto is None else max(0, min(upto, size))
        ctx.pin(lab.ids[:stop], f"{why} in {ctx.where}")


def _pieces(ctx: Tracer, state: State, dim: int, count: int) -> None:
    """``dim`` is cut into ``count`` equal pieces: register the rectangular constraint."""
    for lab in state.labelings:
        if dim in lab.dims and count > 1:
            axis = lab.dims.index(dim)
            ids = lab.ids.movedim(axis, -1)
            size = ids.shape[-1]
            ctx.rect(ids.reshape(*ids.shape[:-1], count, size // count))


def _pads_labeled(state: State, ndim: int, pad: Sequence[int]) -> bool:
    """Whether a constant pad touches a labeled dim (a pad of positions keeps the channels)."""
    return any(
        (pad[k] or pad[k + 1]) and _labeled(state, ndim - 1 - k // 2) for k in range(0, len(pad), 2)
    )


def _labeled(state: State, dim: int) -> bool:
    return any(dim in lab.dims for lab in state.labelings)


def reshape_splits(src: Sequence[int], dst: Sequence[int]) -> dict[int, list[int] | None]:
    """For each input dim, the sizes of the inner blocks a reshape cuts it into ([] when it is
    kept whole or merged; None when the cut does not align with its positions)."""
    src_strides = [math.prod(src[i + 1 :]) for i in range(len(src))]
    dst_strides = {math.prod(dst[j + 1 :]) for j in range(len(dst))}
    cuts: dict[int, list[int] | None] = {}
    for i, size in enumerate(src):
        low, high = src_strides[i], src_strides[i] * size
        inside = sorted(t for t in dst_strides if low < t < high)
        if any(t % low for t in inside):
            cuts[i] = None
        else:
            cuts[i] = [t // low for t in inside]
    return cuts


def _positional(ctx: Tracer, state: State, name: str, x, args: tuple, kwargs: dict) -> None:
    """Pins and rectangular constraints that depend on the op's constants (module doc)."""
    ndim = x.dim()
    if name == "select":
        dim = _dim(args[1], ndim)
        if _labeled(state, dim):
            index = args[2] % x.shape[dim]
            _pin_along(ctx, state, dim, index + 1, "position selected by a fixed index")
    elif name in ("slice", "narrow"):
        dim = _dim(args[1] if len(args) > 1 else 0, ndim)
        if not _labeled(state, dim):
            return
        size = x.shape[dim]
        if name == "slice":
            start = args[2] if len(args) > 2 and args[2] is not None else 0
            end = args[3] if len(args) > 3 and args[3] is not None else size
            step = args[4] if len(args) > 4 else 1
        else:
            start, end, step = args[2], args[2] + args[3], 1
        start, end = (
            max(0, start + size if start < 0 else start),
            min(size, end + size if end < 0 else end),
        )
        length = end - start
        if start == 0 and end == size and step == 1:
            return
        if step == 1 and length > 0 and size % length == 0 and start % length == 0:
            _pieces(ctx, state, dim, size // length)
        else:
            _pin_along(ctx, state, dim, end, "slice at fixed positions")
    elif name in SPLITS:
        dim = _dim(args[2] if len(args) > 2 else kwargs.get("dim", 0), ndim)
        if not _labeled(state, dim):
            return
        size = x.shape[dim]
        sizes = [args[1]] * (size // args[1]) if isinstance(args[1], int) else list(args[1])
        if isinstance(args[1], int) and size % args[1]:
            sizes = None
        if sizes and len(set(sizes)) == 1 and sum(sizes) == size:
            _pieces(ctx, state, dim, len(sizes))
        else:
            _pin_along(ctx, state, dim, None, "split at fixed sizes")
    elif name == "unbind":
        dim = _dim(args[1] if len(args) > 1 else 0, ndim)
        _pin_along(ctx, state, dim, None, "unbound into separate tensors")
    elif name == "constant_pad_nd":
        pad = list(args[1])
        for k in range(0, len(pad), 2):
            dim = ndim - 1 - k // 2
            if (pad[k] or pad[k + 1]) and _labeled(state, dim):
                _pin_along(ctx, state, dim, None, "padded by a fixed amount")
    elif name == "channel_shuffle":
        _pieces(ctx, state, 1, args[1])
    elif name in ("view", "_unsafe_view", "reshape", "_reshape_alias", "view_copy"):
        return  # handled with the output shape in move()
    elif name in POSITIONAL:
        dims = _positional_dims(name, x, args)
        for dim in dims:
            if _labeled(state, dim):
                _pin_along(ctx, state, dim, None, f"indexed by {name}")


def _positional_dims(name: str, x, args: tuple) -> list[int]:
    ndim = x.dim()
    if name in ("index_select", "gather", "unfold"):
        return [_dim(args[1], ndim)]
    if name == "index":
        return [d for d, index in enumerate(args[1]) if index is not None]
    if name == "roll":
        dims = args[2] if len(args) > 2 else ()
        return list(range(ndim)) if not dims else [_dim(d, ndim) for d in dims]
    if name == "diagonal":
        return [
            _dim(args[2] if len(args) > 2 else 0, ndim),
            _dim(args[3] if len(args) > 3 else 1, ndim),
        ]
    return list(range(ndim))  # take, as_strided, pixel shuffles: every dim


def _view_constraints(ctx: Tracer, state: State, src: Sequence[int], dst: Sequence[int]) -> None:
    for dim, cuts in reshape_splits(src, dst).items():
        if not _labeled(state, dim):
            continue
        if cuts is None:
            _pin_along(ctx, state, dim, None, "reshaped across unit boundaries")
            continue
        size = src[dim]
        for inner in cuts:
            _pieces(ctx, state, dim, size // inner)


def move(ctx: Tracer, func, name: str, args: tuple, kwargs: dict, out) -> None:
    """Labels through a data-movement op (module doc); outputs keep activeness and fills."""
    x = args[0]
    state = ctx.state(x)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    if name in ("lift_fresh", "lift_fresh_copy"):
        state = State()
    if not state.labelings or name in COPIES:
        for o in outs:
            if isinstance(o, torch.Tensor):
                same = o.shape == x.shape
                labels = list(state.labelings) if same else []
                ctx.set(o, State(labels, state.active, state.fill, state.source))
        return
    _positional(ctx, state, name, x, args, kwargs)
    permuted = _dim_map(name, x.dim(), args)
    if permuted is not None:  # a pure reordering of dims: no data to look at
        labels = [_moved(lab, permuted) for lab in state.labelings]
        ctx.set(out, State(labels, state.active, state.fill, state.source))
        return
    if name == "constant_pad_nd" and not _pads_labeled(state, x.dim(), args[1]):
        value = args[2] if len(args) > 2 else 0.0
        labs = (
            state.labelings
            if not value
            else [Labeling(lab.dims, lab.ids, torch.ones_like(lab.nz)) for lab in state.labelings]
        )
        ctx.set(out, State(list(labs), state.active, state.fill))
        return
    if name in ("view", "_unsafe_view", "reshape", "_reshape_alias", "view_copy"):
        _view_constraints(ctx, state, x.shape, outs[0].shape)
    probes = _probe(func, x, args, kwargs, name)
    probes = list(probes) if isinstance(probes, (tuple, list)) else [probes]
    for o, probe in zip(outs, probes):
        if not isinstance(o, torch.Tensor):
            continue
        labelings = [mapped(lab, x.shape, probe) for lab in state.labelings]
        labels = [lab for lab in labelings if lab is not None]
        ctx.set(o, State(labels, state.active, state.fill, state.source))


def concatenate(ctx: Tracer, name: str, args: tuple, kwargs: dict, out: torch.Tensor) -> None:
    """cat / stack: the inputs' labels along the other dims are linked (every input must stay as
    wide); along the joined dim they are concatenated."""
    tensors = [t for t in args[0] if isinstance(t, torch.Tensor) and t.numel()]
    dim = args[1] if len(args) > 1 else kwargs.get("dim", 0)
    if name == "stack":
        tensors = [t.unsqueeze(_dim(dim, t.dim() + 1)) for t in tensors]
        states = [ctx.state(t) for t in args[0] if isinstance(t, torch.Tensor) and t.numel()]
        states = [
            State([_shift(lab, _dim(dim, out.dim())) for lab in s.labelings], s.active, s.fill)
            for s in states
        ]
    else:
        states = [ctx.state(t) for t in tensors]
    if not tensors:
        ctx.set(out, State())
        return
    dim = _dim(dim, out.dim())
    active = any(s.active for s in states)
    across = [lab for s in states for lab in s.labelings if dim not in lab.dims]
    along = [(i, lab) for i, s in enumerate(states) for lab in s.labelings if dim in lab.dims]
    shape = list(out.shape)
    result = []
    for cluster in clusters(across):
        dims = sorted({d for lab in cluster for d in lab.dims})
        wide = [over(lab, dims, shape) for lab in cluster]
        for other in wide[1:]:
            ctx.link(wide[0].ids, other.ids)
        nz = torch.stack([w.nz for w in wide]).any(0)
        for t, s in zip(tensors, states):
            bare = s.fill is None and not any(set(lab.dims) & set(dims) for lab in s.labelings)
            if bare and any(t.shape[d] > 1 for d in dims):
                ctx.pin(wide[0].ids, f"concatenated with data that cannot shrink in {ctx.where}")
        result.append(Labeling(tuple(dims), wide[0].ids, nz))
    if along:
        dims = sorted({d for _, lab in along for d in lab.dims} | {dim})
        parts_ids, parts_nz = [], []
        for i, t in enumerate(tensors):
            piece = [over(lab, dims, t.shape) for j, lab in along if j == i]
            sizes = [t.shape[d] for d in dims]
            if piece:
                for other in piece[1:]:
                    ctx.link(piece[0].ids, other.ids)
                parts_ids.append(piece[0].ids)
                parts_nz.append(torch.stack([p.nz for p in piece]).any(0))
            else:
                parts_ids.append(torch.full(sizes, UNLABELED, dtype=torch.long))
                parts_nz.append(torch.ones(sizes, dtype=torch.bool))
        axis = dims.index(dim)
        result.append(Labeling(tuple(dims), torch.cat(parts_ids, axis), torch.cat(parts_nz, axis)))
    ctx.set(out, State(result, active))


def _dim_map(name: str, ndim: int, args: tuple) -> list[int | None] | None:
    """For ops that only reorder dims (t, transpose, permute, unsqueeze): output dim → input dim
    (None for a new size-1 dim); None for any other op."""
    if name == "t" and ndim == 2:
        return [1, 0]
    if name == "transpose":
        a, b = _dim(args[1], ndim), _dim(args[2], ndim)
        dims = list(range(ndim))
        dims[a], dims[b] = dims[b], dims[a]
        return dims
    if name == "permute":
        return [_dim(d, ndim) for d in args[1]]
    if name == "unsqueeze":
        at = _dim(args[1], ndim + 1)
        return [*range(at), None, *range(at, ndim)]
    return None


def _moved(lab: Labeling, dims: list[int | None]) -> Labeling:
    """``lab`` after the output takes input dim ``dims[i]`` as its dim ``i``."""
    new = sorted(dims.index(d) for d in lab.dims)
    order = [lab.dims.index(dims[i]) for i in new]
    return Labeling(tuple(new), lab.ids.permute(order), lab.nz.permute(order))


def _shift(lab: Labeling, inserted: int) -> Labeling:
    """A labeling after a new dim is inserted at ``inserted``."""
    return Labeling(tuple(d + (d >= inserted) for d in lab.dims), lab.ids, lab.nz)


__all__ = ["MOVES", "concatenate", "mapped", "move", "reshape_splits"]

_ = broadcast
