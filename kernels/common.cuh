// common.cuh — small helpers shared by the SparsityLab kernels.
//
// The Python loader (sparsitylab.deploy.matmul.load_source) pastes this file in place of its
// #include line, because CuPy's compile cache ignores headers pulled in through -I
// (CuPy's documentation on its kernel cache). Keep it free of host-only code: it is compiled by NVRTC,
// nvcc and, for the tests, by g++ through kernels/cuda_shim.h.
//
// Conventions of every kernel in this folder: fp32 values, int32 indices, row-major dense
// operands, and 64-bit offsets written as (long long): a builtin type, so the sources need no
// standard header (NVRTC has none, and size_t is not guaranteed without one).
#ifndef SPARSITYLAB_COMMON_CUH
#define SPARSITYLAB_COMMON_CUH

// acc[0..VEC) += v * row[0..VEC) with one vector load when VEC is 4 or 2.
// The caller guarantees that `row` is VEC-aligned (n % VEC == 0 and an aligned base pointer).
template <int VEC>
__device__ __forceinline__ void sl_axpy_vec(float* acc, float v, const float* row)
{
    if (VEC == 4) {
        const float4 x = *reinterpret_cast<const float4*>(row);
        acc[0] += v * x.x; acc[1] += v * x.y; acc[2] += v * x.z; acc[3] += v * x.w;
    } else if (VEC == 2) {
        const float2 x = *reinterpret_cast<const float2*>(row);
        acc[0] += v * x.x; acc[1] += v * x.y;
    } else {
        acc[0] += v * row[0];
    }
}

// row[0..VEC) = acc[0..VEC), vectorised like sl_axpy_vec.
template <int VEC>
__device__ __forceinline__ void sl_store_vec(float* row, const float* acc)
{
    if (VEC == 4) {
        *reinterpret_cast<float4*>(row) = make_float4(acc[0], acc[1], acc[2], acc[3]);
    } else if (VEC == 2) {
        *reinterpret_cast<float2*>(row) = make_float2(acc[0], acc[1]);
    } else {
        row[0] = acc[0];
    }
}

#endif  // SPARSITYLAB_COMMON_CUH
