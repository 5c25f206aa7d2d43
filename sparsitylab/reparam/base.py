"""Reparametrisations, found, saved, loaded and removed by their class — never by position.

A reparametrisation P is a module registered on a tensor of a layer with
``torch.nn.utils.parametrize``: the layer computes with P(original), and the trainable tensor lives
in ``layer.parametrizations.<tensor>.original`` (the *same* Parameter object, so an optimizer built
before keeps working). Several can be stacked on one tensor: P₂(P₁(original)).

Every reparametrisation of the library derives from :class:`Reparametrization`, which writes its
class name and settings into the ``state_dict``
(``<layer>.parametrizations.<tensor>.<i>._extra_state``). Hence a plain ``model.state_dict()``
describes its own stack, and :func:`load_state_dict` rebuilds it on a fresh model — classes, order
and tensors — from a file loaded with ``torch.load(..., weights_only=True)``.

- :func:`find` — every reparametrisation of a class, in module and stack order;
- :func:`attach` — put one on top of a tensor's stack;
- :func:`remove` — bake instances of a class into the stored tensor (the model stays the same
  function);
- :func:`load_state_dict` / :func:`saved_stacks` — rebuild and load, or just read what a state_dict
  holds.
"""

from __future__ import annotations

import copy
import re
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils import parametrize

_KEY = re.compile(
    r"^(?:(?P<path>.*)\.)?parametrizations\.(?P<tensor>\w+)\.(?P<index>\d+)\.(?P<rest>.+)$"
)
_ORIGINAL = re.compile(r"^(?:(?P<path>.*)\.)?parametrizations\.(?P<tensor>\w+)\.original\d*$")


class Reparametrization(nn.Module):
    """Base class: a parametrisation that names itself in the ``state_dict`` and rebuilds from it.

    Subclasses implement ``forward(tensor)`` and :meth:`from_state`; :meth:`settings` returns their
    non-tensor hyperparameters (ints, floats, strings, bools), saved next to the class name.
    """

    registry: ClassVar[dict[str, type[Reparametrization]]] = {}

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        if cls.__name__ in Reparametrization.registry:
            raise TypeError(
                f"a Reparametrization named {cls.__name__!r} exists already; names must be unique"
            )
        Reparametrization.registry[cls.__name__] = cls

    def settings(self) -> dict[str, Any]:
        """Hyperparameters that are not tensors (saved in the ``state_dict``)."""
        return {}

    @classmethod
    def from_state(
        cls, tensors: Mapping[str, torch.Tensor], settings: Mapping[str, Any]
    ) -> Reparametrization:
        """Rebuild from this module's saved tensors (keys relative to it) and :meth:`settings`."""
        raise NotImplementedError(f"{cls.__name__} cannot be rebuilt from a state_dict")

    def get_extra_state(self) -> dict[str, Any]:
        return {"class": type(self).__name__, **self.settings()}

    def set_extra_state(self, state: Any) -> None:
        saved = state.get("class") if isinstance(state, Mapping) else None
        if saved != type(self).__name__:
            raise ValueError(
                f"the state_dict holds a {saved!r} reparametrisation where this model has a "
                f"{type(self).__name__}; load into a fresh model (reparam.load_state_dict)"
            )


@dataclass(frozen=True)
class Found:
    """One reparametrisation in a model: where it sits and what it is."""

    layer_name: str
    layer: nn.Module
    tensor: str
    index: int
    module: Reparametrization

    @property
    def name(self) -> str:
        """The layer name for a weight (``"fc1"``), else ``"layer.tensor"`` (``"fc1.bias"``)."""
        return tensor_name(self.layer_name, self.tensor)


def tensor_name(layer_name: str, tensor: str) -> str:
    """How the library names a tensor: the layer for its weight, ``layer.tensor`` otherwise."""
    if tensor == "weight":
        return layer_name
    return f"{layer_name}.{tensor}" if layer_name else tensor


def stack(layer: nn.Module, tensor: str) -> list[nn.Module]:
    """The parametrisations on ``layer.<tensor>``, bottom (applied first) to top; [] if none."""
    return (
        list(getattr(layer.parametrizations, tensor))
        if parametrize.is_parametrized(layer, tensor)
        else []
    )


def find(model: nn.Module, cls: type[Reparametrization] = Reparametrization) -> list[Found]:
    """Every instance of ``cls`` in ``model``, in module order and, on one tensor, bottom to top."""
    found = []
    for layer_name, layer in model.named_modules():
        if not parametrize.is_parametrized(layer):
            continue
        for tensor in layer.parametrizations:
            found += [
                Found(layer_name, layer, tensor, i, p)
                for i, p in enumerate(stack(layer, tensor))
                if isinstance(p, cls)
            ]
    return found


def attach(layer: nn.Module, tensor: str, reparametrization: Reparametrization) -> None:
    """Put ``reparametrization`` on top of ``layer.<tensor>``'s stack."""
    if not isinstance(reparametrization, Reparametrization):
        raise TypeError(
            f"reparametrization must be a sparsitylab Reparametrization, got "
            f"{type(reparametrization).__name__}"
        )
    parametrize.register_parametrization(layer, tensor, reparametrization)


def _own_class(layer: nn.Module) -> None:
    """Give ``layer`` a private copy of its parametrised class.

    ``copy.deepcopy`` of a parametrised module shares the class that ``parametrize`` injected, and
    ``remove_parametrizations`` deletes the tensor's property *from that class*, which would break
    every other copy. A private class confines the removal to this layer.
    """
    cls = type(layer)
    namespace = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    layer.__class__ = type(cls.__name__, cls.__bases__, namespace)


