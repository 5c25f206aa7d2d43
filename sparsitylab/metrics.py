"""What a sparse model costs: sparsity, parameter and non-zero counts, FLOPs/MACs, latency.

Conventions used book-wide (REFERENCE §1.10): sparsity = zeros / total, counting exact zeros
of the weights of ``nn.Linear`` and ``nn.Conv2d`` layers (biases and BatchNorm excluded). When a
weight is reparametrised (``torch.nn.utils.parametrize``), the *effective* weight is counted.
"""

from __future__ import annotations

import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import nn

PRUNABLE = (nn.Linear, nn.Conv2d)


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Named ``nn.Linear`` and ``nn.Conv2d`` modules, in definition order."""
    return {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE)}


def sparsity(t: torch.Tensor) -> float:
    """Fraction of exact zeros in a tensor."""
    if t.numel() == 0:
        raise ValueError("sparsity of an empty tensor is undefined")
    return 1.0 - t.count_nonzero().item() / t.numel()


def layer_sparsity(model: nn.Module) -> dict[str, float]:
    """Sparsity of each prunable layer's (effective) weight."""
    return {name: sparsity(m.weight.detach()) for name, m in prunable_layers(model).items()}


def global_sparsity(model: nn.Module) -> float:
    """Zeros / total over the weights of all prunable layers together."""
    weights = [m.weight.detach() for m in prunable_layers(model).values()]
    total = sum(w.numel() for w in weights)
    if total == 0:
        raise ValueError("model has no nn.Linear or nn.Conv2d weights")
    return 1.0 - sum(w.count_nonzero().item() for w in weights) / total


