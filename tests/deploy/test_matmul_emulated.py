"""Every CUDA kernel, run on the CPU through the emulation harness, equals dense PyTorch.

The kernels are launched by ``sparsitylab.matmul.plan`` — the launch code a GPU uses — with
``EmulatedBackend`` in place of CuPy (see :mod:`sparsitylab.deploy.emulation`). The CPU paths are
checked on the same cases. Each kernel module compiles once (cached by source hash in the temp
directory).
"""

from __future__ import annotations

import re
import shutil

import numpy as np
import pytest
import torch

from sparsitylab.deploy import matmul
from sparsitylab.deploy.emulation import EmulatedBackend, EmulatedModule
from sparsitylab.deploy.formats import BSR, CSR, HBS, Compacted, Sparse24
from sparsitylab.sparsify.masks import nm_mask

BACKENDS = {"emulated": EmulatedBackend(), "cpu": None}
NEEDS_GXX = pytest.mark.skipif(
    shutil.which("g++") is None,
    reason="g++ not found: the CUDA emulation harness compiles the kernels with g++ (C++20)",
)
BOTH = [pytest.param("emulated", marks=NEEDS_GXX), "cpu"]
CASES = ["random", "empty_rows", "all_zero", "fully_dense"]


def matrix(case: str, rows: int, cols: int, seed: int = 0) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    dense = torch.randn(rows, cols, generator=g)
    if case == "fully_dense":
        return dense
    if case == "all_zero":
        return torch.zeros(rows, cols)
    dense = dense * (torch.rand(rows, cols, generator=g) < 0.3)
    if case == "empty_rows":
        dense[::3] = 0
        dense[:, ::5] = 0  # and empty columns, which compaction drops
    return dense


