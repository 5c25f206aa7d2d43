"""SIS: sparsify a trained network layer by layer from calibration data, without training.

The per-layer problem and its solvers are in :mod:`sparsitylab.sparsify.sis` (what is the paper's
and what is our reconstruction is stated there). This module is the network pass, also our
reconstruction (the paper's layer order and data flow could not be read), on any model:

1. The model is traced once on a calibration image (:mod:`sparsitylab.graph`). Each ``nn.Linear``,
   Hugging Face ``Conv1D`` (a Linear stored transposed) and ``nn.Conv2d`` (groups = 1, symmetric
   zero padding) called once, in the order of the forward pass, is one problem (not a layer whose
   weight is tied to an embedding table: solving it would change the lookups too); a BatchNorm its
   output goes straight into is folded into (W, b); the activation is ReLU or sigmoid when that is
   the op that reads the (normalised) output, else the identity (pooling, a residual add,
   attention: the **pre-activation** output is the target); a layer whose output is the model's
   output gets ``last`` ("softmax": the classifier's loss activation). Other layers are kept dense
   and listed in :attr:`SIS.skipped` with the reason.
2. Targets y come from the **dense** network; inputs x from the **already-sparsified** network
   (``inputs="sparse"``, the default), so each layer corrects the errors of the layers before it;
   ``inputs="dense"`` solves every layer from dense inputs instead. Both are read with forward
   hooks (a forward stops at the layer it needs).
3. A convolution is a linear map on its im2col patches (``F.unfold``): every patch is a sample;
   above ``max_rows`` patches a seeded random subset is used (stated in the layer report).
4. The budget: η = Θ(W_dense) + ``eta`` · Θ(0), with Θ(0) the all-zero layer's distance —
   scale free, and feasible (the dense weights satisfy it) even when x comes from the sparsified
   network, where the dense weights no longer give Θ = 0. ``eta``: one number, or layer → number.
   ``sparsity`` (one number, or layer → number) asks instead for the tolerance at which each
   layer reaches that sparsity (:func:`~sparsitylab.sparsify.sis.solve_to_sparsity`; ours, to
   compare SIS with another method at equal per-layer sparsities); η is then reported, not set.

The zeros are exact and held by fixed masks, so training afterwards (optional fine-tuning) keeps
them; ``finalize`` bakes the masks into an ordinary model.
``reports`` holds, per layer, the activation, η, Θ, sparsity, iterations, time and convergence.
"""

from __future__ import annotations

import copy
import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.utils import _pytree as pytree
from torch.utils.data import DataLoader

from .. import reparam
from .._checks import check_choice, check_int, check_real
from ..graph.tracer import call
from ..sparsify.sis import (
    LayerProblem,
    Solution,
    activate,
    primal_dual,
    solve_to_eta,
    solve_to_sparsity,
)
from . import register
from .base import Method
from .sis_steps import (
    Step,
    check_plain,
    folded,
    pass_coverage,
    patches,
    plan_steps,
    rows,
    write_back,
)

SOLVERS = ("fista", "primal-dual")


@dataclass
class LayerReport:
    """What the pass did to one layer."""

    layer: str
    shape: tuple[int, int]
    activation: str
    rows: int
    eta: float
    theta: float
    theta_dense: float
    theta_zero: float
    output_error: float  # Σ_k ‖R(W_out x_k + b_out) − y_k‖² on the problem's rows (≤ Θ)
    sparsity: float
    iterations: int
    seconds: float
    converged: bool
    solver: str

    def row(self) -> dict[str, Any]:
        return asdict(self)


