"""Save any model — the library's compacted ones and models nobody here wrote — and load it with
``weights_only=True``: nothing is unpickled but tensors and plain data.

Two formats, chosen by :func:`save_model`:

- **architecture as data** (the library's own models, compacted or not): a compacted model has
  layer shapes (and :class:`~sparsitylab.deploy.layers.Gather` /
  :class:`~sparsitylab.deploy.layers.GemmConv2d` modules) that no model builder produces, so next
  to the state dict the file holds, for every module, its class (from an allow-list), its plain
  attributes (``in_features``, ``stride``, …), the shapes of its tensors and its children;
  :func:`load_model` rebuilds the modules from that.
- **a pruning plan** (any other model: a Hugging Face, torchvision, timm or hand-written one): we do
  not rebuild foreign classes from data — their code is the user's. The file holds the
  :class:`~sparsitylab.deploy.surgery.Plan` compaction recorded (which indices of which tensors
  survive, which convs became column GEMMs) and the ``state_dict``; :func:`load_model` takes a
  freshly built instance of the user's own class, replays the plan on it and loads the tensors.
  An unstructured model (no plan) is saved the same way, with an empty plan.

Writes are atomic (:func:`sparsitylab.files.atomic_save`); a reloaded model computes exactly what
the saved one did.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import nn
from torch.nn.utils import parametrize

from .. import models
from ..files import atomic_save
from . import compaction, layers
from .attention import PrunedMultiheadAttention
from .surgery import Plan, apply_plan

FORMAT = "sparsitylab.model/1"
PLAN_FORMAT = "sparsitylab.plan/1"
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
OTHER_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.Sigmoid, nn.Tanh, nn.Softmax)
LIBRARY = (
    layers.Gather,
    layers.GemmConv2d,
    layers.ConstantBranch,
    models.BasicBlock,
    models.ShortcutA,
    models.ResNetCifar,
)
# What the library's models (compacted or not) are made of; nothing else is rebuilt from data.
_CLASSES: dict[str, type[nn.Module]] = {
    cls.__name__: cls
    for cls in (
        *CONTAINERS,
        *compaction.WEIGHT_LAYERS,
        *compaction.PASS_THROUGH,
        *OTHER_LAYERS,
        *LIBRARY,
        PrunedMultiheadAttention,
    )
}
_PLAIN = (bool, int, float, str, type(None))


def _plain(value: Any) -> bool:
    """Whether an attribute is plain data (what the architecture may hold)."""
    if isinstance(value, (tuple, list)):
        return all(_plain(v) for v in value)
    return isinstance(value, _PLAIN)


def _shapes(tensors: dict[str, torch.Tensor | None]) -> dict[str, Any]:
    return {
        k: None if t is None else (tuple(t.shape), str(t.dtype).removeprefix("torch."))
        for k, t in tensors.items()
    }


def architecture(module: nn.Module) -> dict[str, Any]:
    """``module`` as plain data: class, attributes, tensor shapes and children (recursively)."""
    name = type(module).__name__
    if parametrize.is_parametrized(module):
        raise TypeError(
            f"{name} is still reparametrised; save the finalized model (reparam.remove)"
        )
    if _CLASSES.get(name) is not type(module):
        raise TypeError(f"cannot describe a {name} as data; known modules: {sorted(_CLASSES)}")
    return {
        "class": name,
        "attrs": {k: v for k, v in vars(module).items() if k != "training" and _plain(v)},
        "parameters": _shapes(module._parameters),
        "buffers": _shapes(module._buffers),
        "persistent": [k for k in module._buffers if k not in module._non_persistent_buffers_set],
        "children": [
            (k, None if c is None else architecture(c)) for k, c in module._modules.items()
        ],
    }


def _placeholder(shape_and_dtype: tuple | None) -> torch.Tensor | None:
    if shape_and_dtype is None:
        return None
    shape, dtype = shape_and_dtype
    return torch.zeros(shape, dtype=getattr(torch, dtype))


def from_architecture(spec: dict[str, Any]) -> nn.Module:
    """The module :func:`architecture` described, with placeholder tensors of the right shapes."""
    cls = _CLASSES.get(spec.get("class"))
    if cls is None:
        raise ValueError(f"unknown module class {spec.get('class')!r}; known: {sorted(_CLASSES)}")
    module = cls.__new__(cls)
    nn.Module.__init__(module)
    for key, value in spec["attrs"].items():
        setattr(module, key, value)
    for key, saved in spec["parameters"].items():
        tensor = _placeholder(saved)
        module.register_parameter(key, None if tensor is None else nn.Parameter(tensor))
    for key, saved in spec["buffers"].items():
        module.register_buffer(key, _placeholder(saved), key in spec["persistent"])
    for key, child in spec["children"]:
        module.add_module(key, None if child is None else from_architecture(child))
    return module


def describable(model: nn.Module) -> bool:
    """Whether ``model`` is made only of modules :func:`architecture` can write as data."""
    return all(_CLASSES.get(type(m).__name__) is type(m) for m in model.modules())


def save_model(path: str | os.PathLike, model: nn.Module, plan: Plan | dict | None = None) -> Path:
    """Write ``model`` atomically, as architecture-as-data when the library can describe it, else
    as its pruning plan + state dict (module docstring). ``plan``: the removal to record for a
    foreign model (default: the one :func:`~sparsitylab.deploy.compaction.compact` attached, or
    none). Load it with :func:`load_model`."""
    reparametrised = [n for n, m in model.named_modules() if parametrize.is_parametrized(m)]
    if reparametrised:
        raise TypeError(
            f"{type(model).__name__} is still reparametrised ({reparametrised[:3]}); save the "
            "finalized model (a method's finalize, or reparam.remove)"
        )
    if describable(model) and plan is None:
        content = {"format": FORMAT, "architecture": architecture(model)}
    else:
        recorded = plan if plan is not None else getattr(model, "sparsitylab_plan", None)
        if isinstance(recorded, Plan):
            recorded = recorded.to_dict()
        content = {
            "format": PLAN_FORMAT,
            "model": type(model).__qualname__,
            "plan": recorded or Plan().to_dict(),
        }
    return atomic_save({**content, "state_dict": model.state_dict()}, path)


def load_model(
    path: str | os.PathLike,
    map_location: str | torch.device = "cpu",
    model: nn.Module | None = None,
) -> nn.Module:
    """The model :func:`save_model` wrote (``torch.load(weights_only=True)``), in eval mode. A
    file holding a pruning plan needs ``model``: a freshly built instance of the class it was saved
    from (the plan is replayed on it, in place, then the tensors are loaded)."""
    saved = torch.load(path, weights_only=True, map_location=map_location)
    kind = saved.get("format") if isinstance(saved, dict) else None
    if kind == FORMAT:
        rebuilt = from_architecture(saved["architecture"])
        rebuilt.load_state_dict(saved["state_dict"])
        return rebuilt.eval()
    if kind != PLAN_FORMAT:
        raise ValueError(f"{path} was not written by sparsitylab.deploy.serialize.save_model")
    if model is None:
        raise ValueError(
            f"{path} holds a pruning plan for a {saved['model']}: pass a freshly built instance "
            f"of that class, load_model(path, model={saved['model']}(...))"
        )
    if type(model).__qualname__ != saved["model"]:
        raise ValueError(
            f"{path} was saved from a {saved['model']}; model is a {type(model).__qualname__}"
        )
    apply_plan(model, Plan.from_dict(saved["plan"]))
    model.to(map_location)
    try:
        model.load_state_dict(saved["state_dict"])
    except RuntimeError as error:
        raise ValueError(
            f"{path}: the tensors do not fit {saved['model']} after its plan "
            f"({str(error).splitlines()[0]}); build the model with the configuration it was "
            "saved from"
        ) from error
    return model.eval()


__all__ = [
    "FORMAT",
    "PLAN_FORMAT",
    "architecture",
    "describable",
    "from_architecture",
    "load_model",
    "save_model",
]
