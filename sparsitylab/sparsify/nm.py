"""Which layers of a model can be N:M sparse, along which axis, and what ASP would do with them.

N:M groups run along the reduction dimension of a layer's GEMM view (:mod:`sparsitylab.gemm`):
the inputs of a Linear, and for a Conv2d the input channels at a fixed (out, kh, kw) — the
*hardware* axis (``order="hwc"``) of sparse tensor cores, NVIDIA ASP and the NM-sparsity code.
A layer whose grouped length is not a multiple of M (LeNet's conv1 and ConvNet-BN's conv1 have one
input channel, the 784-500-300-10 MLP's fc2 has 500 inputs …) needs a decision, and the library
never lets a group straddle silently. ``policy`` chooses:

- ``"dense"`` — keep such a layer dense;
- ``"flatten"`` — group a conv along its flattened (in, kh, kw) row instead (``order="chw"``, the
  N:M paper's original grouping), and keep it dense when even that length is not a multiple of M.

:func:`plan` applies the policy to every prunable layer and says why; :func:`eligibility` adds
what NVIDIA ASP would do (it sparsifies a weight only when out % 8 = 0 and in % 16 = 0, and skips
the others, which on the book's MLP and LeNet is every layer) and the density each layer ends up
with.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass

import torch
from torch import nn

from .._checks import check_choice, check_nm
from ..coverage import Scope, weight_matrices
from ..gemm import ORDERS
from .masks import nm_mask

POLICIES = ("dense", "flatten")


@dataclass(frozen=True)
class LayerPlan:
    """How one layer is treated: ``order`` "hwc" / "chw" (grouped that way) or None (dense)."""

    layer: str
    shape: tuple[int, ...]
    order: str | None
    reason: str

    @property
    def sparse(self) -> bool:
        return self.order is not None


def layer_plan(
    name: str, weight: torch.Tensor, m: int, policy: str = "dense", order: str = "hwc"
) -> LayerPlan:
    """The treatment of one weight matrix (2-D, or a 3- to 5-D conv weight; outputs first) under
    ``policy``.

    ``order="hwc"`` (default) groups convs along the hardware axis and applies ``policy`` where
    that does not divide; ``order="chw"`` groups every conv along its flattened row (the paper-era
    layout, for comparison) and keeps it dense where that does not divide.
    """
    check_choice(policy, "policy", POLICIES)
    check_choice(order, "order", ORDERS)
    shape = tuple(weight.shape)
    inputs = shape[1]
    if weight.dim() == 2:
        if inputs % m == 0:
            return LayerPlan(name, shape, "hwc", f"{inputs} input features divisible by {m}")
        return LayerPlan(name, shape, None, f"dense: {inputs} input features not divisible by {m}")
    flat = int(torch.Size(shape[1:]).numel())
    if order == "chw":
        if flat % m == 0:
            return LayerPlan(name, shape, "chw", f"flattened in·kh·kw = {flat} divisible by {m}")
        return LayerPlan(name, shape, None, f"dense: in·kh·kw = {flat} not divisible by {m}")
    if inputs % m == 0:
        return LayerPlan(name, shape, "hwc", f"{inputs} input channels divisible by {m}")
    why = f"{inputs} input channels not divisible by {m}"
    if policy == "dense":
        return LayerPlan(name, shape, None, f"dense (policy 'dense'): {why}")
    if flat % m == 0:
        return LayerPlan(name, shape, "chw", f"flattened in·kh·kw = {flat} ({why})")
    return LayerPlan(name, shape, None, f"dense: {why}, nor is in·kh·kw = {flat}")


def plan(
    model: nn.Module,
    m: int,
    policy: str = "dense",
    order: str = "hwc",
    first_dense: bool = False,
    last_dense: bool = False,
    scope: Scope = None,
) -> dict[str, LayerPlan]:
    """Matrix name → :class:`LayerPlan` for every covered weight matrix
    (:mod:`sparsitylab.coverage`, outputs first); ``first_dense`` / ``last_dense`` keep the first
    / last one dense on purpose."""
    layers = [(name, w.oriented()) for name, w in weight_matrices(model, scope).items()]
    plans = {name: layer_plan(name, weight, m, policy, order) for name, weight in layers}
    for wanted, index, why in ((first_dense, 0, "first"), (last_dense, -1, "last")):
        if wanted and layers:
            name = layers[index][0]
            plans[name] = LayerPlan(name, plans[name].shape, None, f"dense: {why} layer, by choice")
    return plans


def model_masks(
    model: nn.Module, n: int, m: int, plans: dict[str, LayerPlan]
) -> dict[str, torch.Tensor]:
    """One-shot N:M magnitude masks of the planned sparse layers (the ASP pruning step)."""
    check_nm(n, m)
    matrices = weight_matrices(model)
    return {
        name: matrices[name].restore(nm_mask(matrices[name].oriented(), n, m, p.order))
        for name, p in plans.items()
        if p.sparse
    }


def asp_eligible(weight: torch.Tensor) -> bool:
    """NVIDIA ASP's rule: a weight is sparsified only when size(0) % 8 = 0 and size(1) % 16 = 0."""
    return weight.shape[0] % 8 == 0 and weight.shape[1] % 16 == 0


@dataclass(frozen=True)
class Eligibility:
    """One row of :func:`eligibility`."""

    layer: str
    shape: tuple[int, ...]
    weights: int
    hardware_axis: bool
    asp: bool
    treatment: str
    density: float
    reason: str


def eligibility(
    model: nn.Module,
    n: int = 2,
    m: int = 4,
    policy: str = "dense",
    order: str = "hwc",
    first_dense: bool = False,
    last_dense: bool = False,
    scope: Scope = None,
) -> list[Eligibility]:
    """Per prunable layer: can it be N:M along the hardware axis, would ASP sparsify it, what
    ``policy`` does with it and the density that gives (n/m for a sparse layer, 1 for a dense
    one). The last row, ``"total"``, has the overall density."""
    n, m = check_nm(n, m)
    plans = plan(model, m, policy, order, first_dense, last_dense, scope)
    rows = []
    for name, w in weight_matrices(model, scope).items():
        p = plans[name]
        rows.append(
            Eligibility(
                name,
                p.shape,
                w.tensor.numel(),
                p.shape[1] % m == 0,
                asp_eligible(w.oriented()),
                {"hwc": "N:M, hardware axis", "chw": "N:M, flattened axis", None: "dense"}[p.order],
                n / m if p.sparse else 1.0,
                p.reason,
            )
        )
    total = sum(r.weights for r in rows)
    kept = sum(r.weights * r.density for r in rows)
    rows.append(
        Eligibility(
            "total",
            (),
            total,
            all(r.hardware_axis for r in rows),
            all(r.asp for r in rows),
            f"{sum(plans[r.layer].sparse for r in rows)} of {len(rows)} layers N:M",
            kept / total if total else 1.0,
            "",
        )
    )
    return rows


def eligibility_frame(rows: list[Eligibility]):
    """The rows of :func:`eligibility` as a pandas DataFrame indexed by layer."""
    import pandas as pd

    return pd.DataFrame([asdict(r) for r in rows]).set_index("layer")


__all__ = [
    "Eligibility",
    "LayerPlan",
    "POLICIES",
    "asp_eligible",
    "eligibility",
    "eligibility_frame",
    "layer_plan",
    "model_masks",
    "plan",
]
