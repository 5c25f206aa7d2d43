"""Fixed-mask reparametrisation: W_eff = W ⊙ M, built on ``torch.nn.utils.parametrize``.

A masked layer computes with ``layer.weight`` = ``original`` where the boolean mask is True and
exactly 0 elsewhere (a select, so even a NaN or ±inf stored at a pruned position gives 0); the
trainable tensor lives in ``layer.parametrizations.weight.original``. Hence:

- pruned weights are **exactly zero in every forward pass**, whatever SGD momentum or weight decay
  do to the stored original (the classic "pruned weights come back" complaint about re-zeroing after
  each step);
- the loss gradient of a pruned original is exactly zero;
- ``state_dict`` holds originals and masks (plain tensors, loadable with ``weights_only=True``);
  :func:`sparsitylab.reparam.load_state_dict` rebuilds the masks on a fresh model before loading;
- :func:`remove_masks` bakes the masks in and leaves an ordinary model with exact zeros.

A mask is named by its layer (``"fc1"``: the layer's ``weight``) or by a parameter (``"fc1.bias"``,
``"bn.weight"``), so a method can also freeze the zeros of biases and BatchNorm γ, β (SSL does).
Masks are found by their class (:class:`FixedMask`), so other reparametrisations may share the
tensor.

Introduced in Chapter 1 (``book/01_unstructured_pruning``); reused for fixed-structure fine-tuning
(SSL, Network Slimming, ASP) in later chapters.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .._checks import check_tensor
from ..metrics import prunable_layers
from ..sparsify.masks import zero_pruned
from .base import Reparametrization, attach, find, remove, stack


class FixedMask(Reparametrization):
    """Parametrisation ``w ↦ w`` where ``mask`` is True, else exactly 0 (``mask`` is a boolean
    buffer)."""

    def __init__(self, mask: torch.Tensor):
        super().__init__()
        self.register_buffer("mask", mask.detach().to(torch.bool).clone())

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        return zero_pruned(w, self.mask)

    @classmethod
    def from_state(
        cls, tensors: Mapping[str, torch.Tensor], settings: Mapping[str, Any]
    ) -> FixedMask:
        return cls(tensors["mask"])


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


def apply_masks(model: nn.Module, masks: Mapping[str, torch.Tensor]) -> nn.Module:
    """Mask ``model`` in place: ``masks`` maps a layer name (its weight) or ``layer.param`` →
    boolean keep-mask.

    A tensor that is already masked gets its mask replaced (this is how a schedule updates masks); a
    new mask goes on top of any other reparametrisation of the tensor. When the mask acts directly
    on the stored original (nothing below it), the original is zeroed where the mask is False, and
    where a replaced mask un-masks an entry, so a weight that is un-masked regrows from 0 (between
    two masks, momentum and weight decay may move the hidden stored entries; the forward pass never
    sees them). Every mask is checked before any is applied: a bad one raises with ``model``
    unchanged. Returns ``model``.
    """
    checked = []
    for name, mask in masks.items():
        layer, tensor = _target(model, name)
        check_tensor(mask, f"masks[{name!r}]")
        current = getattr(layer, tensor)
        if tuple(mask.shape) != tuple(current.shape):
            raise ValueError(
                f"masks[{name!r}] has shape {tuple(mask.shape)} but its {tensor} has shape "
                f"{tuple(current.shape)}"
            )
        checked.append((layer, tensor, mask.detach().to(device=current.device, dtype=torch.bool)))
    for layer, tensor, keep in checked:
        existing = [p for p in stack(layer, tensor) if isinstance(p, FixedMask)]
        regrown = torch.zeros_like(keep)
        if existing:
            regrown = keep & ~existing[0].mask  # hidden until now: momentum may have moved them
            existing[0].mask.copy_(keep)
        else:
            attach(layer, tensor, FixedMask(keep))
        if isinstance(stack(layer, tensor)[0], FixedMask):
            with torch.no_grad():
                original = getattr(layer.parametrizations, tensor).original
                original.masked_fill_(~keep | regrown, 0.0)
    return model


def get_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Mask name (layer name for a weight, ``layer.param`` otherwise) → boolean keep-mask, in module
    order."""
    return {f.name: f.module.mask for f in find(model, FixedMask)}


def is_masked(model: nn.Module) -> bool:
    """True when any tensor of ``model`` carries a :class:`FixedMask`."""
    return bool(find(model, FixedMask))


def remove_masks(model: nn.Module) -> nn.Module:
    """Bake every :class:`FixedMask` into a plain tensor with exact zeros (in place); returns
    ``model``.

    Safe on deep copies: removing the masks of a copy leaves the original masked, and vice versa.
    """
    return remove(model, FixedMask)


__all__ = ["FixedMask", "apply_masks", "get_masks", "is_masked", "remove_masks"]
