"""Normalisations, reductions and pooling.

BatchNorm acts per channel: γ, β and the running statistics join the channel's unit, and a channel
is zero after it where γ = 0 and β = 0 (or γ ≠ 0 and its zero response β − γμ/√(σ² + ε) is 0 on a
zero input). LayerNorm, GroupNorm and RMSNorm compute statistics *across* channels, so removing one
would change the others: those units are pinned (the norm's own γ, β join them). Any other reduction
over a labeled dim pins it too; pooling and upsampling act per channel.
"""

from __future__ import annotations

import torch

from .contract import axis, spatial_pins
from .labels import Labeling
from .tracer import State, Tracer

ZERO_KEEPING = {"sum", "mean", "amax", "amin", "max", "min", "var", "std", "prod", "norm"}
ZERO_KEEPING |= {"linalg_vector_norm", "cumsum", "cumprod", "nansum", "nanmean"}


def batch_norm(ctx: Tracer, name: str, args: tuple, outs) -> None:
    """BatchNorm (any of its ATen forms): per channel, so γ, β and the statistics join the
    channel's unit; a channel's zero flag follows γ, β and the zero response β − γμ/√(σ² + ε)."""
    x, weight, bias = args[0], args[1], args[2]
    mean, var = (args[3], args[4]) if len(args) > 5 else (None, None)
    training = (
        bool(args[5])
        if name in ("native_batch_norm", "_native_batch_norm_legit") and len(args) > 7
        else False
    )
    eps = float(args[-1])
    sx = ctx.state(x)
    if sx.source is not None and isinstance(weight, torch.Tensor) and id(weight) in ctx.names:
        ctx.norm_after[sx.source.rpartition(".")[0]] = ctx.names[id(weight)].rpartition(".")[0]
    spatial_pins(ctx, sx, (0, 1), "normalised over positions")
    channels = axis(sx, 1)
    members = [
        (t, role)
        for t, role in ((weight, "scales"), (bias, "shifts"), (mean, "stats"), (var, "stats"))
        if isinstance(t, torch.Tensor)
    ]
    ids = channels.ids if channels is not None else None
    for t, role in members:
        lab = axis(ctx.state(t), 0)
        if lab is None:
            continue
        ctx.role(lab.ids, role)
        if ids is None:
            ids = lab.ids
        else:
            ctx.link(ids, lab.ids, f"normalises data that cannot shrink in {ctx.where}")
    result = []
    if ids is not None:
        c = x.shape[1]
        gamma = weight.detach() if isinstance(weight, torch.Tensor) else torch.ones(c)
        beta = bias.detach() if isinstance(bias, torch.Tensor) else torch.zeros(c)
        if isinstance(mean, torch.Tensor) and not training:
            response = beta - gamma * mean / torch.sqrt(var + eps)
        else:
            response = beta
        nz_in = channels.nz if channels is not None else torch.ones(c, dtype=torch.bool)
        nz = torch.where(gamma != 0, nz_in | (response != 0), beta != 0)
        result.append(Labeling((1,), ids, nz))
    target = outs[0] if isinstance(outs, (tuple, list)) else outs
    ctx.set(target, State(result, sx.active or isinstance(weight, torch.nn.Parameter)))


def joint_norm(ctx: Tracer, name: str, args: tuple, outs) -> None:
    """LayerNorm, GroupNorm, RMSNorm: statistics across the normalised channels pin them."""
    x = args[0]
    sx = ctx.state(x)
    if name == "native_group_norm":
        dims = {1}
        params = [args[1], args[2]]
    else:
        count = len(args[1])
        dims = set(range(x.dim() - count, x.dim()))
        params = [args[2], args[3]] if name == "native_layer_norm" else [args[2]]
    norm = name.removeprefix("native_").removeprefix("_fused_")
    why = f"normalised together by {norm} in {ctx.where}"
    for lab in sx.labelings:
        if set(lab.dims) & dims:
            ctx.pin(lab.ids, why)
    stream = next((lab for lab in sx.labelings if lab.dims == (x.dim() - 1,)), None)
    for p in params:
        if isinstance(p, torch.Tensor):
            state = ctx.state(p)
            ctx.pin_state(state, why)
            own = axis(state, state.labelings[0].dims[0]) if len(state.labelings) == 1 else None
            if stream is not None and own is not None and name != "native_group_norm":
                ctx.link(stream.ids, own.ids)
    target = outs[0] if isinstance(outs, (tuple, list)) else outs
    keep = [Labeling(lab.dims, lab.ids, torch.ones_like(lab.nz)) for lab in sx.labelings]
    ctx.set(target, State(keep, True))


def _reduced_dims(name: str, x: torch.Tensor, args: tuple, kwargs: dict) -> list[int]:
    if "dim" in kwargs:
        dims = kwargs["dim"]
    elif name in ("topk",):
        dims = args[2] if len(args) > 2 else -1
    elif name in ("sort",):
        dims = args[1] if len(args) > 1 and not isinstance(args[1], bool) else -1
    elif name in ("linalg_vector_norm", "norm"):
        dims = args[2] if len(args) > 2 else None
    elif (
        len(args) > 1 and isinstance(args[1], (int, list, tuple)) and not isinstance(args[1], bool)
    ):
        dims = args[1]
    else:
        dims = None
    if dims is None or (isinstance(dims, (list, tuple)) and not dims):
        return list(range(x.dim()))
    dims = [dims] if isinstance(dims, int) else list(dims)
    return sorted(d % max(1, x.dim()) for d in dims)


def reduction(ctx: Tracer, name: str, args: tuple, kwargs: dict, out) -> None:
    """Reductions and softmax: reducing over a labeled dim pins it (the statistic mixes units)."""
    x = args[0]
    sx = ctx.state(x)
    dims = _reduced_dims(name, x, args, kwargs)
    outs = list(out) if isinstance(out, (tuple, list)) else [out]
    target = outs[0]
    kept_dim = target.dim() == x.dim()
    keeps_zero = name in ZERO_KEEPING
    result = []
    for lab in sx.labelings:
        if set(lab.dims) & set(dims):
            ctx.pin(lab.ids, f"reduced over by {name} in {ctx.where}")
            continue
        new_dims = lab.dims if kept_dim else tuple(d - sum(r < d for r in dims) for d in lab.dims)
        nz = lab.nz if keeps_zero else torch.ones_like(lab.nz)
        result.append(Labeling(new_dims, lab.ids, nz))
    ctx.set(target, State(result, sx.active))
    for extra in outs[1:]:
        if isinstance(extra, torch.Tensor):
            ctx.set(extra, State([], sx.active))


def pooling(ctx: Tracer, name: str, args: tuple, out) -> None:
    """Pooling, upsampling and spatial padding act per channel: channel labels pass, positions
    must not be labeled."""
    x = args[0]
    sx = ctx.state(x)
    spatial = 3 if "3d" in name else 1 if "1d" in name else 2
    channel = x.dim() - spatial - 1
    spatial_pins(ctx, sx, tuple(range(channel + 1)), f"spatial positions of {name}")
    keep = [lab for lab in sx.labelings if max(lab.dims) <= channel]
    target = out[0] if isinstance(out, (tuple, list)) else out
    ctx.set(target, State(keep, sx.active))
    if isinstance(out, (tuple, list)):
        for extra in out[1:]:
            ctx.set(extra, State([], sx.active))


__all__ = ["batch_norm", "joint_norm", "pooling", "reduction"]
