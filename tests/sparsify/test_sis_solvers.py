"""SIS's per-layer problem: projections against brute force, both solvers against references, the
convergence conditions, and bad input."""

from __future__ import annotations

import math

import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from sparsitylab.sparsify import sis

ACTIVATIONS = ["relu", "sigmoid", "softmax", "identity"]


def random_layer(activation: str, samples=40, inputs=6, outputs=4, seed=0, dtype=torch.float64):
    g = torch.Generator().manual_seed(seed)
    x = torch.randn(samples, inputs, generator=g, dtype=dtype)
    w = torch.randn(outputs, inputs, generator=g, dtype=dtype) / math.sqrt(inputs)
    b = 0.1 * torch.randn(outputs, generator=g, dtype=dtype)
    u = x @ w.T + b
    return x, w, b, u


def in_set(p, t, y, activation, tol=1e-9):
    """p ∈ C: the pre-activations p reproduce y."""
    if activation == "relu":
        return bool(((y > 0) <= ((p - t).abs() < tol)).all() and ((y > 0) | (p <= tol)).all())
    if activation == "softmax":
        d = p - t
        return bool((d - d.mean(dim=1, keepdim=True)).abs().max() < tol)
    return bool((p - t).abs().max() < tol)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_projection_is_in_the_set_idempotent_and_nearest(activation):
    x, w, b, u_dense = random_layer(activation)
    y = sis.activate(activation, u_dense)
    t = sis.targets(y, activation)
    u = u_dense + torch.randn(
        u_dense.shape, generator=torch.Generator().manual_seed(1), dtype=u_dense.dtype
    )
    p = sis.project(u, t, y, activation)
    assert in_set(p, t, y, activation, tol=1e-6)
    assert torch.allclose(sis.project(p, t, y, activation), p)
    # Nearest: no random point of C is closer to u (brute force over C's parametrisation).
    g = torch.Generator().manual_seed(2)
    for _ in range(200):
        if activation == "relu":
            c = torch.where(y > 0, t, -torch.rand(u.shape, generator=g, dtype=u.dtype) * 3)
        elif activation == "softmax":
            c = t + 3 * torch.randn(u.shape[0], 1, generator=g, dtype=u.dtype)
        else:
            c = t
        assert float((u - p).norm()) <= float((u - c).norm()) + 1e-9


@settings(max_examples=60, deadline=None)
@given(
    seed=st.integers(0, 10_000),
    activation=st.sampled_from(ACTIVATIONS),
    scale=st.floats(0.1, 10.0),
)
def test_projection_variational_inequality(seed, activation, scale):
    """⟨u − P(u), c − P(u)⟩ ≤ 0 for every c ∈ C: the characterisation of a convex projection."""
    x, w, b, u_dense = random_layer(activation, samples=10, seed=seed)
    y = sis.activate(activation, u_dense)
    t = sis.targets(y, activation)
    g = torch.Generator().manual_seed(seed + 1)
    u = u_dense + scale * torch.randn(u_dense.shape, generator=g, dtype=u_dense.dtype)
    p = sis.project(u, t, y, activation)
    for _ in range(20):
        if activation == "relu":
            c = torch.where(y > 0, t, -scale * torch.rand(u.shape, generator=g, dtype=u.dtype))
        elif activation == "softmax":
            c = t + scale * torch.randn(u.shape[0], 1, generator=g, dtype=u.dtype)
        else:
            c = t
        assert float(((u - p) * (c - p)).sum()) <= 1e-8 * (1 + float(u.norm()) ** 2)


def test_ball_projection_is_the_nearest_point_of_the_ball():
    g = torch.Generator().manual_seed(0)
    x, w, b, u_dense = random_layer("relu")
    y = torch.relu(u_dense)
    t = sis.targets(y, "relu")
    u = u_dense + 2 * torch.randn(u_dense.shape, generator=g, dtype=u_dense.dtype)
    radius = 0.5 * float((u - sis.project(u, t, y, "relu")).norm())
    q = sis.project_ball(u, sis.project(u, t, y, "relu"), radius)
    assert float((q - sis.project(q, t, y, "relu")).norm()) <= radius * (1 + 1e-9)
    for _ in range(300):  # random points of the ball D: points of C moved by at most the radius
        c = torch.where(y > 0, t, -torch.rand(u.shape, generator=g, dtype=u.dtype) * 3)
        v = torch.randn(u.shape, generator=g, dtype=u.dtype)
        d = c + radius * float(torch.rand(1, generator=g)) * v / v.norm()
        assert float((u - q).norm()) <= float((u - d).norm()) + 1e-9
    inside = sis.project(u, t, y, "relu")
    assert torch.equal(sis.project_ball(inside, inside, radius), inside)


