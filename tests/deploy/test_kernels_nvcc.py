"""Every kernel source compiles with nvcc for sm_80 (A100) and sm_90 (H100).

The text compiled is what CuPy compiles (``matmul.load_source``: headers inlined, same
``-std`` and ``-D`` options), so a GPU-less machine still catches CUDA-only mistakes the g++
emulation cannot see (device qualifiers, vector types, intrinsics). Skipped without nvcc.
"""

from __future__ import annotations

import importlib.resources
import shutil
import subprocess

import pytest

from sparsitylab.deploy import matmul

NVCC = shutil.which("nvcc")
pytestmark = pytest.mark.skipif(
    NVCC is None, reason="nvcc not found on PATH: CUDA compile checks need the CUDA toolkit"
)

SOURCES = sorted(
    p.name
    for p in importlib.resources.files("sparsitylab.kernels").iterdir()
    if p.name.endswith(".cu")
)
BSR_BLOCKS = [(8, 8), (16, 16), (32, 32), (4, 1), (1, 4)]
VARIANTS = [(name, ()) for name in SOURCES if name != "bsr_spmm.cu"] + [
    ("bsr_spmm.cu", (("BSR_BR", br), ("BSR_BC", bc))) for br, bc in BSR_BLOCKS
]


def test_every_source_is_checked():
    assert {"csr_spmm.cu", "bsr_spmm.cu", "sparse24_spmm.cu", "compact_gemm.cu"} <= set(SOURCES)


@pytest.mark.parametrize("arch", ["sm_80", "sm_90"])
@pytest.mark.parametrize(
    "source, defines",
    VARIANTS,
    ids=lambda v: v if isinstance(v, str) else "-".join(f"{k}{n}" for k, n in v) or "default",
)
def test_nvcc_compiles(tmp_path, source, defines, arch):
    path = tmp_path / source
    path.write_text(matmul.load_source(source))
    command = [
        NVCC,
        "-std=c++17",
        f"-arch={arch}",
        "-cubin",
        "-Werror",
        "all-warnings",
        *(f"-D{k}={v}" for k, v in defines),
        "-o",
        str(tmp_path / "out.cubin"),
        str(path),
    ]
    result = subprocess.run(command, check=False, capture_output=True, text=True)
    assert result.returncode == 0, f"{' '.join(command)}\n{result.stderr}"
