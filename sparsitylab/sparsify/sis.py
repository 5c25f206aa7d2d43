"""SIS's convergent solvers for the per-layer problem (:mod:`.sis_problem`).

SIS (Verma & Pesquet, "Sparsifying Networks via Subdifferential Inclusion", ICML 2021): per layer,

    minimise ‖W‖₁  subject to  Θ(W, b) = Σ_k d²(u_k, C_k) ≤ η      (b is not penalised),

our reconstruction of the paper's problem (what is the paper's and what is ours is stated in
:mod:`~sparsitylab.sparsify.sis_problem`, which holds the problem; its public names are re-exported
here, so ``sparsitylab.sparsify.sis`` is the one import for both).

- :func:`fista` solves the penalised form ‖W‖₁ + Θ/(2η′) by FISTA (Beck & Teboulle) with function
  restarts and one step per block of the centred problem (:class:`LayerProblem`), each the inverse
  Lipschitz constant of its block; it converges for any η′ > 0.
- :func:`solve_to_eta` meets a requested η by majorise–minimise on the Gram matrix X̃ᵀX̃
  (:mod:`.sis_mm`, ours): every iterate has Θ ≤ η and ‖W‖₁ never rises. Near η = 0 it runs the
  older search instead, a bisection over FISTA's η′ (:mod:`.sis_bisection`).
- :func:`primal_dual` solves the constrained form directly by Chambolle–Pock with f = ‖W‖₁ (prox:
  soft-threshold) and g = the indicator of {U : d(U, C) ≤ √η} (projection: closed form); it
  converges when ‖σ^½ L T^½‖² < 1, which the step sizes enforce.

All stream X in row chunks (``chunk``): Θ and its gradient are sums over samples, so the chunked
sums are the full-batch ones (the same iterates, memory O(chunk)); a stochastic variant, with its
own convergence conditions, is not implemented.
"""

from __future__ import annotations

import math

import torch

from .._checks import check_int, check_real
from .sis_mm import majorise_minimise
from .sis_problem import (
    ACTIVATIONS,
    EPS,  # noqa: F401  (re-exported: the module's names before the split)
    LayerProblem,
    Solution,
    _as_problem,
    _chunks,  # noqa: F401
    _row,
    activate,
    project,
    soft_threshold,
    spectral_norm,
    targets,
    theta,
)

# η below this fraction of Θ(0) is "near exact reproduction": solve_to_eta then runs the FISTA
# bisection (:mod:`.sis_bisection`), because the majoriser of :mod:`.sis_mm` holds every inactive
# ReLU unit at its current pre-activation, which leaves almost no room when η ≈ 0 (measured: on
# the LP test layer of tests/sparsify/test_sis.py it stalled at 1.4× the LP optimum's ‖W‖₁).
NEAR_EXACT = 1e-3

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


def _first_penalty(problem: LayerProblem, eta: float) -> float:
    """The penalty η′ to start a search for tolerance η at (derived): at the optimum the ℓ1
    subgradient (entries ±1) balances ∇_W Θ/(2η′) = Rᵀ X̃ / η′ with ‖R‖² ≈ η."""
    return math.sqrt(eta) * problem.norm_w / max(problem.y.shape[1] * problem.x.shape[1], 1) ** 0.5


def _append_history(history: list[dict[str, float]], s: Solution, penalty: float) -> None:
    """Append one solve's history, its iterations counted on from the previous solves'."""
    offset = history[-1]["iteration"] if history else 0
    history.extend(
        {**r, "iteration": offset + r["iteration"], "penalty": penalty} for r in s.history
    )


def check_eta(eta: float) -> float:
    """η as a finite real ≥ 0, refusing η = 0 (exact reproduction) for the solvers to a
    tolerance."""
    eta = check_real(eta, "eta", minimum=0.0)
    if eta == 0:
        raise ValueError(
            "eta=0 asks for exact reproduction, which the penalised bisection cannot reach (every "
            "finite penalty leaves Θ > 0) and the dense warm start does not solve (it is not the "
            "sparsest): give eta > 0, or use primal_dual(..., eta=0) for the exact problem"
        )
    return eta


def feasible_start(
    problem: LayerProblem, w0: torch.Tensor, b0: torch.Tensor, eta: float
) -> tuple[float, Solution | None]:
    """Θ of the warm start (``ValueError`` when it violates Θ ≤ η), and the all-zero solution
    when W = 0 already meets η (then it is the sparsest), else None."""
    start_theta = problem.theta(problem.apply(w0, problem.centred_bias(w0, b0)))
    if start_theta > eta * (1 + 1e-6) + problem.rounding:
        raise ValueError(
            f"eta={eta:.6g} is below Θ={start_theta:.6g} of the warm start (w0, b0): every "
            "solution must improve on it; start from weights that satisfy Θ ≤ eta"
        )
    zero = torch.zeros_like(w0)
    zero_theta = problem.theta(problem.apply(zero, problem.centred_bias(zero, b0)))
    if problem.norm_w == 0 or zero_theta <= eta:  # W = 0 is feasible, so it is the sparsest
        solution = Solution(
            zero, b0.clone(), zero_theta, eta, 0, True, "fista", [], None, problem.rounding
        )
        return start_theta, solution
    return start_theta, None


