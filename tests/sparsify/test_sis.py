"""SIS's per-layer problem: the projections onto C and onto {d_C ≤ r} against brute force, Θ and
the output-error bound, FISTA against the lasso's optimality conditions, the η = 0 ReLU problem
against an exact LP (scipy), solve_to_eta and primal_dual against each other, chunked streaming,
and bad inputs (hypothesis + independent references)."""

from __future__ import annotations

import math

import hypothesis.extra.numpy as hnp
import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsitylab.sparsify import sis
from sparsitylab.sparsify.sis import (
    ACTIVATIONS,
    LayerProblem,
    activate,
    fista,
    primal_dual,
    project,
    project_ball,
    soft_threshold,
    solve_to_eta,
    spectral_norm,
    targets,
    theta,
)

PROPERTY = settings(max_examples=60, deadline=None)  # per test, not a global profile
D = torch.float64  # the references are exact to ~1e-12 in float64

small = st.floats(-5.0, 5.0, allow_nan=False, width=64)
shapes = st.tuples(st.integers(1, 6), st.integers(1, 5))  # (samples, outputs)


def arrays(shape, elements=small):
    return hnp.arrays(np.float64, shape, elements=elements).map(torch.from_numpy)


@st.composite
def relu_case(draw):
    """(u, y): any pre-activations u, and ReLU outputs y with exact zeros (the inactive units)."""
    shape = draw(shapes)
    u = draw(arrays(shape))
    y = torch.relu(draw(arrays(shape)))
    return u, y


@st.composite
def prob_case(draw, activation):
    """(u, y): any u, and y = R(u₀) for moderate dense pre-activations u₀ (no clamping at ε)."""
    shape = draw(shapes)
    if activation == "softmax":
        shape = (shape[0], max(shape[1], 2))
    u = draw(arrays(shape))
    y = activate(activation, draw(arrays(shape, st.floats(-4.0, 4.0, width=64))))
    return u, y


def member(c: torch.Tensor, y: torch.Tensor, activation: str, atol: float = 1e-9) -> bool:
    """Whether c ∈ C = Π_k (y_k + ∂φ(y_k)), checked from the definition R(c) = y (and, for ReLU,
    the closed description)."""
    if activation == "relu":
        active = y > 0
        return bool(
            torch.allclose(c[active], y[active], rtol=0, atol=atol) and (c[~active] <= atol).all()
        )
    return bool(torch.allclose(activate(activation, c), y, rtol=0, atol=atol))


def random_points_of_c(y: torch.Tensor, activation: str, count: int, seed: int = 0):
    """``count`` random points of C (for the variational inequality)."""
    g = torch.Generator().manual_seed(seed)
    t = targets(y, activation)
    for _ in range(count):
        noise = torch.randn(y.shape, generator=g, dtype=y.dtype) * 3
        if activation == "relu":
            yield torch.where(y > 0, y, -noise.abs())
        elif activation == "softmax":
            yield t + noise[:, :1]  # ln y + c·1, one c per row
        else:
            yield t


# --- the projection onto C -----------------------------------------------------------------------


@PROPERTY
@given(relu_case())
def test_relu_projection_in_c_idempotent_and_variational_inequality(case):
    u, y = case
    p = project(u, targets(y, "relu"), y, "relu")
    assert member(p, y, "relu", atol=0)  # exact: y on active units, ≤ 0 on inactive ones
    assert torch.equal(project(p, y, y, "relu"), p)
    for c in random_points_of_c(y, "relu", 20):
        assert float(((u - p) * (c - p)).sum()) <= 1e-9  # ⟨u − P(u), c − P(u)⟩ ≤ 0 for all c ∈ C


def test_relu_projection_against_a_dense_grid():
    torch.manual_seed(0)
    y = torch.relu(torch.randn(6, 4, dtype=D))
    u = torch.randn(6, 4, dtype=D) * 3
    p = project(u, y, y, "relu")
    grid = torch.linspace(-10, 0, 100_001, dtype=D)  # C is separable: y_i or (−∞, 0] per unit
    for k in range(6):
        for i in range(4):
            if y[k, i] > 0:
                assert p[k, i] == y[k, i]
            else:
                best = grid[(grid - u[k, i]).abs().argmin()]
                assert float(p[k, i]) == pytest.approx(float(best), abs=1e-4)


