"""SIS: sparsify a trained network layer by layer from calibration data, without training.

The per-layer problem and its solvers are in :mod:`sparsitylab.sparsify.sis` (what is the paper's
and what is our reconstruction is stated there). This module is the network pass, also our
reconstruction (the paper's layer order and data flow could not be read):

1. Walk a ``nn.Sequential`` model in order. Each ``Linear`` / ``Conv2d`` is one problem; a
   ``BatchNorm`` right after it is folded into (W, b); the activation is the ``ReLU`` or
   ``Sigmoid`` that follows, else the identity (pooling, flatten: the **pre-pooling** output is the
   target); the model's last layer gets ``last`` ("softmax": the classifier's loss activation).
2. Targets y come from the **dense** network; inputs x from the **already-sparsified** network
   (``inputs="sparse"``, the default), so each layer corrects the errors of the layers before it;
   ``inputs="dense"`` solves every layer from dense inputs instead.
3. A convolution is a linear map on its im2col patches (``F.unfold``): every patch is a sample;
   above ``max_rows`` patches a seeded random subset is used (stated in the layer report).
4. The budget: η = Θ(W_dense) + ``eta`` · Θ(0), with Θ(0) the all-zero layer's distance —
   scale free, and feasible (the dense weights satisfy it) even when x comes from the sparsified
   network, where the dense weights no longer give Θ = 0. ``eta``: one number, or layer → number.

The zeros are exact and held by fixed masks, so training afterwards (optional fine-tuning) keeps
them; ``finalize`` bakes the masks into an ordinary model.
``reports`` holds, per layer, the activation, η, Θ, sparsity, iterations, time and convergence.
"""

from __future__ import annotations

import time
from collections.abc import Mapping
from dataclasses import asdict, dataclass
from typing import Any, ClassVar

import torch
from torch import nn
from torch.nn.utils import parametrize
from torch.utils.data import DataLoader

from .. import reparam
from .._checks import check_choice, check_int, check_real
from ..gemm import from_gemm_view, gemm_view, im2col
from ..sparsify.sis import LayerProblem, activate, primal_dual, solve_to_eta
from . import register
from .base import Method

SOLVERS = ("fista", "primal-dual")
ACTIVATION_OF = {nn.ReLU: "relu", nn.Sigmoid: "sigmoid"}


@dataclass
class Step:
    """One problem of the network pass: a layer, its folded BatchNorm and its activation."""

    name: str
    layer: nn.Linear | nn.Conv2d
    batchnorm: nn.BatchNorm1d | nn.BatchNorm2d | None
    activation: str
    start: int  # index of the layer among the model's children
    end: int  # index of the last module the step covers (the layer, BN or activation)


def steps(model: nn.Module, last: str = "softmax") -> list[Step]:
    """The problems of ``model`` in order (see the module docstring); ``TypeError`` for a model
    that is not a plain chain of modules."""
    if not isinstance(model, nn.Sequential):
        raise TypeError(
            f"SIS walks an nn.Sequential chain of layers; got {type(model).__name__} (a model with "
            "branches such as ResNet needs its own pass)"
        )
    modules = list(model.named_children())
    found = []
    for i, (name, module) in enumerate(modules):
        if isinstance(module, nn.Conv2d) and module.groups != 1:
            raise TypeError(f"layer {name!r} is a grouped convolution; SIS handles groups=1 only")
        if not isinstance(module, (nn.Linear, nn.Conv2d)):
            continue
        end, batchnorm = i, None
        if end + 1 < len(modules) and isinstance(
            modules[end + 1][1], (nn.BatchNorm1d, nn.BatchNorm2d)
        ):
            end, batchnorm = end + 1, modules[end + 1][1]
        activation = "identity"
        if end + 1 < len(modules) and type(modules[end + 1][1]) in ACTIVATION_OF:
            end, activation = end + 1, ACTIVATION_OF[type(modules[end + 1][1])]
        found.append(Step(name, module, batchnorm, activation, i, end))
    if not found:
        raise ValueError("the model has no Linear or Conv2d layer to sparsify")
    tail = [m for _, m in modules[found[-1].end + 1 :]]
    if found[-1].activation == "identity" and all(
        isinstance(m, (nn.Identity, nn.Flatten)) for m in tail
    ):
        found[-1].activation = last
    return found


def folded(step: Step) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W, b, scale) of the layer with its BatchNorm (eval mode) folded in, W as its GEMM matrix
    (out × in·kh·kw); scale is the BN's per-channel γ/√(var + ε) (ones without BN)."""
    layer = step.layer
    w = gemm_view(layer.weight.detach())
    zeros = torch.zeros(w.shape[0], dtype=w.dtype, device=w.device)
    b = layer.bias.detach() if layer.bias is not None else zeros
    scale = torch.ones_like(zeros)
    bn = step.batchnorm
    if bn is not None:
        scale = bn.weight.detach() / torch.sqrt(bn.running_var + bn.eps)
        b = (b - bn.running_mean) * scale + bn.bias.detach()
        w = w * scale[:, None]
    return w, b, scale


@torch.no_grad()
def write_back(step: Step, w: torch.Tensor, b: torch.Tensor, scale: torch.Tensor) -> None:
    """Store a solved (W, b) of the folded layer in the model, exactly: W / scale into the layer
    (zeros stay exact zeros; a channel with scale 0 outputs a constant, so its weights become 0),
    and the bias into the layer, or into the BN's β so that BN(layer(x)) = W x + b."""
    layer, bn = step.layer, step.batchnorm
    safe = torch.where(scale == 0, torch.ones_like(scale), scale)
    raw = torch.where((scale == 0)[:, None], torch.zeros_like(w), w / safe[:, None])
    layer.weight.copy_(from_gemm_view(raw, layer.weight.shape))
    if bn is None:
        if layer.bias is not None:
            layer.bias.copy_(b)
        elif bool(b.any()):
            raise ValueError(f"layer {step.name!r} has no bias, but the solution needs one")
        return
    own = layer.bias if layer.bias is not None else torch.zeros_like(b)
    bn.bias.copy_(b - (own - bn.running_mean) * scale)


