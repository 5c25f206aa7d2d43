"""The per-layer convex problem of SIS, and two convergent solvers for it.

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

The solvers see only the linear map L: (W, b) ↦ U = X Wᵀ + 1 bᵀ (X: one calibration input per
row — a convolution's im2col patches) and the projection onto C = Π_k C_k, both closed form:

- :func:`fista` solves the penalised form ‖W‖₁ + Θ/(2η′) by FISTA (Beck & Teboulle) with function
  restarts and one step per block of the centred problem (:class:`LayerProblem`), each the inverse
  Lipschitz constant of its block; it converges for any η′ > 0. :func:`solve_to_eta` searches η′
  (Θ of the penalised solution is non-decreasing in η′) and returns the sparsest solution found
  with Θ ≤ η — feasible by construction.
- :func:`primal_dual` solves the constrained form directly by Chambolle–Pock with f = ‖W‖₁ (prox:
  soft-threshold) and g = the indicator of {U : d(U, C) ≤ √η} (projection: closed form); it
  converges when ‖σ^½ L T^½‖² < 1, which the step sizes enforce.

Both stream X in row chunks (``chunk``): Θ and its gradient are sums over samples, so the chunked
sums are the full-batch ones (the same iterates, memory O(chunk)); a stochastic variant, with its
own convergence conditions, is not implemented.
"""

from __future__ import annotations

import math
from dataclasses import dataclass, field

import torch

from .._checks import check_choice, check_int, check_real, check_tensor

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
    gram = (x.T @ x).double()
    return (1 + 1e-6) * math.sqrt(max(float(torch.linalg.eigvalsh(gram)[-1]), 0.0))


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
        self.norm_w = spectral_norm(self.x)
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
    """prox of t‖·‖₁: sign(w)·max(|w| − t, 0), with exact zeros."""
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


# ---- FISTA on the penalised form


def fista(
    x: torch.Tensor | LayerProblem,
    y: torch.Tensor | None,
    activation: str,
    w0: torch.Tensor,
    b0: torch.Tensor,
    penalty: float,
    *,
    tol: float = 1e-6,
    max_iter: int = 1000,
    chunk: int = 8192,
) -> Solution:
    """Minimise ‖W‖₁ + Θ(W, b)/(2·penalty) from (w0, b0) by FISTA with function restarts.

    Steps penalty/‖X̃‖² for W and penalty/K for the centred bias (see :class:`LayerProblem`), the
    inverse Lipschitz constants of each block. Stops when the penalised objective's relative change
    stays below ``tol`` for 5 iterations, or after ``max_iter``. ``x`` may be a prepared
    :class:`LayerProblem` (then ``y`` and ``activation`` are ignored).
    """
    problem = _as_problem(x, y, activation, chunk)
    problem.check_weights(w0, b0)
    penalty = check_real(penalty, "penalty", minimum=0.0)
    if penalty == 0:
        raise ValueError("penalty=0 is the hard constraint Θ = 0; use a penalty > 0")
    check_int(max_iter, "max_iter", minimum=1)
    step_w, step_b = penalty / problem.norm_w**2, penalty / problem.norm_b**2
    w, b = w0.clone(), problem.centred_bias(w0, b0)
    u = problem.apply(w, b)
    prev_w, prev_b, prev_u, momentum = w, b, u, 1.0
    th = problem.theta(u)
    value = float(w.abs().sum()) + th / (2 * penalty)
    history = [_row(0, w, th, penalised=value)]
    converged, calm, iteration = False, 0, 0
    for iteration in range(1, max_iter + 1):
        next_momentum = (1 + math.sqrt(1 + 4 * momentum**2)) / 2
        beta = (momentum - 1) / next_momentum
        zw, zb, zu = w + beta * (w - prev_w), b + beta * (b - prev_b), u + beta * (u - prev_u)
        gw, gb = problem.adjoint(zu - problem.projection(zu))  # ∇(Θ/2) at z; U(z) by linearity
        new_w = soft_threshold(zw - (step_w / penalty) * gw, step_w)
        new_b = zb - (step_b / penalty) * gb
        new_u = problem.apply(new_w, new_b)
        new_th = problem.theta(new_u)
        new_value = float(new_w.abs().sum()) + new_th / (2 * penalty)
        if new_value > value:  # function restart (O'Donoghue & Candès): drop the momentum
            next_momentum = 1.0
        change = abs(value - new_value) / max(abs(new_value), 1e-12)
        prev_w, prev_b, prev_u, momentum = w, b, u, next_momentum
        w, b, u, value, th = new_w, new_b, new_u, new_value, new_th
        history.append(_row(iteration, w, th, penalised=value))
        calm = calm + 1 if change < tol else 0
        if calm >= 5:
            converged = True
            break
    bias = problem.bias(w, b)
    return Solution(
        w, bias, th, math.nan, iteration, converged, "fista", history, penalty, problem.rounding
    )


