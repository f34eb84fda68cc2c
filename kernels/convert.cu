/*
 * convert.cu - float32 to bfloat16 for the BF16 products (bp_math_mode).
 *
 * The products of a BF16 network read bfloat16 copies of their two operands
 * (src/cuda/cuda_gemm.cu converts them into scratch before each product);
 * the master weights, activations and errors stay float32.
 *
 * Rounding is nearest-even, by the bit rule of elementwise.cuh
 * (bp_bf16_bits), so the CPU emulation of the mode and this kernel round
 * every value the same way; tests/test_math_modes.cc checks the two against
 * each other. A memory-bound copy (6 bytes per element moved): four
 * elements per thread and iteration (one 16-byte load, one 8-byte store)
 * where the pointers allow, one otherwise; grid-stride.
 */
#include <stdint.h>

#include "elementwise.cuh"
#include "kernels.cuh"

/* One element per thread and iteration: any alignment. */
__global__ void bp_float_to_bf16_kernel(const float *__restrict__ src, uint16_t *__restrict__ dst,
                                        size_t count) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
    dst[i] = bp_bf16_bits(src[i]);
}

/* Four elements per thread and iteration: src 16-byte and dst 8-byte
 * aligned; quads = count / 4 (the caller converts the tail). */
__global__ void bp_float4_to_bf16_kernel(const float4 *__restrict__ src, uint2 *__restrict__ dst,
                                         size_t quads) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < quads; i += stride) {
    float4 v = src[i];
    uint2 out;
    out.x = (uint32_t)bp_bf16_bits(v.x) | ((uint32_t)bp_bf16_bits(v.y) << 16);
    out.y = (uint32_t)bp_bf16_bits(v.z) | ((uint32_t)bp_bf16_bits(v.w) << 16);
    dst[i] = out;
  }
}

extern "C" cudaError_t bp_launch_float_to_bf16(const float *src, uint16_t *dst, size_t count,
                                               cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  if (!src || !dst) return cudaErrorInvalidValue;
  size_t done = 0;
  if ((uintptr_t)src % 16 == 0 && (uintptr_t)dst % 8 == 0 && count >= 4) {
    size_t quads = count / 4;
    bp_float4_to_bf16_kernel<<<bp_grid_1d(quads), BP_BLOCK, 0, stream>>>(
        (const float4 *)src, (uint2 *)dst, quads);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
    done = quads * 4;
  }
  if (done < count) {
    size_t rest = count - done;
    bp_float_to_bf16_kernel<<<bp_grid_1d(rest), BP_BLOCK, 0, stream>>>(src + done, dst + done,
                                                                       rest);
  }
  return cudaGetLastError();
}
