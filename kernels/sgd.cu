/*
 * sgd.cu - the SGD update over the one parameter buffer.
 *
 * Parameters and gradients share one layout (internal.h), so the whole
 * network's update is a single pass. In bp_train_epoch the batch's cost lives
 * on the device; gating the update here on that value skips a non-finite
 * batch without copying the cost to the host per batch.
 */
#include "elementwise.cuh"
#include "kernels.cuh"

__global__ void bp_sgd_kernel(float *__restrict__ p, const float *__restrict__ g, size_t count,
                              float lr, const float *__restrict__ batch_cost) {
  /* Every thread reads the same scalar (a broadcast load); if the batch's cost
   * is NaN or Inf the whole update is skipped. The test is uniform across the
   * grid, so either every element is updated or none is. */
  if (batch_cost != nullptr && !isfinite(*batch_cost)) return;
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
    p[i] = bp_sgd_update(p[i], g[i], lr);
}

extern "C" cudaError_t bp_launch_sgd(float *params, const float *grads, size_t count, float lr,
                                     const float *batch_cost, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  if (!params || !grads) return cudaErrorInvalidValue;
  bp_sgd_kernel<<<bp_grid_1d(count), BP_BLOCK, 0, stream>>>(params, grads, count, lr, batch_cost);
  return cudaGetLastError();
}
