// sparse24_spmm.cu — C[m×n] = A[m×k] · B[k×n] with A in the 2:4 compressed format, on CUDA cores.
//
// Format (PTX ISA sparse matrix storage; sparsitylab.deploy.formats.Sparse24): every row of A is cut into groups of 4
// along k, each keeps 2 values. values[m, k/2] hold the kept values in order; metadata[m, k/16]
// are 16-bit words, each packing the 4-bit nibbles of 4 consecutive groups (first group in the
// lowest nibble). A nibble is idx0 | idx1 << 2: the positions (0…3) of the two kept values inside
// their group. This is the layout NVIDIA's sparse tensor cores read (before CUTLASS's extra
// reordering); here plain CUDA cores read it, so only the kept products are computed: k/2
// multiply-adds per output instead of k. (A tensor-core mma.sp variant is a later goal.)
//
// Launch (see sparsitylab/deploy/matmul.py, _sparse24_plan):
//   block = (32, 4): 32 consecutive output columns (coalesced loads of B) × 4 rows
//   grid  = (ceil(m / 4), ceil(n / 32))
// Thread (x, y) computes C[row, col] with row = blockIdx.x·4 + y and col = blockIdx.y·32 + x.
// For each metadata word it decodes four groups and gathers the two rows of B each group
// selects. No shared memory and no __syncthreads, so out-of-range threads just return.

extern "C" __global__ void sparse24_spmm(const float* __restrict__ values, const short* __restrict__ metadata,
                                         const float* __restrict__ b, float* __restrict__ c,
                                         int m, int k, int n)
{
    const int row = blockIdx.x * blockDim.y + threadIdx.y;
    const int col = blockIdx.y * blockDim.x + threadIdx.x;
    if (row >= m || col >= n) return;
    const float* v = values + (long long)row * (k / 2);
    const short* meta = metadata + (long long)row * (k / 16);
    float acc = 0.f;
    for (int w = 0; w < k / 16; ++w) {
        const unsigned word = (unsigned short)meta[w];
        for (int j = 0; j < 4; ++j) {
            const unsigned nibble = (word >> (4 * j)) & 0xFu;
            const int group = 4 * w + j;
            const int k0 = 4 * group;
            acc += v[2 * group] * b[(long long)(k0 + (nibble & 3u)) * n + col];
            acc += v[2 * group + 1] * b[(long long)(k0 + (nibble >> 2)) * n + col];
        }
    }
    c[(long long)row * n + col] = acc;
}
