"""WHICH weights, from calibration data: the per-layer rules of Wanda and SparseGPT.

Both papers prune a trained network layer by layer without retraining. One layer is a GEMM
y = W x with W of shape (rows, columns) — a Linear's weight, or a conv's GEMM view in the column
order its N:M groups run along — and X the (samples × columns) matrix of its calibration inputs.

- **Wanda** (Sun, Liu, Bair & Kolter, ICLR 2024): score S_ij = |W_ij| · ‖X_j‖₂, the weight times the
  ℓ2 norm of its input feature over every calibration sample; prune the lowest s % **within each
  output row** (the paper's per-output comparison group), or the lowest M − N of every group of M
  consecutive columns of a row for N:M. No weight changes. (:func:`wanda_keep`)
- **SparseGPT** (Frantar & Alistarh, ICML 2023): Optimal Brain Surgeon on the layer's squared
  reconstruction error, whose Hessian H = 2XᵀX/N is the same for every row. Columns are visited
  left to right; pruning weight w_rc moves its error onto the columns to its right of the same row
  with the row of U, the upper Cholesky factor of H⁻¹ (U_cc² = [(H_{c:,c:})⁻¹]_00, the paper's
  sequence of inverse Hessians in one factorisation). Columns go in blocks of B = 128 with the
  updates to later blocks applied once per block ("lazy batch updates"); the mask of a block is
  chosen when the block starts, from w²/U_cc² — the lowest s % of the whole block (rows × B
  columns), as the paper's Algorithm 1 and its public code do, so a row's sparsity can vary — and
  for N:M, the lowest M − N of each group of M columns, chosen when the group is reached.
  H is dampened by λ = 1 % of its mean diagonal; an input that is zero on every sample (H_cc = 0)
  gets H_cc = 1 and its weights are set to 0 (they contribute nothing on the calibration data), as
  in the public code; the returned mask counts them as pruned. (:func:`sparsegpt`)

- **Least-squares refit** (:func:`refit`; ours, not from either paper): given a keep-mask, each
  output row's kept weights and a free bias are fitted by least squares to target
  pre-activations on the calibration inputs — the control that separates *which* weights a method
  keeps from the *values* it gives them (SIS refits both the survivors and the bias).

The OBS recursion is sequential over columns: column c's update depends on every column before it.
Each step is one rank-1 update of all rows at once (a vectorised (rows × B) operation); the Python
loop runs over the columns of a block, never over single weights.
"""

from __future__ import annotations

import torch

from .._checks import check_choice, check_int, check_nm, check_real, check_tensor
from .masks import mask_from_scores, pruned_count, top_n_per_group

DAMP = 0.01  # SparseGPT: λ = 1 % of the mean diagonal of H
BLOCK = 128  # SparseGPT: columns per block


def _check_layer(weight: torch.Tensor, columns: int | None = None, name: str = "weight") -> None:
    check_tensor(weight, name, dims=(2,))
    if columns is not None and weight.shape[1] != columns:
        raise ValueError(
            f"{name} has {weight.shape[1]} columns but the calibration inputs have {columns} "
            "features; they must match"
        )


def _pattern(
    sparsity: float | None, n: int | None, m: int | None, columns: int
) -> tuple[float | None, int | None, int | None]:
    """Check that exactly one of ``sparsity`` and ``n:m`` is given and that it tiles the layer."""
    if (sparsity is None) == (n is None and m is None):
        raise ValueError(
            f"give either sparsity (unstructured) or n and m (N:M), not both or neither "
            f"(got sparsity={sparsity}, n={n}, m={m})"
        )
    if sparsity is not None:
        return check_real(sparsity, "sparsity", minimum=0.0, maximum=1.0), None, None
    n, m = check_nm(n, m)
    if columns % m:
        raise ValueError(
            f"the layer has {columns} columns, not divisible by m={m}: its N:M groups would "
            "straddle rows (keep such a layer dense, or pad it)"
        )
    return None, n, m


def input_norms(inputs: torch.Tensor) -> torch.Tensor:
    """‖X_j‖₂ for every input feature j: the ℓ2 norm of column j of the (samples × features)
    calibration inputs (Wanda's activation term)."""
    check_tensor(inputs, "inputs", dims=(2,))
    return torch.linalg.vector_norm(inputs.float(), dim=0)