@pytest.mark.parametrize("activation", ["sigmoid", "identity"])
@PROPERTY
@given(data=st.data())
def test_point_projections_reproduce_y(activation, data):
    u, y = data.draw(prob_case(activation))
    if activation == "identity":
        y = data.draw(arrays(tuple(u.shape)))
    p = project(u, targets(y, activation), y, activation)
    assert member(p, y, activation)  # the one point of C: R(P(u)) = y
    assert torch.allclose(project(p, targets(y, activation), y, activation), p)
    assert torch.equal(p, project(torch.zeros_like(u), targets(y, activation), y, activation))


@PROPERTY
@given(prob_case("softmax"))
def test_softmax_projection_in_c_idempotent_and_variational_inequality(case):
    u, y = case
    t = targets(y, "softmax")
    p = project(u, t, y, "softmax")
    assert member(p, y, "softmax")
    assert torch.allclose(project(p, t, y, "softmax"), p, rtol=0, atol=1e-12)
    for c in random_points_of_c(y, "softmax", 10):
        # C is a line: the residual is orthogonal to it (the inequality holds with equality)
        assert abs(float(((u - p) * (c - p)).sum())) <= 1e-8


def test_softmax_projection_against_least_squares_and_a_grid():
    torch.manual_seed(0)
    y = torch.softmax(torch.randn(5, 4, dtype=D), dim=1)
    u = torch.randn(5, 4, dtype=D) * 3
    t = targets(y, "softmax")
    p = project(u, t, y, "softmax")
    ones = torch.ones(4, 1, dtype=D)
    grid = torch.linspace(-20, 20, 400_001, dtype=D)
    for k in range(5):  # min_c ‖u_k − (ln y_k + c·1)‖²
        c = torch.linalg.lstsq(ones, (u[k] - t[k])[:, None]).solution.item()
        assert torch.allclose(p[k], t[k] + c, atol=1e-12)
        values = ((u[k][None, :] - t[k][None, :] - grid[:, None]) ** 2).sum(dim=1)
        assert float(p[k, 0] - t[k, 0]) == pytest.approx(float(grid[values.argmin()]), abs=2e-4)


def test_targets_clamp_and_softmax_saturation_needs_the_pre_activation():
    assert torch.isfinite(targets(torch.tensor([[0.0, 1.0]]), "sigmoid")).all()
    assert torch.isfinite(targets(torch.tensor([[0.0, 1.0]]), "softmax")).all()
    u = torch.tensor([[30.0, 0.0, -5.0]] * 4)  # a confident float32 softmax: y underflows to 0
    assert theta(u, torch.softmax(u, dim=1), "softmax") > 1.0  # measured from y: not reproduced
    problem = LayerProblem.from_pre_activation(torch.randn(4, 2), u, "softmax")
    assert problem.theta(u) == pytest.approx(0.0, abs=1e-9)  # measured from u: exact


# --- the projection onto D = {d_C ≤ r} -----------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS)
@settings(max_examples=25, deadline=None)
@given(data=st.data(), radius=st.floats(0.0, 4.0))
def test_project_ball_is_in_d_and_nearest_among_points_of_d(activation, data, radius):
    u, y = data.draw(relu_case() if activation == "relu" else prob_case(activation))
    t = targets(y, activation)
    p = project(u, t, y, activation)
    q = project_ball(u, p, radius)
    assert math.sqrt(theta(q, y, activation)) <= radius + 1e-9
    if float((u - p).norm()) <= radius:
        assert torch.equal(q, u)  # inside D: unchanged
    best = float((u - q).norm())
    g = torch.Generator().manual_seed(0)
    for s in torch.linspace(0, 1, 21, dtype=D):  # the segment [P_C(u), u] ∩ D
        z = p + s * (u - p)
        if math.sqrt(theta(z, y, activation)) <= radius:
            assert best <= float((u - z).norm()) + 1e-9
    for c in random_points_of_c(y, activation, 20, seed=1):  # c + r·t·v/‖v‖ ∈ D
        v = torch.randn(u.shape, generator=g, dtype=D)
        z = c + radius * float(torch.rand((), generator=g)) * v / v.norm()
        assert best <= float((u - z).norm()) + 1e-9


