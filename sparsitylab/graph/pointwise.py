"""Element-wise ops: operands line up after broadcasting, so their labels are linked.

An operand as long as a labeled dim but carrying no unit there (input data, a tensor computed in the
model) fixes that dim: a labeling over that dim alone is pinned, one that also spans other dims is
merged along it (its units then span the dim whole). Constant fills (``zeros``, ``ones``) resize
freely. The may-be-non-zero flags follow the op: a sum is zero where every term is, a product where
one factor is, any other op only when it maps zero to zero (ReLU, GELU, SiLU; not sigmoid).
"""

from __future__ import annotations

from collections.abc import Sequence

import torch

from .labels import Labeling, broadcast, merge_along, over
from .tracer import State, Tracer

SUMS = {"add", "sub", "rsub", "where", "maximum", "minimum", "fmax", "fmin", "logical_or"}
PRODUCTS = {"mul", "logical_and", "bitwise_and"}
NUMERATORS = {"div", "true_divide", "floor_divide", "remainder", "fmod"}
_ZERO_CACHE: dict = {}


def zero_preserving(func, args: tuple, kwargs: dict) -> bool:
    """Whether the op maps all-zero tensor arguments to zero (ReLU, GELU, SiLU yes; sigmoid no)."""
    if func in _ZERO_CACHE:
        return _ZERO_CACHE[func]
    zeros = [torch.zeros((), dtype=a.dtype) if isinstance(a, torch.Tensor) else a for a in args]
    try:
        out = func(*zeros, **kwargs)
        out = out[0] if isinstance(out, (tuple, list)) else out
        result = bool((out == 0).all())
    except Exception:  # an op that cannot run on scalars: assume the worst
        result = False
    _ZERO_CACHE[func] = result
    return result


def by_operand(items: list[tuple[int, Labeling]]) -> list[list[tuple[int, Labeling]]]:
    """Cluster (operand, labeling) pairs whose dims overlap, transitively."""
    groups: list[tuple[set[int], list[tuple[int, Labeling]]]] = []
    for item in items:
        dims, members, rest = set(item[1].dims), [item], []
        for other_dims, other in groups:
            if other_dims & dims:
                dims |= other_dims
                members = other + members
            else:
                rest.append((other_dims, other))
        groups = [*rest, (dims, members)]
    return [members for _, members in groups]


def elementwise(
    ctx: Tracer,
    operands: list[tuple[Sequence[int], State, float | None]],
    out_shape: Sequence[int],
    kind: str,
    keeps_zero: bool = True,
    owned: Sequence[bool] = (),
) -> State:
    """The output state of an element-wise combination. ``operands``: (shape, state, scalar value
    when the operand is a constant number); ``kind``: "sum", "product", "numerator" or "other";
    ``owned``: which operands are parameters (they get the roles "shifts" / "scales")."""
    items = [
        (i, broadcast(lab, shape, out_shape))
        for i, (shape, state, _) in enumerate(operands)
        for lab in state.labelings
    ]
    result = []
    for cluster in by_operand(items):
        dims = sorted({d for _, lab in cluster for d in lab.dims})
        wide = [(i, over(lab, dims, out_shape)) for i, lab in cluster]
        first = wide[0][1]
        for _, w in wide[1:]:
            ctx.link(first.ids, w.ids)
        role = {"sum": "shifts", "product": "scales"}.get(kind)
        if role:  # a parameter added to (multiplied with) the units shifts (scales) them
            for i, w in wide:
                if i < len(owned) and owned[i]:
                    ctx.role(w.ids, role)
        flags, fixed = [], set()
        for i, (shape, state, value) in enumerate(operands):
            mine = [w.nz for j, w in wide if j == i]
            if mine:
                flags.append(torch.stack(mine).any(0))
                continue
            constant = state.fill if value is None else value
            flags.append(torch.full_like(first.nz, constant is None or constant != 0))
            if value is None and state.fill is None:
                aligned = len(out_shape) - len(shape)
                fixed |= {d for d in dims if d >= aligned and shape[d - aligned] > 1}
        if kind == "sum":
            nz = torch.stack(flags).any(0)
        elif kind == "product":
            nz = torch.stack(flags).all(0)
        elif kind == "numerator":
            nz = flags[0]
        else:
            nz = torch.stack(flags).any(0) if keeps_zero else torch.ones_like(first.nz)
        lab = Labeling(tuple(dims), first.ids, nz)
        if fixed:  # data that cannot shrink varies along these dims: units must span them whole
            if fixed == set(dims):
                ctx.pin(first.ids, f"combined with data that cannot shrink with it in {ctx.where}")
            else:
                lab = merge_along(lab, sorted(fixed), ctx.link)
        result.append(lab)
    return State(result, any(state.active for _, state, _ in operands))


def pointwise(ctx: Tracer, func, name: str, args: tuple, kwargs: dict, out) -> None:
    """Any op tagged pointwise (and ``where``, ``masked_fill``, activations)."""
    target = out[0] if isinstance(out, (tuple, list)) else out
    operands, owned = [], []
    for a in args:  # keyword arguments (alpha, rounding_mode) are settings, not operands
        if isinstance(a, torch.Tensor):
            operands.append((tuple(a.shape), ctx.state(a), None))
            base = getattr(a, "_base", None)
            owned.append(id(a) in ctx.names or (base is not None and id(base) in ctx.names))
        elif isinstance(a, (int, float)) and not isinstance(a, bool):
            operands.append(((), State(), float(a)))
            owned.append(False)
    base = name.rstrip("_")
    kind = (
        "sum"
        if base in SUMS
        else "product"
        if base in PRODUCTS
        else "numerator"
        if base in NUMERATORS
        else "other"
    )
    keeps = kind != "other" or zero_preserving(func, args, kwargs)
    state = elementwise(ctx, operands, tuple(target.shape), kind, keeps, owned)
    tensors = [s for _, s, v in operands if v is None]
    if tensors and all(s.fill is not None for s in tensors) and target.numel():
        state.fill = float(target.reshape(-1)[0])
    ctx.set(target, state)


__all__ = ["by_operand", "elementwise", "pointwise", "zero_preserving"]
