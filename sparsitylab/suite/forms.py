"""Deployable forms of a trained run (masked, CSR, HBS, 2:4, compacted), checked and timed."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import asdict
from typing import Any

import torch
from torch import nn

from .. import runner
from ..deploy.formats import CSR, Sparse24
from ..deploy.packed import pack
from ..methods import Method
from ..methods.hbs import HierarchicalBlockPruning
from ..methods.nm import ASP, NMSparsity
from ..metrics import compare_latency
from .recipes import BATCHES, Recipe, Settings

# ----------------------------------------------------------------------------- deployable forms


def _sparse24(method: Method) -> Callable[[str, nn.Module], Sparse24 | None]:
    planned = {name: p.order for name, p in getattr(method, "plans", {}).items() if p.sparse}

    def packer(name: str, layer: nn.Module) -> Sparse24 | None:
        # the 2:4 metadata packs 16 columns per int16 word: other row lengths stay dense
        fits = layer.weight[0].numel() % 16 == 0
        return Sparse24.from_weight(layer.weight) if fits and planned.get(name) == "hwc" else None

    return packer


def _csr(name: str, layer: nn.Module) -> CSR | None:
    return CSR.from_weight(layer.weight) if bool((layer.weight == 0).any()) else None


def deployable_forms(recipe: Recipe, run: runner.Run, method: Method) -> dict[str, nn.Module]:
    """The recipe's deployable forms of ``run``'s model (those that apply to it)."""
    forms: dict[str, nn.Module] = {}
    for form in recipe.forms:
        if form == "masked":
            forms[form] = run.model
        elif form == "CSR":
            forms[form] = pack(run.model, _csr)
        elif form == "2:4" and isinstance(method, NMSparsity | ASP) and method.n * 2 == method.m:
            forms[form] = pack(run.model, _sparse24(method))
        elif form == "HBS" and isinstance(method, HierarchicalBlockPruning):
            exported = method.export(run.model)
            forms[form] = pack(run.model, lambda name, layer, e=exported: e.get(name))
        elif form == "compacted" and run.compacted is not None:
            forms[form] = run.compacted
    return forms


def check_forms(forms: dict[str, nn.Module], reference: nn.Module, x: torch.Tensor) -> None:
    """Every form computes what the finalized model computes (the benchmark never times a wrong
    model)."""
    with torch.no_grad():
        expected = reference(x)
        for name, form in forms.items():
            got = form(x)
            if not torch.allclose(got, expected, atol=1e-4, rtol=1e-4):
                error = float((got - expected).abs().max())
                raise AssertionError(f"form {name!r} differs from the model by {error:.2e}")


def latency(
    forms: dict[str, nn.Module], settings: Settings, x: torch.Tensor
) -> dict[str, dict[str, Any]]:
    """{form: {batch: timing}} of each form at every batch of :data:`BATCHES`, round-robin
    (``latency_repeats`` rounds at batch 1, a quarter of them, at least 3, at larger batches)."""
    results: dict[str, dict[str, Any]] = {name: {} for name in forms}
    for batch in BATCHES:
        inputs = x[:batch] if batch <= len(x) else x.repeat(batch // len(x) + 1, 1, 1, 1)[:batch]
        repeats = settings.latency_repeats if batch == 1 else max(3, settings.latency_repeats // 4)
        timings = compare_latency(forms, inputs, repeats, num_threads=settings.latency_threads)
        for name, t in timings.items():
            results[name][str(batch)] = asdict(t)
    return results
