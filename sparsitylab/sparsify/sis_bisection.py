"""FISTA + a bisection over its penalty, to Θ ≤ η (ours): :func:`~.sis.solve_to_eta`'s only solver
before issue 30, now used by it near exact reproduction (η below ``NEAR_EXACT``·Θ(0)), where the
majorise–minimise steps of :mod:`.sis_mm` stall, and timed by ``sparsitylab bench sis``."""

from __future__ import annotations

import math

import torch

from .._checks import check_int
from .sis import (
    LayerProblem,
    Solution,
    _append_history,
    _as_problem,
    _first_penalty,
    check_eta,
    feasible_start,
    fista,
)


def bisection_to_eta(
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
    eta = check_eta(eta)
    steps = check_int(steps, "steps", minimum=0)
    start_theta, zero = feasible_start(problem, w0, b0, eta)
    best = Solution(
        w0.clone(), b0.clone(), start_theta, eta, 0, True, "fista", [], None, problem.rounding
    )
    if zero is not None:
        return zero
    history: list[dict[str, float]] = []

    def attempt(penalty: float, tol: float, max_iter: int) -> Solution:
        s = fista(
            problem, None, activation, best.weight, best.bias, penalty, tol=tol, max_iter=max_iter
        )
        _append_history(history, s, penalty)
        return s

    penalty = _first_penalty(problem, eta)
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
