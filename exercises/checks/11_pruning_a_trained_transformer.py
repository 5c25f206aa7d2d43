"""Graders for ``exercises/11_pruning_a_trained_transformer.py``."""

from __future__ import annotations

import pytest
import torch

from sparsitylab.sparsify import posttrain as rules


def check_wanda_mask(student) -> None:
    w = torch.tensor([[4.0, -1.0, 2.0, 0.5], [1.0, 1.0, -3.0, 2.0]])
    x = torch.tensor([[0.0, 3.0, 1.0, 4.0], [0.0, 4.0, 0.0, 3.0]])
    got = student.wanda_mask(w, x, 0.5)
    assert got.dtype == torch.bool and got.shape == w.shape, "a bool mask of W's shape"
    assert got.tolist() == [[False, True, False, True], [False, True, False, True]], (
        "score |W_ij|·‖X_j‖₂: feature 0 is always 0, so its weight goes even when it is the largest"
    )
    torch.manual_seed(0)
    w, x = torch.randn(6, 20), torch.randn(30, 20)
    for s in (0.3, 0.7):
        assert torch.equal(
            student.wanda_mask(w, x, s), rules.wanda_keep(w, rules.input_norms(x), s)
        ), f"compare within each row, prune round({s}·columns) per row"


def check_obs_step(student) -> None:
    torch.manual_seed(1)
    x = torch.randn(50, 5, dtype=torch.float64)
    w = torch.randn(5, dtype=torch.float64)
    h_inverse = torch.linalg.inv(2 * x.T @ x / 50)
    got = student.obs_step(w, h_inverse, 2)
    assert got[2] == 0, "the removed weight is exactly 0"
    # OBS is optimal: no other correction of the remaining weights reconstructs better
    others = [0, 1, 3, 4]
    best = torch.linalg.lstsq(x[:, others], x @ w).solution
    expected = torch.zeros(5, dtype=torch.float64)
    expected[others] = best
    assert torch.allclose(got, expected, atol=1e-8), (
        "δ = −(w_q / [H⁻¹]_qq) · H⁻¹[:, q]: the least-squares refit of the remaining weights"
    )


def check_contribution(student) -> None:
    torch.manual_seed(2)
    x, w = torch.randn(40, 8), torch.randn(5, 8)
    one = student.contribution(x, w, torch.tensor([3]))
    assert one == pytest.approx(float(x[:, 3].norm() * w[:, 3].norm()), rel=1e-5), (
        "a one-column unit: ‖X_j‖₂ · ‖W_{:,j}‖₂"
    )
    head = torch.tensor([4, 5, 6, 7])
    assert student.contribution(x, w, head) == pytest.approx(
        float(torch.linalg.matrix_norm(x[:, head] @ w[:, head].T)), rel=1e-5
    ), "several columns: the Frobenius norm of X_u W_uᵀ (not the product of the norms)"


def check_reconstruction_error(student) -> None:
    torch.manual_seed(3)
    x, w = torch.randn(30, 6), torch.randn(4, 6)
    pruned = w * (torch.rand(4, 6) > 0.5)
    assert student.reconstruction_error(x, w, pruned) == pytest.approx(
        rules.reconstruction_error(x, w, pruned), rel=1e-5
    )
    assert student.reconstruction_error(x, w, w) == 0.0
    assert student.reconstruction_error(x, w, torch.zeros_like(w)) == pytest.approx(1.0)
    with pytest.raises(ValueError):
        student.reconstruction_error(torch.zeros(3, 6), w, w)