def check(fmt, dense: torch.Tensor, n: int, backend: str) -> None:
    b = torch.randn(dense.shape[1], n, generator=torch.Generator().manual_seed(1))
    out = matmul.spmm(fmt, b, backend=BACKENDS[backend])
    assert out.shape == (dense.shape[0], n)
    torch.testing.assert_close(out, dense @ b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("backend", BOTH)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("n", [1, 34, 64])  # float1, float2 and float4 loads
def test_csr(backend, case, n):
    dense = matrix(case, 42, 48)
    check(CSR.from_dense(dense), dense, n, backend)


@pytest.mark.parametrize("backend", BOTH)
@pytest.mark.parametrize("case", ["random", "fully_dense"])
@pytest.mark.parametrize("config", ["4x1/63+1x1/97", "8x8/70+4x4/80+1x1/90", "4x4/50"])
def test_hbs_is_the_sum_of_its_bsr_levels(backend, case, config):
    dense = matrix(case, 48, 40)
    fmt = HBS.from_dense(dense, config)
    pruned = fmt.to_dense()
    assert [level.block for level in fmt.levels] == [
        tuple(int(v) for v in part.split("/")[0].split("x")) for part in config.split("+")
    ]
    check(fmt, pruned, 70, backend)


@pytest.mark.parametrize("backend", BOTH)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize(
    "block, shape",
    [
        ((8, 8), (40, 24)),
        ((16, 16), (48, 32)),
        ((32, 32), (64, 96)),
        ((4, 1), (36, 20)),
        ((1, 4), (6, 20)),
    ],
)
@pytest.mark.parametrize("n", [1, 70])  # 70: a full 64-column tile plus a partial one
def test_bsr(backend, case, block, shape, n):
    dense = matrix(case, *shape)
    check(BSR.from_dense(dense, block), dense, n, backend)


@pytest.mark.parametrize("backend", BOTH)
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("n", [1, 33])
def test_sparse24(backend, case, n):
    dense = matrix(case, 42, 48)
    dense = dense * nm_mask(dense, 2, 4)
    check(Sparse24.from_dense(dense), dense, n, backend)


@NEEDS_GXX
@pytest.mark.parametrize("fused", [True, False])
@pytest.mark.parametrize("case", CASES)
@pytest.mark.parametrize("n", [1, 70])
def test_compacted_kernels(fused, case, n):
    dense = matrix(case, 70, 40)
    dense[:, 1::2] = 0  # column (shape-wise) pruning on top of the case
    fmt = Compacted.from_dense(dense)
    be = BACKENDS["emulated"]
    b = torch.randn(40, n, generator=torch.Generator().manual_seed(2))
    out = be.tensor(matmul.plan(fmt, n, be, fused=fused)(be.array(b)))
    torch.testing.assert_close(out, dense @ b, rtol=1e-5, atol=1e-4)


@pytest.mark.parametrize("case", CASES)
def test_compacted_cpu(case):
    dense = matrix(case, 70, 40)
    check(Compacted.from_dense(dense), dense, 5, "cpu")


@NEEDS_GXX
def test_compacted_gemm_spans_several_tiles():
    dense = matrix("random", 150, 80)  # 3 row tiles of 64, 6 k-steps of 16
    fmt = Compacted.from_dense(dense, rows=torch.arange(150), cols=torch.arange(0, 80))
    check(fmt, dense, 130, "emulated")


def test_sources_are_package_data_with_headers_inlined():
    source = matmul.load_source("csr_spmm.cu")
    assert not re.search(r'^#include "', source, re.MULTILINE) and "sl_axpy_vec" in source
    with pytest.raises(ValueError, match="not found; available: .*bsr_spmm.cu"):
        matmul.load_source("nope.cu")


def test_gpu_kernels_are_fp32_and_shapes_are_checked():
    fmt = CSR.from_dense(torch.eye(4, dtype=torch.float64))
    with pytest.raises(TypeError, match="fp32"):
        matmul.plan(fmt, 3, BACKENDS["emulated"])
    with pytest.raises(ValueError, match="b has 5 rows but a has 4 columns"):
        matmul.spmm(fmt, torch.ones(5, 2), backend=None)
    with pytest.raises(TypeError, match="CSR, BSR, HBS, Sparse24 or Compacted"):
        matmul.plan(torch.eye(3), 3, None)


SELF_TEST = r"""
extern "C" __global__ void block_sum(const float* x, float* total, float* count, int n)
{
    __shared__ float partial[64];
    const int i = blockIdx.x * blockDim.x + threadIdx.x;
    partial[threadIdx.x] = i < n ? x[i] : 0.f;
    __syncthreads();
    for (int s = blockDim.x / 2; s > 0; s >>= 1) {
        if (threadIdx.x < s) partial[threadIdx.x] += partial[threadIdx.x + s];
        __syncthreads();
    }
    if (threadIdx.x == 0) atomicAdd(total, partial[0]);
    atomicAdd(count, 1.0f);
}
"""


@NEEDS_GXX
def test_shim_barriers_shared_memory_and_atomics():
    """A tree reduction is wrong without working barriers; the count is wrong without atomics."""
    kernel = EmulatedModule(SELF_TEST).get_function("block_sum")
    x = np.arange(300, dtype=np.float32)
    total, count = np.zeros(1, np.float32), np.zeros(1, np.float32)
    kernel((5,), (64,), (x, total, count, np.int32(300)))
    assert total[0] == x.sum() and count[0] == 5 * 64


@NEEDS_GXX
def test_harness_checks_argument_types_like_a_careful_cupy_call():
    kernel = EmulatedModule(SELF_TEST).get_function("block_sum")
    x, out = np.zeros(4, np.float32), np.zeros(1, np.float32)
    with pytest.raises(TypeError, match="needs numpy.int32, got int"):
        kernel((1,), (64,), (x, out, out, 4))
    with pytest.raises(TypeError, match="float32 array, got ndarray float64"):
        kernel((1,), (64,), (x.astype(np.float64), out, out, np.int32(4)))
    with pytest.raises(ValueError, match="invalid launch"):
        kernel((1,), (2048,), (x, out, out, np.int32(4)))


@pytest.mark.skipif(matmul.gpu_available(), reason="checks the no-GPU fallback")
def test_auto_backend_falls_back_to_the_cpu_paths_without_a_gpu():
    assert matmul.default_backend() is None
    dense = matrix("random", 16, 32)
    check(CSR.from_dense(dense), dense, 3, "cpu")
    torch.testing.assert_close(matmul.spmm(CSR.from_dense(dense), torch.eye(32)), dense)


# --- a wrong B is refused at every call, before any kernel runs ----------------------------------


@pytest.fixture
def csr_and_backends():
    torch.manual_seed(0)
    return CSR.from_dense(torch.randn(8, 6) * (torch.rand(8, 6) < 0.5)), BACKENDS


@pytest.mark.parametrize("where", BOTH)
def test_plan_run_checks_the_shape_of_b(csr_and_backends, where):
    a, backends = csr_and_backends
    be = backends[where]
    run = matmul.plan(a, 4, be)
    arr = (lambda t: t) if be is None else be.array
    with pytest.raises(
        ValueError, match=r"B has shape \(6, 5\); this plan multiplies a B of shape \(6, 4\)"
    ):
        run(arr(torch.randn(6, 5)))  # a wrong column count used to give wrong numbers
    with pytest.raises(ValueError, match=r"shape \(3, 4\)"):
        run(arr(torch.randn(3, 4)))  # too few rows: the kernel would read past the buffer
    with pytest.raises(TypeError, match="dtype"):
        run(arr(torch.randn(6, 4, dtype=torch.float64)) if be else torch.randn(6, 4).half())


@NEEDS_GXX
def test_plan_run_needs_a_contiguous_b_for_the_kernels(csr_and_backends):
    a, backends = csr_and_backends
    run = matmul.plan(a, 4, backends["emulated"])
    with pytest.raises(ValueError, match="C-contiguous"):
        run(backends["emulated"].array(torch.randn(4, 6)).T)


def test_backend_strings_and_dtypes_get_clear_errors():
    a = CSR.from_dense(torch.eye(4))
    assert matmul.spmm(a, torch.eye(4), backend="cpu").equal(torch.eye(4))
    with pytest.raises(ValueError, match="backend='cuda' is not one of"):
        matmul.plan(a, 2, backend="cuda")
    with pytest.raises(TypeError, match="fp32 or fp64"):
        matmul.plan(a.map(lambda t: t.half() if t.is_floating_point() else t), 2, backend="cpu")
    with pytest.raises(ValueError, match="n=0"):
        matmul.plan(a, 0, backend="cpu")
    if not matmul.gpu_available():
        with pytest.raises(ValueError, match="no CUDA device"):
            matmul.plan(a, 2, backend="gpu")


@NEEDS_GXX
def test_bsr_blocks_beyond_shared_memory_are_refused_at_plan_time():
    a = BSR.from_dense(torch.ones(128, 128), (128, 128))
    assert matmul.bsr_shared_bytes((128, 128)) > matmul.SHARED_MEMORY_BYTES
    with pytest.raises(ValueError, match="shared memory.*limit is 49152"):
        matmul.plan(a, 8, EmulatedBackend())
    assert matmul.bsr_shared_bytes((64, 64)) <= matmul.SHARED_MEMORY_BYTES
