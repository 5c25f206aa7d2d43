"""Fixed-mask reparametrisation: W_eff = W ⊙ M, built on ``torch.nn.utils.parametrize``.

A masked layer computes with ``layer.weight`` = ``original ⊙ mask``; the trainable tensor lives in
``layer.parametrizations.weight.original`` (the *same* Parameter object, so an optimiser built
before masking keeps working) and the boolean mask is a buffer
``...parametrizations.weight.0.mask``. Hence:

- pruned weights are **exactly zero in every forward pass**, whatever SGD momentum or weight decay
  do to the stored original (the classic "pruned weights come back" complaint, REFERENCE §4.11);
- the loss gradient of a pruned original is exactly zero (∂(w·0)/∂w = 0);
- ``state_dict`` holds originals and masks (plain tensors, loadable with ``weights_only=True``);
  :func:`load_masked_state_dict` re-creates the masks on a fresh model before loading;
- :func:`remove_masks` bakes the product in and leaves an ordinary model with exact zeros.

A mask is named by its layer (``"fc1"``: the layer's ``weight``) or by a parameter (``"fc1.bias"``,
``"bn.weight"``), so a method can also freeze the zeros of biases and BatchNorm γ, β (SSL does).

Introduced in Chapter 1 (``book/01_unstructured_pruning``); reused for fixed-structure
fine-tuning (SSL, Network Slimming, ASP) in later chapters.
"""

from __future__ import annotations

import re
from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from ..metrics import prunable_layers

MASK_KEY = re.compile(r"\.parametrizations\.(\w+)\.0\.mask$")


class FixedMask(nn.Module):
    """Parametrisation ``w ↦ w ⊙ mask`` with a boolean ``mask`` buffer (True = kept)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.detach().to(torch.bool).clone())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def _mask_param(layer: nn.Module, tensor: str = "weight") -> FixedMask | None:
    if not parametrize.is_parametrized(layer, tensor):
        return None
    found = [p for p in getattr(layer.parametrizations, tensor) if isinstance(p, FixedMask)]
    return found[0] if found else None


def _target(model: nn.Module, name: str) -> tuple[nn.Module, str]:
    """(module, tensor name) a mask name refers to: a layer name means its ``weight``, else
    ``layer.param``."""
    try:
        layer, tensor = model.get_submodule(name), "weight"
    except AttributeError:
        module_name, _, tensor = name.rpartition(".")
        try:
            layer = model.get_submodule(module_name)
        except AttributeError:
            layer = None
        if layer is None or not hasattr(layer, tensor):
            raise ValueError(
                f"masks name {name!r}, which the model does not have; "
                f"prunable layers are {list(prunable_layers(model))}"
            ) from None
    if not isinstance(getattr(layer, tensor, None), torch.Tensor):
        raise ValueError(f"{name!r} ({type(layer).__name__}) has no {tensor} tensor to mask")
    return layer, tensor


def _mask_name(layer_name: str, tensor: str) -> str:
    return layer_name if tensor == "weight" else f"{layer_name}.{tensor}" if layer_name else tensor


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Mask ``model`` in place: ``masks`` maps a layer name (its weight) or ``layer.param`` →
    boolean keep-mask.

    A layer that is already masked gets its mask replaced (this is how a schedule updates masks).
    The stored original is also zeroed where the mask is False, so a weight that is ever un-masked
    regrows from 0. Returns ``model``.
    """
    for name, mask in masks.items():
        layer, tensor = _target(model, name)
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"masks[{name!r}] must be a torch.Tensor, got {type(mask).__name__}")
        current = getattr(layer, tensor)
        if tuple(mask.shape) != tuple(current.shape):
            raise ValueError(
                f"masks[{name!r}] has shape {tuple(mask.shape)} but its {tensor} has shape "
                f"{tuple(current.shape)}"
            )
        keep = mask.detach().to(device=current.device, dtype=torch.bool)
        existing = _mask_param(layer, tensor)
        if existing is None:
            parametrize.register_parametrization(layer, tensor, FixedMask(keep))
        else:
            existing.mask.copy_(keep)
        with torch.no_grad():
            getattr(layer.parametrizations, tensor).original.mul_(keep)
    return model


def _masked(model: nn.Module) -> list[tuple[str, nn.Module, str, FixedMask]]:
    """(mask name, layer, tensor name, mask module) of every masked tensor, in module order."""
    found = []
    for layer_name, layer in model.named_modules():
        for tensor in layer.parametrizations.keys() if parametrize.is_parametrized(layer) else ():
            if (p := _mask_param(layer, tensor)) is not None:
                found.append((_mask_name(layer_name, tensor), layer, tensor, p))
    return found


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Mask name (layer name for a weight, ``layer.param`` otherwise) → boolean keep-mask, in module
    order."""
    return {name: p.mask for name, _, _, p in _masked(model)}


def is_masked(model: nn.Module) -> bool:
    """True when any layer of ``model`` carries a :class:`FixedMask`."""
    return bool(get_masks(model))


def _own_class(layer: nn.Module) -> None:
    """Give ``layer`` a private copy of its parametrised class.

    ``copy.deepcopy`` of a parametrised module shares the class that ``parametrize`` injected, and
    ``remove_parametrizations`` deletes the ``weight`` property *from that class*, which would
    break every other copy. A private class confines the removal to this layer.
    """
    cls = type(layer)
    namespace = {k: v for k, v in vars(cls).items() if k not in ("__dict__", "__weakref__")}
    layer.__class__ = type(cls.__name__, cls.__bases__, namespace)


def remove_masks(model: nn.Module) -> nn.Module:
    """Bake ``original ⊙ mask`` into a plain Parameter for every masked tensor (in place).

    Safe on deep copies: removing the masks of a copy leaves the original masked, and vice versa.
    """
    for _, layer, tensor, _ in _masked(model):
        _own_class(layer)
        parametrize.remove_parametrizations(layer, tensor, leave_parametrized=True)
    return model


def reapply_masks(model: nn.Module) -> None:
    """Zero the stored originals at masked positions (cosmetic: the forward pass is already exact).

    Useful before reading ``...original`` directly, e.g. to plot raw weights.
    """
    with torch.no_grad():
        for _, layer, tensor, p in _masked(model):
            getattr(layer.parametrizations, tensor).original.mul_(p.mask)


def _saved_masks(state_dict: Mapping[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Mask name (as :func:`get_masks` gives it) → mask, for every mask a masked model's
    ``state_dict`` holds."""
    return {
        _mask_name(key[: m.start()], m.group(1)): value
        for key, value in state_dict.items()
        if (m := MASK_KEY.search(key))
    }


def masked_layer_names(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the masks a ``state_dict`` saved by a masked model contains."""
    return list(_saved_masks(state_dict))


def load_masked_state_dict(
    model: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True
) -> nn.Module:
    """Load a masked model's ``state_dict`` into ``model`` (masked or not): masks first, then
    values."""
    apply_masks(model, _saved_masks(state_dict))
    model.load_state_dict(state_dict, strict=strict)
    return model


__all__ = [
    "FixedMask",
    "apply_masks",
    "get_masks",
    "is_masked",
    "remove_masks",
    "reapply_masks",
    "masked_layer_names",
    "load_masked_state_dict",
]
