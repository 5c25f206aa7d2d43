"""SIS's constrained problem by majorise–minimise on the Gram matrix X̃ᵀX̃ (ours).

The problem (our reconstruction of SIS, :mod:`.sis_problem`) is

    minimise ‖W‖₁  subject to  Θ(W, b) = d²_C(L(W, b)) ≤ η.

Nothing in this module is from the paper; it is derived from two standard facts.

1. **A quadratic majoriser.** ½d²_C is convex with a 1-Lipschitz gradient U − P_C(U), so at the
   current point (W_k, b_k), with U_k = L(W_k, b_k) and R_k = U_k − P_C(U_k),

       Θ(W, b) ≤ Θ̂_k(W, b) = ‖R_k + L(Δ, δ)‖²,   Δ = W − W_k, δ = b − b_k,

   with equality at (W_k, b_k). With centred inputs (:class:`~.sis_problem.LayerProblem`)
   ‖L(Δ, δ)‖² = tr(Δ G Δᵀ) + K‖δ‖², G = X̃ᵀX̃, so Θ̂_k needs only G_W = R_kᵀX̃ (one adjoint),
   g_b = Σ_k R_k and the d×d Gram matrix G: the bias minimiser is δ = −g_b/K, and then

       Θ̂_k(W) = ‖R_k‖² − ‖g_b‖²/K + 2⟨G_W, Δ⟩ + tr(Δ G Δᵀ).

2. **Inner approximation** (majorise–minimise for a constraint). Every W with Θ̂_k(W) ≤ η has
   Θ(W) ≤ η, and W_k itself satisfies it. So the step W_{k+1} = argmin ‖W‖₁ s.t. Θ̂_k(W) ≤ η keeps
   every iterate feasible and ‖W‖₁ non-increasing; for a convex problem with a C¹ constraint
   function and a strictly feasible point (the dense weights when η > 0), its limit points solve
   the problem (the inner-approximation method of Marks & Wright, 1978). The solver adds FISTA
   momentum to the centre of the bound (a heuristic: on the bench layer it reached the same ‖W‖₁
   in fewer steps); a momentum step is kept only if it is feasible and does not raise ‖W‖₁, so
   both properties hold for every returned iterate, and a rejected one restarts the momentum.
   Each step's lasso is solved inexactly; its result is checked on Θ̂ (exactly), then on Θ.

The step is a convex problem in d×d quantities: a lasso with Gram matrix G, solved by FISTA at a
penalty η′ (minimise ‖W‖₁ + Θ̂_k(W)/(2η′)) that a secant search moves until Θ̂_k lands in
[(1 − slack)·η, η]. Its iterations multiply W by G (outputs × d × d), against the outputs × K × d
of one pass over the calibration data: for the 784×500 layer with 10 000 samples, ~25× cheaper.
Each outer iteration costs two passes over the data (the adjoint for G_W, the forward map for the
new Θ), like one FISTA iteration on the full problem, but moves much further: the model is exact
on active ReLU units and on linear layers, and only the one-sided constraints of inactive units
(u ≤ 0) are held at their current value. That hold is also its limit: near η = 0 it leaves no
room and the steps stall, so :func:`~.sis.solve_to_eta` runs the FISTA bisection there.

Measured (``sparsitylab bench sis``, 784×500 ReLU layer, 10 000 samples, η = 0.03·Θ(0), 1 thread,
under load): ~20 s and ~20 steps to Θ ≤ η at the bisection's sparsity, against ~340 s and 1 305
FISTA iterations for the bisection (data/bench_sis_cpu.json holds the recorded run).
"""

from __future__ import annotations

import math

import torch

from .sis_problem import LayerProblem, Solution, _row, soft_threshold