def solve_to_eta(
    x: torch.Tensor | LayerProblem,
    y: torch.Tensor | None,
    activation: str,
    w0: torch.Tensor,
    b0: torch.Tensor,
    eta: float,
    *,
    steps: int = 6,
    tol: float = 1e-6,
    max_iter: int = 1000,
    search_tol: float = 1e-3,
    search_iter: int = 100,
    refine: int = 6,
    slack: float = 0.02,
    chunk: int = 8192,
) -> Solution:
    """The sparsest penalised solution with Θ ≤ η found by a bisection over log η′.

    Θ of the penalised minimiser is non-decreasing in η′, so bracketing (factors of 10) and
    ``steps`` bisections in log space find the η′ whose solution has Θ ≈ η; these searches are
    loose (``search_tol``, ``search_iter``) and warm-started from the last feasible solution. Up to
    ``refine`` accurate solves (``tol``, ``max_iter``) then move η′ by a secant in log–log until
    (1 − ``slack``)·η ≤ Θ ≤ η. Only feasible solutions are kept, so the result has Θ ≤ η;
    ``history`` concatenates every solve. Raises ``ValueError`` when even the warm start (w0, b0)
    violates Θ ≤ η, and for η = 0: exact reproduction (a linear program for ReLU) is out of the
    bisection's reach — every finite penalty leaves Θ > 0 — and the warm start it could return is
    not the sparsest solution (on a test layer the LP optimum is far sparser); :func:`primal_dual`
    solves η = 0 approximately.
    """
    problem = _as_problem(x, y, activation, chunk)
    problem.check_weights(w0, b0)
    eta = check_real(eta, "eta", minimum=0.0)
    if eta == 0:
        raise ValueError(
            "eta=0 asks for exact reproduction, which the penalised bisection cannot reach (every "
            "finite penalty leaves Θ > 0) and the dense warm start does not solve (it is not the "
            "sparsest): give eta > 0, or use primal_dual(..., eta=0) for the exact problem"
        )
    steps = check_int(steps, "steps", minimum=0)
    start_theta = problem.theta(problem.apply(w0, problem.centred_bias(w0, b0)))
    if start_theta > eta * (1 + 1e-6) + problem.rounding:
        raise ValueError(
            f"eta={eta:.6g} is below Θ={start_theta:.6g} of the warm start (w0, b0): every "
            "solution must improve on it; start from weights that satisfy Θ ≤ eta"
        )
    best = Solution(
        w0.clone(), b0.clone(), start_theta, eta, 0, True, "fista", [], None, problem.rounding
    )
    zero = torch.zeros_like(w0)
    zero_theta = problem.theta(problem.apply(zero, problem.centred_bias(zero, b0)))
    if problem.norm_w == 0 or zero_theta <= eta:  # W = 0 is feasible, so it is the sparsest
        return Solution(
            zero, b0.clone(), zero_theta, eta, 0, True, "fista", [], None, problem.rounding
        )
    history: list[dict[str, float]] = []

    def attempt(penalty: float, tol: float, max_iter: int) -> Solution:
        s = fista(
            problem, None, activation, best.weight, best.bias, penalty, tol=tol, max_iter=max_iter
        )
        offset = history[-1]["iteration"] if history else 0
        history.extend(
            {**r, "iteration": offset + r["iteration"], "penalty": penalty} for r in s.history
        )
        return s

    # At the optimum the ℓ1 subgradient (entries ±1) balances ∇_W Θ/(2η′) = Rᵀ X̃ / η′ with ‖R‖² ≈ η.
    penalty = (
        math.sqrt(eta) * problem.norm_w / max(problem.y.shape[1] * problem.x.shape[1], 1) ** 0.5
    )
    lo = hi = None
    for _ in range(30):
        s = attempt(penalty, search_tol, search_iter)
        if s.theta <= eta:
            lo, best = penalty, s
            if hi is not None:
                break
            penalty *= 10
        else:
            hi = penalty
            if lo is not None:
                break
            penalty /= 10
    if lo is None:
        raise ValueError(
            f"no penalty reached Θ ≤ eta={eta:.6g}: the problem is numerically infeasible"
        )
    for _ in range(steps if hi is not None else 0):
        penalty = math.sqrt(lo * hi)
        s = attempt(penalty, search_tol, search_iter)
        if s.theta <= eta:
            lo, best = penalty, s
        else:
            hi = penalty
    # Refine with accurate solves: the loose searches misjudge Θ(η′) by tens of percent, so move η′
    # by a secant on log Θ against log η′ (slope 1 for the first step), aiming at the middle of the
    # window [(1 − slack)·η, η], kept inside the bracket of accurate solves; keep the best feasible.
    penalty, converged, lo_accurate, hi_accurate, last = lo, False, None, None, None
    for _ in range(refine):
        s = attempt(penalty, tol, max_iter)
        if s.theta <= eta:
            lo_accurate, best, converged = penalty, s, s.converged
            if s.theta >= (1 - slack) * eta:
                break
        else:
            hi_accurate = penalty
        point = (math.log(penalty), math.log(max(s.theta, 1e-300)))
        slope = 1.0
        if last is not None and point[0] != last[0]:
            slope = min(max((point[1] - last[1]) / (point[0] - last[0]), 0.3), 3.0)
        last = point
        proposal = penalty * ((1 - slack / 2) * eta / max(s.theta, 1e-300)) ** (1 / slope)
        bracketed = lo_accurate is not None and hi_accurate is not None
        if bracketed and not lo_accurate < proposal < hi_accurate:  # stay inside the bracket
            proposal = math.sqrt(lo_accurate * hi_accurate)
        penalty = proposal
    best.eta, best.history, best.iterations = eta, history, len(history) - 1
    best.converged = converged
    return best