def wanda_scores(weight: torch.Tensor, norms: torch.Tensor) -> torch.Tensor:
    """Wanda's score S_ij = |W_ij| · ‖X_j‖₂."""
    _check_layer(weight, norms.shape[0])
    return weight.abs() * norms.to(weight.dtype)[None, :]


def row_keep(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask pruning the ``round(sparsity · columns)`` lowest scores of every row (ties prune
    the earlier column)."""
    check_tensor(scores, "scores", dims=(2,))
    check_real(sparsity, "sparsity", minimum=0.0, maximum=1.0)
    k = pruned_count(scores.shape[1], sparsity)
    keep = torch.ones_like(scores, dtype=torch.bool)
    if k:
        lowest = torch.argsort(scores, dim=1, stable=True)[:, :k]
        keep.scatter_(1, lowest, False)
    return keep


def nm_keep(scores: torch.Tensor, n: int, m: int) -> torch.Tensor:
    """Keep-mask keeping the ``n`` highest scores of every group of ``m`` consecutive columns."""
    check_tensor(scores, "scores", dims=(2,))
    n, m = check_nm(n, m)
    if scores.shape[1] % m:
        raise ValueError(f"scores have {scores.shape[1]} columns, not divisible by m={m}")
    return top_n_per_group(scores.reshape(-1, m), n).reshape(scores.shape)


GROUPS = ("row", "layer")


def wanda_keep(
    weight: torch.Tensor,
    norms: torch.Tensor,
    sparsity: float | None = None,
    n: int | None = None,
    m: int | None = None,
    group: str = "row",
) -> torch.Tensor:
    """Wanda's keep-mask of one layer: at ``sparsity`` within each output row (``group="row"``,
    the paper's choice) or across the whole layer (``"layer"``, magnitude pruning's comparison
    group, for the ablation), or N:M (module docstring)."""
    check_choice(group, "group", GROUPS)
    sparsity, n, m = _pattern(sparsity, n, m, weight.shape[1])
    scores = wanda_scores(weight, norms)
    if n is not None:
        return nm_keep(scores, n, m)
    return row_keep(scores, sparsity) if group == "row" else mask_from_scores(scores, sparsity)


def hessian(inputs: torch.Tensor) -> torch.Tensor:
    """H = 2 XᵀX / N of the layer's squared reconstruction error, from (N × features) inputs."""
    check_tensor(inputs, "inputs", dims=(2,))
    if inputs.shape[0] == 0:
        raise ValueError("inputs hold no calibration sample (0 rows)")
    x = inputs.float() if inputs.dtype not in (torch.float32, torch.float64) else inputs
    return (2.0 / x.shape[0]) * (x.T @ x)


def inverse_factor(h: torch.Tensor, damp: float = DAMP) -> torch.Tensor:
    """U, the upper Cholesky factor of (H + λI)⁻¹ with λ = ``damp`` · mean diag(H): row c of U is
    the first row of (H_{c:,c:})⁻¹ divided by its square root. ``ValueError`` when H + λI is not
    positive definite (a singular H needs damp > 0)."""
    damp = check_real(damp, "damp", minimum=0.0)
    h = h.clone()
    h.diagonal().add_(damp * h.diagonal().mean())
    # With J the order-reversing permutation, J H J = L Lᵀ gives H⁻¹ = (J L⁻¹ J)ᵀ (J L⁻¹ J), and
    # J L⁻¹ J is upper triangular with a positive diagonal: it is U. One factorisation and one
    # triangular inverse instead of factor, invert, factor again (the public code's order).
    factor, info = torch.linalg.cholesky_ex(h.flip(0, 1))
    if int(info):
        raise ValueError(
            f"the Hessian of the calibration inputs is not positive definite (damp={damp}): some "
            "inputs are linearly dependent; use damp > 0 (SparseGPT's default is 0.01) or more "
            "calibration samples"
        )
    eye = torch.eye(h.shape[0], dtype=h.dtype, device=h.device)
    return torch.linalg.solve_triangular(factor, eye, upper=False).flip(0, 1)


