"""Which tensors the weight-level methods prune: every weight matrix of any model, and why anything
else stays dense.

A *weight matrix* is a tensor a layer multiplies its input by: the weight of ``nn.Linear`` and of
``nn.Conv1d/2d/3d`` (grouped and depthwise ones included), the q/k/v projections of
``nn.MultiheadAttention`` (``in_proj_weight``; ``out_proj`` is a Linear), every ``weight_ih_l*`` and
``weight_hh_l*`` of ``nn.RNN/LSTM/GRU``, and Hugging Face's ``Conv1D`` (GPT-2's linear layers,
stored transposed as (in, out)). Magnitude pruning, STR, N:M, ASP and HBS cover all of them by
default; ``scope=`` narrows that:

- ``None`` — every weight matrix;
- ``"layers"`` — the weights of ``nn.Linear`` and ``nn.Conv2d`` modules only (the book's models);
- a list of names — tensor names (``"fc1"`` or ``"fc1.weight"``, ``"attn.in_proj_weight"``) or
  module prefixes (``"encoder.layer.0"``) whose matrices are covered;
- a callable ``(WeightMatrix) -> bool``.

:func:`coverage` reports every parameter of the model: ``"covered"``, or why it stays dense (a bias,
a normalisation scale, an embedding table, outside the scope, …). Nothing is skipped silently.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass

import torch
from torch import nn

COVERED = "covered"
Scope = None | str | Sequence[str] | Callable[["WeightMatrix"], bool]


@dataclass(frozen=True)
class WeightMatrix:
    """One covered tensor: ``name`` is how masks name it (the layer for a ``weight``, else
    ``layer.tensor``); ``transposed`` when it is stored (in, out) (Hugging Face's ``Conv1D``)."""

    name: str
    module_name: str
    attr: str
    module: nn.Module
    kind: str
    transposed: bool = False

    @property
    def tensor(self) -> torch.Tensor:
        """The tensor the layer computes with (a reparametrised one's effective value)."""
        return getattr(self.module, self.attr)

    @property
    def parameter(self) -> str:
        """The full parameter name (``fc1.weight``)."""
        return f"{self.module_name}.{self.attr}" if self.module_name else self.attr

    def oriented(self, tensor: torch.Tensor | None = None) -> torch.Tensor:
        """The tensor with outputs first (out, in, *kernel): transposed back for ``Conv1D``."""
        t = self.tensor if tensor is None else tensor
        return t.t() if self.transposed else t

    def restore(self, tensor: torch.Tensor) -> torch.Tensor:
        """The inverse of :meth:`oriented` (a mask computed outputs-first, stored as the weight)."""
        return tensor.t() if self.transposed else tensor


def _name(module_name: str, attr: str) -> str:
    if attr == "weight":
        return module_name
    return f"{module_name}.{attr}" if module_name else attr


def _named(module: nn.Module, name: str) -> bool:
    """Whether ``module`` is of a class called ``name`` (a parametrised module's class derives from
    its own)."""
    return any(cls.__name__ == name for cls in type(module).__mro__)


def _matrices_of(module_name: str, module: nn.Module) -> list[WeightMatrix]:
    """The weight matrices a module owns directly."""
    found = []

    def add(attr: str, kind: str, transposed: bool = False) -> None:
        if isinstance(getattr(module, attr, None), torch.Tensor):
            found.append(
                WeightMatrix(_name(module_name, attr), module_name, attr, module, kind, transposed)
            )

    if isinstance(module, nn.Linear):
        add("weight", "linear")
    elif isinstance(module, nn.modules.conv._ConvNd) and not module.transposed:
        add("weight", "conv")
    elif isinstance(module, nn.MultiheadAttention) or hasattr(module, "in_proj_weight"):
        for attr in ("in_proj_weight", "q_proj_weight", "k_proj_weight", "v_proj_weight"):
            add(attr, "attention")
    elif isinstance(module, nn.RNNBase):
        for attr in module._flat_weights_names:
            if attr.startswith("weight_"):
                add(attr, "recurrent")
    elif _named(module, "Conv1D") and hasattr(module, "nf"):
        add("weight", "linear", transposed=True)
    elif _named(module, "GemmConv2d"):
        add("weight", "conv")
    return found


def all_matrices(model: nn.Module) -> dict[str, WeightMatrix]:
    """Every weight matrix of ``model``, by mask name, in module order (a matrix tied to an
    embedding table, like a language model's output layer, is the table's and is left out)."""
    if not isinstance(model, nn.Module):
        raise TypeError(f"model must be a torch.nn.Module, got {type(model).__name__}")
    tables = {
        id(m.weight) for m in model.modules() if isinstance(m, (nn.Embedding, nn.EmbeddingBag))
    }
    return {
        w.name: w
        for name, m in model.named_modules()
        for w in _matrices_of(name, m)
        if id(getattr(m, w.attr)) not in tables
    }


def _in_scope(matrix: WeightMatrix, scope: Scope) -> bool:
    if scope is None:
        return True
    if scope == "layers":
        return isinstance(matrix.module, (nn.Linear, nn.Conv2d)) and matrix.attr == "weight"
    if callable(scope):
        return bool(scope(matrix))
    return any(_names(matrix, entry) for entry in scope)


def _names(matrix: WeightMatrix, entry: str) -> bool:
    """Whether a scope entry names ``matrix`` (its name, parameter name or a module prefix)."""
    return entry in (matrix.name, matrix.parameter) or matrix.name.startswith(f"{entry}.")


def check_scope(scope: Scope) -> Scope:
    """Validate a ``scope`` argument (see the module docstring)."""
    if scope is None or scope == "layers" or callable(scope):
        return scope
    if isinstance(scope, str):
        raise TypeError(
            f"scope={scope!r}: give None, 'layers', a list of tensor or module names, or a callable"
        )
    if not all(isinstance(s, str) for s in scope):
        raise TypeError(f"scope={scope!r} must be a list of names (strings)")
    return list(scope)


def weight_matrices(model: nn.Module, scope: Scope = None) -> dict[str, WeightMatrix]:
    """The weight matrices a weight-level method covers under ``scope`` (module docstring);
    ``ValueError`` when a scope names nothing the model has."""
    scope = check_scope(scope)
    every = all_matrices(model)
    chosen = {name: w for name, w in every.items() if _in_scope(w, scope)}
    if isinstance(scope, list):
        unknown = [s for s in scope if not any(_names(w, s) for w in every.values())]
        if unknown:
            raise ValueError(
                f"scope names {unknown}, which hold no weight matrix; the model's are "
                f"{list(every)[:12]}{' …' if len(every) > 12 else ''}"
            )
    if not chosen and scope is not None:
        raise ValueError(f"scope={scope!r} covers no weight matrix of {type(model).__name__}")
    return chosen


def parameter_names(model: nn.Module) -> dict[str, torch.Tensor]:
    """Every parameter by its name, a reparametrised one under the name of the tensor it stands
    for (``fc1.weight``, not ``fc1.parametrizations.weight.original``)."""
    found = {}
    for name, p in model.named_parameters():
        if ".parametrizations." in name:
            if not name.endswith(".original"):
                continue
            layer, rest = name.split(".parametrizations.")
            attr = rest.removesuffix(".original")
            module = model.get_submodule(layer) if layer else model
            found[f"{layer}.{attr}" if layer else attr] = getattr(module, attr).detach()
        else:
            found[name] = p.detach()
    return found


def _dense_reason(model: nn.Module, name: str, tensor: torch.Tensor) -> str:
    module_name, _, attr = name.rpartition(".")
    module = model.get_submodule(module_name) if module_name else model
    if isinstance(module, (nn.Embedding, nn.EmbeddingBag)):
        return "embedding table: its rows are looked up, not multiplied"
    if isinstance(module, nn.modules.conv._ConvTransposeNd) and attr == "weight":
        return "transposed convolution: not covered by weight-level methods"
    if "norm" in type(module).__name__.lower() or isinstance(
        module, nn.modules.batchnorm._NormBase
    ):
        return "normalisation scale or shift (a vector)"
    if "bias" in attr:
        return "bias (a vector)"
    if tensor.dim() < 2:
        return "a vector, not a weight matrix"
    return f"not the weight of a layer the methods know ({type(module).__name__}.{attr})"


def coverage(model: nn.Module, scope: Scope = None) -> dict[str, str]:
    """Every parameter of ``model`` → ``"covered"`` or why it stays dense."""
    every = {w.parameter: w for w in all_matrices(model).values()}
    chosen = {w.parameter for w in weight_matrices(model, scope).values()}
    report = {}
    for name, tensor in parameter_names(model).items():
        if name in chosen:
            report[name] = COVERED
        elif name in every:
            report[name] = "outside the method's scope"
        else:
            report[name] = _dense_reason(model, name, tensor)
    return report


def structured_coverage(model: nn.Module, members: set[str] | list[str]) -> dict[str, str]:
    """Coverage of a structured method: the parameters of the channel groups it prunes (by full
    name) are covered; every other parameter says why not."""
    members = set(members)
    matrices = {w.parameter for w in all_matrices(model).values()}
    report = {}
    for name, tensor in parameter_names(model).items():
        if name in members:
            report[name] = COVERED
        elif name in matrices:
            report[name] = "in no channel group this method prunes (kept whole by the graph)"
        else:
            report[name] = _dense_reason(model, name, tensor)
    return report


__all__ = [
    "COVERED",
    "Scope",
    "WeightMatrix",
    "all_matrices",
    "check_scope",
    "coverage",
    "parameter_names",
    "structured_coverage",
    "weight_matrices",
]