# --- Θ and the output-error bound ----------------------------------------------------------------


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_theta_is_zero_at_the_dense_weights(activation):
    torch.manual_seed(0)
    x, w, b = torch.randn(30, 5, dtype=D), torch.randn(4, 5, dtype=D) / 2, torch.randn(4, dtype=D)
    y = activate(activation, x @ w.T + b)
    assert theta(x @ w.T + b, y, activation) == pytest.approx(0.0, abs=1e-18)
    problem = LayerProblem(x, y, activation)
    u = problem.apply(w, problem.centred_bias(w, b))  # the centred parametrisation: same U
    assert torch.allclose(u, x @ w.T + b, atol=1e-12)
    assert problem.theta(u) == pytest.approx(0.0, abs=1e-18)
    assert problem.zero_theta() == pytest.approx(theta(torch.zeros_like(y), y, activation))


@pytest.mark.parametrize("activation", ACTIVATIONS)
@PROPERTY
@given(data=st.data())
def test_output_error_is_bounded_by_the_distance_per_sample(activation, data):
    u, y = data.draw(relu_case() if activation == "relu" else prob_case(activation))
    if activation == "identity":
        y = data.draw(arrays(tuple(u.shape)))
    error = (activate(activation, u) - y).square().sum(dim=1)
    distance = (u - project(u, targets(y, activation), y, activation)).square().sum(dim=1)
    assert (error <= distance + 1e-9).all()  # R = prox_φ is non-expansive and R(P_C(u)) = y
    assert float(error.sum()) <= theta(u, y, activation) + 1e-9


def test_soft_threshold_exact_zeros_and_shrinkage():
    w = torch.tensor([-3.0, -0.5, 0.0, 0.2, 0.5, 2.0])
    out = soft_threshold(w, 0.5)
    assert out.tolist() == [-2.5, 0.0, 0.0, 0.0, 0.0, 1.5]
    assert (out[1:5] == 0).all()


@pytest.mark.parametrize("dtype", [torch.float32, torch.float64])
@pytest.mark.parametrize("t", [0.0, 1e-3, 0.7, 3.0, 1e30, 6.3e43, 1e300])
def test_soft_threshold_fused_path_equals_the_formula_at_any_scalar(dtype, t):
    """softshrink (the fused path) refuses thresholds beyond the dtype's range, which a penalty
    search reaches; the formula takes over there and prunes everything."""
    torch.manual_seed(0)
    w = torch.cat([torch.randn(200, dtype=dtype), torch.tensor([0.0, -0.0, 1e-38], dtype=dtype)])
    expected = torch.sign(w) * (w.abs() - t).clamp_min(0.0)
    assert torch.equal(soft_threshold(w, t), expected)
    assert torch.equal(soft_threshold(w, torch.tensor(t, dtype=dtype)), expected)


def test_spectral_norm_bounds_the_true_norm_on_random_matrices():
    torch.manual_seed(0)
    for k, d in [(5, 3), (40, 7), (13, 30), (64, 64)]:
        x = torch.randn(k, d, dtype=D)
        true = float(torch.linalg.matrix_norm(x, 2))
        assert true <= spectral_norm(x) <= 1.02 * true


def test_spectral_norm_bounds_a_clustered_spectrum():
    torch.manual_seed(0)
    d = 500  # a conv layer's fan-in (20 channels × 5 × 5)
    s = torch.full((d,), 0.97, dtype=D)
    s[0] = 1.0
    q1 = torch.linalg.qr(torch.randn(d, d, dtype=D))[0]
    q2 = torch.linalg.qr(torch.randn(d, d, dtype=D))[0]
    x = (q1 * s) @ q2.T
    assert spectral_norm(x) >= float(torch.linalg.matrix_norm(x, 2))  # 1.8 % below it