def solve_to_eta(
    x: torch.Tensor | LayerProblem,
    y: torch.Tensor | None,
    activation: str,
    w0: torch.Tensor,
    b0: torch.Tensor,
    eta: float,
    *,
    tol: float = 1e-3,
    max_iter: int = 200,
    slack: float = 0.02,
    searches: int = 4,
    lasso_iter: int = 60,
    lasso_tol: float = 1e-4,
    chunk: int = 8192,
) -> Solution:
    """min ‖W‖₁ s.t. Θ ≤ η from a feasible warm start (w0, b0), by majorise–minimise (ours).

    Each outer step replaces Θ by a quadratic majoriser that needs only one adjoint and the d×d
    Gram matrix X̃ᵀX̃, and minimises ‖W‖₁ under "majoriser ≤ η" by lasso solves on that Gram
    matrix (:mod:`.sis_mm`: the derivation, the convergence argument, the parameters ``slack``,
    ``searches``, ``lasso_iter``, ``lasso_tol``); the outer steps carry FISTA momentum, and a step
    that would raise ‖W‖₁ or break Θ ≤ η restarts it. Every returned iterate has Θ ≤ η, checked on
    the true Θ, and ‖W‖₁ never rises. Stops when ‖W‖₁ falls by less than ``tol`` (relative) in two
    consecutive steps, or after ``max_iter`` steps; ``penalty`` is the η′ of the last lasso (the
    penalised problem's weight at which the solution is stationary, up to the solve's accuracy).
    Raises ``ValueError`` when even the warm start (w0, b0) violates Θ ≤ η, and for η = 0: exact
    reproduction (a linear program for ReLU) has no strictly feasible point, and the warm start it
    could return is not the sparsest solution (on a test layer the LP optimum is far sparser);
    :func:`primal_dual` solves η = 0 approximately.
    """
    problem = _as_problem(x, y, activation, chunk)
    problem.check_weights(w0, b0)
    eta = check_eta(eta)
    tol = check_real(tol, "tol", minimum=0.0)
    max_iter = check_int(max_iter, "max_iter", minimum=1)
    slack = check_real(slack, "slack", minimum=0.0, maximum=1.0)
    searches = check_int(searches, "searches", minimum=1)
    lasso_iter = check_int(lasso_iter, "lasso_iter", minimum=1)
    lasso_tol = check_real(lasso_tol, "lasso_tol", minimum=0.0)
    start_theta, zero = feasible_start(problem, w0, b0, eta)
    if zero is not None:
        return zero
    if eta < NEAR_EXACT * problem.theta_zero:  # the majoriser pins the inactive units: stalls
        from .sis_bisection import bisection_to_eta

        return bisection_to_eta(problem, None, activation, w0, b0, eta)
    return majorise_minimise(
        problem,
        w0,
        b0,
        eta,
        _first_penalty(problem, eta),
        tol=tol,
        max_iter=max_iter,
        slack=slack,
        searches=searches,
        lasso_iter=lasso_iter,
        lasso_tol=lasso_tol,
    )


def solve_to_sparsity(
    x: torch.Tensor | LayerProblem,
    y: torch.Tensor | None,
    activation: str,
    w0: torch.Tensor,
    b0: torch.Tensor,
    sparsity: float,
    *,
    within: float = 0.005,
    steps: int = 12,
    tol: float = 1e-6,
    max_iter: int = 1000,
    chunk: int = 8192,
) -> Solution:
    """The penalised solution whose sparsity is within ``within`` of ``sparsity`` (ours).

    The sparsity of FISTA's penalised minimiser rises with η′, so η′ is bracketed (factors of 10)
    and bisected in log space, up to ``steps`` solves after the bracket, every solve warm-started
    from the closest one so far; the closest solution found is returned (``converged`` says
    whether it is within ``within``). A minimiser of ‖W‖₁ + Θ/(2η′) also minimises ‖W‖₁ subject to
    Θ ≤ η for η = its own Θ (Lagrange duality, the problem being convex), so the result is SIS's
    solution at that tolerance: ``eta`` is set to its Θ. This is how SIS is run at another
    method's per-layer sparsities, to compare the two at equal layer sparsities.
    """
    problem = _as_problem(x, y, activation, chunk)
    problem.check_weights(w0, b0)
    target = check_real(sparsity, "sparsity", minimum=0.0, maximum=1.0)
    within = check_real(within, "within", minimum=0.0)
    steps = check_int(steps, "steps", minimum=0)
    history: list[dict[str, float]] = []
    best: Solution | None = None

    def attempt(penalty: float) -> Solution:
        nonlocal best
        start_w, start_b = (w0, b0) if best is None else (best.weight, best.bias)
        s = fista(problem, None, activation, start_w, start_b, penalty, tol=tol, max_iter=max_iter)
        _append_history(history, s, penalty)
        if best is None or abs(s.sparsity - target) < abs(best.sparsity - target):
            best = s
        return s

    penalty = _first_penalty(problem, 0.01 * max(problem.theta_zero, 1e-30))  # η = 1 % of Θ(0)
    lo = hi = None
    for _ in range(30):
        s = attempt(penalty)
        if abs(s.sparsity - target) <= within:
            break
        if s.sparsity < target:
            lo = penalty
            if hi is not None:
                break
            penalty *= 10
        else:
            hi = penalty
            if lo is not None:
                break
            penalty /= 10
    for _ in range(steps if lo is not None and hi is not None else 0):
        if abs(best.sparsity - target) <= within:
            break
        penalty = math.sqrt(lo * hi)
        s = attempt(penalty)
        if s.sparsity < target:
            lo = penalty
        else:
            hi = penalty
    best.eta, best.history, best.iterations = best.theta, history, len(history) - 1
    best.converged = abs(best.sparsity - target) <= within
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
    "solve_to_sparsity",
    "targets",
    "theta",
]