@pytest.mark.parametrize("activation", ACTIVATIONS)
def test_dense_weights_satisfy_the_inclusion_and_theta_bounds_the_output_error(activation):
    x, w, b, u = random_layer(activation, samples=200)
    problem = sis.LayerProblem.from_pre_activation(x, u, activation)
    assert problem.theta(problem.apply(w, problem.centred_bias(w, b))) < 1e-20
    g = torch.Generator().manual_seed(3)
    for _ in range(20):  # any other weights: per sample, ‖R(u') − y‖² ≤ d²(u', C)
        w2 = w + 0.3 * torch.randn(w.shape, generator=g, dtype=w.dtype)
        u2 = x @ w2.T + b
        error = (sis.activate(activation, u2) - problem.y).square().sum(dim=1)
        distance = (u2 - problem.projection(u2)).square().sum(dim=1)
        assert (error <= distance * (1 + 1e-9) + 1e-12).all()


def test_relu_lp_at_eta_zero_matches_scipy_linprog():
    """η = 0 for ReLU is a linear program; Chambolle–Pock reaches scipy's optimum."""
    linprog = pytest.importorskip("scipy.optimize").linprog
    x, w, b, u = random_layer("relu", samples=6, inputs=5, outputs=2, seed=4)
    y = torch.relu(u)
    n_out, n_in = w.shape
    # variables: W⁺, W⁻ (n_out·n_in each, ≥ 0), b (free); minimise Σ W⁺ + W⁻
    rows_eq, rhs_eq, rows_ub, rhs_ub = [], [], [], []
    for k in range(x.shape[0]):
        for i in range(n_out):
            row = [0.0] * (2 * n_out * n_in + n_out)
            for j in range(n_in):
                row[i * n_in + j] = float(x[k, j])
                row[n_out * n_in + i * n_in + j] = -float(x[k, j])
            row[2 * n_out * n_in + i] = 1.0
            (rows_eq if y[k, i] > 0 else rows_ub).append(row)
            (rhs_eq if y[k, i] > 0 else rhs_ub).append(float(y[k, i]) if y[k, i] > 0 else 0.0)
    cost = [1.0] * (2 * n_out * n_in) + [0.0] * n_out
    bounds = [(0, None)] * (2 * n_out * n_in) + [(None, None)] * n_out
    lp = linprog(
        cost, A_ub=rows_ub or None, b_ub=rhs_ub or None, A_eq=rows_eq, b_eq=rhs_eq, bounds=bounds
    )
    assert lp.status == 0
    pd = sis.primal_dual(x, y, "relu", w, b, 0.0, tol=1e-7, max_iter=50_000)
    assert pd.theta < 1e-8 * float(y.square().sum()) + 1e-10
    assert float(pd.weight.abs().sum()) == pytest.approx(lp.fun, rel=2e-2)


def test_fista_solution_satisfies_the_lasso_optimality_conditions():
    """Identity activation: ‖W‖₁ + Θ/(2η′) is a lasso; at the minimiser (1/η′)·RᵀX = −sign(W) on the
    support and |(1/η′)·RᵀX| ≤ 1 off it (R = U − y; the free bias makes Σ R = 0)."""
    x, w, b, u = random_layer("identity", samples=80, inputs=8, outputs=3, seed=5)
    y = u + 0.3 * torch.randn(u.shape, generator=torch.Generator().manual_seed(6), dtype=u.dtype)
    penalty = 2.0
    s = sis.fista(x, y, "identity", w, b, penalty, tol=1e-12, max_iter=20_000)
    r = x @ s.weight.T + s.bias - y
    g = (r.T @ x) / penalty
    on = s.weight != 0
    assert torch.allclose(g[on], -torch.sign(s.weight[on]), atol=1e-5)
    assert (g[~on].abs() <= 1 + 1e-5).all()
    assert float(r.sum(dim=0).abs().max()) < 1e-6
    assert 0 < s.sparsity < 1  # the test case has both zeros and non-zeros


def test_solve_to_eta_is_feasible_sparser_than_dense_and_monotone_in_eta():
    x, w, b, u = random_layer("relu", samples=60, inputs=12, outputs=6, seed=7)
    problem = sis.LayerProblem.from_pre_activation(x, u, "relu")
    zero = problem.zero_theta()
    sparsities = []
    for rho in [0.0, 0.003, 0.01, 0.03, 0.1, 0.3]:
        s = sis.solve_to_eta(problem, None, "relu", w, b, rho * zero)
        assert s.feasible and s.theta <= rho * zero + 1e-20  # η = 0: float rounding of Θ(dense)
        assert float(s.weight.abs().sum()) <= float(w.abs().sum()) + 1e-9
        assert bool(((s.weight == 0) | (s.weight.abs() > 0)).all())  # exact zeros, no NaN
        sparsities.append(s.sparsity)
    assert sparsities == sorted(sparsities)
    assert sparsities[-1] > 0.3