# ---- Chambolle–Pock on the constrained form


def project_ball(u: torch.Tensor, p: torch.Tensor, radius: float) -> torch.Tensor:
    """Projection onto D = {U : d(U, C) ≤ radius}, given p = P_C(u): u itself inside D, else
    p + radius·(u − p)/‖u − p‖ (C closed and convex)."""
    distance = float((u - p).norm())
    if distance <= radius:
        return u
    return p + (radius / distance) * (u - p)


def primal_dual(
    x: torch.Tensor | LayerProblem,
    y: torch.Tensor | None,
    activation: str,
    w0: torch.Tensor,
    b0: torch.Tensor,
    eta: float,
    *,
    tol: float = 1e-3,
    max_iter: int = 3000,
    balance: float = 1.0,
    chunk: int = 8192,
) -> Solution:
    """Minimise ‖W‖₁ s.t. Θ(W, b) ≤ η by Chambolle–Pock from (w0, b0).

    Primal steps τ_W = balance/‖X̃‖ and τ_b = τ_W‖X̃‖²/K, dual step σ = 0.99/(balance·‖X̃‖): then
    ‖σ^½ L T^½‖² = 0.99 < 1, the convergence condition of the preconditioned method (Pock &
    Chambolle 2011). ``balance`` trades primal against dual progress; the default 1 was the best of
    ‖w0‖_∞/4, 0.3, 1, 3 and 10 on the MLP's layers (the first converged to a 12–21 % larger ‖W‖₁).
    Stops when |Θ − η| ≤ tol·η (the constraint is active at the optimum, unless W = 0 meets it) and
    W's relative change stays below ``tol`` for 5 iterations.
    """
    problem = _as_problem(x, y, activation, chunk)
    problem.check_weights(w0, b0)
    eta = check_real(eta, "eta", minimum=0.0)
    check_int(max_iter, "max_iter", minimum=1)
    balance = check_real(balance, "balance", minimum=1e-12)
    tau_w = balance / problem.norm_w
    tau_b = tau_w * problem.norm_w**2 / problem.norm_b**2
    sigma = 0.99 / (balance * problem.norm_w)
    radius = math.sqrt(eta)
    w, b = w0.clone(), problem.centred_bias(w0, b0)
    u = problem.apply(w, b)
    u_bar, dual = u, torch.zeros_like(u)
    th = problem.theta(u)
    history = [_row(0, w, th)]
    converged, calm, iteration = False, 0, 0
    for iteration in range(1, max_iter + 1):
        v = dual + sigma * u_bar  # prox of σg* (Moreau): v − σ P_D(v/σ)
        dual = v - sigma * project_ball(v / sigma, problem.projection(v / sigma), radius)
        gw, gb = problem.adjoint(dual)
        new_w = soft_threshold(w - tau_w * gw, tau_w)
        new_b = b - tau_b * gb
        new_u = problem.apply(new_w, new_b)
        u_bar = 2 * new_u - u  # L(2x⁺ − x) by linearity: no extra product
        change = float((new_w - w).norm()) / max(float(new_w.norm()), 1e-12)
        w, b, u = new_w, new_b, new_u
        th = problem.theta(u)
        history.append(_row(iteration, w, th))
        # At the optimum the constraint is active (Θ = η) unless W = 0 already meets it: a small
        # step alone is not convergence (with tiny steps W barely moves from the dense start).
        settled = abs(th - eta) <= tol * eta + problem.rounding or not bool(w.any())
        calm = calm + 1 if (change < tol and settled) else 0
        if calm >= 5:
            converged = True
            break
    bias = problem.bias(w, b)
    return Solution(
        w, bias, th, eta, iteration, converged, "primal-dual", history, None, problem.rounding
    )


__all__ = [
    "ACTIVATIONS",
    "activate",
    "Solution",
    "fista",
    "LayerProblem",
    "spectral_norm",
    "primal_dual",
    "project",
    "project_ball",
    "soft_threshold",
    "solve_to_eta",
    "targets",
    "theta",
]
