"""Save any model of the library — compacted ones included — as data, and load it with
``weights_only=True``.

A compacted model has layer shapes (and :class:`~sparsitylab.deploy.compaction.Gather` /
:class:`~sparsitylab.deploy.compaction.GemmConv2d` modules) that no model builder produces, so its
``state_dict`` alone cannot be loaded. :func:`save_model` therefore writes, next to the state dict,
the architecture as plain data: for every module its class (from an allow-list), its plain
attributes (ints, floats, strings, tuples: ``in_features``, ``stride``, …), the shapes of its
parameters and buffers, and its children. :func:`load_model` rebuilds the modules from that
description — no code is unpickled — and loads the tensors, so the outputs are identical. The write
is atomic (:func:`sparsitylab.files.atomic_save`).
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
from . import compaction

FORMAT = "sparsitylab.model/1"
CONTAINERS = (nn.Sequential, nn.ModuleList, nn.ModuleDict)
OTHER_LAYERS = (nn.BatchNorm1d, nn.BatchNorm2d, nn.Sigmoid, nn.Tanh, nn.Softmax)
LIBRARY = (
    compaction.Gather,
    compaction.GemmConv2d,
    compaction.ConstantBranch,
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


def save_model(path: str | os.PathLike, model: nn.Module) -> Path:
    """Write ``model`` (architecture as data + state dict) atomically; load it with
    :func:`load_model`."""
    return atomic_save(
        {"format": FORMAT, "architecture": architecture(model), "state_dict": model.state_dict()},
        path,
    )


def load_model(path: str | os.PathLike, map_location: str | torch.device = "cpu") -> nn.Module:
    """The model :func:`save_model` wrote, rebuilt from data (``torch.load(weights_only=True)``), in
    eval mode."""
    saved = torch.load(path, weights_only=True, map_location=map_location)
    if not isinstance(saved, dict) or saved.get("format") != FORMAT:
        raise ValueError(f"{path} was not written by sparsitylab.deploy.serialize.save_model")
    model = from_architecture(saved["architecture"])
    model.load_state_dict(saved["state_dict"])
    return model.eval()


__all__ = ["FORMAT", "architecture", "from_architecture", "load_model", "save_model"]