def test_primal_dual_meets_its_condition_and_agrees_with_fista():
    x, w, b, u = random_layer("relu", samples=60, inputs=12, outputs=6, seed=8)
    problem = sis.LayerProblem.from_pre_activation(x, u, "relu")
    eta = 0.05 * problem.zero_theta()
    balance = 1.0
    tau_w = balance / problem.norm_w
    tau_b = tau_w * problem.norm_w**2 / problem.norm_b**2
    sigma = 0.99 / (balance * problem.norm_w)
    # ‖Σ^½ L T^½‖² ≤ σ·max(τ_W‖X̃‖², τ_b·K) for the block-diagonal LᵀL (X̃ centred)
    true_norm = torch.linalg.matrix_norm(problem.x, ord=2).item()
    assert sigma * max(tau_w * true_norm**2, tau_b * problem.samples) < 1
    assert abs(float(problem.x.sum(dim=0).abs().max())) < 1e-9  # centred: LᵀL is block diagonal
    pd = sis.primal_dual(
        problem, None, "relu", w, b, eta, balance=balance, tol=1e-6, max_iter=20_000
    )
    fi = sis.solve_to_eta(problem, None, "relu", w, b, eta, tol=1e-9, max_iter=5_000)
    assert pd.theta <= eta * 1.01
    assert float(pd.weight.abs().sum()) == pytest.approx(float(fi.weight.abs().sum()), rel=0.03)


def test_spectral_norm_bounds_the_true_norm():
    x = torch.randn(300, 20, generator=torch.Generator().manual_seed(9), dtype=torch.float64)
    exact = torch.linalg.matrix_norm(x, ord=2).item()
    assert exact <= sis.spectral_norm(x) <= 1.02 * exact


def test_chunked_streaming_gives_the_same_iterates():
    x, w, b, u = random_layer("softmax", samples=50, seed=10)
    one = sis.fista(
        sis.LayerProblem.from_pre_activation(x, u, "softmax", chunk=10_000),
        None,
        "softmax",
        w,
        b,
        0.5,
        max_iter=50,
    )
    many = sis.fista(
        sis.LayerProblem.from_pre_activation(x, u, "softmax", chunk=7),
        None,
        "softmax",
        w,
        b,
        0.5,
        max_iter=50,
    )
    assert torch.allclose(one.weight, many.weight, atol=1e-10)
    assert one.iterations == many.iterations


def test_targets_from_pre_activations_survive_saturation():
    """A confident softmax underflows to 0 in float32: ln y from the outputs is wrong, log_softmax
    of the pre-activation is not, so the dense layer has Θ = 0 only the second way."""
    x = torch.randn(20, 5, generator=torch.Generator().manual_seed(11))
    w = 40 * torch.randn(3, 5, generator=torch.Generator().manual_seed(12))
    b = torch.zeros(3)
    u = x @ w.T + b
    from_outputs = sis.LayerProblem(x, torch.softmax(u, dim=1), "softmax")
    from_pre = sis.LayerProblem.from_pre_activation(x, u, "softmax")
    assert from_outputs.theta(u) > 1.0
    assert from_pre.theta(u) < 1e-6 * from_pre.zero_theta()


@pytest.mark.parametrize(
    ("call", "error", "match"),
    [
        (lambda x, y, w, b: sis.solve_to_eta(x, y, "relu", w, b, -1.0), ValueError, "eta"),
        (lambda x, y, w, b: sis.fista(x, y, "relu", w, b, 0.0), ValueError, "penalty"),
        (lambda x, y, w, b: sis.fista(x, y, "tanh", w, b, 1.0), ValueError, "activation"),
        (lambda x, y, w, b: sis.fista(x, y[:5], "relu", w, b, 1.0), ValueError, "samples"),
        (lambda x, y, w, b: sis.fista(x, y, "relu", w.T, b, 1.0), ValueError, "w has shape"),
        (lambda x, y, w, b: sis.fista(x, y, "relu", w, b[:2], 1.0), ValueError, "b has"),
        (lambda x, y, w, b: sis.fista(x, y - 1, "relu", w, b, 1.0), ValueError, "y must be"),
        (lambda x, y, w, b: sis.fista(x, y + 2, "sigmoid", w, b, 1.0), ValueError, r"\[0, 1\]"),
        (lambda x, y, w, b: sis.fista(x.int(), y, "relu", w, b, 1.0), TypeError, "x has dtype"),
        (lambda x, y, w, b: sis.primal_dual(x, y, "relu", w, b, float("nan")), ValueError, "eta"),
        (
            lambda x, y, w, b: sis.solve_to_eta(x, y, "relu", w * 0 + 5, b, 1e-9),
            ValueError,
            "warm start",
        ),
    ],
)
def test_bad_input_is_refused_with_the_argument_named(call, error, match):
    x, w, b, u = random_layer("relu")
    with pytest.raises(error, match=match):
        call(x, torch.relu(u), w, b)