# --- FISTA and an exact reference ----------------------------------------------------------------


def relu_lp(x: torch.Tensor, y: torch.Tensor) -> float:
    """min ‖W‖₁ s.t. W x_k + b = y_k on active units and ≤ 0 on inactive ones, as an LP with
    W = W⁺ − W⁻, W± ≥ 0 and b free (scipy's HiGHS)."""
    linprog = pytest.importorskip("scipy.optimize").linprog
    xs, ys = x.numpy(), y.numpy()
    (k, d), n = xs.shape, ys.shape[1]
    size = 2 * n * d + n
    a_eq, b_eq, a_ub, b_ub = [], [], [], []
    for s in range(k):
        for i in range(n):
            row = np.zeros(size)
            row[i * d : (i + 1) * d] = xs[s]
            row[n * d + i * d : n * d + (i + 1) * d] = -xs[s]
            row[2 * n * d + i] = 1.0
            if ys[s, i] > 0:
                a_eq.append(row)
                b_eq.append(ys[s, i])
            else:
                a_ub.append(row)
                b_ub.append(0.0)
    result = linprog(
        np.r_[np.ones(2 * n * d), np.zeros(n)],
        A_ub=np.array(a_ub) if a_ub else None,
        b_ub=b_ub or None,
        A_eq=np.array(a_eq),
        b_eq=b_eq,
        bounds=[(0, None)] * (2 * n * d) + [(None, None)] * n,
        method="highs",
    )
    assert result.status == 0, result.message
    return float(result.fun)


@pytest.fixture
def relu_layer():
    """A tiny trained-looking ReLU layer: 8 samples, 6 inputs, 3 outputs (3–5 active per unit, so
    the η = 0 problem is under-determined and has room to shrink ‖W‖₁)."""
    torch.manual_seed(1)
    x = torch.randn(8, 6, dtype=D)
    w, b = torch.randn(3, 6, dtype=D), 0.3 * torch.randn(3, dtype=D)
    return x, torch.relu(x @ w.T + b), w, b


def test_relu_eta_zero_against_the_exact_lp(relu_layer):
    x, y, w, b = relu_layer
    optimum = relu_lp(x, y)
    assert optimum < 0.9 * float(w.abs().sum())  # the problem has room: not the dense weights
    for eta in (0.0, 1e-8):
        s = primal_dual(x, y, "relu", w, b, eta)
        assert float(s.weight.abs().sum()) == pytest.approx(optimum, rel=0.02)
        assert s.theta <= 1e-7
    s = solve_to_eta(x, y, "relu", w, b, 1e-6)  # a slightly relaxed problem: ‖W‖₁ a bit lower
    assert s.feasible and float(s.weight.abs().sum()) == pytest.approx(optimum, rel=0.03)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_fista_meets_the_optimality_conditions_of_the_penalised_problem(activation):
    """0 ∈ ∂‖W‖₁ + (1/η′) Rᵀ X and Σ_k R_k = 0 (the free bias), R = U − P_C(U), uncentred X:
    (1/η′)(RᵀX)_ij = −sign(W_ij) where W_ij ≠ 0, |(1/η′)(RᵀX)_ij| ≤ 1 where W_ij = 0."""
    torch.manual_seed(2)
    x = torch.randn(25, 6, dtype=D) + 1.5  # uncentred on purpose: centring is internal
    w, b = torch.randn(4, 6, dtype=D), torch.randn(4, dtype=D)
    y = activate(activation, x @ w.T + b)
    penalty = 5.0
    s = fista(x, y, activation, w, b, penalty, tol=1e-14, max_iter=20_000)
    u = x @ s.weight.T + s.bias
    r = u - project(u, targets(y, activation), y, activation)
    g = r.T @ x / penalty
    nonzero = s.weight != 0
    assert 0 < int(nonzero.sum()) < s.weight.numel()  # both cases are exercised
    assert torch.allclose(g[nonzero], -torch.sign(s.weight[nonzero]), atol=1e-5)
    assert (g[~nonzero].abs() <= 1 + 1e-5).all()
    assert torch.allclose(r.sum(dim=0), torch.zeros(4, dtype=D), atol=1e-5)
    assert s.penalty == penalty and s.solver == "fista"
    values = [row["penalised"] for row in s.history]
    assert values[-1] <= values[0]


