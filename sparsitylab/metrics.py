"""What a sparse model costs: sparsity, parameter and non-zero counts, FLOPs/MACs, latency.

**Sparsity, one vocabulary** (the book's glossary says the same): sparsity = exact zeros / total, of
one of

- ``"weights"`` (the default, and what every "sparsity" in the book means unless it says otherwise):
  every weight matrix (:mod:`sparsitylab.coverage`: Linear, Conv1d/2d/3d, attention projections,
  RNN weights) — biases, norms and embedding tables excluded, as RigL and STR count;
- ``"parameters"``: every parameter (biases and BatchNorm γ, β included);
- ``"bn"``: the BatchNorm scales γ (channels switched off, as channel-pruning methods count);
- ``"rows"`` / ``"columns"``: whole rows (filters, neurons) or columns (shape fibers, inputs) of
  the weight matrices' GEMM views (:mod:`sparsitylab.gemm`) that are entirely zero — structured
  sparsity.

Comparisons (from :mod:`sparsitylab.significance`): :func:`paired_bootstrap` and :func:`mcnemar` on
the same test images, :func:`seed_interval` over training seeds, :func:`standard_error`.

Costs: :func:`count_macs` traces one forward pass and counts every matmul, convolution and attention
product (PyTorch's ``torch.utils.flop_counter`` formulas), so tokens, attention and recurrences
count; :func:`layer_costs` is the per-layer table of the Linear and Conv2d layers.

A mask function's ``sparsity`` argument counts its own candidates (weights, blocks, groups); see
:mod:`sparsitylab.sparsify.masks`. When a weight is reparametrised (``torch.nn.utils.parametrize``),
the *effective* weight is counted.
"""

from __future__ import annotations

from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import torch
from torch import nn
from torch.utils import flop_counter
from torch.utils._python_dispatch import TorchDispatchMode

from ._checks import check_choice
from .coverage import all_matrices
from .gemm import alive_columns, alive_rows, gemm_view
from .graph.tracer import call, unfused
from .models import eval_mode
from .significance import (  # the statistics of comparing two measured accuracies
    Interval,
    McNemar,
    mcnemar,
    paired_bootstrap,
    seed_interval,
    standard_error,
)
from .timing import Timing, interleaved, measure

PRUNABLE = (nn.Linear, nn.Conv2d)
BATCHNORMS = (nn.modules.batchnorm._BatchNorm,)
OF = ("weights", "parameters", "bn", "rows", "columns")


def prunable_layers(model: nn.Module) -> dict[str, nn.Module]:
    """Named ``nn.Linear`` and ``nn.Conv2d`` modules, in definition order (the book's models' weight
    matrices; :func:`sparsitylab.coverage.weight_matrices` finds those of any model)."""
    return {name: m for name, m in model.named_modules() if isinstance(m, PRUNABLE)}


def _matrices(model: nn.Module) -> dict[str, torch.Tensor]:
    """Mask name → the (effective) value of every weight matrix, outputs first."""
    return {n: w.oriented().detach() for n, w in all_matrices(model).items()}


def _fraction_zero(tensors: list[torch.Tensor], what: str) -> float:
    total = sum(t.numel() for t in tensors)
    if total == 0:
        raise ValueError(f"the model has no {what}: their sparsity is undefined")
    return 1.0 - sum(int(t.count_nonzero()) for t in tensors) / total


def _counted(model: nn.Module, of: str) -> list[torch.Tensor]:
    """The tensors whose zeros ``sparsity(model, of)`` counts (for rows/columns: per-row/column
    liveness)."""
    matrices = _matrices(model).values()
    if of == "weights":
        return list(matrices)
    if of == "parameters":
        return list(effective_parameters(model).values())
    if of == "bn":
        return [
            m.weight.detach() for m in model.modules() if isinstance(m, BATCHNORMS) and m.affine
        ]
    if of == "rows":
        return [alive_rows(gemm_view(w)) for w in matrices]
    return [alive_columns(gemm_view(w)) for w in matrices]


def sparsity(x: torch.Tensor | nn.Module, of: str = "weights") -> float:
    """Fraction of exact zeros: of a tensor, or of a model's ``of`` (see the module docstring)."""
    if isinstance(x, torch.Tensor):
        return _fraction_zero([x.detach()], "entries")
    check_choice(of, "of", OF)
    return _fraction_zero(
        _counted(x, of),
        {
            "weights": "weight matrices",
            "parameters": "parameters",
            "bn": "affine BatchNorm layers",
            "rows": "weight matrices",
            "columns": "weight matrices",
        }[of],
    )