class Model:
    """Θ̂_k(W) = θ₀ + 2⟨G_W, W − W_k⟩ + tr((W − W_k) G (W − W_k)ᵀ), the majoriser of one outer
    step (module docstring), with θ₀ = ‖R_k‖² − ‖g_b‖²/K its value at W_k (bias already moved)."""

    def __init__(self, problem: LayerProblem, w: torch.Tensor, grad: torch.Tensor, theta0: float):
        self.gram, self.x, self.lipschitz = problem.gram, problem.x, problem.norm_w**2
        self.centre, self.grad, self.theta0 = w, grad, theta0
        # Δ G = (Δ X̃ᵀ) X̃ costs 2·outputs·K·d against outputs·d² through G: fewer samples than
        # half the inputs (a small calibration set) make the factored product the cheaper one.
        self.factored = 2 * problem.samples < problem.x.shape[1]

    def curvature(self, delta: torch.Tensor) -> torch.Tensor:
        """Δ G, the gradient of ½tr(Δ G Δᵀ), through G or through its factor X̃ (same value)."""
        return (delta @ self.x.T) @ self.x if self.factored else delta @ self.gram

    def value(self, w: torch.Tensor) -> float:
        delta = w - self.centre
        return self.theta0 + float((delta * (2 * self.grad + self.curvature(delta))).sum())

    def lasso(
        self, penalty: float, start: torch.Tensor, max_iter: int, tol: float
    ) -> tuple[torch.Tensor, int]:
        """argmin ‖W‖₁ + Θ̂(W)/(2·penalty) by FISTA (step penalty/‖G‖, the inverse Lipschitz
        constant) with gradient restarts (O'Donoghue & Candès), from ``start``; stops when W's
        relative change falls below ``tol``. Returns (W, iterations)."""
        step, threshold = 1 / self.lipschitz, penalty / self.lipschitz
        w = prev = start
        momentum, count = 1.0, 0
        while count < max_iter:
            count += 1
            next_momentum = (1 + math.sqrt(1 + 4 * momentum**2)) / 2
            v = torch.add(w, w - prev, alpha=(momentum - 1) / next_momentum)
            descent = self.curvature(v - self.centre).add_(self.grad)
            new = soft_threshold(torch.add(v, descent, alpha=-step), threshold)
            moved = new - w
            if float(torch.vdot((v - new).flatten(), moved.flatten())) > 0:  # gradient restart
                next_momentum = 1.0
            change = float(moved.norm()) / max(float(new.norm()), 1e-30)
            prev, w, momentum = w, new, next_momentum
            if change < tol:
                break
        return w, count


def _secant(penalty: float, theta: float, last: tuple | None, aim: float) -> tuple[float, tuple]:
    """The next penalty by a secant on log Θ̂ against log η′ (slope 1 for the first step, clamped
    to [0.3, 3]), aiming at Θ̂ = ``aim``; returns (penalty, this point)."""
    point = (math.log(penalty), math.log(max(theta, 1e-300)))
    slope = 1.0
    if last is not None and point[0] != last[0]:
        slope = min(max((point[1] - last[1]) / (point[0] - last[0]), 0.3), 3.0)
    return penalty * (aim / max(theta, 1e-300)) ** (1 / slope), point


def inner_step(
    model: Model,
    eta: float,
    penalty: float,
    *,
    slack: float,
    searches: int,
    lasso_iter: int,
    lasso_tol: float,
) -> tuple[torch.Tensor, float, float, int]:
    """min ‖W‖₁ s.t. Θ̂(W) ≤ η, approximately: lasso solves at penalties moved by a secant (kept
    inside the bracket of penalties tried) until Θ̂ ∈ [(1 − slack)·η, η]. Only candidates with
    Θ̂ ≤ η are kept, and W_k (Θ̂ = θ₀ ≤ η) is the fallback, so the result is feasible and its ℓ1
    norm is at most W_k's. Returns (W, Θ̂(W), the penalty of W, lasso iterations)."""
    best, best_theta, best_l1 = model.centre, model.theta0, float(model.centre.abs().sum())
    best_penalty, lo, hi, last, start, total = penalty, None, None, None, model.centre, 0
    for _ in range(searches):
        w, count = model.lasso(penalty, start, lasso_iter, lasso_tol)
        total += count
        theta = model.value(w)
        if theta <= eta:
            lo, start = penalty, w
            l1 = float(w.abs().sum())
            if l1 <= best_l1:
                best, best_theta, best_l1, best_penalty = w, theta, l1, penalty
            if theta >= (1 - slack) * eta:
                break
        else:
            hi = penalty
        penalty, last = _secant(penalty, theta, last, (1 - slack / 2) * eta)
        if lo is not None and hi is not None and not lo < penalty < hi:
            penalty = math.sqrt(lo * hi)
    return best, best_theta, best_penalty, total