@register
class SIS(Method):
    """SIS as reconstructed here (module docstring): per layer, min ‖W‖₁ s.t. Θ ≤ η, on calibration
    images from the training loader.

    eta: relative budget (one number or layer → number), η = Θ(W_dense) + eta·Θ(0). images: how many
    calibration images to draw from the loader (its first batches). solver: "fista"
    (``solve_to_eta``: majorise–minimise, a bisection on FISTA's η′ near η = 0; Θ ≤ η guaranteed) or
    "primal-dual" (constrained form). inputs: "sparse" or "dense" (where each layer's inputs come
    from). last: activation of the last layer ("softmax" or "identity"). max_rows: im2col rows per
    conv problem (seeded subset above it). bias: "free" (the default: biases are refitted, not
    penalised) or "fixed" (kept as trained). sparsity: per-layer target sparsities instead of
    ``eta`` (module docstring, 4; FISTA only).
    """

    name: ClassVar[str] = "sis"

    def __init__(
        self,
        eta: float | Mapping[str, float] = 0.05,
        *,
        images: int = 2000,
        solver: str = "fista",
        inputs: str = "sparse",
        last: str = "softmax",
        max_rows: int = 20_000,
        bias: str = "free",
        tol: float = 1e-4,
        max_iter: int = 500,
        seed: int = 0,
        sparsity: float | Mapping[str, float] | None = None,
    ):
        self.eta = (
            {str(k): check_real(v, f"eta[{k!r}]", minimum=0.0) for k, v in eta.items()}
            if isinstance(eta, Mapping)
            else check_real(eta, "eta", minimum=0.0)
        )
        self.images = check_int(images, "images", minimum=1)
        self.solver = check_choice(solver, "solver", SOLVERS)
        self.inputs = check_choice(inputs, "inputs", ("sparse", "dense"))
        self.last = check_choice(last, "last", ("softmax", "identity"))
        self.max_rows = check_int(max_rows, "max_rows", minimum=1)
        self.bias = check_choice(bias, "bias", ("free", "fixed"))
        self.tol = check_real(tol, "tol", minimum=0.0)
        self.max_iter = check_int(max_iter, "max_iter", minimum=1)
        self.seed = check_int(seed, "seed")
        self.sparsity = (
            {str(k): check_real(v, f"sparsity[{k!r}]", 0.0, 1.0) for k, v in sparsity.items()}
            if isinstance(sparsity, Mapping)
            else None
            if sparsity is None
            else check_real(sparsity, "sparsity", 0.0, 1.0)
        )
        if self.sparsity is not None and self.solver != "fista":
            raise ValueError("sparsity= searches FISTA's penalty; it needs solver='fista'")
        self.reports: list[LayerReport] = []
        self.solutions: dict[str, Any] = {}  # layer → its solver Solution (with history)
        self.skipped: dict[str, str] = {}  # layer → why it stays dense

    def relative_eta(self, layer: str) -> float:
        return _entry(self.eta, layer, "eta")

    def target_sparsity(self, layer: str) -> float | None:
        return None if self.sparsity is None else _entry(self.sparsity, layer, "sparsity")

    @torch.no_grad()
    def calibrate(self, model: nn.Module, loader: DataLoader) -> None:
        """Sparsify ``model`` in place, layer by layer, from ``images`` inputs of ``loader``."""
        device = next(model.parameters()).device
        x0 = _to(calibration_images(loader, self.images), device)
        chain, self.skipped = plan_steps(model, _first(x0), self.last)
        if not chain:
            raise ValueError(
                "the model has no Linear, Conv1D or Conv2d layer SIS can sparsify "
                f"({'; '.join(f'{k}: {v}' for k, v in self.skipped.items())})"
            )
        for what, value in (("eta", self.eta), ("sparsity", self.sparsity)):
            if what == "eta" and self.sparsity is not None:
                continue  # eta is not used
            if isinstance(value, Mapping):
                unknown = set(value) - {s.name for s in chain}
                if unknown:
                    raise ValueError(
                        f"{what} names unknown layers {sorted(unknown)}; layers: "
                        f"{[s.name for s in chain]}"
                    )
                for step in chain:  # before any layer changes
                    _entry(value, step.name, what)
        check_plain(chain, "SIS")
        was_training = model.training
        model.eval()
        dense = copy.deepcopy(model)  # targets (and inputs="dense") from the dense network
        generator = torch.Generator().manual_seed(self.seed)
        self.reports, self.solutions = [], {}
        for step in chain:
            dense_u = captured(dense, step.batchnorm_name or step.name, x0, "output")
            source = model if self.inputs == "sparse" else dense
            x = captured(source, step.name, x0, "input")
            self.reports.append(self.solve_layer(step, x, dense_u, generator))
        # Keep the zeros: whatever trains the model afterwards (the runner's epochs, fine-tuning)
        # must not regrow them. finalize bakes these masks into plain weights.
        reparam.apply_masks(model, {s.name: s.layer.weight.detach() != 0 for s in chain})
        model.train(was_training)

    def coverage(self, model: nn.Module) -> dict[str, str]:
        """The layers SIS solved are covered; skipped ones say why, other matrices are not
        Linear, Conv1D or Conv2d layers."""
        solved = {r.layer for r in self.reports}
        return pass_coverage(
            model,
            solved,
            self.skipped,
            "SIS solves the weights of Linear, Conv1D and Conv2d layers only",
        )

    def solve_layer(
        self, step: Step, x: torch.Tensor, u: torch.Tensor, generator: torch.Generator
    ) -> LayerReport:
        started = time.perf_counter()
        w, b, scale = folded(step)
        inputs, pre = patches(step, x), rows(step, u)
        if inputs.shape[0] > self.max_rows:
            keep = torch.randperm(inputs.shape[0], generator=generator)[: self.max_rows]
            inputs, pre = inputs[keep], pre[keep]
        # A layer with neither bias nor BatchNorm has nowhere to put one: its bias stays 0.
        free = self.bias == "free" and (step.layer.bias is not None or step.batchnorm is not None)
        problem = LayerProblem.from_pre_activation(inputs, pre, step.activation, free_bias=free)
        targets = problem.y
        theta_dense = problem.theta(problem.apply(w, problem.centred_bias(w, b)))
        theta_zero = problem.zero_theta()
        target = self.target_sparsity(step.name)
        kwargs = {"tol": self.tol, "max_iter": self.max_iter}
        if target is not None:  # the tolerance at which this layer reaches the target sparsity
            s = solve_to_sparsity(problem, None, step.activation, w, b, target, **kwargs)
            eta = s.eta
        else:
            eta = theta_dense + self.relative_eta(step.name) * theta_zero
            if eta == 0:  # Θ = 0 asked of a layer that has it (ρ·Θ(0) = 0): the layer is kept as
                # it is — solve_to_eta refuses the exact-reproduction problem η = 0
                s = Solution(w.clone(), b.clone(), 0.0, 0.0, 0, True, "fista", [], None)
            else:
                solve = solve_to_eta if self.solver == "fista" else primal_dual
                s = solve(problem, None, step.activation, w, b, eta, **kwargs)
        write_back(step, s.weight, s.bias, scale)
        outputs = activate(step.activation, torch.addmm(s.bias, inputs, s.weight.T))
        error = float((outputs - targets).square().sum())
        self.solutions[step.name] = s
        return LayerReport(
            step.name,
            tuple(w.shape),
            step.activation,
            inputs.shape[0],
            eta,
            s.theta,
            theta_dense,
            theta_zero,
            error,
            s.sparsity,
            s.iterations,
            time.perf_counter() - started,
            s.converged,
            s.solver,
        )


