"""Contractions: matmul (Linear's decomposition), convolution, embedding and attention.

A contraction is an einsum: labels on a letter both operands share are linked; a shared letter that
disappears is where a unit is *read* (a sink), one that survives next to another letter (q·kᵀ over
a head's dims) merges the contracted positions into one unit — this is how attention heads emerge.
Labels on the other letters pass to the output (the weight's output rows *produce* units).
Convolutions tie their groups: a depthwise channel passes its unit through, a grouped convolution
removes the same slot from every group.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import torch

from .labels import Labeling, merge_along, over
from .pointwise import by_operand, elementwise
from .tracer import State, Tracer


def _letters(ctx: Tracer, spec: str, state: State, index: dict[str, int]) -> list[Labeling]:
    """A state's labelings re-indexed by letter (dims = positions in the global letter order)."""
    found = []
    for lab in state.labelings:
        dims = [index[spec[d]] for d in lab.dims]
        order = sorted(range(len(dims)), key=lambda i: dims[i])
        found.append(Labeling(tuple(sorted(dims)), lab.ids.permute(order), lab.nz.permute(order)))
    return found


def contract(
    ctx: Tracer,
    specs: tuple[str, str],
    states: tuple[State, State],
    out_spec: str,
    sizes: dict[str, int],
    owned: tuple[bool, bool] = (False, False),
) -> list[Labeling]:
    """Labels through the einsum ``specs[0],specs[1]->out_spec`` (module doc); ``owned`` says which
    operands are parameters (their axes get the roles "produces" and "reads")."""
    letters = sorted(set(specs[0]) | set(specs[1]))
    index = {c: i for i, c in enumerate(letters)}
    shape = [sizes[c] for c in letters]
    items = [(k, lab) for k in (0, 1) for lab in _letters(ctx, specs[k], states[k], index)]
    shared = {index[c] for c in set(specs[0]) & set(specs[1]) if sizes[c] > 1}
    reduced = {index[c] for c in set(specs[0]) & set(specs[1]) if c not in out_spec}
    touching = [(k, lab) for k, lab in items if set(lab.dims) & shared]
    result = [lab for k, lab in items if not set(lab.dims) & shared]
    for k, lab in items:
        if owned[k] and not set(lab.dims) & shared:
            ctx.role(lab.ids, "produces")
    for cluster in by_operand(touching):
        dims = sorted({d for _, lab in cluster for d in lab.dims})
        wide = [(k, over(lab, dims, shape)) for k, lab in cluster]
        first = wide[0][1]
        for _, w in wide[1:]:
            ctx.link(first.ids, w.ids)
        present = {k for k, _ in wide}
        sides = [
            torch.stack([w.nz for k, w in wide if k == side]).any(0) for side in sorted(present)
        ]
        nz = torch.stack(sides).all(0)
        lab = Labeling(tuple(dims), first.ids, nz)
        absent = [side for side in (0, 1) if side not in present and states[side].fill is None]
        fixed = sorted(set(dims) & shared) if absent else []
        if fixed:  # the other operand is data along these letters: units must span them whole
            if len(fixed) == len(dims):
                ctx.pin(first.ids, f"multiplied with data that cannot shrink in {ctx.where}")
                continue
            merged = merge_along(lab, fixed, ctx.link)
            lab = Labeling(lab.dims, lab.ids, lab.nz) if merged is None else lab
        gone = [d for d in dims if d in reduced]
        if not gone:
            result.append(lab)
            continue
        if len(gone) == len(dims):
            ctx.sink(first.ids, nz)
            for k, w in wide:
                if owned[k]:
                    ctx.role(w.ids, "reads")
            continue
        merged = merge_along(lab, gone, ctx.link)
        ctx.heads(merged.ids)
        result.append(merged)
    out = []
    for lab in result:
        positions = [out_spec.index(letters[d]) for d in lab.dims]
        order = sorted(range(len(positions)), key=lambda i: positions[i])
        out.append(
            Labeling(tuple(sorted(positions)), lab.ids.permute(order), lab.nz.permute(order))
        )
    return out


def _spec(n: int, tail: str) -> str:
    """Leading batch letters for an operand of ``n`` dims ending in ``tail``."""
    return "ABCDEFG"[: n - len(tail)] + tail


