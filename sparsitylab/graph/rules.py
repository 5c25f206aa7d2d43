"""The rule table: which rule each ATen op runs under the tracer (:mod:`sparsitylab.graph.tracer`).

An op is looked up by its name (``aten.addmm.default`` → ``addmm``; an in-place ``add_`` runs the
rule of ``add`` on its first argument). Ops tagged ``pointwise`` by PyTorch need no entry. An op
with no rule keeps every unit it touches whole and is reported; a rule that fails does the same, so
a trace never crashes on an op it does not understand.
"""

from __future__ import annotations

import torch

from . import contract, moves, norms, pointwise
from .tracer import State, Tracer

MATMULS = {"mm", "bmm", "addmm", "baddbmm", "mv", "dot", "addmv", "addbmm"}
BATCH_NORMS = {
    "native_batch_norm",
    "_native_batch_norm_legit",
    "_native_batch_norm_legit_no_training",
}
JOINT_NORMS = {"native_layer_norm", "native_group_norm", "_fused_rms_norm", "rms_norm"}
REDUCTIONS = {
    "sum", "mean", "amax", "amin", "max", "min", "var", "std", "var_mean", "std_mean", "prod",
    "norm", "linalg_vector_norm", "logsumexp", "_softmax", "_log_softmax", "softmax",
    "log_softmax", "cumsum", "cumprod", "argmax", "argmin", "any", "all", "sort", "topk",
    "median", "mode", "kthvalue", "nansum", "nanmean", "count_nonzero", "aminmax",
}  # fmt: skip
ATTENTION = {
    "_scaled_dot_product_flash_attention_for_cpu",
    "_scaled_dot_product_flash_attention",
    "_scaled_dot_product_efficient_attention",
    "_scaled_dot_product_attention_math",
}
FILLS = {
    "zeros": 0.0, "ones": 1.0, "zeros_like": 0.0, "ones_like": 1.0, "new_zeros": 0.0,
    "new_ones": 1.0, "empty": float("nan"), "empty_like": float("nan"),
    "new_empty": float("nan"), "empty_strided": float("nan"), "new_empty_strided": float("nan"),
    "zero": 0.0,
}  # fmt: skip
CONSTANTS = {
    "arange", "randn", "rand", "randint", "randn_like", "rand_like", "randperm", "eye",
    "linspace", "scalar_tensor", "tensor", "bernoulli",
    "normal", "tril_indices", "triu_indices",
}  # fmt: skip
READS = {
    "_local_scalar_dense", "is_nonzero", "item", "nonzero", "equal", "masked_select",
    "_unique2", "unique_dim", "unique_consecutive", "bincount", "allclose",
}  # fmt: skip
COPY_INTO = {"copy", "fill", "zero", "index_put", "masked_scatter", "scatter", "index_copy"}
POOLS = ("pool", "upsample", "reflection_pad", "replication_pad", "_upsample")


def _name(func) -> str:
    packet = getattr(func, "overloadpacket", func)
    return packet.__name__


def _tensors(args, kwargs) -> list[torch.Tensor]:
    found = []
    for a in [*args, *kwargs.values()]:
        if isinstance(a, torch.Tensor):
            found.append(a)
        elif isinstance(a, (list, tuple)):
            found += [t for t in a if isinstance(t, torch.Tensor)]
    return found


def unknown(ctx: Tracer, name: str, args, kwargs, out, why: str = "") -> None:
    """An op without a rule: everything it touches is kept whole; its outputs carry no units."""
    ctx.unknown.append((ctx.where, name + (f" ({why})" if why else "")))
    active = False
    for t in _tensors(args, kwargs):
        state = ctx.state(t)
        active |= state.active
        ctx.pin_state(
            state, f"passes through {name}, which the graph cannot follow, in {ctx.where}"
        )
    for o in out if isinstance(out, (tuple, list)) else [out]:
        if isinstance(o, torch.Tensor):
            ctx.set(o, State([], active))


