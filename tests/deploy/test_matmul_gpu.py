"""The CUDA kernels on a real GPU (CuPy): vs dense PyTorch, cuSPARSE and cuBLAS.

Marked ``gpu``: tests/conftest.py skips them unless CuPy sees a CUDA device.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from sparsitylab.deploy import matmul
from sparsitylab.deploy.formats import BSR, CSR, Compacted, Sparse24, to_array
from sparsitylab.sparsify.masks import block_mask, nm_mask, topk_mask

pytestmark = pytest.mark.gpu
M, K = 512, 768


@pytest.fixture(scope="module")
def backend():
    return matmul.CupyBackend()


def weights(seed: int = 0) -> torch.Tensor:
    return torch.randn(M, K, generator=torch.Generator().manual_seed(seed))


def cases() -> dict[str, object]:
    w = weights()
    return {
        "csr 90%": (CSR.from_dense, w * topk_mask(w, 0.9)),
        **{
            f"bsr {b[0]}x{b[1]} 80%": (
                (lambda d, b=b: BSR.from_dense(d, b)),
                w * block_mask(w, b, 0.8),
            )
            for b in [(8, 8), (16, 16), (32, 32), (4, 1)]
        },
        "2:4": (Sparse24.from_dense, w * nm_mask(w, 2, 4)),
        "compacted": (
            Compacted.from_dense,
            w * (torch.arange(K) % 3 == 0) * (torch.arange(M) % 2 == 0)[:, None],
        ),
    }


@pytest.mark.parametrize("name", list(cases()))
@pytest.mark.parametrize("n", [1, 37, 256])
def test_kernel_matches_dense(backend, name, n):
    encode, dense = cases()[name]
    b = torch.randn(K, n, generator=torch.Generator().manual_seed(1))
    out = matmul.spmm(encode(dense), b, backend=backend).cpu()
    torch.testing.assert_close(out, dense @ b, rtol=1e-4, atol=1e-3)


def test_unfused_compacted_gemm_matches(backend):
    _, dense = cases()["compacted"]
    b = torch.randn(K, 64)
    run = matmul.plan(Compacted.from_dense(dense), 64, backend, fused=False)
    torch.testing.assert_close(
        backend.tensor(run(backend.array(b))).cpu(), dense @ b, rtol=1e-4, atol=1e-3
    )


def test_csr_kernel_agrees_with_cusparse_and_cublas(backend):
    import cupy
    import cupyx.scipy.sparse as cusparse

    _, dense = cases()["csr 90%"]
    b = cupy.asarray(np.random.default_rng(0).standard_normal((K, 128), dtype=np.float32))
    ours = matmul.plan(CSR.from_dense(dense), 128, backend)(b)
    a = cupy.asarray(dense.numpy())
    cupy.testing.assert_allclose(ours, cusparse.csr_matrix(a) @ b, rtol=1e-4, atol=1e-3)
    cupy.testing.assert_allclose(ours, a @ b, rtol=1e-4, atol=1e-3)


@pytest.mark.skipif(not torch.cuda.is_available(), reason="zero-copy needs a CUDA build of PyTorch")
def test_dlpack_exchange_is_zero_copy_on_the_gpu():
    import cupy

    t = torch.zeros(4, device="cuda")
    a = to_array(t, cupy)
    a[0] = 7.0
    assert t[0].item() == 7.0