def matmul(ctx: Tracer, name: str, args: tuple, out: torch.Tensor) -> None:
    """mm, bmm, addmm, baddbmm, mv, dot (the decompositions of Linear, matmul and einsum)."""
    bias = None
    if name in ("addmm", "baddbmm", "addmv", "addbmm"):
        bias, args = args[0], args[1:]
    a, b = args[0], args[1]
    if name == "mv":
        specs, out_spec = ("mk", "k"), "m"
    elif name == "dot":
        specs, out_spec = ("k", "k"), ""
    else:
        specs = (_spec(a.dim(), "mk"), _spec(b.dim(), "kn"))
        out_spec = _spec(out.dim(), "mn")
    sizes = {c: s for spec, t in zip(specs, (a, b)) for c, s in zip(spec, t.shape)}
    sa, sb = ctx.state(a), ctx.state(b)
    owned = (weight_name(ctx, a) is not None, weight_name(ctx, b) is not None)
    state = State(contract(ctx, specs, (sa, sb), out_spec, sizes, owned), sa.active or sb.active)
    source = weight_name(ctx, b)
    if bias is not None:
        state = elementwise(
            ctx,
            [(tuple(bias.shape), ctx.state(bias), None), (tuple(out.shape), state, None)],
            tuple(out.shape),
            "sum",
            owned=(True, False),
        )
    state.source = source
    ctx.set(out, state)


def weight_name(ctx: Tracer, t: torch.Tensor) -> str | None:
    """The parameter (or buffer) a weight operand is, or is a view of; None for an activation."""
    name = ctx.names.get(id(t))
    base = getattr(t, "_base", None)
    return name if name is not None or base is None else ctx.names.get(id(base))


def axis(state: State, axis: int) -> Labeling | None:
    return next((lab for lab in state.labelings if lab.dims == (axis,)), None)


def spatial_pins(ctx: Tracer, state: State, keep: Sequence[int], why: str, silent=False) -> None:
    """Pin every labeling of ``state`` that covers a dim outside ``keep``."""
    for lab in state.labelings:
        if set(lab.dims) - set(keep):
            ctx.pin(lab.ids, f"{why} in {ctx.where}", silent)


def convolution(ctx: Tracer, args: tuple, out: torch.Tensor) -> None:
    """aten.convolution: channels in and out; grouped and depthwise convolutions tie their groups
    (a depthwise channel passes its unit through; a grouped one removes the same slot from every
    group)."""
    x, weight, bias = args[0], args[1], args[2]
    transposed, groups = bool(args[6]), int(args[8])
    sx, sw = ctx.state(x), ctx.state(weight)
    in_axis, out_axis = (0, 1) if transposed else (1, 0)
    spatial_pins(ctx, sx, (0, 1), "spatial positions feed a convolution")
    spatial_pins(ctx, sw, (0, 1), "kernel taps", silent=True)
    channels = axis(sx, 1)
    w_in, w_out = axis(sw, in_axis), axis(sw, out_axis)
    c, o = x.shape[1], out.shape[1]
    result = []
    if transposed and groups > 1:
        ctx.pin_state(sx, f"grouped transposed convolution in {ctx.where}")
        ctx.pin_state(sw, f"grouped transposed convolution in {ctx.where}")
    elif groups == 1:
        if channels is not None or w_in is not None:
            a = channels.ids if channels is not None else torch.full((c,), -1)
            b = w_in.ids if w_in is not None else torch.full((c,), -1)
            ctx.link(a, b, f"channels read from data that cannot shrink in {ctx.where}")
            nz_a = channels.nz if channels is not None else torch.ones(c, dtype=torch.bool)
            nz_b = w_in.nz if w_in is not None else torch.ones(c, dtype=torch.bool)
            ctx.sink(b if w_in is not None else a, nz_a & nz_b)
            if w_in is not None:
                ctx.role(w_in.ids, "reads")
        if w_out is not None:
            ctx.role(w_out.ids, "produces")
            result.append(Labeling((1,), w_out.ids, w_out.nz))
    elif c // groups == 1:  # depthwise: input channel j feeds outputs [j·m, (j+1)·m)
        m = o // groups
        if w_out is not None:
            ctx.role(w_out.ids, "passes")
            source = channels.ids if channels is not None else torch.full((c,), -1)
            ctx.link(source.repeat_interleave(m), w_out.ids, f"depthwise over data in {ctx.where}")
            nz_in = channels.nz.repeat_interleave(m) if channels is not None else True
            result.append(Labeling((1,), w_out.ids, w_out.nz & nz_in))
    else:  # grouped: the same slot of every group goes together
        per_in, per_out = c // groups, o // groups
        if w_in is not None or channels is not None:
            a = channels.ids if channels is not None else torch.full((c,), -1)
            b = w_in.ids.repeat(groups) if w_in is not None else torch.full((c,), -1)
            ctx.link(a, b, f"grouped channels read from data in {ctx.where}")
            nz_in = channels.nz if channels is not None else torch.ones(c, dtype=torch.bool)
            ctx.sink(a, nz_in)
        if w_out is not None:
            ids = w_out.ids.view(groups, per_out)
            ctx.link(ids[:1].expand_as(ids), ids)
            ctx.role(w_out.ids, "produces")
            result.append(Labeling((1,), w_out.ids, w_out.nz))
        _ = per_in
    state = State(result, sx.active or sw.active)
    if bias is not None:
        view = (1, o) + (1,) * (out.dim() - 2)
        b_state = ctx.state(bias)
        b_state = State(
            [Labeling((1,), lab.ids, lab.nz) for lab in b_state.labelings], b_state.active
        )
        operands = [(view, b_state, None), (tuple(out.shape), state, None)]
        state = elementwise(ctx, operands, tuple(out.shape), "sum", owned=(True, False))
    state.source = weight_name(ctx, weight)
    ctx.set(out, state)