def read(ctx: Tracer, name: str, args, kwargs, out) -> None:
    """An activation's value read into Python: the running module is a boundary (data-dependent
    control flow may take another path on other inputs); a read of input data is only noted."""
    states = [ctx.state(t) for t in _tensors(args, kwargs)]
    if any(s.active for s in states):
        ctx.boundary(ctx.where, f"reads an activation's value into Python ({name})")
        for s in states:
            ctx.pin_state(s, f"read into Python by {name} in {ctx.where}")
    else:
        note = f"{ctx.where or 'the model'} branches on its input data ({name}); traced as taken"
        if note not in ctx.notes:
            ctx.notes.append(note)
    for o in out if isinstance(out, (tuple, list)) else [out]:
        if isinstance(o, torch.Tensor):
            ctx.set(o, State())


def copy_into(ctx: Tracer, name: str, args, out) -> None:
    """In-place writes: ``copy_`` gives the destination the source's labels; writing through a
    view of another tensor (or scattering) keeps both whole."""
    dst = args[0]
    if name in ("fill", "zero"):
        value = (
            0.0
            if name == "zero"
            else float(args[1])
            if not isinstance(args[1], torch.Tensor)
            else None
        )
        ctx.set(dst, State([], False, value))
        return
    base = getattr(dst, "_base", None)
    if name != "copy" or base is not None:
        why = "written in place through a view" if base is not None else f"written by {name}"
        for t in [dst, *(a for a in args[1:] if isinstance(a, torch.Tensor))] + (
            [base] if base is not None else []
        ):
            ctx.pin_state(ctx.state(t), f"{why} in {ctx.where}")
            if base is not None:
                ctx.set(base, State([], True))
        ctx.set(dst, State([], True))
        return
    src = ctx.state(args[1])
    state = pointwise.elementwise(ctx, [(tuple(args[1].shape), src, None)], tuple(dst.shape), "sum")
    state.fill = src.fill
    ctx.set(dst, state)


def dispatch(ctx: Tracer, func, args, kwargs, out) -> None:
    name = _name(func)
    base = name[:-1] if name.endswith("_") and not name.startswith("_") else name
    if name in READS:
        read(ctx, name, args, kwargs, out)
    elif base in COPY_INTO:
        copy_into(ctx, base, args, out)
    elif name in FILLS:
        ctx.set(out, State([], False, FILLS[name]))
    elif name in ("full", "full_like", "new_full"):
        value = args[2] if name == "new_full" else args[1]
        ctx.set(out, State([], False, float(value)))
    elif name in CONSTANTS:
        for o in out if isinstance(out, (tuple, list)) else [out]:
            if isinstance(o, torch.Tensor):
                ctx.set(o, State())
    elif name in moves.MOVES:
        moves.move(ctx, func, name, args, kwargs, out)
    elif name in ("cat", "stack"):
        moves.concatenate(ctx, name, args, kwargs, out)
    elif name in MATMULS:
        contract.matmul(ctx, name, args, out)
    elif name in ("convolution", "_convolution"):
        contract.convolution(ctx, args, out)
    elif name in BATCH_NORMS:
        norms.batch_norm(ctx, name, args, out)
    elif name in JOINT_NORMS:
        norms.joint_norm(ctx, name, args, out)
    elif name in ATTENTION:
        contract.attention(ctx, name, args, kwargs, out)
    elif name == "embedding":
        contract.embedding(ctx, args, out)
    elif name == "im2col":
        contract.im2col(ctx, args, out)
    elif name in REDUCTIONS:
        norms.reduction(ctx, name, args, kwargs, out)
    elif any(key in name for key in POOLS):
        norms.pooling(ctx, name, args, out)
    elif name in ("native_dropout", "dropout", "feature_dropout", "alpha_dropout"):
        pointwise.pointwise(ctx, func, "dropout", args[:1], {}, out)
    elif torch.Tag.pointwise in func.tags or name in ("hardswish", "hardswish_", "gelu", "silu"):
        pointwise.pointwise(ctx, func, name, args, kwargs, out)
    else:
        unknown(ctx, name, args, kwargs, out)


def apply(ctx: Tracer, func, args, kwargs, out) -> None:
    """Run the op's rule; a rule that fails treats the op as unknown (never a crash)."""
    try:
        dispatch(ctx, func, args, kwargs, out)
    except Exception as error:  # noqa: BLE001  (reported, never silent)
        unknown(
            ctx, _name(func), args, kwargs, out, f"rule failed: {type(error).__name__}: {error}"
        )


__all__ = ["apply", "dispatch", "unknown"]
