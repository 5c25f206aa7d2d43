// cuda_shim.h — run CUDA C kernels on the CPU, for tests on machines without a GPU.
//
// The harness (sparsitylab/deploy/emulation.py) compiles the *same* kernel source CuPy compiles, with
//     g++ -std=c++20 -include cuda_shim.h  <kernel source>  <generated launch wrappers>
// and launches it with the grid and block the Python dispatcher chose. The model:
//   * a launch runs the blocks of the grid one after another (x fastest, then y, then z);
//   * the threads of a block are real OS threads, created once per launch and reused for
//     every block, so shared-memory races and missing barriers show up as wrong results;
//   * __syncthreads()  = std::barrier::arrive_and_wait() over the block's threads, and every
//     thread also waits at the barrier when it finishes a block (so the next block cannot
//     overwrite shared memory early);
//   * __shared__       = static: one copy for the launch, which is correct because only one
//     block runs at a time (and launches do not overlap);
//   * threadIdx, blockIdx are thread_local; blockDim, gridDim are plain globals;
//   * atomicAdd uses std::atomic_ref (C++20), so concurrent updates from a block's threads are exact.
// What it does not model: warps (no __shfl*, no __syncwarp, no warp-synchronous tricks),
// memory-model subtleties beyond the barrier, and timing. Kernels must not call __syncthreads
// from divergent code (undefined on a GPU too; here it deadlocks or mis-pairs barriers).
#ifndef SPARSITYLAB_CUDA_SHIM_H
#define SPARSITYLAB_CUDA_SHIM_H

#include <algorithm>
#include <atomic>
#include <barrier>
#include <cmath>
#include <cstddef>
#include <thread>
#include <vector>

#define __global__
#define __device__
#define __host__
#define __forceinline__ inline
#define __shared__ static
#define __launch_bounds__(...)

struct dim3 {
    unsigned x = 1, y = 1, z = 1;
};
using uint3 = dim3;

struct alignas(16) float4 { float x, y, z, w; };
struct alignas(8) float2 { float x, y; };
inline float4 make_float4(float x, float y, float z, float w) { return {x, y, z, w}; }
inline float2 make_float2(float x, float y) { return {x, y}; }

inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline dim3 blockDim;
inline dim3 gridDim;

using std::max;
using std::min;

namespace sl_emu {
inline std::barrier<>* block_barrier = nullptr;
}

inline void __syncthreads() { sl_emu::block_barrier->arrive_and_wait(); }

template <class T>
inline T atomicAdd(T* address, T value) { return std::atomic_ref<T>(*address).fetch_add(value); }

namespace sl_emu {

// Run `body` (a kernel call with its arguments bound) over `grid` × `block`.
template <class Body>
void launch(dim3 grid, dim3 block, Body body)
{
    const unsigned threads = block.x * block.y * block.z;
    std::barrier<> barrier(threads);
    block_barrier = &barrier;
    blockDim = block;
    gridDim = grid;
    auto worker = [&](unsigned t) {
        threadIdx = {t % block.x, (t / block.x) % block.y, t / (block.x * block.y)};
        for (unsigned z = 0; z < grid.z; ++z)
            for (unsigned y = 0; y < grid.y; ++y)
                for (unsigned x = 0; x < grid.x; ++x) {
                    blockIdx = {x, y, z};
                    body();
                    barrier.arrive_and_wait();  // end of block: shared memory may be reused
                }
    };
    std::vector<std::thread> pool;
    pool.reserve(threads);
    for (unsigned t = 0; t < threads; ++t) pool.emplace_back(worker, t);
    for (auto& thread : pool) thread.join();
    block_barrier = nullptr;
}

}  // namespace sl_emu

#endif  // SPARSITYLAB_CUDA_SHIM_H