def test_identity_fista_against_a_long_ista_reference():
    """The penalised identity layer is a lasso: FISTA and many plain proximal-gradient steps on
    [X 1] (uncentred, one step size) reach the same minimiser."""
    torch.manual_seed(3)
    x = torch.randn(20, 5, dtype=D) + 1.0
    w, b = torch.randn(3, 5, dtype=D), torch.randn(3, dtype=D)
    y = x @ w.T + b
    penalty = 1.0
    s = fista(x, y, "identity", w, b, penalty, tol=1e-15, max_iter=20_000)
    a = torch.cat([x, torch.ones(20, 1, dtype=D)], dim=1)
    step = penalty / float(torch.linalg.matrix_norm(a, 2)) ** 2
    wb = torch.cat([w, b[:, None]], dim=1)
    for _ in range(50_000):
        wb = wb - step * ((a @ wb.T - y).T @ a) / penalty
        wb[:, :-1] = soft_threshold(wb[:, :-1], step)
    assert torch.allclose(s.weight, wb[:, :-1], atol=1e-6)
    assert torch.allclose(s.bias, wb[:, -1], atol=1e-6)


# --- solve_to_eta --------------------------------------------------------------------------------


def layer(seed: int, activation: str, k: int = 24, d: int = 8, n: int = 4):
    torch.manual_seed(seed)
    x = torch.randn(k, d, dtype=D)
    w, b = torch.randn(n, d, dtype=D), torch.randn(n, dtype=D)
    return LayerProblem.from_pre_activation(x, x @ w.T + b, activation), w, b


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_solve_to_eta_feasible_sparser_and_l1_non_increasing(activation):
    problem, w, b = layer(1, activation)
    zero = problem.zero_theta()
    norms, sparsities = [], []
    for relative in (0.005, 0.02, 0.1, 0.4):
        s = solve_to_eta(problem, None, activation, w, b, relative * zero)
        assert s.feasible and s.theta <= s.eta * (1 + 1e-6)
        assert s.eta == relative * zero
        assert float(s.weight.abs().sum()) <= float(w.abs().sum())
        assert s.sparsity == float((s.weight == 0).double().mean())  # exact zeros
        assert s.weight.dtype == D and s.bias.shape == b.shape
        assert s.iterations == len(s.history) - 1
        norms.append(float(s.weight.abs().sum()))
        sparsities.append(s.sparsity)
    assert all(a >= c * (1 - 1e-3) for a, c in zip(norms, norms[1:])), norms
    assert sparsities[-1] > sparsities[0]


@pytest.mark.parametrize("activation", ["identity", "softmax"])
def test_solve_to_eta_sparsity_monotone_on_a_fixed_problem(activation):
    problem, w, b = layer(0, activation)
    zero = problem.zero_theta()
    sparsities = [
        solve_to_eta(problem, None, activation, w, b, rel * zero).sparsity
        for rel in (0.005, 0.01, 0.02, 0.05, 0.1, 0.2, 0.4)
    ]
    assert sparsities == sorted(sparsities), sparsities


def test_sparsity_is_genuinely_not_monotone_in_eta_for_relu():
    """‖W‖₁ falls as η grows, but the *number* of zeros need not rise: on this ReLU layer both
    solvers, run to high accuracy, find 2 zeros at η = 0.02·Θ(0) and 1 zero at η = 0.05·Θ(0)."""
    problem, w, b = layer(0, "relu")
    zero = problem.zero_theta()
    counts = []
    for relative in (0.02, 0.05):
        eta = relative * zero
        s = solve_to_eta(problem, None, "relu", w, b, eta)
        reference = primal_dual(problem, None, "relu", w, b, eta, tol=1e-10, max_iter=40_000)
        assert reference.converged
        assert int((s.weight == 0).sum()) == int((reference.weight.abs() < 1e-6).sum())
        counts.append(int((s.weight == 0).sum()))
    assert counts == [2, 1]


