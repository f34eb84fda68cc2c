/*
 * cuda_emu.h - runs the library's CUDA kernels on the CPU, for the tests.
 *
 * The kernel sources (kernels/NAME.cu) are compiled as plain C++ after one
 * rewrite (translate.cmake turns `kernel<<<grid, block, shmem, stream>>>(args)`
 * into BP_EMU_LAUNCH). This header, included first, supplies what the
 * kernels use of CUDA: the thread and block indices, __syncthreads (a real
 * barrier), __syncthreads_count, atomics, fences, __ldcg, __fadd_rn and
 * __shared__. A launch runs synchronously on the calling host thread: the
 * threads of a block are fibers that run until __syncthreads or their end,
 * the blocks one after another (so a `static` variable is a block's shared
 * memory, and the last block to take a ticket has seen every other block
 * finish, as on a GPU).
 *
 * What it checks: the kernels' index arithmetic, bounds, tilings, shared
 * memory use, barriers (a barrier not reached by every thread of the block
 * aborts with a message instead of hanging), reductions and their order,
 * the last-block tickets, the float4 paths. What it cannot check: timing,
 * the GPU's memory model beyond sequential blocks, the device's expf (the
 * host's is used: results agree with the GPU's to an ulp or two, and
 * bit-identity claims between two kernels hold here as there, since both
 * use the same sigmoid).
 */
#ifndef BP_CUDA_EMU_H
#define BP_CUDA_EMU_H

#include <cuda_runtime.h> /* the types only: dim3, uint3, float4, cudaError_t, ... */

#include <atomic>
#include <cmath>
#include <cstddef>
#include <cstdint>
#include <functional>

#undef __global__
#define __global__
#undef __device__
#define __device__
#undef __host__
#define __host__
#undef __forceinline__
#define __forceinline__ inline
/* One block runs at a time: a function-local static is the block's shared
 * memory. */
#undef __shared__
#define __shared__ static

/* The built-in variables; the scheduler sets them before it runs a thread. */
inline thread_local uint3 threadIdx;
inline thread_local uint3 blockIdx;
inline thread_local dim3 blockDim;
inline thread_local dim3 gridDim;

namespace bp_emu {

struct config {
  dim3 grid, block;
  cudaStream_t stream;
};
inline config make_config(dim3 grid, dim3 block, size_t shmem = 0, cudaStream_t stream = nullptr) {
  (void)shmem;
  return config{grid, block, stream};
}

/* Runs body as every thread of every block of c and returns when all are
 * done; or, when c.stream is being captured into a graph (cudart_emu.cc),
 * records the launch for the graph's replays. */
void launch(const config &c, const std::function<void()> &body);
/* Runs (or, in capture, records) one host operation of a stream. */
void stream_op(cudaStream_t stream, const std::function<void()> &op);

/* The calling emulated thread's block barrier; count: the barrier's sum of
 * pred over the block (for __syncthreads_count). */
void sync_block();
int sync_block_count(int pred);

}  // namespace bp_emu

/* The arguments are copied into the closure, as a launch copies them: a
 * captured launch replays later, after the caller's locals are gone. */
#define BP_EMU_LAUNCH(cfg, kernel, ...) \
  ::bp_emu::launch(::bp_emu::make_config cfg, [=]() { kernel(__VA_ARGS__); })

inline void __syncthreads() { ::bp_emu::sync_block(); }
inline int __syncthreads_count(int pred) { return ::bp_emu::sync_block_count(pred); }
inline void __threadfence() { std::atomic_thread_fence(std::memory_order_seq_cst); }

inline unsigned atomicAdd(unsigned *p, unsigned v) {
  return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}
inline int atomicAdd(int *p, int v) { return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST); }
inline unsigned long long atomicAdd(unsigned long long *p, unsigned long long v) {
  return __atomic_fetch_add(p, v, __ATOMIC_SEQ_CST);
}

template <class T>
inline T __ldcg(const T *p) {
  T v;
  __atomic_load(p, &v, __ATOMIC_SEQ_CST);
  return v;
}
/* The host compiles without contraction to FMA on its baseline ISA; the
 * intrinsic's point (no FMA) holds. */
inline float __fadd_rn(float a, float b) { return a + b; }

using std::isfinite;

#endif /* BP_CUDA_EMU_H */
