"""Post-training pruning of attention heads and MLP units, ranked by their output contribution on
calibration data, and removed physically by compaction.

A unit of a coupled group (:mod:`sparsitylab.graph`: a head's q/k/v rows and output-projection
columns, an MLP hidden unit's rows in the first layer and column in the second) reaches the rest of
the network only through the weights that **read** it. For a Linear reader with weight W and
calibration inputs X (samples × in), unit u's contribution to the reader's output is the matrix
X_u W_uᵀ (its columns of X times its columns of W), and its importance is the Frobenius norm of
that contribution summed over the group's readers:

    I_u² = Σ_readers ‖X_u W_uᵀ‖²_F = Σ_readers Σ_ab (X_uᵀX_u)_ab (W_uᵀW_u)_ab

computed for every unit at once from the reader's Gram matrix XᵀX. This is the structured analogue
of Wanda's |W_ij|·‖X_j‖₂ (for a one-column unit it is exactly ‖X_j‖₂·‖W_{:,j}‖₂), the
"norm of the output contribution" of the head-pruning literature; it is our choice, not a paper's
exact rule. Groups read by anything but a Linear / Conv1D called as a module are left out, with
the reason. The lowest ``sparsity`` of the units are removed in every group (``budget="uniform"``,
the default: each layer keeps the same share of heads and of MLP units) or across groups
(``"global"``); a removed unit is masked in every tensor it occupies, so the masked model is the
compacted one's function, and :meth:`compact` removes it.
"""

from __future__ import annotations

from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils.data import DataLoader

from .. import reparam
from .._checks import check_choice, check_int, check_real
from ..deploy.compaction import compact
from ..graph import ChannelGroup
from ..graph.tracer import call
from ..sparsify.budgets import scores_masks
from . import register
from .base import Method
from .channels import Channels, channel_groups, effective, group_coverage, unit_masks
from .sis import _to, calibration_images

KINDS = ("heads", "units", "all")


def _reader(model: nn.Module, member) -> nn.Module | None:
    module = model.get_submodule(member.module) if member.module else model
    linear = isinstance(module, nn.Linear) or type(module).__name__ == "Conv1D"
    return module if linear and member.tensor.endswith(".weight") else None


def reader_inputs(model: nn.Module, modules: list[str], example: Any) -> dict[str, torch.Tensor]:
    """Module name → its input on ``example`` as (samples × features) rows (one forward)."""
    found: dict[str, torch.Tensor] = {}

    def keep(name: str, x: torch.Tensor) -> None:  # a pre-hook returning a value replaces the input
        found.setdefault(name, x.detach().reshape(-1, x.shape[-1]).float())

    handles = [
        model.get_submodule(name).register_forward_pre_hook(
            lambda m, args, name=name: keep(name, args[0])
        )
        for name in modules
    ]
    try:
        with torch.no_grad():
            call(model, example)
    finally:
        for handle in handles:
            handle.remove()
    return found


def contributions(
    model: nn.Module, group: ChannelGroup, inputs: dict[str, torch.Tensor]
) -> torch.Tensor:
    """I_u for every unit of ``group`` (module docstring) from its readers' inputs."""
    total = torch.zeros(group.size)
    for member in group.of("reads"):
        x = inputs[member.module]
        w = effective(model, member.tensor).float().movedim(member.axis, -1)
        w = w.reshape(-1, w.shape[-1])  # (outputs, inputs): a Conv1D's weight is stored in × out
        index = group.unit_slices(member).to(x.device)  # (units, k)
        gram = x.T @ x
        block = gram[index[:, :, None], index[:, None, :]]  # (units, k, k)
        columns = w[:, index]  # (outputs, units, k)
        total += torch.einsum("uab,oua,oub->u", block, columns, columns).clamp_min(0).cpu()
    return total.sqrt()


def _reasons(excluded: dict[str, str]) -> str:
    return "; ".join(f"{k}: {v}" for k, v in excluded.items())


@register
class UnitPruning(Method):
    """Remove the least contributing attention heads and MLP units of a trained model from
    calibration data (module docstring); no training.

    sparsity: share of the units removed; kinds: "heads", "units" (every other group: MLP hidden
    units, channels) or "all"; budget: "uniform" or "global"; images: calibration inputs.
    """

    name: ClassVar[str] = "units"
    structured: ClassVar[bool] = True

    def __init__(
        self,
        sparsity: float,
        *,
        kinds: str = "all",
        budget: str = "uniform",
        images: int = 128,
    ):
        self.sparsity = check_real(sparsity, "sparsity", minimum=0.0, maximum=1.0)
        self.kinds = check_choice(kinds, "kinds", KINDS)
        self.budget = check_choice(budget, "budget", ("uniform", "global"))
        self.images = check_int(images, "images", minimum=1)
        self.channels: Channels | None = None
        self.importance: dict[str, torch.Tensor] = {}

    def prepare(self, model: nn.Module, example_input: Any = None) -> nn.Module:
        found = channel_groups(model, example_input, "any")
        groups, excluded = {}, dict(found.excluded)
        for name, group in found.groups.items():
            wanted = self.kinds == "all" or (group.heads == (self.kinds == "heads"))
            readers = group.of("reads")
            if not wanted:
                excluded[name] = f"not among kinds={self.kinds!r}"
            elif not readers or any(_reader(model, m) is None for m in readers):
                excluded[name] = "read by something other than a Linear or Conv1D weight"
            else:
                groups[name] = group
        if not groups:
            raise ValueError(
                f"{type(model).__name__} has no {self.kinds} group whose readers are Linear "
                f"layers ({_reasons(excluded)})"
            )
        self.channels = Channels(groups, excluded, found.example)
        return model

    @torch.no_grad()
    def calibrate(self, model: nn.Module, loader: DataLoader) -> None:
        """Rank every unit by its output contribution on ``images`` inputs and mask the lowest."""
        if self.channels is None:
            raise ValueError("call prepare(model, example_input) before calibrate")
        device = next(model.parameters()).device
        x0 = _to(calibration_images(loader, self.images), device)
        readers = sorted({m.module for g in self.channels.groups.values() for m in g.of("reads")})
        was_training = model.training
        model.eval()
        inputs = reader_inputs(model, readers, x0)
        model.train(was_training)
        groups = self.channels.groups
        for name, group in list(groups.items()):
            missing = sorted({m.module for m in group.of("reads")} - set(inputs))
            if missing:  # e.g. nn.MultiheadAttention reads out_proj.weight inside its forward
                self.channels.excluded[name] = (
                    f"read by {missing}, whose weight its owner uses without calling it"
                )
                del groups[name]
        if not groups:
            raise ValueError(
                f"{type(model).__name__} has no {self.kinds} group whose readers are Linear "
                f"layers called as modules ({_reasons(self.channels.excluded)})"
            )
        self.importance = {
            name: contributions(model, group, inputs) for name, group in groups.items()
        }
        keep = scores_masks(self.importance, self.sparsity, self.budget)
        reparam.apply_masks(model, unit_masks(model, self.channels, keep))

    def coverage(self, model: nn.Module) -> dict[str, str]:
        return group_coverage(model, self.channels)

    def compact(
        self, model: nn.Module, example_input: torch.Tensor | None = None
    ) -> nn.Module | None:
        example = example_input if example_input is not None else self.channels.example
        return compact(model, example_input=example)


__all__ = ["KINDS", "UnitPruning", "contributions", "reader_inputs"]