def im2col(ctx: Tracer, args: tuple, out: torch.Tensor) -> None:
    """F.unfold: (N, C, H, W) → (N, C·kh·kw, L): each channel covers kh·kw rows."""
    x = args[0]
    sx = ctx.state(x)
    spatial_pins(ctx, sx, (0, 1), "spatial positions of an unfold")
    taps = math.prod(args[1])
    lab = axis(sx, 1)
    result = (
        []
        if lab is None
        else [Labeling((1,), lab.ids.repeat_interleave(taps), lab.nz.repeat_interleave(taps))]
    )
    ctx.set(out, State(result, sx.active))


def embedding(ctx: Tracer, args: tuple, out: torch.Tensor) -> None:
    """A lookup table: its columns produce the embedding's units; its rows are indexed by data."""
    weight = args[0]
    sw = ctx.state(weight)
    rows, columns = axis(sw, 0), axis(sw, 1)
    if rows is not None:
        ctx.pin(rows.ids, "rows looked up by index", silent=True)
    result = []
    if columns is not None:
        ctx.role(columns.ids, "produces")
        result.append(Labeling((out.dim() - 1,), columns.ids, columns.nz))
    ctx.set(out, State(result, sw.active))


def _repeat_heads(state: State, dim: int, times: int) -> State:
    """k and v of grouped-query attention: each kv head serves ``times`` query heads."""
    if times == 1:
        return state
    labs = []
    for lab in state.labelings:
        if dim in lab.dims:
            axis = lab.dims.index(dim)
            lab = lab.map(lambda t, a=axis: t.repeat_interleave(times, a), lab.dims)
        labs.append(lab)
    return State(labs, state.active, state.fill)


def attention(ctx: Tracer, name: str, args: tuple, kwargs: dict, out) -> None:
    """Scaled dot-product attention as softmax(q·kᵀ + mask)·v, head by head (module doc)."""
    q, k, v = args[0], args[1], args[2]
    target = out[0] if isinstance(out, (tuple, list)) else out
    if q.dim() != 4 or k.dim() != 4 or v.dim() != 4:
        ctx.pin_state(ctx.state(q), f"attention on {q.dim()}-D tensors in {ctx.where}")
        ctx.set(target, State([], True))
        return
    mask = kwargs.get("attn_mask", kwargs.get("attn_bias"))
    if mask is None and name == "_scaled_dot_product_attention_math" and len(args) > 3:
        mask = args[3]
    if mask is None and name == "_scaled_dot_product_efficient_attention" and len(args) > 3:
        mask = args[3]
    heads, kv_heads = q.shape[1], k.shape[1]
    times = heads // kv_heads if kv_heads and heads % kv_heads == 0 else 1
    sq, sk, sv = (
        ctx.state(q),
        _repeat_heads(ctx.state(k), 1, times),
        _repeat_heads(ctx.state(v), 1, times),
    )
    if kwargs.get("scale") is None:  # the default scale 1/√d reads the head dim: keep it whole
        for lab in sq.labelings:
            if 3 in lab.dims:
                merge_along(lab, [3], ctx.link)
    for lab in sq.labelings:
        if 1 in lab.dims:
            ctx.heads(lab.ids)
    sizes = {
        "z": q.shape[0],
        "h": heads,
        "t": q.shape[2],
        "d": q.shape[3],
        "s": k.shape[2],
        "e": v.shape[3],
    }
    scores = State(contract(ctx, ("zhtd", "zhsd"), (sq, sk), "zhts", sizes), True)
    shape = (q.shape[0], heads, q.shape[2], k.shape[2])
    if isinstance(mask, torch.Tensor):
        scores = elementwise(
            ctx, [(tuple(mask.shape), ctx.state(mask), None), (shape, scores, None)], shape, "sum"
        )
    for lab in scores.labelings:
        if 3 in lab.dims:
            ctx.pin(lab.ids, f"softmax over labeled keys in {ctx.where}")
    weights = State(
        [Labeling(lab.dims, lab.ids, torch.ones_like(lab.nz)) for lab in scores.labelings], True
    )
    result = contract(ctx, ("zhts", "zhse"), (weights, sv), "zhte", sizes)
    ctx.set(target, State(result, True))
    if isinstance(out, (tuple, list)):
        for extra in out[1:]:
            if isinstance(extra, torch.Tensor):
                ctx.set(extra, State([], True))


__all__ = [
    "attention",
    "axis",
    "contract",
    "convolution",
    "embedding",
    "im2col",
    "matmul",
    "spatial_pins",
]