def patches(step: Step, x: torch.Tensor) -> torch.Tensor:
    """The layer's input as GEMM rows: x itself for a Linear, im2col patches (one row per output
    position) for a Conv2d, in the (C, kh, kw) order of the weight's GEMM matrix."""
    layer = step.layer
    if isinstance(layer, nn.Linear):
        return x.reshape(x.shape[0], -1)
    if layer.padding_mode != "zeros" or isinstance(layer.padding, str):
        raise TypeError(f"layer {step.name!r}: SIS supports numeric zero padding only")
    cols = im2col(x, layer.kernel_size, layer.stride, layer.padding, layer.dilation)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def rows(step: Step, y: torch.Tensor) -> torch.Tensor:
    """The layer's output as GEMM rows (one per sample, or per sample × output position)."""
    if isinstance(step.layer, nn.Conv2d):
        return y.permute(0, 2, 3, 1).reshape(-1, y.shape[1])
    return y.reshape(y.shape[0], -1)


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
    calibration images to draw from the loader (its first batches). solver: "fista" (penalised form
    with a bisection on η′; Θ ≤ η guaranteed) or "primal-dual" (constrained form). inputs: "sparse"
    or "dense" (where each layer's inputs come from). last: activation of the last layer
    ("softmax" or "identity"). max_rows: im2col rows per conv problem (seeded subset above it).
    bias: "free" (the default: biases are refitted, not penalised) or "fixed" (kept as trained).
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
        self.reports: list[LayerReport] = []
        self.solutions: dict[str, Any] = {}  # layer → its solver Solution (with history)

    def relative_eta(self, layer: str) -> float:
        if isinstance(self.eta, Mapping):
            if layer not in self.eta:
                raise ValueError(
                    f"eta has no entry for layer {layer!r}; it names {sorted(self.eta)}"
                )
            return self.eta[layer]
        return self.eta

    @torch.no_grad()
    def calibrate(self, model: nn.Module, loader: DataLoader) -> None:
        """Sparsify ``model`` in place, layer by layer, from ``images`` images of ``loader``."""
        chain = steps(model, self.last)
        if isinstance(self.eta, Mapping):
            unknown = set(self.eta) - {s.name for s in chain}
            if unknown:
                raise ValueError(
                    f"eta names unknown layers {sorted(unknown)}; layers: {[s.name for s in chain]}"
                )
            for step in chain:  # before any layer changes
                self.relative_eta(step.name)
        for step in chain:
            if parametrize.is_parametrized(step.layer):
                raise ValueError(
                    f"layer {step.name!r} already has a reparametrisation (a mask?); SIS starts "
                    "from a plain trained model: bake it first (a method's finalize does)"
                )
        device = next(model.parameters()).device
        x0 = calibration_images(loader, self.images).to(device)
        was_training = model.training
        model.eval()
        modules = list(model.children())
        dense_x, sparse_x, position = x0, x0, 0
        generator = torch.Generator().manual_seed(self.seed)
        self.reports, self.solutions = [], {}
        for step in chain:
            for module in modules[position : step.start]:  # pooling, flatten, … between layers
                dense_x, sparse_x = module(dense_x), module(sparse_x)
            dense_u = forward_folded(step, dense_x)  # before the layer changes
            source = sparse_x if self.inputs == "sparse" else dense_x
            self.reports.append(self.solve_layer(step, source, dense_u, generator))
            dense_x = activate(step.activation, dense_u)  # the dense stream goes on dense …
            sparse_x = activate(
                step.activation, forward_folded(step, sparse_x)
            )  # … this one sparse
            position = step.end + 1
        # Keep the zeros: whatever trains the model afterwards (the runner's epochs, fine-tuning)
        # must not regrow them. finalize bakes these masks into plain weights.
        reparam.apply_masks(model, {s.name: s.layer.weight.detach() != 0 for s in chain})
        model.train(was_training)

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
        eta = theta_dense + self.relative_eta(step.name) * theta_zero
        if self.solver == "fista":
            s = solve_to_eta(
                problem, None, step.activation, w, b, eta, tol=self.tol, max_iter=self.max_iter
            )
        else:
            s = primal_dual(
                problem, None, step.activation, w, b, eta, tol=self.tol, max_iter=self.max_iter
            )
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


def forward_folded(step: Step, x: torch.Tensor) -> torch.Tensor:
    """The layer (and its BatchNorm, in eval mode) applied to x: the pre-activation."""
    u = step.layer(x)
    return step.batchnorm(u) if step.batchnorm is not None else u


def calibration_images(loader: DataLoader, count: int) -> torch.Tensor:
    """The first ``count`` inputs of ``loader`` (its order: shuffle it with a seed for a random
    draw); ``ValueError`` when it has fewer."""
    taken, total = [], 0
    for batch in loader:
        x = batch[0] if isinstance(batch, (tuple, list)) else batch
        taken.append(x[: count - total])
        total += taken[-1].shape[0]
        if total >= count:
            return torch.cat(taken)
    raise ValueError(f"images={count} but the loader holds only {total} inputs")


__all__ = ["SIS", "LayerReport", "Step", "calibration_images", "folded", "steps", "write_back"]
