// csr_spmm.cu — C[m×n] = A[m×k] · B[k×n], A in CSR (fp32 values, int32 indices), B and C dense
// row-major fp32. A row-split kernel after Sputnik (Gale et al., SC'20, https://arxiv.org/abs/2006.10901).
//
// Launch (see sparsitylab/deploy/matmul.py, _csr_plan):
//   block = (threads_per_row, rows_per_block)      e.g. (32, 4) for n = 256 with float4 loads
//   grid  = (ceil(m / rows_per_block), ceil(n / (threads_per_row · VEC)))
//
// Sputnik ideas used here, and where they show up:
// 1. Row swizzle. Rows are visited through `row_order`, the rows sorted by length (descending)
//    once on the host when the CSR matrix is built. Consecutive blocks then get rows of similar
//    length, so the heavy rows start first and a block's rows finish together (no long tail
//    where one long row keeps a whole block busy). The result still lands in the true row.
// 2. Subwarp tiling. One row is handled by a "subwarp" of threads_per_row threads (threadIdx.x),
//    and a block holds rows_per_block such rows (threadIdx.y). For a narrow B (small n) the
//    subwarp is small, so short rows do not leave most of a 32-thread warp idle.
// 3. Vector loads. Each thread owns VEC = 4, 2 or 1 consecutive output columns and reads the
//    matching slice of B's row with one float4/float2 load (chosen on the host from n % 4 and
//    n % 2), so the memory system sees 16-byte transactions.
// Simplifications against Sputnik, stated so nobody mistakes this for it: the row's values and
// column indices are read straight from global memory by every thread of the subwarp (a
// broadcast served by L1) instead of being staged in shared memory, and ROMA (rounding each
// row's start down to the vector width) is not needed because values/indices are read as
// scalars. There is no __syncthreads, so threads outside the matrix may simply return.
#include "common.cuh"

template <int VEC>
__device__ __forceinline__ void csr_spmm_tile(const int* __restrict__ row_ptr, const int* __restrict__ col_idx,
                                              const float* __restrict__ values,
                                              const int* __restrict__ row_order, const float* __restrict__ b,
                                              float* __restrict__ c, int m, int n)
{
    const int slot = blockIdx.x * blockDim.y + threadIdx.y;         // position in the swizzled order
    const int col = (blockIdx.y * blockDim.x + threadIdx.x) * VEC;  // first output column of this thread
    if (slot >= m || col >= n) return;
    const int row = row_order[slot];
    float acc[VEC];
    for (int j = 0; j < VEC; ++j) acc[j] = 0.f;
    const int end = row_ptr[row + 1];
    for (int p = row_ptr[row]; p < end; ++p) {
        sl_axpy_vec<VEC>(acc, values[p], b + (long long)col_idx[p] * n + col);
    }
    sl_store_vec<VEC>(c + (long long)row * n + col, acc);
}

extern "C" __global__ void csr_spmm_vec4(const int* row_ptr, const int* col_idx, const float* values,
                                         const int* row_order, const float* b, float* c, int m, int n)
{
    csr_spmm_tile<4>(row_ptr, col_idx, values, row_order, b, c, m, n);
}

extern "C" __global__ void csr_spmm_vec2(const int* row_ptr, const int* col_idx, const float* values,
                                         const int* row_order, const float* b, float* c, int m, int n)
{
    csr_spmm_tile<2>(row_ptr, col_idx, values, row_order, b, c, m, n);
}

extern "C" __global__ void csr_spmm_vec1(const int* row_ptr, const int* col_idx, const float* values,
                                         const int* row_order, const float* b, float* c, int m, int n)
{
    csr_spmm_tile<1>(row_ptr, col_idx, values, row_order, b, c, m, n);
}
