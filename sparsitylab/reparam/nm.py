"""N:M masks recomputed from the dense weight on every forward: STE and SR-STE.

From Zhou et al., "Learning N:M Fine-grained Structured Sparse Neural Networks From Scratch" (ICLR
2021, https://arxiv.org/abs/2102.04010). The layer keeps a **dense** trainable weight W and computes
with W̃ = W ⊙ E, where E is the N:M magnitude mask of the current W
(:func:`sparsitylab.sparsify.masks.nm_mask`), recomputed at every forward pass. E has no useful
derivative, so the backward pass is a straight-through estimator:

- **STE** (``decay=0``): ∂L/∂W := ∂L/∂W̃ — every weight, pruned or not, gets the gradient of the
  sparse weight, so a pruned weight can grow back and re-enter the mask;
- **SR-STE** (``decay=λ_W > 0``): ∂L/∂W := ∂L/∂W̃ + λ_W (1 − E) ⊙ W — pruned weights are also
  pulled toward 0 ("sparse-refined"), so the mask changes less often. The term is added to the
  **gradient**, as in the authors' code, so momentum and the learning rate scale it; ordinary
  weight decay applies on top. λ_W = 2e-4 is the code's default.

The forward multiplies by the boolean mask (a select is several times slower on the CPU), so pruned
entries are exact zeros (−0.0 for a negative weight, which compares equal to 0; a non-finite weight
would give NaN, but then the loss is NaN too and training stops). The mask of the last forward is
kept in ``mask`` (not saved: it is a function of the weight). :func:`current_masks` recomputes
every layer's mask from its current weight, which is what a measure of mask change (SAD) compares.

On the CPU the mask and W ⊙ E come from one compiled pass over W, and SR-STE's gradient from one
more (:mod:`sparsitylab.sparsify.native`), bit for bit the PyTorch path's results: on the book's
MLP the SR-STE step went from 2.3× the dense step (PyTorch path) to about 1.4×, against 1.25× for
the two memory passes alone (``sparsitylab bench nm``, one thread).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import torch
from torch import nn

from .._checks import check_choice, check_nm, check_real
from ..gemm import ORDERS
from ..sparsify import native
from ..sparsify.masks import nm_mask
from .base import Reparametrization, find, stack

SR_STE_DECAY = 2e-4  # λ_W, the NM-sparsity code's default


class _StraightThrough(torch.autograd.Function):
    """(W, its keep-mask E, W ⊙ E) ↦ W ⊙ E forward; backward G (STE) or G + λ_W (1 − E) ⊙ W
    (SR-STE). E and W ⊙ E come from the caller (one compiled pass where it can run)."""

    @staticmethod
    def forward(
        ctx: Any, w: torch.Tensor, keep: torch.Tensor, sparse: torch.Tensor, decay: float
    ) -> torch.Tensor:
        ctx.decay = decay
        if decay:
            ctx.save_for_backward(w, keep, sparse)  # the layer keeps W ⊙ E for its backward anyway
        return sparse

    @staticmethod
    def backward(ctx: Any, grad: torch.Tensor) -> tuple[torch.Tensor | None, ...]:
        if not ctx.decay:
            return grad, None, None, None
        w, keep, sparse = ctx.saved_tensors
        refined = native.sr_ste_gradient(grad, w, keep, ctx.decay)  # one compiled pass
        if refined is None:
            # (1 − E) ⊙ W = W − W ⊙ E exactly (each entry is w − w or w − 0), so this equals
            # G + λ_W (1 − E) ⊙ W entry for entry (a zero's sign aside) in three passes, not four
            refined = grad + ctx.decay * (w - sparse)
        return refined, None, None, None


class NMMask(Reparametrization):
    """W ↦ W ⊙ E(W), with E the N:M mask of W along ``order``'s groups, recomputed every forward.

    ``decay`` is SR-STE's λ_W (0: plain STE). ``order``: "hwc" (input channels at a fixed tap, the
    hardware layout) or "chw" (the flattened conv row); see :mod:`sparsitylab.sparsify.nm` for which
    layers can take which. ``transposed``: the weight is stored (in, out).
    """

    def __init__(
        self,
        n: int = 2,
        m: int = 4,
        order: str = "hwc",
        decay: float = SR_STE_DECAY,
        transposed: bool = False,
    ):
        super().__init__()
        self.n, self.m = check_nm(n, m)
        self.order = check_choice(order, "order", ORDERS)
        self.decay = check_real(decay, "decay", minimum=0.0)
        self.transposed = bool(transposed)
        self.register_buffer("mask", None, persistent=False)

    def keep_mask(self, w: torch.Tensor) -> torch.Tensor:
        """E(w): the N:M keep-mask of ``w`` (groups along its inputs: dim 1, or dim 0 of a weight
        stored transposed, as Hugging Face's ``Conv1D``)."""
        if self.transposed:
            return nm_mask(w.t(), self.n, self.m, self.order).t()
        return nm_mask(w, self.n, self.m, self.order)

    def _groups_in_memory_order(self, w: torch.Tensor) -> bool:
        """Whether every run of m consecutive entries of ``w``'s memory is one of its N:M groups:
        a contiguous Linear weight, or conv weight in "chw" order or with a 1×1 kernel."""
        if self.transposed or not w.is_contiguous() or w.shape[1:].numel() % self.m:
            return False
        return w.dim() == 2 or self.order == "chw" or w.shape[2:].numel() == 1

    def mask_and_product(self, w: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(E(w), w ⊙ E(w)), detached: one compiled pass where the groups lie in memory order and
        the loop can run here (:func:`sparsitylab.sparsify.native.masked_product`), else
        :meth:`keep_mask` and a product; both give the same bits."""
        w = w.detach()
        if self._groups_in_memory_order(w):
            fused = native.masked_product(w.view(-1, self.m), self.n)
            if fused is not None:
                keep, sparse, has_nan = fused
                if has_nan:  # nm_mask's refusal, word for word
                    raise ValueError("w contains NaN; NaN scores cannot be ranked")
                return keep.view(w.shape), sparse.view(w.shape)
        keep = self.keep_mask(w)
        return keep, w * keep  # a product, not a select: on the CPU several times faster

    def forward(self, w: torch.Tensor) -> torch.Tensor:
        self.mask, sparse = self.mask_and_product(w)
        return _StraightThrough.apply(w, self.mask, sparse, self.decay)

    def settings(self) -> dict[str, Any]:
        return {
            "n": self.n,
            "m": self.m,
            "order": self.order,
            "decay": self.decay,
            "transposed": self.transposed,
        }

    @classmethod
    def from_state(cls, tensors: Mapping[str, torch.Tensor], settings: Mapping[str, Any]) -> NMMask:
        return cls(**settings)

    def extra_repr(self) -> str:
        kind = f"SR-STE λ_W={self.decay:g}" if self.decay else "STE"
        return f"{self.n}:{self.m}, order={self.order!r}, {kind}"


def nm_layers(model: nn.Module) -> dict[str, NMMask]:
    """Layer name → its :class:`NMMask`, in module order."""
    return {f.name: f.module for f in find(model, NMMask)}


@torch.no_grad()
def current_masks(model: nn.Module) -> dict[str, torch.Tensor]:
    """Layer name → the N:M keep-mask of its **current** dense weight (what the next forward
    uses)."""
    masks = {}
    for f in find(model, NMMask):
        value = getattr(f.layer.parametrizations, f.tensor).original
        for below in stack(f.layer, f.tensor)[: f.index]:
            value = below(value)
        masks[f.name] = f.module.keep_mask(value)
    return masks


__all__ = ["NMMask", "SR_STE_DECAY", "current_masks", "nm_layers"]