@torch.no_grad()
def sparsegpt(
    weight: torch.Tensor,
    h: torch.Tensor,
    sparsity: float | None = None,
    n: int | None = None,
    m: int | None = None,
    block: int = BLOCK,
    damp: float = DAMP,
    update: bool = True,
) -> tuple[torch.Tensor, torch.Tensor]:
    """SparseGPT on one layer (module docstring): ``(new weight, keep-mask)``.

    weight: (rows × columns); h: the (columns × columns) Hessian (:func:`hessian`); either
    ``sparsity`` or ``n``/``m``. ``update=False`` is the control that separates the two halves of
    the method: the mask SparseGPT chooses (with its updates running) applied to the *original*
    weights, with no reconstruction.
    """
    _check_layer(weight)
    check_tensor(h, "h", dims=(2,))
    columns = weight.shape[1]
    if tuple(h.shape) != (columns, columns):
        raise ValueError(f"h has shape {tuple(h.shape)}; a layer of {columns} columns needs "
                         f"({columns}, {columns})")  # fmt: skip
    sparsity, n, m = _pattern(sparsity, n, m, columns)
    block = check_int(block, "block", minimum=1)
    if m is not None and block % m:
        raise ValueError(f"block={block} must be a multiple of m={m}")
    dtype = torch.float64 if weight.dtype == torch.float64 else torch.float32
    w = weight.detach().to(dtype).clone()
    h = h.to(dtype).clone()
    dead = h.diagonal() == 0
    h[dead, dead] = 1.0
    w[:, dead] = 0.0
    u = inverse_factor(h, damp)
    keep = torch.ones_like(w, dtype=torch.bool)
    for start in range(0, columns, block):
        end = min(start + block, columns)
        w1, u1 = w[:, start:end].clone(), u[start:end, start:end]
        diag = u1.diagonal()
        errors = torch.zeros_like(w1)
        if sparsity is not None:
            keep[:, start:end] = _block_keep(w1.square() / diag.square(), sparsity)
        for c in range(end - start):
            if m is not None and c % m == 0:
                scores = w1[:, c : c + m].square() / diag[c : c + m].square()
                keep[:, start + c : start + c + m] = nm_keep(scores, n, m)
            pruned = w1[:, c] * ~keep[:, start + c]
            errors[:, c] = pruned / diag[c]
            w1[:, c:].addr_(errors[:, c], u1[c, c:], alpha=-1)  # column c itself becomes 0
        w[:, start:end] = w1
        w[:, end:] -= errors @ u[start:end, end:]
    keep[:, dead] = False  # set to 0 above: counted as pruned, so the mask says what is zero
    w = torch.where(keep, w, torch.zeros((), dtype=dtype))
    if not update:
        w = torch.where(keep, weight.detach().to(dtype), torch.zeros((), dtype=dtype))
    return w.to(weight.dtype), keep


def _block_keep(scores: torch.Tensor, sparsity: float) -> torch.Tensor:
    """Keep-mask pruning the lowest ``sparsity`` of a whole block of scores (all rows together)."""
    k = pruned_count(scores.numel(), sparsity)
    keep = torch.ones(scores.numel(), dtype=torch.bool, device=scores.device)
    if k:
        keep[torch.argsort(scores.flatten(), stable=True)[:k]] = False
    return keep.reshape(scores.shape)


def reconstruction_error(inputs: torch.Tensor, weight: torch.Tensor, pruned: torch.Tensor) -> float:
    """‖X Wᵀ − X Ŵᵀ‖²_F / ‖X Wᵀ‖²_F: the relative squared error of a pruned layer on its inputs."""
    target = inputs @ weight.T
    return float(
        (inputs @ pruned.T - target).square().sum() / target.square().sum().clamp_min(1e-30)
    )


REFIT_ELEMENTS = 1 << 24  # refit: at most this many Gram entries per chunk of rows (128 MiB)


