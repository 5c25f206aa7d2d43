// compact_gemm.cu — GEMM on a compacted (structurally pruned) matrix (Wen et al., NIPS 2016, Table 4).
//
// Filter/channel/shape pruning removes whole rows and columns of the weight matrix A[m×k].
// What is left is a small dense matrix a[mc×kc] = A[rows][:, cols]. Then
//     C[rows[i], :] = Σ_j a[i, j] · B[cols[j], :]      and every other row of C is zero.
// Two ways to run it:
//   gather_rows  + a dense GEMM (cuBLAS via CuPy): copy the kc surviving rows of B into a
//                  contiguous buffer first (one extra pass over kc·n floats);
//   gather_gemm  : one tiled GEMM kernel that reads B's rows through `cols` while loading its
//                  shared-memory tiles and writes C's rows through `rows` — the gather is
//                  fused into the GEMM, so the compacted B never exists in memory.

// dst[i, :] = src[idx[i], :].  block = (256), grid = (rows, ceil(n / 256)).
extern "C" __global__ void gather_rows(const float* __restrict__ src, const int* __restrict__ idx,
                                       float* __restrict__ dst, int rows, int n)
{
    const int i = blockIdx.x;
    const int col = blockIdx.y * blockDim.x + threadIdx.x;
    if (i >= rows || col >= n) return;
    dst[(long long)i * n + col] = src[(long long)idx[i] * n + col];
}

// C[rows[i], :] = a[i, :] · B[cols, :], tiled 64×64 with k-steps of 16.
//   block = (16, 16): thread (x, y) owns the 4×4 outputs (y + 16·i, x + 16·j) of the tile, so a
//           warp reads consecutive columns of b_tile (no bank conflicts) and one broadcast a value.
//   grid  = (ceil(mc / 64), ceil(n / 64)).  C must be zero-initialised (rows not in `rows`).
// Every thread runs the same k loop, so the __syncthreads calls are uniform; out-of-range
// elements are loaded as zeros and not stored.
#define GG_BM 64
#define GG_BN 64
#define GG_BK 16
#define GG_THREADS 256

extern "C" __global__ void gather_gemm(const float* __restrict__ a, const int* __restrict__ rows,
                                       const int* __restrict__ cols, const float* __restrict__ b,
                                       float* __restrict__ c, int mc, int kc, int n)
{
    __shared__ float a_tile[GG_BK][GG_BM];  // transposed: a_tile[kk][r] = a[m0 + r, k0 + kk]
    __shared__ float b_tile[GG_BK][GG_BN];  // b_tile[kk][x] = B[cols[k0 + kk], n0 + x]
    const int tid = threadIdx.y * 16 + threadIdx.x;
    const int m0 = blockIdx.x * GG_BM;
    const int n0 = blockIdx.y * GG_BN;
    float acc[4][4];
    for (int i = 0; i < 4; ++i)
        for (int j = 0; j < 4; ++j) acc[i][j] = 0.f;

    for (int k0 = 0; k0 < kc; k0 += GG_BK) {
        for (int e = tid; e < GG_BM * GG_BK; e += GG_THREADS) {
            const int r = e / GG_BK, kk = e % GG_BK;  // consecutive threads walk along a row of a
            a_tile[kk][r] = (m0 + r < mc && k0 + kk < kc) ? a[(long long)(m0 + r) * kc + k0 + kk] : 0.f;
        }
        for (int e = tid; e < GG_BK * GG_BN; e += GG_THREADS) {
            const int kk = e / GG_BN, x = e % GG_BN;  // consecutive threads walk along a row of B
            b_tile[kk][x] = (k0 + kk < kc && n0 + x < n) ? b[(long long)cols[k0 + kk] * n + n0 + x] : 0.f;
        }
        __syncthreads();
#pragma unroll
        for (int kk = 0; kk < GG_BK; ++kk) {
            float av[4], bv[4];
            for (int i = 0; i < 4; ++i) av[i] = a_tile[kk][threadIdx.y + 16 * i];
            for (int j = 0; j < 4; ++j) bv[j] = b_tile[kk][threadIdx.x + 16 * j];
            for (int i = 0; i < 4; ++i)
                for (int j = 0; j < 4; ++j) acc[i][j] += av[i] * bv[j];
        }
        __syncthreads();
    }
    for (int i = 0; i < 4; ++i) {
        const int r = m0 + threadIdx.y + 16 * i;
        if (r >= mc) continue;
        for (int j = 0; j < 4; ++j) {
            const int x = n0 + threadIdx.x + 16 * j;
            if (x < n) c[(long long)rows[r] * n + x] = acc[i][j];
        }
    }
}