def test_solve_to_eta_refuses_eta_zero_and_tight_eta_stays_feasible():
    """η = 0 used to return the dense warm start silently, although the exact-reproduction LP has
    far sparser solutions (test_relu_eta_zero_against_the_exact_lp): it is refused by name."""
    problem, w, b = layer(4, "relu")
    s = solve_to_eta(problem, None, "relu", w, b, 1e-9 * problem.zero_theta())
    assert s.feasible
    start = problem.theta(problem.apply(w, problem.centred_bias(w, b)))
    assert 0 < start < 1e-20  # rounding of the centred parametrisation only
    with pytest.raises(ValueError, match="eta=0 asks for exact reproduction.*primal_dual"):
        solve_to_eta(problem, None, "relu", w, b, 0.0)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_a_budget_the_all_zero_layer_meets_gives_the_all_zero_layer(activation):
    """min ‖W‖₁ s.t. Θ(W) ≤ η is W = 0 when W = 0 is feasible — also for a layer whose outputs
    are numerically 0 (Θ(0) ≈ 1e-14), where a penalty search would run off to infinity."""
    scales = (1.0, 1e-7) if activation in ("identity", "relu") else (1.0,)
    for scale in scales:
        torch.manual_seed(0)
        x, w, b = torch.randn(24, 8, dtype=D), torch.randn(4, 8, dtype=D), torch.randn(4, dtype=D)
        x, w, b = x * scale, w * scale, b * scale * scale
        problem = LayerProblem.from_pre_activation(x, x @ w.T + b, activation)
        s = solve_to_eta(problem, None, activation, w, b, problem.zero_theta())
        assert s.feasible and s.sparsity == 1.0 and s.iterations == 0


# --- primal_dual ---------------------------------------------------------------------------------


def test_primal_dual_steps_satisfy_the_convergence_condition():
    problem, w, b = layer(5, "relu", k=30, d=6, n=3)
    # the documented steps, with the default balance 1
    balance = 1.0
    tau_w = balance / problem.norm_w
    tau_b = tau_w * problem.norm_w**2 / problem.norm_b**2
    sigma = 0.99 / (balance * problem.norm_w)
    # one iteration from the dense weights (Θ = 0: the dual stays 0) is W ← S(W, τ_W): read τ_W
    s = primal_dual(problem, None, "relu", w, b, 0.1, max_iter=1)
    assert torch.allclose(s.weight, soft_threshold(w, tau_w), atol=1e-12)
    # ‖σ^½ L T^½‖² < 1 with L = [X̃ 1] per output unit, T = diag(τ_W … τ_W, τ_b): exact norms
    a = torch.cat([problem.x, torch.ones(problem.samples, 1, dtype=D)], dim=1)
    t = torch.tensor([tau_w] * problem.x.shape[1] + [tau_b], dtype=D)
    assert sigma * float(torch.linalg.matrix_norm(a * t.sqrt(), 2)) ** 2 < 1
    # block by block (X̃ᵀ1 = 0): σ τ_W ‖X̃‖² < 1 and σ τ_b K < 1
    assert max(tau_w * float(torch.linalg.matrix_norm(problem.x, 2)) ** 2, tau_b * 30) * sigma < 1


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_primal_dual_reaches_eta_and_agrees_with_solve_to_eta(activation):
    problem, w, b = layer(6, activation, k=20, d=6, n=3)
    eta = 0.05 * problem.zero_theta()
    s = primal_dual(problem, None, activation, w, b, eta, tol=1e-6, max_iter=20_000)
    assert s.theta <= eta * (1 + 1e-2)
    assert s.converged and s.solver == "primal-dual" and s.eta == eta
    reference = solve_to_eta(problem, None, activation, w, b, eta)
    assert float(s.weight.abs().sum()) == pytest.approx(
        float(reference.weight.abs().sum()), rel=0.05
    )
    u = problem.apply(s.weight, problem.centred_bias(s.weight, s.bias))
    assert problem.theta(u) == pytest.approx(s.theta, rel=1e-9)  # bias returned uncentred