def layer_sparsity(model: nn.Module, of: str = "weights") -> dict[str, float]:
    """Sparsity of each weight matrix (``of="weights"``; named as masks name it: the layer for a
    ``weight``), or of its GEMM ``"rows"`` / ``"columns"``."""
    check_choice(of, "of", ("weights", "rows", "columns"))
    return {name: sparsity(t) for name, t in zip(_matrices(model), _counted(model, of))}


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
    if not layers:  # nothing multiplies by a weight: no MACs to count
        return []
    device = next(model.parameters()).device
    try:
        with eval_mode(model), torch.no_grad():
            model(torch.zeros(input_shape, device=device))
    finally:
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


@dataclass(frozen=True)
class Macs:
    """Multiply-accumulates of one forward pass on an example input: ``dense``, and ``sparse``
    (each matmul or convolution with a parameter scaled by that parameter's density — what an
    ideal sparse kernel computes)."""

    dense: int
    sparse: int


class _MacCounter(TorchDispatchMode):
    """Counts every matmul, convolution and attention op with ``torch.utils.flop_counter``'s
    formulas (plus the CPU attention kernel, which that registry lacks)."""

    def __init__(self, parameters: set[int]):
        super().__init__()
        self.parameters, self.dense, self.sparse = parameters, 0.0, 0.0

    def _density(self, args) -> float:
        for a in args:
            if isinstance(a, torch.Tensor) and a.dim() >= 2:  # a weight, not a bias
                owner = a if id(a) in self.parameters else a._base
                if owner is not None and id(owner) in self.parameters and owner.numel():
                    return int(owner.count_nonzero()) / owner.numel()
        return 1.0

    def __torch_dispatch__(self, func, types, args=(), kwargs=None):
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        packet = func.overloadpacket
        if packet in flop_counter.flop_registry:
            flops = flop_counter.flop_registry[packet](*args, **kwargs, out_val=out)
        elif packet.__name__ == "_scaled_dot_product_flash_attention_for_cpu":
            flops = flop_counter.sdpa_flop_count(args[0].shape, args[1].shape, args[2].shape)
        else:
            return out
        self.dense += flops / 2
        self.sparse += flops / 2 * self._density(args)
        return out


@torch.no_grad()
def count_macs(model: nn.Module, example_input: Any) -> Macs:
    """MACs of ``model`` on ``example_input`` (a tensor, a tuple of arguments or a dict of keyword
    arguments), dense and sparse-aware; per sample when the input holds one sample. Eval mode;
    the model's mode is restored."""
    parameters = {id(p) for p in model.parameters()}
    counter = _MacCounter(parameters)
    with eval_mode(model), unfused(), counter:  # fused kernels would hide their products
        call(model, example_input)
    return Macs(round(counter.dense), round(counter.sparse))


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


def model_latency(
    model: nn.Module,
    input_shape: tuple[int, ...] = (256, 1, 28, 28),
    min_run_time: float = 0.2,
    num_threads: int | None = None,
) -> Timing:
    """Inference latency of ``model`` on a zero batch of ``input_shape`` (eval mode; the model's
    mode is restored). Steady state, :func:`sparsitylab.timing.measure`."""
    device = next(model.parameters()).device
    x = torch.zeros(input_shape, device=device)
    with eval_mode(model):
        return measure(lambda: model(x), min_run_time, num_threads)


def compare_latency(
    models: Mapping[str, nn.Module],
    x: torch.Tensor,
    repeats: int = 30,
    warmup: int = 3,
    num_threads: int | None = None,
) -> dict[str, Timing]:
    """Inference latency of several models on the same batch ``x``, timed round-robin
    (:func:`sparsitylab.timing.interleaved`) so a busy machine slows all of them alike; modes are
    restored."""
    with eval_mode(*models.values()):
        return interleaved(
            {name: (lambda m=m: m(x)) for name, m in models.items()}, repeats, warmup, num_threads
        )


__all__ = [
    "Interval",
    "McNemar",
    "OF",
    "PRUNABLE",
    "LayerCost",
    "Macs",
    "compare_latency",
    "count_macs",
    "costs_table",
    "count_nonzeros",
    "count_parameters",
    "effective_parameters",
    "layer_costs",
    "layer_sparsity",
    "mcnemar",
    "model_latency",
    "paired_bootstrap",
    "prunable_layers",
    "seed_interval",
    "sparsity",
    "standard_error",
    "total_macs",
]