@torch.no_grad()
def _bake_bottom(layer: nn.Module, tensor: str, count: int) -> None:
    """Bake the ``count`` lowest parametrisations of ``layer.<tensor>`` into its stored original."""
    plist = getattr(layer.parametrizations, tensor)
    if count == len(plist):
        _own_class(layer)
        parametrize.remove_parametrizations(layer, tensor, leave_parametrized=True)
        return
    value = plist.original
    for p in list(plist)[:count]:
        value = p(value)
    plist.original.copy_(value)
    for _ in range(count):
        del plist[0]


def clone(model: nn.Module) -> nn.Module:
    """A deep copy of a (possibly reparametrised) model. Copied without autograd: an RNN caches
    its parametrised weights (``_flat_weights``) when copied, and a cached tensor with a grad
    history cannot be deep-copied."""
    with torch.no_grad():
        for module in model.modules():
            if isinstance(module, nn.RNNBase):  # re-cache its weights without a grad history
                module._init_flat_weights()
        return copy.deepcopy(model)


def remove(model: nn.Module, cls: type[Reparametrization] = Reparametrization) -> nn.Module:
    """Bake every instance of ``cls`` into the tensor it acts on (in place); ``model`` computes the
    same.

    A reparametrisation can only be baked together with everything below it on its stack (its input
    must be the stored tensor): removing one that sits on top of another class raises
    ``ValueError``. Safe on deep copies: removing from a copy leaves the original model unchanged,
    and vice versa.
    """
    done: set[tuple[int, str]] = set()
    for f in find(model, cls):
        if (id(f.layer), f.tensor) in done:
            continue
        done.add((id(f.layer), f.tensor))
        layers = stack(f.layer, f.tensor)
        top = max(i for i, p in enumerate(layers) if isinstance(p, cls))
        below = [type(p).__name__ for p in layers[:top] if not isinstance(p, cls)]
        if below:
            raise ValueError(
                f"cannot remove {cls.__name__} from {f.name!r}: it sits on top of {below}; "
                f"remove those first (or remove every reparametrisation)"
            )
        _bake_bottom(f.layer, f.tensor, top + 1)
    return model


def saved_stacks(state_dict: Mapping[str, Any]) -> dict[str, list[str]]:
    """Tensor name (as :attr:`Found.name`) → class names of the reparametrisations a ``state_dict``
    holds, bottom to top."""
    return {
        name: [entry["class"] for entry in entries]
        for name, (_, _, entries) in _saved(state_dict).items()
    }


def _saved(state_dict: Mapping[str, Any]) -> dict[str, tuple[str, str, list[dict[str, Any]]]]:
    """Tensor name → (layer path, tensor, [{"class", "settings", "tensors"} per stack position])."""
    raw: dict[tuple[str, str], dict[int, dict[str, Any]]] = {}
    for key, value in state_dict.items():
        if original := _ORIGINAL.match(key):
            raw.setdefault((original["path"] or "", original["tensor"]), {})
        match = _KEY.match(key)
        if match is None:
            continue
        entry = raw.setdefault((match["path"] or "", match["tensor"]), {}).setdefault(
            int(match["index"]), {"class": None, "settings": {}, "tensors": {}}
        )
        if match["rest"] == "_extra_state":
            if not isinstance(value, Mapping) or "class" not in value:
                raise ValueError(f"{key} does not describe a sparsitylab reparametrisation")
            entry["class"], entry["settings"] = (
                value["class"],
                {k: v for k, v in value.items() if k != "class"},
            )
        else:
            entry["tensors"][match["rest"]] = value
    out = {}
    for (path, tensor), by_index in raw.items():
        entries = [by_index[i] for i in sorted(by_index)]
        name = tensor_name(path, tensor)
        if (
            not entries
            or sorted(by_index) != list(range(len(by_index)))
            or any(e["class"] is None for e in entries)
        ):
            raise ValueError(
                f"the state_dict's parametrisations of {name!r} are not all sparsitylab "
                "reparametrisations (no _extra_state); rebuild them before loading"
            )
        out[name] = (path, tensor, entries)
    return out


def load_state_dict(
    model: nn.Module, state_dict: Mapping[str, Any], strict: bool = True
) -> nn.Module:
    """Load a ``state_dict`` saved from a reparametrised model into ``model``, rebuilding the stacks
    first.

    On a plain model every saved stack is rebuilt (classes from the saved names, tensors from the
    file); a tensor that already carries a stack must carry the same classes in the same order.
    """
    for name, (path, tensor, entries) in _saved(state_dict).items():
        try:
            layer = model.get_submodule(path)
        except AttributeError:
            raise ValueError(
                f"the state_dict reparametrises {name!r}, which the model does not have"
            ) from None
        wanted = [e["class"] for e in entries]
        present = [type(p).__name__ for p in stack(layer, tensor)]
        if present and present != wanted:
            raise ValueError(f"{name!r} carries {present} but the state_dict holds {wanted}")
        if present:
            continue
        for entry in entries:
            if entry["class"] not in Reparametrization.registry:
                raise ValueError(
                    f"{name!r}: unknown reparametrisation class {entry['class']!r}; "
                    f"known: {sorted(Reparametrization.registry)}"
                )
            rebuilt = Reparametrization.registry[entry["class"]].from_state(
                entry["tensors"], entry["settings"]
            )
            attach(layer, tensor, rebuilt.to(getattr(layer, tensor).device))
    model.load_state_dict(state_dict, strict=strict)
    return model


__all__ = [
    "Found",
    "Reparametrization",
    "attach",
    "clone",
    "find",
    "load_state_dict",
    "remove",
    "saved_stacks",
    "stack",
    "tensor_name",
]
