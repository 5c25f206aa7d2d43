// bsr_spmm.cu — C[m×n] = A[m×k] · B[k×n], A block-sparse (BSR, blocks BSR_BR × BSR_BC, fp32),
// B and C dense row-major fp32 (REFERENCE §2.3).
//
// The block shape is a compile-time constant, set per module with -DBSR_BR=… -DBSR_BC=… (the
// Python loader compiles one module per shape, e.g. 8×8 … 32×32, or 4×1 for the hierarchical
// block chapter), so every loop below has a fixed trip count the compiler can unroll.
//
// Launch (see sparsitylab/kernels.py, _bsr_plan):
//   block = (BSR_TN, BSR_TY) = (32, min(BSR_BR, 8))
//   grid  = (m / BSR_BR, ceil(n / BSR_TN))
// One thread block computes the output tile C[block_row · BR … +BR, col0 … col0+32): thread
// (x, y) owns column col0 + x and rows y, y + TY, y + 2·TY, … of the tile (BSR_RPT rows).
//
// For every stored block of the block row:
//   1. the BR×BC values are copied to shared memory (read once, reused by all 32 columns);
//   2. the BC×32 slice of B that the block multiplies is copied to shared memory (read once
//      from global memory, reused by all BR rows of the tile; loads are coalesced along n);
//   3. each thread does BC · RPT fused multiply-adds from shared memory into registers.
// Work is proportional to the number of stored blocks: zero blocks are never touched. The
// bigger the block, the more reuse per byte loaded, which is why large blocks win sooner.
// All threads of a block run the same number of iterations, so __syncthreads is safe.
#ifndef BSR_BR
#define BSR_BR 16
#endif
#ifndef BSR_BC
#define BSR_BC 16
#endif
#define BSR_TN 32
#define BSR_TY (BSR_BR < 8 ? BSR_BR : 8)
#define BSR_RPT ((BSR_BR + BSR_TY - 1) / BSR_TY)

extern "C" __global__ void bsr_spmm(const int* __restrict__ row_ptr, const int* __restrict__ col_idx,
                                    const float* __restrict__ values, const float* __restrict__ b,
                                    float* __restrict__ c, int n)
{
    __shared__ float a_tile[BSR_BR * BSR_BC];
    __shared__ float b_tile[BSR_BC][BSR_TN];
    const int block_row = blockIdx.x;
    const int col = blockIdx.y * BSR_TN + threadIdx.x;
    const int tid = threadIdx.y * BSR_TN + threadIdx.x;
    float acc[BSR_RPT];
    for (int i = 0; i < BSR_RPT; ++i) acc[i] = 0.f;

    const int end = row_ptr[block_row + 1];
    for (int p = row_ptr[block_row]; p < end; ++p) {
        const float* a = values + (size_t)p * (BSR_BR * BSR_BC);
        for (int i = tid; i < BSR_BR * BSR_BC; i += BSR_TN * BSR_TY) a_tile[i] = a[i];
        const int k0 = col_idx[p] * BSR_BC;
        for (int r = threadIdx.y; r < BSR_BC; r += BSR_TY) {
            b_tile[r][threadIdx.x] = col < n ? b[(size_t)(k0 + r) * n + col] : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BSR_BC; ++kk) {
            const float bv = b_tile[kk][threadIdx.x];
#pragma unroll
            for (int i = 0; i < BSR_RPT; ++i) {
                const int r = threadIdx.y + i * BSR_TY;
                if (r < BSR_BR) acc[i] += a_tile[r * BSR_BC + kk] * bv;
            }
        }
        __syncthreads();  // the tiles are overwritten by the next stored block
    }
    if (col >= n) return;
    for (int i = 0; i < BSR_RPT; ++i) {
        const int r = threadIdx.y + i * BSR_TY;
        if (r < BSR_BR) c[(size_t)(block_row * BSR_BR + r) * n + col] = acc[i];
    }
}
