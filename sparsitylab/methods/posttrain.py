"""Wanda and SparseGPT: prune a trained model layer by layer from a few calibration inputs.

The per-layer rules are in :mod:`sparsitylab.sparsify.posttrain`; this module is the network pass,
shared with layer-wise magnitude pruning (the papers' baseline) so the three differ only in the
rule:

1. The layers are those SIS solves (:func:`~sparsitylab.methods.sis_steps.plan_steps`): every
   ``nn.Linear``, Hugging Face ``Conv1D`` and ``nn.Conv2d`` (groups = 1, symmetric zero padding)
   called once in the forward pass, in that order, and not tied to an embedding table. A layer is
   one GEMM: a conv's weight in its GEMM view and its input as im2col patches, the columns in the
   order N:M groups run along (input channels at a fixed (kh, kw): the hardware order of chapter 5).
   An N:M pattern that does not tile a layer (a 1-channel stem) keeps that layer dense, reported.
2. Each layer's calibration inputs are read with a forward hook on the **already-pruned** model, so
   every layer sees the errors of the layers before it — as both papers do. The papers' code pass
   a transformer block at a time (all layers of a block read the block's pruned input, then the
   block's own layers are pruned together); here every layer reads the model as pruned so far,
   the finer order (a layer inside a block also sees its block's earlier layers pruned).
3. The zeros are held by fixed masks (fine-tuning afterwards keeps them); ``finalize`` bakes them.
4. ``refit=True`` (ours, a control for chapter 7): after the rule chose a layer's mask, its kept
   weights and its bias are refitted by least squares (:func:`.posttrain.refit`) to the
   **dense** network's pre-activations of that layer on the same images — the data flow of SIS
   (inputs from the pruned network, targets from the dense one), so that a mask can be compared
   with SIS's with the values fitted the same way. ``sparsity`` may be a mapping
   layer → sparsity (e.g. another method's per-layer sparsities).

``reports`` holds, per layer, its shape, sparsity, calibration rows, the relative reconstruction
error ‖XWᵀ − XŴᵀ‖²/‖XWᵀ‖² on its own inputs, and the seconds the rule took.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import reparam
from .._checks import check_choice, check_int, check_nm, check_real
from ..gemm import from_gemm_view, gemm_view
from ..sparsify import posttrain as rules
from ..sparsify.masks import nm_mask, topk_mask
from ..sparsify.nm import layer_plan
from . import register
from .base import Method
from .sis import _first, _to, calibration_images, captured
from .sis_steps import Step, check_plain, pass_coverage, patches, plan_steps, rows


@dataclass
class LayerReport:
    """What the pass did to one layer."""

    layer: str
    shape: tuple[int, int]
    rows: int
    sparsity: float
    error: float  # ‖XWᵀ − XŴᵀ‖²_F / ‖XWᵀ‖²_F on the layer's calibration inputs
    seconds: float
    # refit only: ‖XŴᵀ + b̂ − T‖²_F / ‖T‖²_F against the dense pre-activations T, before → after
    target_error: tuple[float, float] | None = None

    def row(self) -> dict[str, Any]:
        return asdict(self)


class LayerwisePruning(Method):
    """The network pass of the module docstring; subclasses give :meth:`rule`.

    sparsity (unstructured: one number for every layer, or layer → number) or n and m (N:M);
    images: calibration inputs drawn from the loader (its first batches); refit: refit the kept
    weights and the bias to the dense pre-activations (module docstring, 4), with ridge
    ``refit_damp``
    (:func:`~sparsitylab.sparsify.posttrain.refit`; a layer without a bias is refitted without).
    """

    def __init__(
        self,
        sparsity: float | Mapping[str, float] | None = None,
        *,
        n: int | None = None,
        m: int | None = None,
        images: int = 128,
        refit: bool = False,
        refit_damp: float = 0.01,
    ):
        if (sparsity is None) == (n is None and m is None):
            raise ValueError(
                f"give either sparsity or n and m (N:M), not both or neither (got sparsity="
                f"{sparsity}, n={n}, m={m})"
            )
        if isinstance(sparsity, Mapping):
            self.sparsity = {
                str(k): check_real(v, f"sparsity[{k!r}]", 0.0, 1.0) for k, v in sparsity.items()
            }
        else:
            self.sparsity = None if sparsity is None else check_real(sparsity, "sparsity", 0.0, 1.0)
        self.n, self.m = (None, None) if n is None and m is None else check_nm(n, m)
        self.images = check_int(images, "images", minimum=1)
        if not isinstance(refit, bool):
            raise TypeError(f"refit={refit!r} must be a bool")
        self.refit = refit
        self.refit_damp = check_real(refit_damp, "refit_damp", minimum=0.0)
        self.reports: list[LayerReport] = []
        self.skipped: dict[str, str] = {}

    @property
    def pattern(self) -> str:
        if self.n:
            return f"{self.n}:{self.m}"
        return "per layer" if isinstance(self.sparsity, Mapping) else f"{self.sparsity:.0%}"

    def layer_sparsity(self, layer: str) -> float | None:
        """The unstructured sparsity of ``layer`` (None for N:M)."""
        if not isinstance(self.sparsity, Mapping):
            return self.sparsity
        if layer not in self.sparsity:
            raise ValueError(
                f"sparsity has no entry for layer {layer!r}; it names {sorted(self.sparsity)}"
            )
        return self.sparsity[layer]

    def rule(
        self, w: torch.Tensor, x: torch.Tensor, sparsity: float | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        """(pruned W, keep-mask) of one layer's GEMM matrix ``w`` from its inputs ``x``, at
        ``sparsity`` (None under N:M)."""
        raise NotImplementedError

    @torch.no_grad()
    def calibrate(self, model: nn.Module, loader: DataLoader) -> None:
        """Prune ``model`` in place, layer by layer, from ``images`` inputs of ``loader``."""
        device = next(model.parameters()).device
        x0 = _to(calibration_images(loader, self.images), device)
        chain, self.skipped = plan_steps(model, _first(x0), "identity")
        check_plain(chain, self.name)
        chain = [s for s in chain if self._fits(s)]
        if not chain:
            raise ValueError(
                f"the model has no Linear, Conv1D or Conv2d layer {self.name} can prune "
                f"({'; '.join(f'{k}: {v}' for k, v in self.skipped.items())})"
            )
        if isinstance(self.sparsity, Mapping):
            unknown = set(self.sparsity) - {s.name for s in chain}
            if unknown:
                raise ValueError(
                    f"sparsity names unknown layers {sorted(unknown)}; layers: "
                    f"{[s.name for s in chain]}"
                )
            for step in chain:  # before any layer changes
                self.layer_sparsity(step.name)
        was_training = model.training
        model.eval()
        dense = copy.deepcopy(model) if self.refit else None  # the refit's targets
        keeps, self.reports = {}, []
        originals = [(step.layer.weight.detach().clone(), _bias_copy(step.layer)) for step in chain]
        try:
            for step in chain:
                keeps[step.name] = self._layer(model, step, x0, dense)
        except Exception:  # the model is left as it came
            for step, (weight, bias) in zip(chain, originals):
                step.layer.weight.copy_(weight)
                if bias is not None:
                    step.layer.bias.copy_(bias)
            model.train(was_training)
            raise
        reparam.apply_masks(model, keeps)
        model.train(was_training)

    def _fits(self, step: Step) -> bool:
        """Whether the N:M pattern tiles the layer; if not, it is kept dense with the reason."""
        if self.m is None:
            return True
        weight = step.layer.weight
        plan = layer_plan(step.name, weight.t() if step.transposed else weight, self.m)
        if not plan.sparse:
            self.skipped[step.name] = plan.reason
        return plan.sparse

    def _layer(
        self, model: nn.Module, step: Step, x0: Any, dense: nn.Module | None
    ) -> torch.Tensor:
        layer = step.layer
        x = patches(step, captured(model, step.name, x0, "input")).float()
        weight = layer.weight.detach()
        if step.transposed:
            w = weight.t()
        else:
            w = gemm_view(weight, "hwc")
            if weight.dim() > 2:  # im2col columns are (C, kh, kw): reorder them to (kh, kw, C)
                x = x[:, _chw_to_hwc(weight.shape[1:])]
        started = time.perf_counter()
        try:
            pruned, keep = self.rule(w.float(), x, self.layer_sparsity(step.name))
            error = rules.reconstruction_error(x, w.float(), pruned)
            target_error = None
            if dense is not None:
                pruned, target_error = self._refit(step, pruned, keep, x, dense, x0)
        except ValueError as error:
            raise ValueError(f"layer {step.name!r}: {error}") from error
        seconds = time.perf_counter() - started
        sparsity = float(1 - keep.float().mean())
        self.reports.append(
            LayerReport(
                step.name, tuple(w.shape), x.shape[0], sparsity, error, seconds, target_error
            )
        )
        pruned = pruned.to(weight.dtype)
        weight.copy_(pruned.t() if step.transposed else from_gemm_view(pruned, weight.shape, "hwc"))
        return keep.t() if step.transposed else from_gemm_view(keep, weight.shape, "hwc")

    def _refit(
        self,
        step: Step,
        pruned: torch.Tensor,
        keep: torch.Tensor,
        x: torch.Tensor,
        dense: nn.Module,
        x0: Any,
    ) -> tuple[torch.Tensor, tuple[float, float]]:
        """Refit the kept weights of ``pruned`` and the layer's bias (written in place) to the
        dense network's output of this layer; (refitted W, target error before → after)."""
        target = rows(step, captured(dense, step.name, x0, "output")).float()
        bias = step.layer.bias
        b = None if bias is None else bias.detach().float()
        new, new_bias = rules.refit(pruned, b, keep, x, target, damp=self.refit_damp)
        before = _target_error(x, pruned, b, target)
        after = _target_error(x, new, new_bias, target)
        if new_bias is not None:
            bias.copy_(new_bias.to(bias.dtype))
        return new, (before, after)

    def coverage(self, model: nn.Module) -> dict[str, str]:
        """The layers the pass pruned are covered; the others say why they stayed dense."""
        done = {r.layer for r in self.reports}
        otherwise = f"{self.name} prunes the weights of Linear, Conv1D and Conv2d layers only"
        return pass_coverage(model, done, self.skipped, otherwise)