# --- chunked streaming ---------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "softmax"])
def test_chunked_problem_gives_the_same_iterates(activation):
    torch.manual_seed(7)
    x = torch.randn(10, 5, dtype=D)
    w, b = torch.randn(3, 5, dtype=D), torch.randn(3, dtype=D)
    u = x @ w.T + b
    small_chunks = LayerProblem.from_pre_activation(x, u, activation, chunk=3)
    one_chunk = LayerProblem.from_pre_activation(x, u, activation, chunk=10_000)
    r = torch.randn(10, 3, dtype=D)
    for got, expected in zip(small_chunks.adjoint(r), one_chunk.adjoint(r)):
        assert torch.allclose(got, expected, atol=1e-12)
    for solve in (
        lambda p: fista(p, None, activation, w, b, 0.3, max_iter=200),
        lambda p: primal_dual(p, None, activation, w, b, 0.5, max_iter=200),
        lambda p: solve_to_eta(p, None, activation, w, b, 0.1 * p.zero_theta()),
    ):
        a, c = solve(small_chunks), solve(one_chunk)
        assert a.iterations == c.iterations
        assert torch.allclose(a.weight, c.weight, atol=1e-10)
        assert torch.allclose(a.bias, c.bias, atol=1e-10)
        assert [h["theta"] for h in a.history] == pytest.approx([h["theta"] for h in c.history])


# --- bad inputs ----------------------------------------------------------------------------------


@pytest.fixture
def tiny():
    torch.manual_seed(0)
    x, w, b = torch.randn(6, 3), torch.randn(2, 3), torch.randn(2)
    return x, torch.relu(x @ w.T + b), w, b


@pytest.mark.parametrize("solver", [solve_to_eta, primal_dual])
@pytest.mark.parametrize("eta", [-0.1, float("nan"), math.inf])
def test_bad_eta_raises(tiny, solver, eta):
    x, y, w, b = tiny
    with pytest.raises(ValueError, match="eta"):
        solver(x, y, "relu", w, b, eta)


def test_eta_wrong_type_raises(tiny):
    x, y, w, b = tiny
    with pytest.raises(TypeError, match="eta"):
        solve_to_eta(x, y, "relu", w, b, "0.1")


def test_eta_below_the_warm_start_raises(tiny):
    x, y, w, b = tiny
    with pytest.raises(ValueError, match=r"eta=.*below Θ"):
        solve_to_eta(x, y, "relu", torch.zeros_like(w), torch.zeros_like(b), 1e-6)


def test_shape_errors_name_the_argument(tiny):
    x, y, w, b = tiny
    with pytest.raises(ValueError, match="x has 5 samples but y has 6"):
        LayerProblem(x[:5], y, "relu")
    with pytest.raises(ValueError, match="w has shape"):
        fista(x, y, "relu", w.T, b, 0.1)
    with pytest.raises(ValueError, match="b has 3 entries"):
        solve_to_eta(x, y, "relu", w, torch.zeros(3), 0.1)
    with pytest.raises(ValueError, match="b has shape"):
        primal_dual(x, y, "relu", w, b[None], 0.1)
    with pytest.raises(ValueError, match="x has shape"):
        LayerProblem(x[0], y, "relu")
    with pytest.raises(ValueError, match="target has shape"):
        LayerProblem(x, y, "relu", target=y[:, :1])
    with pytest.raises(TypeError, match="x must be a torch.Tensor"):
        LayerProblem(x.numpy(), y, "relu")
    with pytest.raises(TypeError, match="y has dtype"):
        LayerProblem(x, y.long(), "relu")