def _entry(value: float | Mapping[str, float], layer: str, what: str) -> float:
    """One number for every layer, or ``layer``'s entry of a mapping."""
    if not isinstance(value, Mapping):
        return value
    if layer not in value:
        raise ValueError(f"{what} has no entry for layer {layer!r}; it names {sorted(value)}")
    return value[layer]


class _Captured(Exception):
    """Stops a forward pass once the tensor it was run for is captured."""


def captured(model: nn.Module, module: str, example: Any, which: str) -> torch.Tensor:
    """The ``input`` or ``output`` of ``model``'s submodule ``module`` on ``example`` (eval mode;
    the forward stops there)."""
    found: list[torch.Tensor] = []

    def keep(value: torch.Tensor) -> None:
        found.append(value.detach())
        raise _Captured

    target = model.get_submodule(module)
    if which == "input":
        handle = target.register_forward_pre_hook(lambda m, args: keep(args[0]))
    else:
        handle = target.register_forward_hook(lambda m, args, out: keep(out))
    try:
        call(model, example)
    except _Captured:
        pass
    finally:
        handle.remove()
    if not found:
        raise ValueError(f"{module} was not called on the calibration inputs")
    return found[0]


def calibration_images(loader: DataLoader, count: int) -> Any:
    """The first ``count`` inputs of ``loader`` (its order: shuffle it with a seed for a random
    draw) — a tensor, or a dict / tuple of them; ``ValueError`` when it has fewer."""
    taken, total = [], 0
    for batch in loader:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        size = _size(x)
        taken.append(_take(x, count - total))
        total += min(size, count - total)
        if total >= count:
            return pytree.tree_map(lambda *parts: torch.cat(parts), *taken)
    raise ValueError(f"images={count} but the loader holds only {total} inputs")


def _size(x: Any) -> int:
    return next(t.shape[0] for t in pytree.tree_leaves(x) if isinstance(t, torch.Tensor))


def _take(x: Any, n: int) -> Any:
    return pytree.tree_map(lambda t: t[:n] if isinstance(t, torch.Tensor) else t, x)


def _first(x: Any) -> Any:
    return _take(x, 1)


def _to(x: Any, device: torch.device) -> Any:
    return pytree.tree_map(lambda t: t.to(device) if isinstance(t, torch.Tensor) else t, x)


__all__ = ["SIS", "LayerReport", "calibration_images", "captured"]
