"""The problems of SIS's network pass: which layers of a model are solved, in which order, with
which activation and folded BatchNorm, and how a layer and its input read as one GEMM (W x + b).

What the pass does with them is in :mod:`sparsitylab.methods.sis` (its docstring states the rules
these functions implement).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..coverage import COVERED, all_matrices, coverage
from ..deploy.compaction import default_input
from ..gemm import from_gemm_view, gemm_view, im2col
from ..graph import trace

ACTIVATION_OF = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid"}


@dataclass
class Step:
    """One problem of the network pass: a layer, its folded BatchNorm and its activation."""

    name: str
    layer: nn.Module  # nn.Linear, nn.Conv2d, or a Conv1D (``transposed``: weight stored in × out)
    batchnorm: nn.BatchNorm1d | nn.BatchNorm2d | None
    activation: str
    batchnorm_name: str | None = None
    transposed: bool = False


def zero_padding(conv: nn.Conv2d) -> tuple[int, int] | None:
    """The symmetric zero padding (rows, columns) ``conv`` applies, or None: another padding mode,
    or ``padding="same"`` that pads unevenly (an even kernel)."""
    if conv.padding_mode != "zeros":
        return None
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        return None if any(t % 2 for t in total) else (total[0] // 2, total[1] // 2)
    return tuple(conv.padding)


def _unsupported(layer: nn.Module) -> str | None:
    """Why SIS cannot solve a Linear/Conv2d layer, or None."""
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            return "a grouped convolution (SIS handles groups=1 only)"
        if zero_padding(layer) is None:
            return "padding other than symmetric zero padding"
    return None


def plan_steps(
    model: nn.Module, example_input: Any = None, last: str = "softmax"
) -> tuple[list[Step], dict[str, str]]:
    """The problems of ``model`` in forward order, and the layers kept dense with the reason
    (module docstring). ``example_input`` defaults to one image for the library's models."""
    example = default_input(model) if example_input is None else example_input
    graph = trace(model, example)
    modules = dict(model.named_modules())
    matrices = {w.module_name: w for w in all_matrices(model).values() if w.attr == "weight"}
    found, skipped = [], {}
    for name, calls in graph.calls.items():
        layer, matrix = modules[name], matrices.get(name)
        transposed = matrix is not None and matrix.transposed
        if not (isinstance(layer, (nn.Linear, nn.Conv2d)) or transposed):
            continue
        tied = None if matrix else "its weight is an embedding table's (tied): not solved"
        why = tied or _unsupported(layer) or (f"called {calls} times" if calls != 1 else None)
        if why:
            skipped[name] = why
            continue
        bn_name = graph.norm_after.get(name)
        bn = modules.get(bn_name) if bn_name else None
        if bn is not None and (graph.calls.get(bn_name) != 1 or not bn.track_running_stats):
            bn, bn_name = None, None
        reader = graph.first_op.get(bn_name or name)  # None: read inside a module (identity)
        activation = last if reader == "output" else ACTIVATION_OF.get(reader, "identity")
        found.append(Step(name, layer, bn, activation, bn_name, transposed))
    return found, skipped


def steps(model: nn.Module, example_input: Any = None, last: str = "softmax") -> list[Step]:
    """The problems of ``model`` in forward order (see :func:`plan_steps`); ``ValueError`` when
    there is none."""
    found, skipped = plan_steps(model, example_input, last)
    if not found:
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise ValueError(
            "the model has no Linear, Conv1D or Conv2d layer SIS can sparsify"
            + (f" ({why})" if why else "")
        )
    return found


def check_plain(chain: list[Step], method: str) -> None:
    """``ValueError`` when a layer of the pass already carries a reparametrisation: a post-training
    pass starts from a plain trained model."""
    for step in chain:
        if parametrize.is_parametrized(step.layer):
            raise ValueError(
                f"layer {step.name!r} already has a reparametrisation (a mask?); {method} starts "
                "from a plain trained model: bake it first (a method's finalize does)"
            )


def pass_coverage(
    model: nn.Module, done: set[str], skipped: dict[str, str], otherwise: str
) -> dict[str, str]:
    """Coverage of a layer-by-layer pass: the weights of the layers in ``done`` are covered; every
    other weight matrix says why it stayed dense (``skipped[layer]``, else ``otherwise``)."""
    report = coverage(model)
    weights = {f"{layer}.weight" for layer in done}
    for name, why in report.items():
        if why == COVERED and name not in weights:
            report[name] = skipped.get(name.rpartition(".")[0], otherwise)
    return report


def folded(step: Step) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W, b, scale) of the layer with its BatchNorm (eval mode) folded in, W as its GEMM matrix
    (out × in·kh·kw); scale is the BN's per-channel γ/√(var + ε) (ones without BN)."""
    layer = step.layer
    w = layer.weight.detach().t() if step.transposed else gemm_view(layer.weight.detach())
    zeros = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    b = layer.bias.detach() if layer.bias is not None else zeros
    scale = torch.ones_like(zeros)
    bn = step.batchnorm
    if bn is not None:
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        b = (b - bn.running_mean) * scale + bn.bias.detach()
        w = w * scale[:, None]
    return w, b, scale


@torch.no_grad()
def write_back(step: Step, w: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> None:
    """Store a solved (W, b) of the folded layer in the model, exactly: W / scale into the layer
    (zeros stay exact zeros; a channel with scale 0 outputs a constant, so its weights become 0),
    and the bias into the layer, or into the BN's β so that BN(layer(x)) = W x + b."""
    layer, bn = step.layer, step.batchnorm
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    raw = torch.where((scale == 0)[:, None], torch.zeros_like(w), w / safe[:, None])
    layer.weight.copy_(raw.t() if step.transposed else from_gemm_view(raw, layer.weight.shape))
    if bn is None:
        if layer.bias is not None:
            layer.bias.copy_(b)
        elif bool(b.any()):
            raise ValueError(f"layer {step.name!r} has no bias, but the solution needs one")
        return
    own = layer.bias if layer.bias is not None else torch.zeros_like(b)
    bn.bias.copy_(b - (own - bn.running_mean) * scale)


def patches(step: Step, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as GEMM rows: x itself for a Linear, im2col patches (one row per output
    position) for a Conv2d, in the (C, kh, kw) order of the weight's GEMM matrix."""
    layer = step.layer
    if not isinstance(layer, nn.Conv2d):  # a Linear: every position of a sequence is a sample
        return x.reshape(-1, x.shape[-1])
    padding = zero_padding(layer)
    if padding is None:
        raise TypeError(f"layer {step.name!r}: SIS supports symmetric zero padding only")
    cols = im2col(x, layer.kernel_size, layer.stride, padding, layer.dilation)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def rows(step: Step, y: torch.Tensor) -> torch.Tensor:
    """The layer's output as GEMM rows (one per sample, or per sample × output position)."""
    if isinstance(step.layer, nn.Conv2d):
        return y.permute(0, 2, 3, 1).reshape(-1, y.shape[1])
    return y.reshape(-1, y.shape[-1])


__all__ = [
    "ACTIVATION_OF",
    "Step",
    "check_plain",
    "folded",
    "pass_coverage",
    "patches",
    "plan_steps",
    "rows",
    "steps",
    "write_back",
    "zero_padding",
]