def majorise_minimise(
    problem: LayerProblem,
    w0: torch.Tensor,
    b0: torch.Tensor,
    eta: float,
    penalty: float,
    *,
    tol: float,
    max_iter: int,
    slack: float,
    searches: int,
    lasso_iter: int,
    lasso_tol: float,
    accelerate: bool = True,
) -> Solution:
    """Minimise ‖W‖₁ s.t. Θ ≤ η from a feasible (w0, b0) by the outer steps of the module
    docstring; ``penalty`` starts the first step's search, later steps start from the last one.
    Every iterate is feasible (checked on the true Θ; a step that float rounding pushes past η ends
    the solve at the previous iterate). Stops when ‖W‖₁ falls by less than ``tol`` (relative) in
    two consecutive steps, or after ``max_iter`` steps. ``history`` has one row per outer step
    (``lasso`` = the lasso iterations it took)."""
    w, b = w0.clone(), problem.centred_bias(w0, b0)
    u = problem.apply(w, b)
    th = problem.theta(u)
    history = [_row(0, w, th, lasso=0, penalty=penalty)]
    limit = eta * (1 + 1e-6) + problem.rounding
    converged, calm, iteration = False, 0, 0
    prev_w, prev_b, prev_u, momentum = w, b, u, 1.0
    for iteration in range(1, max_iter + 1):
        next_momentum = (1 + math.sqrt(1 + 4 * momentum**2)) / 2
        beta = (momentum - 1) / next_momentum if accelerate else 0.0
        zw, zb, zu = w + beta * (w - prev_w), b + beta * (b - prev_b), u + beta * (u - prev_u)
        r = zu - problem.projection(zu)
        grad, grad_b = problem.adjoint(r)
        new_b = zb - grad_b / problem.norm_b**2  # 0 when the bias is held (norm_b = ∞)
        theta0 = float(r.square().sum()) - float(grad_b.square().sum()) / problem.norm_b**2
        model = Model(problem, zw, grad, theta0)
        new_w, _, penalty, lasso = inner_step(
            model,
            eta,
            penalty,
            slack=slack,
            searches=searches,
            lasso_iter=lasso_iter,
            lasso_tol=lasso_tol,
        )
        new_u = problem.apply(new_w, new_b)
        new_th = problem.theta(new_u)
        l1, new_l1 = float(w.abs().sum()), float(new_w.abs().sum())
        if new_th > limit or new_l1 > l1:  # restart (momentum only; rounding without it)
            if beta == 0:
                break
            momentum = 1.0
            continue
        prev_w, prev_b, prev_u, momentum = w, b, u, next_momentum
        w, b, u, th = new_w, new_b, new_u, new_th
        history.append(_row(iteration, w, th, lasso=lasso, penalty=penalty))
        calm = calm + 1 if l1 - new_l1 <= tol * max(l1, 1e-30) else 0
        if calm >= 2:
            converged = True
            break
    solution = Solution(
        w,
        problem.bias(w, b),
        th,
        eta,
        len(history) - 1,
        converged,
        "majorise-minimise",
        history,
        penalty,
        problem.rounding,
    )
    return solution


__all__ = ["Model", "inner_step", "majorise_minimise"]
