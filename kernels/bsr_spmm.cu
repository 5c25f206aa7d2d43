// bsr_spmm.cu — C[m×n] = A[m×k] · B[k×n], A block-sparse (BSR, blocks BSR_BR × BSR_BC, fp32),
// B and C dense row-major fp32.
//
// The block shape is a compile-time constant, set per module with -DBSR_BR=… -DBSR_BC=… (the
// Python loader compiles one module per shape, e.g. 8×8 … 32×32, or 4×1 for the hierarchical
// block chapter), so every loop below has a fixed trip count the compiler can unroll.
//
// Launch (see sparsitylab/deploy/matmul.py, _bsr_plan):
//   block = (32, BSR_TY) with BSR_TY = min(BSR_BR, 8)
//   grid  = (m / BSR_BR, ceil(n / 64))
// One thread block computes the output tile C[block_row · BR … +BR, col0 … col0+64): thread
// (x, y) owns columns col0 + x and col0 + x + 32, and rows y, y + TY, y + 2·TY, … of the tile
// (BSR_RPT rows), i.e. a small RPT × 2 register tile.
//
// For every stored block of the block row:
//   1. the BR×BC values are copied to shared memory (read once, reused by all 64 columns);
//   2. the BC×64 slice of B that the block multiplies is copied to shared memory (read once
//      from global memory, reused by all BR rows of the tile; loads are coalesced along n);
//   3. each thread does BC · RPT · 2 fused multiply-adds from shared memory into registers;
//      every weight read from shared memory serves two columns, every B value RPT rows.
// Work is proportional to the number of stored blocks: zero blocks are never touched. The
// bigger the block, the more reuse per byte loaded, which is why large blocks win sooner.
// All threads of a block run the same number of iterations, so __syncthreads is safe.
#ifndef BSR_BR
#define BSR_BR 16
#endif
#ifndef BSR_BC
#define BSR_BC 16
#endif
#define BSR_TX 32                   // threads along n
#define BSR_TN (2 * BSR_TX)         // output columns per thread block
#define BSR_TY (BSR_BR < 8 ? BSR_BR : 8)
#define BSR_RPT ((BSR_BR + BSR_TY - 1) / BSR_TY)

extern "C" __global__ void bsr_spmm(const int* __restrict__ row_ptr, const int* __restrict__ col_idx,
                                    const float* __restrict__ values, const float* __restrict__ b,
                                    float* __restrict__ c, int n)
{
    __shared__ float a_tile[BSR_BR * BSR_BC];
    __shared__ float b_tile[BSR_BC][BSR_TN];
    const int block_row = blockIdx.x;
    const int col0 = blockIdx.y * BSR_TN + threadIdx.x;  // this thread's columns: col0, col0 + 32
    const int tid = threadIdx.y * BSR_TX + threadIdx.x;
    float acc[BSR_RPT][2];
    for (int i = 0; i < BSR_RPT; ++i) acc[i][0] = acc[i][1] = 0.f;

    const int end = row_ptr[block_row + 1];
    for (int p = row_ptr[block_row]; p < end; ++p) {
        const float* a = values + (long long)p * (BSR_BR * BSR_BC);
        for (int i = tid; i < BSR_BR * BSR_BC; i += BSR_TX * BSR_TY) a_tile[i] = a[i];
        const int k0 = col_idx[p] * BSR_BC;
        for (int r = threadIdx.y; r < BSR_BC; r += BSR_TY) {
            for (int j = 0; j < 2; ++j) {
                const int col = col0 + j * BSR_TX;
                b_tile[r][threadIdx.x + j * BSR_TX] = col < n ? b[(long long)(k0 + r) * n + col] : 0.f;
            }
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < BSR_BC; ++kk) {
            const float b0 = b_tile[kk][threadIdx.x];
            const float b1 = b_tile[kk][threadIdx.x + BSR_TX];
#pragma unroll
            for (int i = 0; i < BSR_RPT; ++i) {
                const int r = threadIdx.y + i * BSR_TY;
                if (r < BSR_BR) {
                    const float av = a_tile[r * BSR_BC + kk];
                    acc[i][0] += av * b0;
                    acc[i][1] += av * b1;
                }
            }
        }
        __syncthreads();  // the tiles are overwritten by the next stored block
    }
    for (int i = 0; i < BSR_RPT; ++i) {
        const int r = threadIdx.y + i * BSR_TY;
        for (int j = 0; j < 2; ++j) {
            const int col = col0 + j * BSR_TX;
            if (r < BSR_BR && col < n) c[(long long)(block_row * BSR_BR + r) * n + col] = acc[i][j];
        }
    }
}
