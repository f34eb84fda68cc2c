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

/* Flags an update that would leave a parameter non-finite (a learning rate
 * so large that lr * g or p - lr * g overflows). Only ever writes 1, so the
 * threads that find one agree on the value; the caller clears *bad first. */
__global__ void bp_sgd_check_kernel(const float *__restrict__ p, const float *__restrict__ g,
                                    size_t count, float lr, int *__restrict__ bad) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
    if (!isfinite(bp_sgd_update(p[i], g[i], lr))) *bad = 1;
}

__global__ void bp_sgd_kernel(float *__restrict__ p, const float *__restrict__ g, size_t count,
                              float lr, const float *__restrict__ batch_cost,
                              const int *__restrict__ bad, int *__restrict__ skipped) {
  /* Every thread reads the same scalars (broadcast loads); if the batch's
   * cost is NaN or Inf, or the check found an update that overflows, the
   * whole update is skipped. The test is uniform across the grid, so either
   * every element is updated or none is. A skip for a finite cost is counted
   * here (a non-finite cost was already counted by the cost kernel). */
  const bool cost_ok = batch_cost == nullptr || isfinite(*batch_cost);
  if (!cost_ok) return;
  if (bad != nullptr && *bad != 0) {
    if (skipped != nullptr && blockIdx.x == 0 && threadIdx.x == 0) *skipped += 1;
    return;
  }
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
    p[i] = bp_sgd_update(p[i], g[i], lr);
}

extern "C" cudaError_t bp_launch_sgd_check(const float *params, const float *grads, size_t count,
                                           float lr, int *bad, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  if (!params || !grads || !bad) return cudaErrorInvalidValue;
  bp_sgd_check_kernel<<<bp_grid_1d(count), BP_BLOCK, 0, stream>>>(params, grads, count, lr, bad);
  return cudaGetLastError();
}

extern "C" cudaError_t bp_launch_sgd(float *params, const float *grads, size_t count, float lr,
                                     const float *batch_cost, const int *bad, int *skipped,
                                     cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  if (!params || !grads) return cudaErrorInvalidValue;
  bp_sgd_kernel<<<bp_grid_1d(count), BP_BLOCK, 0, stream>>>(params, grads, count, lr, batch_cost,
                                                            bad, skipped);
  return cudaGetLastError();
}