def _bias_copy(layer: nn.Module) -> torch.Tensor | None:
    bias = getattr(layer, "bias", None)
    return None if bias is None else bias.detach().clone()


def _target_error(
    x: torch.Tensor, w: torch.Tensor, b: torch.Tensor | None, target: torch.Tensor
) -> float:
    """‖X Wᵀ + b − T‖²_F / ‖T‖²_F."""
    u = x @ w.T if b is None else torch.addmm(b, x, w.T)
    return float((u - target).square().sum() / target.square().sum().clamp_min(1e-30))


def _chw_to_hwc(shape: tuple[int, ...]) -> torch.Tensor:
    """Column permutation taking a conv's (C, kh, kw) GEMM columns to (kh, kw, C)."""
    return torch.arange(torch.Size(shape).numel()).reshape(shape).movedim(0, -1).reshape(-1)


@register
class LayerMagnitude(LayerwisePruning):
    """Layer-wise magnitude pruning, the baseline of both papers: the lowest |W| of each layer
    (unstructured, one threshold per layer) or of each group of M (N:M). No data is used."""

    name: ClassVar[str] = "layer-magnitude"

    def rule(
        self, w: torch.Tensor, x: torch.Tensor, sparsity: float | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        keep = topk_mask(w, sparsity) if self.m is None else nm_mask(w, self.n, self.m)
        return w * keep, keep


@register
class Wanda(LayerwisePruning):
    """Wanda (Sun et al., ICLR 2024): |W_ij| · ‖X_j‖₂, compared within each output row (or each
    group of M of a row); the kept weights are not changed. ``group="layer"`` compares the scores
    across the whole layer instead (magnitude pruning's comparison group: an ablation)."""

    name: ClassVar[str] = "wanda"

    def __init__(
        self,
        sparsity: float | None = None,
        *,
        n: int | None = None,
        m: int | None = None,
        images: int = 128,
        group: str = "row",
    ):
        super().__init__(sparsity, n=n, m=m, images=images)
        self.group = check_choice(group, "group", rules.GROUPS)

    def rule(
        self, w: torch.Tensor, x: torch.Tensor, sparsity: float | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        norms = rules.input_norms(x)
        keep = rules.wanda_keep(w, norms, sparsity, self.n, self.m, self.group)
        return w * keep, keep


@register
class SparseGPT(LayerwisePruning):
    """SparseGPT (Frantar & Alistarh, ICML 2023): OBS reconstruction with H = 2XᵀX/N, adaptive
    masks per block of ``block`` columns, dampening ``damp`` · mean diag(H). ``update=False`` keeps
    the chosen mask but not the reconstruction (the control separating the two)."""

    name: ClassVar[str] = "sparsegpt"

    def __init__(
        self,
        sparsity: float | None = None,
        *,
        n: int | None = None,
        m: int | None = None,
        images: int = 128,
        block: int = rules.BLOCK,
        damp: float = rules.DAMP,
        update: bool = True,
    ):
        super().__init__(sparsity, n=n, m=m, images=images)
        self.block = check_int(block, "block", minimum=1)
        self.damp = check_real(damp, "damp", minimum=0.0)
        self.update = bool(update)

    def rule(
        self, w: torch.Tensor, x: torch.Tensor, sparsity: float | None
    ) -> tuple[torch.Tensor, torch.Tensor]:
        h = rules.hessian(x)
        return rules.sparsegpt(w, h, sparsity, self.n, self.m, self.block, self.damp, self.update)


__all__ = ["LayerMagnitude", "LayerReport", "LayerwisePruning", "SparseGPT", "Wanda"]