@torch.no_grad()
def refit(
    weight: torch.Tensor,
    bias: torch.Tensor | None,
    keep: torch.Tensor,
    inputs: torch.Tensor,
    target: torch.Tensor,
    damp: float = 0.0,
    max_elements: int = REFIT_ELEMENTS,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Least-squares refit of one layer on a fixed keep-mask: ``(new weight, new bias)``.

    For every output row r, with K_r its kept columns, minimise over (w_K, b_r)

        ‖X_K w_K + b_r·1 − T_r‖² + λ‖w_K − w⁰_K‖²,    λ = ``damp`` · mean diag(X̃ᵀX̃),

    where X (samples × columns) are the calibration inputs, T (samples × rows) the target
    pre-activations and w⁰ = ``weight``; pruned entries are 0. The bias is free (not damped):
    centring X and T (X̃, T̃) removes it exactly, b_r = T̄_r − x̄_Kᵀ w_K, and the normal equations
    (X̃_KᵀX̃_K + λI) w_K = X̃_KᵀT̃_r + λ w⁰_K are solved in float64 by Cholesky. ``damp = 0`` is plain
    least squares; ``damp > 0`` (a ridge toward the current weights, ours) keeps the system
    positive definite when kept inputs are constant or collinear on the calibration data.
    ``bias=None``: a layer without a bias, refitted with no intercept (X and T not centred).

    Vectorised over rows: each row's kept columns are gathered from one Gram matrix into a
    (rows × k × k) batch padded with the identity (k: the most kept columns in the chunk; rows are
    sorted by kept count so the padding stays small), chunked so that a chunk holds at most
    ``max_elements`` entries. A row that keeps nothing gets w = 0 and b_r = T̄_r (the bias-only fit).
    """
    check_tensor(inputs, "inputs", dims=(2,), floating=True)
    _check_layer(weight, inputs.shape[1])
    check_tensor(target, "target", dims=(2,), floating=True)
    check_tensor(keep, "keep", dims=(2,))
    if keep.dtype != torch.bool or keep.shape != weight.shape:
        raise ValueError(
            f"keep must be a bool mask of the weight's shape {tuple(weight.shape)} "
            f"(got {keep.dtype}, {tuple(keep.shape)})"
        )
    rows, columns = weight.shape
    if tuple(target.shape) != (inputs.shape[0], rows):
        raise ValueError(
            f"target has shape {tuple(target.shape)}; it must be (samples, rows) = "
            f"{(inputs.shape[0], rows)}: one target pre-activation per sample and output row"
        )
    if bias is not None:
        check_tensor(bias, "bias", dims=(1,))
        if bias.shape[0] != rows:
            raise ValueError(f"bias has {bias.shape[0]} entries; the weight has {rows} rows")
    if inputs.shape[0] == 0:
        raise ValueError("inputs hold no calibration sample (0 rows)")
    damp = check_real(damp, "damp", minimum=0.0)
    max_elements = check_int(max_elements, "max_elements", minimum=1)
    x, t, w0 = inputs.double(), target.double(), weight.detach().double()
    x_mean = x.mean(dim=0) if bias is not None else torch.zeros_like(x[0])
    t_mean = t.mean(dim=0) if bias is not None else torch.zeros_like(t[0])
    x, t = x - x_mean, t - t_mean
    gram, cross = x.T @ x, x.T @ t  # (columns × columns), (columns × rows)
    lam = damp * float(gram.diagonal().mean()) if columns else 0.0
    counts = keep.sum(dim=1)
    order = torch.argsort(counts, descending=True, stable=True)
    kept_first = torch.argsort((~keep).to(torch.int8), dim=1, stable=True)  # kept columns first
    new = torch.zeros_like(w0)
    start = 0
    while start < rows and int(counts[order[start]]) > 0:
        k = int(counts[order[start]])
        chunk = order[start : start + max(1, max_elements // (k * k))]
        valid = torch.arange(k, device=keep.device)[None, :] < counts[chunk][:, None]
        index = torch.where(valid, kept_first[chunk, :k], 0)  # (c × k) column indices
        both = valid[:, :, None] & valid[:, None, :]
        a = torch.where(both, gram[index[:, :, None], index[:, None, :]], 0.0)
        a.diagonal(dim1=1, dim2=2).add_(torch.where(valid, lam, 1.0))  # identity on the padding
        rhs = cross[index, chunk[:, None]] + lam * w0[chunk[:, None], index]
        rhs = torch.where(valid, rhs, 0.0)
        factor, info = torch.linalg.cholesky_ex(a)
        if bool((info != 0).any()):
            bad = chunk[info != 0][:5].tolist()
            raise ValueError(
                f"the kept inputs of rows {bad} are linearly dependent on the calibration data "
                "(an input constant over every sample, or fewer samples than kept weights): use "
                "damp > 0 or more calibration samples"
            )
        solution = torch.cholesky_solve(rhs[:, :, None], factor)[:, :, 0]
        new[chunk[:, None].expand_as(index)[valid], index[valid]] = solution[valid]
        start += chunk.shape[0]
    new_bias = None if bias is None else (t_mean - new @ x_mean).to(bias.dtype)
    return new.to(weight.dtype), new_bias


__all__ = [
    "BLOCK",
    "DAMP",
    "GROUPS",
    "hessian",
    "input_norms",
    "inverse_factor",
    "nm_keep",
    "reconstruction_error",
    "refit",
    "REFIT_ELEMENTS",
    "row_keep",
    "sparsegpt",
    "wanda_keep",
    "wanda_scores",
]
