"""Exercises for the chapter "SIS: sparsifying a trained network by subdifferential inclusion".

Replace each ``raise NotImplementedError`` with your code, then grade your work with

    python exercises/grade.py 07_sis_subdifferential_inclusion

Rows are samples: ``u`` (K, n) holds a layer's pre-activations u_k = W x_k + b, one sample per row,
and ``y`` the dense layer's outputs. The layer reproduces sample k iff u_k ∈ C_k = y_k + ∂φ(y_k)
(R = prox_φ), and Θ = Σ_k d²(u_k, C_k). Use plain PyTorch (you may reuse your own answers); the
library's ``sparsitylab.sparsify.sis`` is what the grader compares you with, so do not call it here.
"""

from __future__ import annotations

import torch


def relu_projection(u: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
    """Exercise 1. P_C(u) for a ReLU layer with outputs ``y`` (same shape as ``u``): the nearest
    pre-activations that reproduce y exactly. C is a product over units: the single value y_i where
    y_i > 0 (an active unit), the half-line (−∞, 0] where y_i = 0 (an inactive one)."""
    raise NotImplementedError("exercise 1: the ReLU projection")


def softmax_theta(u: torch.Tensor, log_y: torch.Tensor) -> float:
    """Exercise 2. Θ = Σ_k d²(u_k, C_k) for a softmax layer (softmax over each row) whose outputs
    have logarithms ``log_y``. C_k is the line ln y_k + c·1 (c ∈ ℝ): softmax forgets a constant
    shift. Hint: the nearest point of that line shifts ln y_k by the mean of u_k − ln y_k."""
    raise NotImplementedError("exercise 2: Θ of a softmax layer")


def ista_step(
    x: torch.Tensor,
    y: torch.Tensor,
    w: torch.Tensor,
    b: torch.Tensor,
    penalty: float,
    step: float,
) -> tuple[torch.Tensor, torch.Tensor]:
    """Exercise 3. One proximal-gradient (ISTA) step of size ``step`` on the penalised problem
    ‖W‖₁ + Θ(W, b)/(2·penalty) of a ReLU layer, from (w, b); return the new (w, b).

    ``x`` (K, d) holds the calibration inputs, ``y`` (K, n) the dense ReLU outputs, U = x wᵀ + b.
    The gradient of ½d²(u, C) is the residual u − P_C(u), so with R = U − P_C(U):
    ∇_W Θ/(2·penalty) = Rᵀx/penalty and ∇_b = Σ_k R_k/penalty. Take the gradient step for both,
    then apply the prox of step·‖·‖₁ to W only (the soft threshold sign(v)·max(|v| − step, 0), with
    exact zeros): the bias is not penalised, so it is not thresholded."""
    raise NotImplementedError("exercise 3: one ISTA step")


def error_and_theta(u: torch.Tensor, y: torch.Tensor) -> tuple[float, float]:
    """Exercise 4. For a ReLU layer with pre-activations ``u`` and dense outputs ``y``: the squared
    output error Σ_k ‖relu(u_k) − y_k‖² and Θ = Σ_k d²(u_k, C_k), as two floats (error, Θ). ReLU is
    a proximity operator, hence non-expansive, and relu(P_C(u)) = y: the error never exceeds Θ."""
    raise NotImplementedError("exercise 4: the output-error bound")
