"""SIS's per-layer problem: the constraint set C, Θ, the linear map, and a solver's result.

SIS (Verma & Pesquet, "Sparsifying Networks via Subdifferential Inclusion", ICML 2021) sparsifies a
**trained** layer y = R(W x + b) from calibration data. What the paper claims (its abstract): the
activation's properties make the problem an *approximate subdifferential inclusion*, the accuracy of
the approximation controls the sparsity, it holds for ReLU, sigmoid and softmax, and the iterative
algorithm provably converges. Its objective, constraint and algorithm could not be read, so what
follows is **our reconstruction** from standard convex analysis (stated, not the paper's text):

1. Many activations are proximity operators, R = prox_φ, and y = prox_φ(u) ⇔ u − y ∈ ∂φ(y)
   (Combettes & Pesquet). So the layer holds on sample k iff the pre-activation u_k = W x_k + b lies
   in the closed convex set C_k = y_k + ∂φ(y_k):

   =========  ==================================================================================
   relu       u_i = y_i where y_i > 0, u_i ≤ 0 where y_i = 0
   sigmoid    u = logit(y)                       (the dense u itself, from a pre-activation)
   softmax    u = ln y + c·1 for some c ∈ ℝ      (ln y = log_softmax of the dense u)
   identity   u = y
   =========  ==================================================================================

2. The dense weights satisfy every inclusion exactly, so the problem is feasible and they are a warm
   start. Relaxing the inclusion by η buys sparsity:

       minimise ‖W‖₁  subject to  Θ(W, b) = Σ_k d²(u_k, C_k) ≤ η      (b is not penalised).

3. Because R is non-expansive, ‖R(u_k) − y_k‖ ≤ d(u_k, C_k): Θ bounds the layer's squared output
   error on the calibration set.

The solvers (:mod:`sparsitylab.sparsify.sis`) see only the linear map L: (W, b) ↦ U = X Wᵀ + 1 bᵀ
(X: one calibration input per row — a convolution's im2col patches) and the projection onto
C = Π_k C_k, both closed form; this module holds them (:class:`LayerProblem`, :func:`project`).
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .._checks import check_choice, check_int, check_tensor

ACTIVATIONS = ("relu", "sigmoid", "softmax", "identity")
EPS = 1e-6  # y is clamped to [EPS, 1 − EPS] before logit / ln


# ---- the constraint set C and Θ


def targets(y: torch.Tensor, activation: str) -> torch.Tensor:
    """The point of C_k an unconstrained pre-activation is measured against: y (relu, identity),
    logit(y) (sigmoid), ln y (softmax, up to the free constant c)."""
    check_choice(activation, "activation", ACTIVATIONS)
    if activation == "sigmoid":
        return torch.logit(y.clamp(EPS, 1 - EPS))
    if activation == "softmax":
        return torch.log(y.clamp_min(EPS))
    return y


def activate(activation: str, u: torch.Tensor) -> torch.Tensor:
    """R(u): the activation (relu, sigmoid, softmax over each row, identity)."""
    check_choice(activation, "activation", ACTIVATIONS)
    if activation == "relu":
        return torch.relu(u)
    if activation == "sigmoid":
        return torch.sigmoid(u)
    if activation == "softmax":
        return torch.softmax(u, dim=1)
    return u


def project(u: torch.Tensor, t: torch.Tensor, y: torch.Tensor, activation: str) -> torch.Tensor:
    """P_C(u): the nearest pre-activations that reproduce y exactly. ``t`` = :func:`targets`."""
    if activation == "relu":  # equality on active units, u ≤ 0 on inactive ones
        return torch.where(y > 0, t, u.clamp(max=0.0))
    if activation == "softmax":  # the line ln y + c·1: shift by the mean difference
        return t + (u - t).mean(dim=1, keepdim=True)
    return t  # sigmoid, identity: a single point


def theta(u: torch.Tensor, y: torch.Tensor, activation: str) -> float:
    """Θ = Σ_k d²(u_k, C_k) for pre-activations ``u`` and dense outputs ``y`` (rows = samples)."""
    t = targets(y, activation)
    return float((u - project(u, t, y, activation)).square().sum())


# ---- the linear map


def _chunks(rows: int, chunk: int) -> list[tuple[int, int]]:
    return [(i, min(i + chunk, rows)) for i in range(0, rows, chunk)]


def spectral_norm(x: torch.Tensor) -> float:
    """‖X‖₂ from the largest eigenvalue of the d×d Gram matrix XᵀX, in float64, with a 1e-6
    relative margin so that a step 1/‖X‖² stays admissible. (Power iteration, the first version,
    fell 1.8 % short on a clustered spectrum: too short a step bound is a convergence bug.)"""
    return gram_norm(x.T @ x)


def gram_norm(gram: torch.Tensor) -> float:
    """‖X‖₂ from a Gram matrix XᵀX (:func:`spectral_norm`)."""
    return (1 + 1e-6) * math.sqrt(max(float(torch.linalg.eigvalsh(gram.double())[-1]), 0.0))


class LayerProblem:
    """The data of one layer's problem: calibration inputs X (rows), dense outputs y, activation.

    The free bias allows an exact change of variables that the solvers use: with X centred
    (X̃ = X − 1 x̄ᵀ) and b̃ = b + W x̄, U = X̃ Wᵀ + 1 b̃ᵀ. X̃ᵀ1 = 0, so LᵀL is block diagonal in (W, b̃)
    with norms ‖X̃‖² and K (the sample count): each block gets its own step (a diagonal
    preconditioner, Pock & Chambolle 2011), and ‖W‖₁ is unchanged. ``free_bias=False`` holds the
    bias at the warm start's value instead (X is then not centred, and b never moves): for a
    layer without a bias, or when the bias must stay as trained.
    """

    def __init__(
        self,
        x: torch.Tensor,
        y: torch.Tensor,
        activation: str,
        chunk: int = 8192,
        target: torch.Tensor | None = None,
        free_bias: bool = True,
    ):
        check_tensor(x, "x", dims=(2,), floating=True)
        check_tensor(y, "y", dims=(2,), floating=True)
        for name, value in (("x", x), ("y", y), ("target", target)):
            if value is not None and not bool(torch.isfinite(value).all()):
                raise ValueError(f"{name} holds NaN or ±inf; the problem needs finite data")
        self.activation = check_choice(activation, "activation", ACTIVATIONS)
        if y.shape[0] != x.shape[0]:
            raise ValueError(f"x has {x.shape[0]} samples but y has {y.shape[0]}; one row each")
        if activation in ("sigmoid", "softmax") and bool((y < 0).any() or (y > 1).any()):
            raise ValueError(f"y must lie in [0, 1] for activation={activation!r}")
        if activation == "relu" and bool((y < 0).any()):
            raise ValueError("y must be ≥ 0 for activation='relu' (it is a ReLU output)")
        self.chunk = check_int(chunk, "chunk", minimum=1)
        if not isinstance(free_bias, bool):
            raise TypeError(f"free_bias={free_bias!r} must be a bool")
        self.free_bias = free_bias
        self.mean = x.mean(dim=0) if free_bias else torch.zeros_like(x[0])
        self.x = x - self.mean
        if target is not None and target.shape != y.shape:
            raise ValueError(
                f"target has shape {tuple(target.shape)}; it must match y {tuple(y.shape)}"
            )
        self.y = y
        self.t = targets(y, activation) if target is None else target
        self.samples = x.shape[0]
        self.gram = self.x.T @ self.x  # d×d; the majorise–minimise solver works on it
        self.norm_w = gram_norm(self.gram)
        self.norm_b = math.sqrt(self.samples) if free_bias else math.inf  # step 0: b never moves
        self.theta_zero = self.theta(torch.zeros_like(y))
        self.rounding = 1e-12 * max(self.theta_zero, 1.0)  # Θ this small is float rounding

    @classmethod
    def from_pre_activation(
        cls,
        x: torch.Tensor,
        u: torch.Tensor,
        activation: str,
        chunk: int = 8192,
        free_bias: bool = True,
    ) -> LayerProblem:
        """The problem whose outputs are y = R(u) for dense pre-activations u (rows = samples).

        The target point of C is then computed from u, not from y: logit(sigmoid(u)) = u and
        ln softmax(u) = log_softmax(u) exactly, where float32 probabilities would saturate (a
        confident softmax output underflows to 0, and ln of the clamped value is not ln y).
        """
        check_tensor(u, "u", dims=(2,), floating=True)
        y = activate(activation, u)
        target = {"sigmoid": u, "softmax": torch.log_softmax(u, dim=1)}.get(activation)
        return cls(x, y, activation, chunk, target, free_bias)

    def check_weights(self, w: torch.Tensor, b: torch.Tensor) -> None:
        check_tensor(w, "w", dims=(2,), floating=True)
        check_tensor(b, "b", dims=(1,), floating=True)
        if w.shape != (self.y.shape[1], self.x.shape[1]):
            raise ValueError(
                f"w has shape {tuple(w.shape)}; it must be (outputs, inputs) = "
                f"{(self.y.shape[1], self.x.shape[1])} for this problem's x and y"
            )
        if b.shape[0] != self.y.shape[1]:
            raise ValueError(f"b has {b.shape[0]} entries; it must have {self.y.shape[1]}")
        if w.dtype != self.x.dtype or b.dtype != self.x.dtype:
            raise TypeError(
                f"w ({w.dtype}) and b ({b.dtype}) must have the dtype of x ({self.x.dtype})"
            )

    def centred_bias(self, w: torch.Tensor, b: torch.Tensor) -> torch.Tensor:
        return b + w @ self.mean

    def bias(self, w: torch.Tensor, b_centred: torch.Tensor) -> torch.Tensor:
        return b_centred - w @ self.mean

    def apply(self, w: torch.Tensor, b_centred: torch.Tensor) -> torch.Tensor:
        """U = X̃ Wᵀ + 1 b̃ᵀ, in row chunks."""
        return torch.cat(
            [
                torch.addmm(b_centred, self.x[lo:hi], w.T)
                for lo, hi in _chunks(self.samples, self.chunk)
            ]
        )

    def adjoint(self, r: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """Lᵀ r = (rᵀ X̃, Σ_k r_k), summed over row chunks."""
        gw = torch.zeros(r.shape[1], self.x.shape[1], dtype=self.x.dtype, device=self.x.device)
        for lo, hi in _chunks(self.samples, self.chunk):
            gw.addmm_(r[lo:hi].T, self.x[lo:hi])
        return gw, r.sum(dim=0)

    def projection(self, u: torch.Tensor) -> torch.Tensor:
        return project(u, self.t, self.y, self.activation)

    def theta(self, u: torch.Tensor) -> float:
        return float((u - self.projection(u)).square().sum())

    def zero_theta(self) -> float:
        """Θ of the all-zero layer (W = 0, b = 0): the scale a relative η is measured against."""
        return self.theta_zero


def soft_threshold(w: torch.Tensor, t: float | torch.Tensor) -> torch.Tensor:
    """prox of t‖·‖₁: sign(w)·max(|w| − t, 0), with exact zeros. A scalar t that w's dtype can
    hold takes torch's fused ``softshrink`` (the same values, one pass instead of five; it refuses a
    larger t, which a penalty search can reach); a tensor t, or a larger one, the formula."""
    if isinstance(t, (int, float)) and 0 <= t <= torch.finfo(w.dtype).max:
        return torch.nn.functional.softshrink(w, t)
    return torch.sign(w) * (w.abs() - t).clamp_min(0.0)


# ---- results


@dataclass
class Solution:
    """A solver's result: the sparse weight and free bias, Θ and η, and the per-iteration history
    (``objective`` = ‖W‖₁, ``theta`` = Θ, ``sparsity``)."""

    weight: torch.Tensor
    bias: torch.Tensor
    theta: float
    eta: float
    iterations: int
    converged: bool
    solver: str
    history: list[dict[str, float]] = field(default_factory=list)
    penalty: float | None = None  # η′ of the penalised form (FISTA)
    rounding: float = 1e-12  # Θ below this is float rounding (the problem's ``rounding``)

    @property
    def sparsity(self) -> float:
        return float((self.weight == 0).float().mean())

    @property
    def feasible(self) -> bool:
        return self.theta <= self.eta * (1 + 1e-6) + self.rounding


def _row(iteration: int, w: torch.Tensor, th: float, **extra: float) -> dict[str, float]:
    return {
        "iteration": iteration,
        "objective": float(w.abs().sum()),
        "theta": th,
        "sparsity": float((w == 0).float().mean()),
        **extra,
    }


def _as_problem(x, y, activation, chunk) -> LayerProblem:
    return x if isinstance(x, LayerProblem) else LayerProblem(x, y, activation, chunk)


__all__ = [
    "ACTIVATIONS",
    "EPS",
    "LayerProblem",
    "Solution",
    "activate",
    "project",
    "soft_threshold",
    "gram_norm",
    "spectral_norm",
    "targets",
    "theta",
]
