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
from torch.nn.utils import parametrize
from torch.utils import _pytree as pytree
from torch.utils.data import DataLoader

from .. import reparam
from .._checks import check_choice, check_int, check_real
from ..coverage import COVERED, all_matrices, coverage
from ..deploy.compaction import default_input
from ..gemm import from_gemm_view, gemm_view, im2col
from ..graph import trace
from ..graph.tracer import call
from ..sparsify.sis import LayerProblem, activate, primal_dual, solve_to_eta
from . import register
from .base import Method

SOLVERS = ("fista", "primal-dual")
ACTIVATION_OF = {"relu": "relu", "relu_": "relu", "sigmoid": "sigmoid", "sigmoid_": "sigmoid"}


@dataclass
class Step:
    """One problem of the network pass: a layer, its folded BatchNorm and its activation."""

    name: str
    layer: nn.Module  # nn.Linear, nn.Conv2d, or a Conv1D (``transposed``: weight stored in × out)
    batchnorm: nn.BatchNorm1d | nn.BatchNorm2d | None
    activation: str
    batchnorm_name: str | None = None
    transposed: bool = False


def zero_padding(conv: nn.Conv2d) -> tuple[int, int] | None:
    """The symmetric zero padding (rows, columns) ``conv`` applies, or None: another padding mode,
    or ``padding="same"`` that pads unevenly (an even kernel)."""
    if conv.padding_mode != "zeros":
        return None
    if conv.padding == "valid":
        return (0, 0)
    if conv.padding == "same":
        total = [d * (k - 1) for d, k in zip(conv.dilation, conv.kernel_size)]
        return None if any(t % 2 for t in total) else (total[0] // 2, total[1] // 2)
    return tuple(conv.padding)


def _unsupported(layer: nn.Module) -> str | None:
    """Why SIS cannot solve a Linear/Conv2d layer, or None."""
    if isinstance(layer, nn.Conv2d):
        if layer.groups != 1:
            return "a grouped convolution (SIS handles groups=1 only)"
        if zero_padding(layer) is None:
            return "padding other than symmetric zero padding"
    return None


def plan_steps(
    model: nn.Module, example_input: Any = None, last: str = "softmax"
) -> tuple[list[Step], dict[str, str]]:
    """The problems of ``model`` in forward order, and the layers kept dense with the reason
    (module docstring). ``example_input`` defaults to one image for the library's models."""
    example = default_input(model) if example_input is None else example_input
    graph = trace(model, example)
    modules = dict(model.named_modules())
    matrices = {w.module_name: w for w in all_matrices(model).values() if w.attr == "weight"}
    found, skipped = [], {}
    for name, calls in graph.calls.items():
        layer, matrix = modules[name], matrices.get(name)
        transposed = matrix is not None and matrix.transposed
        if not (isinstance(layer, (nn.Linear, nn.Conv2d)) or transposed):
            continue
        tied = None if matrix else "its weight is an embedding table's (tied): not solved"
        why = tied or _unsupported(layer) or (f"called {calls} times" if calls != 1 else None)
        if why:
            skipped[name] = why
            continue
        bn_name = graph.norm_after.get(name)
        bn = modules.get(bn_name) if bn_name else None
        if bn is not None and (graph.calls.get(bn_name) != 1 or not bn.track_running_stats):
            bn, bn_name = None, None
        reader = graph.first_op.get(bn_name or name, "output")
        activation = ACTIVATION_OF.get(reader, "identity")
        if reader == "output":
            activation = last
        found.append(Step(name, layer, bn, activation, bn_name, transposed))
    return found, skipped


def steps(model: nn.Module, example_input: Any = None, last: str = "softmax") -> list[Step]:
    """The problems of ``model`` in forward order (see :func:`plan_steps`); ``ValueError`` when
    there is none."""
    found, skipped = plan_steps(model, example_input, last)
    if not found:
        why = "; ".join(f"{k}: {v}" for k, v in skipped.items())
        raise ValueError(
            "the model has no Linear, Conv1D or Conv2d layer SIS can sparsify"
            + (f" ({why})" if why else "")
        )
    return found


def folded(step: Step) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(W, b, scale) of the layer with its BatchNorm (eval mode) folded in, W as its GEMM matrix
    (out × in·kh·kw); scale is the BN's per-channel γ/√(var + ε) (ones without BN)."""
    layer = step.layer
    w = layer.weight.detach().t() if step.transposed else gemm_view(layer.weight.detach())
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
    layer.weight.copy_(raw.t() if step.transposed else from_gemm_view(raw, layer.weight.shape))
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
    if not isinstance(layer, nn.Conv2d):  # a Linear: every position of a sequence is a sample
        return x.reshape(-1, x.shape[-1])
    padding = zero_padding(layer)
    if padding is None:
        raise TypeError(f"layer {step.name!r}: SIS supports symmetric zero padding only")
    cols = im2col(x, layer.kernel_size, layer.stride, padding, layer.dilation)
    return cols.transpose(1, 2).reshape(-1, cols.shape[1])


def rows(step: Step, y: torch.Tensor) -> torch.Tensor:
    """The layer's output as GEMM rows (one per sample, or per sample × output position)."""
    if isinstance(step.layer, nn.Conv2d):
        return y.permute(0, 2, 3, 1).reshape(-1, y.shape[1])
    return y.reshape(-1, y.shape[-1])


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
        self.skipped: dict[str, str] = {}  # layer → why it stays dense

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
        """Sparsify ``model`` in place, layer by layer, from ``images`` inputs of ``loader``."""
        device = next(model.parameters()).device
        x0 = _to(calibration_images(loader, self.images), device)
        chain, self.skipped = plan_steps(model, _first(x0), self.last)
        if not chain:
            raise ValueError(
                "the model has no Linear, Conv1D or Conv2d layer SIS can sparsify "
                f"({'; '.join(f'{k}: {v}' for k, v in self.skipped.items())})"
            )
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
        report = coverage(model)
        solved = {f"{r.layer}.weight" for r in self.reports}
        for name, why in report.items():
            if why == COVERED and name not in solved:
                layer = name.rpartition(".")[0]
                report[name] = self.skipped.get(
                    layer, "SIS solves the weights of Linear, Conv1D and Conv2d layers only"
                )
        return report

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


__all__ = [
    "SIS",
    "LayerReport",
    "Step",
    "calibration_images",
    "captured",
    "folded",
    "plan_steps",
    "steps",
    "write_back",
]
