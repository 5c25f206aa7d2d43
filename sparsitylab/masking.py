"""Fixed-mask reparametrisation: W_eff = W ⊙ M, built on ``torch.nn.utils.parametrize``.

A masked layer computes with ``layer.weight`` = ``original ⊙ mask``; the trainable tensor lives in
``layer.parametrizations.weight.original`` (the *same* Parameter object, so an optimiser built
before masking keeps working) and the boolean mask is a buffer ``...parametrizations.weight.0.mask``.
Hence:

- pruned weights are **exactly zero in every forward pass**, whatever SGD momentum or weight decay
  do to the stored original (the classic "pruned weights come back" complaint, REFERENCE §4.11);
- the loss gradient of a pruned original is exactly zero (∂(w·0)/∂w = 0);
- ``state_dict`` holds originals and masks (plain tensors, loadable with ``weights_only=True``);
  :func:`load_masked_state_dict` re-creates the masks on a fresh model before loading;
- :func:`remove_masks` bakes the product in and leaves an ordinary model with exact zeros.

Introduced in Chapter 1 (``book/01_unstructured_pruning``); reused for fixed-structure
fine-tuning (SSL, Network Slimming, ASP) in later chapters.
"""

from __future__ import annotations

from collections.abc import Mapping

import torch
from torch import nn
from torch.nn.utils import parametrize

from .metrics import prunable_layers

MASK_KEY = ".parametrizations.weight.0.mask"


class FixedMask(nn.Module):
    """Parametrisation ``w ↦ w ⊙ mask`` with a boolean ``mask`` buffer (True = kept)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.detach().to(torch.bool).clone())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return w * self.mask


def _mask_param(layer: nn.Module) -> FixedMask | None:
    if not parametrize.is_parametrized(layer, "weight"):
        return None
    found = [p for p in layer.parametrizations.weight if isinstance(p, FixedMask)]
    return found[0] if found else None


def _layer(model: nn.Module, name: str) -> nn.Module:
    try:
        layer = model.get_submodule(name)
    except AttributeError:
        raise ValueError(f"masks name layer {name!r}, which the model does not have; "
                         f"prunable layers are {list(prunable_layers(model))}") from None
    if not isinstance(getattr(layer, "weight", None), torch.Tensor):
        raise ValueError(f"layer {name!r} ({type(layer).__name__}) has no weight tensor to mask")
    return layer


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Mask ``model`` in place: ``masks`` maps layer name → boolean keep-mask of its weight's shape.

    A layer that is already masked gets its mask replaced (this is how a schedule updates masks).
    The stored original is also zeroed where the mask is False, so a weight that is ever un-masked
    regrows from 0. Returns ``model``.
    """
    for name, mask in masks.items():
        layer = _layer(model, name)
        if not isinstance(mask, torch.Tensor):
            raise TypeError(f"masks[{name!r}] must be a torch.Tensor, got {type(mask).__name__}")
        if tuple(mask.shape) != tuple(layer.weight.shape):
            raise ValueError(f"masks[{name!r}] has shape {tuple(mask.shape)} but {name}.weight has shape "
                             f"{tuple(layer.weight.shape)}")
        keep = mask.detach().to(device=layer.weight.device, dtype=torch.bool)
        existing = _mask_param(layer)
        if existing is None:
            parametrize.register_parametrization(layer, "weight", FixedMask(keep))
        else:
            existing.mask.copy_(keep)
        with torch.no_grad():
            layer.parametrizations.weight.original.mul_(keep)
    return model


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Layer name → boolean keep-mask, for every masked layer (in module order)."""
    return {name: p.mask for name, m in model.named_modules() if (p := _mask_param(m)) is not None}


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
    """Bake ``original ⊙ mask`` into a plain ``weight`` Parameter for every masked layer (in place).

    Safe on deep copies: removing the masks of a copy leaves the original masked, and vice versa.
    """
    for name in get_masks(model):
        layer = model.get_submodule(name)
        _own_class(layer)
        parametrize.remove_parametrizations(layer, "weight", leave_parametrized=True)
    return model


def reapply_masks(model: nn.Module) -> None:
    """Zero the stored originals at masked positions (cosmetic: the forward pass is already exact).

    Useful before reading ``...original`` directly, e.g. to plot raw weights.
    """
    with torch.no_grad():
        for name, mask in get_masks(model).items():
            model.get_submodule(name).parametrizations.weight.original.mul_(mask)


def masked_layer_names(state_dict: Mapping[str, torch.Tensor]) -> list[str]:
    """Names of the layers whose masks a ``state_dict`` saved by a masked model contains."""
    return [key[: -len(MASK_KEY)] for key in state_dict if key.endswith(MASK_KEY)]


def load_masked_state_dict(model: nn.Module, state_dict: Mapping[str, torch.Tensor], strict: bool = True) -> nn.Module:
    """Load a masked model's ``state_dict`` into ``model`` (masked or not): masks first, then values."""
    masks = {name: state_dict[name + MASK_KEY] for name in masked_layer_names(state_dict)}
    apply_masks(model, masks)
    model.load_state_dict(state_dict, strict=strict)
    return model


__all__ = ["FixedMask", "apply_masks", "get_masks", "is_masked", "remove_masks", "reapply_masks",
           "masked_layer_names", "load_masked_state_dict"]