def test_activation_and_y_range_errors(tiny):
    x, y, w, b = tiny
    for call in (
        lambda: LayerProblem(x, y, "tanh"),
        lambda: targets(y, "tanh"),
        lambda: activate("gelu", y),
        lambda: solve_to_eta(x, y, "tanh", w, b, 0.1),
    ):
        with pytest.raises(ValueError, match="activation="):
            call()
    for activation in ("sigmoid", "softmax"):
        with pytest.raises(ValueError, match=r"y must lie in \[0, 1\]"):
            LayerProblem(x, y + 1.5, activation)
        with pytest.raises(ValueError, match=r"y must lie in \[0, 1\]"):
            LayerProblem(x, -y - 0.1, activation)
    with pytest.raises(ValueError, match="y must be ≥ 0"):
        LayerProblem(x, y - 1.0, "relu")


def test_penalty_and_iteration_errors(tiny):
    x, y, w, b = tiny
    with pytest.raises(ValueError, match="penalty=0"):
        fista(x, y, "relu", w, b, 0.0)
    with pytest.raises(ValueError, match="penalty"):
        fista(x, y, "relu", w, b, -1.0)
    with pytest.raises(ValueError, match="max_iter"):
        fista(x, y, "relu", w, b, 0.1, max_iter=0)
    with pytest.raises(ValueError, match="chunk"):
        LayerProblem(x, y, "relu", chunk=0)
    with pytest.raises(ValueError, match="balance"):
        primal_dual(x, y, "relu", w, b, 0.1, balance=0.0)


def test_solution_feasible_and_sparsity_properties():
    s = sis.Solution(torch.tensor([[0.0, 1.0]]), torch.zeros(1), 1.0, 1.0, 0, True, "fista")
    assert s.feasible and s.sparsity == 0.5
    s.theta = 1.0 + 1e-3
    assert not s.feasible


def test_solve_to_eta_zero_on_a_float32_layer_is_feasible():
    torch.manual_seed(0)
    x, w, b = torch.randn(50, 8), 30 * torch.randn(6, 8), 30 * torch.randn(6)
    problem = LayerProblem(x, torch.relu(x @ w.T + b), "relu")
    tight = 1e-9 * problem.zero_theta()  # below the dense weights' Θ = 1.2e-8 of rounding
    assert solve_to_eta(problem, None, "relu", w, b, tight).feasible


# --- solve_to_sparsity ---------------------------------------------------------------------------


@pytest.mark.parametrize("activation", ["relu", "identity"])
def test_solve_to_sparsity_hits_the_target_and_solves_sis_at_its_own_theta(activation):
    problem, w, b = layer(3, activation, k=60, d=20, n=10)
    for target in (0.3, 0.6):
        s = sis.solve_to_sparsity(problem, None, activation, w, b, target, within=0.02)
        assert s.converged and abs(s.sparsity - target) <= 0.02
        assert s.eta == s.theta and s.feasible
        assert s.iterations == len(s.history) - 1
        # at η = its Θ, solve_to_eta finds the same optimum, up to its slack window (it may stop
        # at Θ ≥ 0.98 η): no smaller ℓ1 norm, and within 5 %
        by_eta = solve_to_eta(problem, None, activation, w, b, s.theta * (1 + 1e-9))
        l1, l1_eta = float(s.weight.abs().sum()), float(by_eta.weight.abs().sum())
        assert l1_eta * 0.95 <= l1 <= l1_eta * (1 + 1e-3)


def test_solve_to_sparsity_extremes_and_bad_input():
    problem, w, b = layer(2, "relu", k=40, d=10, n=5)
    everything = sis.solve_to_sparsity(problem, None, "relu", w, b, 1.0)
    assert everything.sparsity == 1.0 and everything.converged
    nothing = sis.solve_to_sparsity(problem, None, "relu", w, b, 0.0)
    assert nothing.sparsity == 0.0 and nothing.converged
    with pytest.raises(ValueError, match="sparsity"):
        sis.solve_to_sparsity(problem, None, "relu", w, b, 1.5)
    with pytest.raises(ValueError, match="within"):
        sis.solve_to_sparsity(problem, None, "relu", w, b, 0.5, within=-0.1)
