/*
 * errors.cu - the error (delta) of each layer, elementwise.
 *
 * Output layer: delta = dC0/dz = 2 (a - y) sigma'(z). Hidden layers: the GEMM
 * has produced g = W^T delta_next, and delta = g * sigma'(z). The formulas are
 * those of elementwise.cuh, shared with the CPU backend.
 */
#include "elementwise.cuh"
#include "kernels.cuh"

__global__ void bp_output_error_kernel(const float *__restrict__ a, const float *__restrict__ y,
                                       const float *__restrict__ z, float *__restrict__ delta,
                                       size_t count) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
    delta[i] = bp_output_error(a[i], y[i], z[i]);
}

/* No __restrict__ on g and delta: they may be the same buffer (in place).
 * Each element is read, then written, by the same thread only, so aliasing
 * is safe. */
__global__ void bp_hidden_error_kernel(const float *g, const float *__restrict__ z, float *delta,
                                       size_t count) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
    delta[i] = bp_hidden_error(g[i], z[i]);
}

extern "C" cudaError_t bp_launch_output_error(const float *a, const float *y, const float *z,
                                              float *delta, size_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  if (!a || !y || !z || !delta) return cudaErrorInvalidValue;
  bp_output_error_kernel<<<bp_grid_1d(count), BP_BLOCK, 0, stream>>>(a, y, z, delta, count);
  return cudaGetLastError();
}

extern "C" cudaError_t bp_launch_hidden_error(const float *g, const float *z, float *delta,
                                              size_t count, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  if (!g || !z || !delta) return cudaErrorInvalidValue;
  bp_hidden_error_kernel<<<bp_grid_1d(count), BP_BLOCK, 0, stream>>>(g, z, delta, count);
  return cudaGetLastError();
}