def effective_parameters(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter, with a parametrised weight replaced by its effective value.

    ``torch.nn.utils.parametrize`` stores the raw tensor as
    ``<layer>.parametrizations.weight.original``; the model computes with ``<layer>.weight``, which
    is what we count.
    """
    out = {}
    for name, p in model.named_parameters():
        if ".parametrizations." in name and name.endswith(".original"):
            layer_name, attr = name.split(".parametrizations.")
            layer = model.get_submodule(layer_name) if layer_name else model
            attr = attr.removesuffix(".original")
            out[f"{layer_name}.{attr}"] = getattr(layer, attr).detach()
        else:
            out[name] = p.detach()
    return out


def count_parameters(model: nn.Module) -> int:
    """Number of parameters (a parametrised weight counted once; masks are buffers, not counted)."""
    return sum(t.numel() for t in effective_parameters(model).values())


def count_nonzeros(model: nn.Module) -> int:
    """Non-zero entries over all (effective) parameters."""
    return sum(t.count_nonzero().item() for t in effective_parameters(model).values())


@dataclass(frozen=True)
class LayerCost:
    """One layer's cost for one input sample. MACs = multiply-accumulates; FLOPs = 2·MACs."""

    name: str
    kind: str
    weight_shape: tuple[int, ...]
    output_shape: tuple[int, ...]
    params: int
    nonzeros: int
    macs: int
    sparse_macs: int

    @property
    def flops(self) -> int:
        return 2 * self.macs

    @property
    def sparse_flops(self) -> int:
        return 2 * self.sparse_macs


def layer_costs(
    model: nn.Module,
    input_shape: tuple[int, ...] = (1, 1, 28, 28),
    layer_types: tuple[type[nn.Module], ...] = PRUNABLE,
) -> list[LayerCost]:
    """Per-sample MACs of every Linear/Conv2d layer (or of ``layer_types``), dense and sparse-aware.

    Linear: MACs = in·out. Conv2d: MACs = H_out·W_out·C_out·(C_in/groups)·k_h·k_w, i.e. output
    positions × weight size. The sparse-aware count replaces the weight size by its non-zeros (what
    an ideal sparse kernel would compute). Biases are not counted. Other ``layer_types`` must hold a
    ``weight`` and are counted like Conv2d when their output is an image, else like Linear.
    """
    shapes: dict[str, tuple[int, ...]] = {}
    layers = {name: m for name, m in model.named_modules() if isinstance(m, layer_types)}
    hooks = [
        m.register_forward_hook(
            lambda mod, inp, out, n=n: shapes.__setitem__(n, tuple(out.shape[1:]))
        )
        for n, m in layers.items()
    ]
    device = next(model.parameters()).device
    was_training = model.training
    try:
        model.eval()
        with torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
        model.train(was_training)
        for h in hooks:
            h.remove()
    costs = []
    for name, m in layers.items():
        if name not in shapes:
            continue  # layer not on the forward path (e.g. a dropped branch)
        w = m.weight.detach()
        positions = shapes[name][-2] * shapes[name][-1] if len(shapes[name]) == 3 else 1
        nnz = w.count_nonzero().item()
        costs.append(
            LayerCost(
                name,
                type(m).__name__,
                tuple(w.shape),
                shapes[name],
                w.numel(),
                nnz,
                positions * w.numel(),
                positions * nnz,
            )
        )
    return costs


def total_macs(
    model: nn.Module, input_shape: tuple[int, ...] = (1, 1, 28, 28), sparse: bool = False
) -> int:
    """Sum of per-sample MACs over the Linear/Conv2d layers (sparse-aware if ``sparse``)."""
    return sum(c.sparse_macs if sparse else c.macs for c in layer_costs(model, input_shape))


def costs_table(costs: list[LayerCost]):
    """The layer costs as a pandas DataFrame (one row per layer, plus a total row)."""
    import pandas as pd

    rows = [
        {
            "layer": c.name,
            "type": c.kind,
            "weight": "×".join(map(str, c.weight_shape)),
            "params": c.params,
            "nonzeros": c.nonzeros,
            "sparsity": 1 - c.nonzeros / c.params,
            "MACs": c.macs,
            "sparse MACs": c.sparse_macs,
        }
        for c in costs
    ]
    total = {
        "layer": "total",
        "type": "",
        "weight": "",
        "params": sum(c.params for c in costs),
        "nonzeros": sum(c.nonzeros for c in costs),
        "MACs": sum(c.macs for c in costs),
        "sparse MACs": sum(c.sparse_macs for c in costs),
    }
    total["sparsity"] = 1 - total["nonzeros"] / total["params"]
    return pd.DataFrame(rows + [total]).set_index("layer")


@dataclass(frozen=True)
class Latency:
    """Timing of repeated calls, in seconds."""

    median: float
    q1: float
    q3: float
    repeats: int

    def __str__(self) -> str:
        return f"{self.median * 1e3:.3f} ms (IQR {self.q1 * 1e3:.3f}-{self.q3 * 1e3:.3f} ms, n={self.repeats})"


def measure_latency(
    fn: Callable[[], object], warmup: int = 5, repeats: int = 30, cuda: bool | None = None
) -> Latency:
    """Median wall time of ``fn()`` after ``warmup`` calls, synchronising CUDA around each call.

    ``cuda=None`` synchronises whenever CUDA is available. Runs under ``torch.no_grad``.
    """
    if warmup < 0 or repeats < 1:
        raise ValueError(f"warmup={warmup} must be ≥ 0 and repeats={repeats} ≥ 1")
    sync = (
        torch.cuda.synchronize
        if (torch.cuda.is_available() if cuda is None else cuda)
        else (lambda: None)
    )
    times = []
    with torch.no_grad():
        for i in range(warmup + repeats):
            sync()
            start = time.perf_counter()
            fn()
            sync()
            if i >= warmup:
                times.append(time.perf_counter() - start)
    q = statistics.quantiles(times, n=4) if len(times) > 1 else [times[0]] * 3
    return Latency(statistics.median(times), q[0], q[2], repeats)


def model_latency(
    model: nn.Module, input_shape: tuple[int, ...] = (256, 1, 28, 28), **kwargs
) -> Latency:
    """Inference latency of ``model`` on a zero batch of ``input_shape`` (eval mode)."""
    device = next(model.parameters()).device
    x = torch.zeros(input_shape, device=device)
    model.eval()
    return measure_latency(lambda: model(x), cuda=device.type == "cuda", **kwargs)


__all__ = [
    "PRUNABLE",
    "prunable_layers",
    "sparsity",
    "layer_sparsity",
    "global_sparsity",
    "effective_parameters",
    "count_parameters",
    "count_nonzeros",
    "LayerCost",
    "layer_costs",
    "total_macs",
    "costs_table",
    "Latency",
    "measure_latency",
    "model_latency",
]
