/*
 * optimizers.cu - the update of every optimizer but the seed's SGD (which
 * keeps sgd.cu), over the one parameter buffer and its state (slot s of
 * parameter i at state[s * count + i]). The same guarded rule as sgd.cu:
 * a check kernel flags any parameter or state value the update would make
 * non-finite, the update kernel applies all or nothing, and a one-thread
 * kernel advances the step count t only when the update was applied. t
 * lives on the device, so a skipped batch is decided without the host and
 * a captured CUDA graph replays the step with the right t.
 */
#include "elementwise.cuh"
#include "kernels.cuh"

__global__ void bp_opt_check_kernel(bp_opt_hyper h, float lr, const float *__restrict__ p,
                                    const float *__restrict__ g, const float *__restrict__ state,
                                    size_t count, int slots, const long long *__restrict__ step,
                                    int *__restrict__ bad) {
  const bp_opt_step st = bp_opt_step_of(&h, lr, *step);
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride) {
    float s0 = slots > 0 ? state[i] : 0.0f, s1 = slots > 1 ? state[count + i] : 0.0f;
    const float np = bp_opt_update(&h, &st, p[i], g[i], &s0, &s1);
    if (!bp_opt_finite(np, s0, s1)) *bad = 1;
  }
}

__global__ void bp_opt_update_kernel(bp_opt_hyper h, float lr, float *__restrict__ p,
                                     const float *__restrict__ g, float *__restrict__ state,
                                     size_t count, int slots, const long long *__restrict__ step,
                                     const float *__restrict__ batch_cost,
                                     const int *__restrict__ bad, int *__restrict__ skipped) {
  /* Uniform across the grid, as in bp_sgd_kernel. */
  const bool cost_ok = batch_cost == nullptr || isfinite(*batch_cost);
  if (!cost_ok) return;
  if (bad != nullptr && *bad != 0) {
    if (skipped != nullptr && blockIdx.x == 0 && threadIdx.x == 0) *skipped += 1;
    return;
  }
  const bp_opt_step st = bp_opt_step_of(&h, lr, *step);
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride) {
    float s0 = slots > 0 ? state[i] : 0.0f, s1 = slots > 1 ? state[count + i] : 0.0f;
    p[i] = bp_opt_update(&h, &st, p[i], g[i], &s0, &s1);
    if (slots > 0) state[i] = s0;
    if (slots > 1) state[count + i] = s1;
  }
}

__global__ void bp_opt_commit_kernel(long long *step, const float *batch_cost, const int *bad) {
  if (blockIdx.x == 0 && threadIdx.x == 0) {
    const bool cost_ok = batch_cost == nullptr || isfinite(*batch_cost);
    if (cost_ok && (bad == nullptr || *bad == 0)) *step += 1;
  }
}

extern "C" cudaError_t bp_launch_opt_check(bp_opt_hyper h, float lr, const float *params,
                                           const float *grads, const float *state, size_t count,
                                           int slots, const long long *step, int *bad,
                                           cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  if (!params || !grads || !step || !bad || (slots > 0 && !state)) return cudaErrorInvalidValue;
  bp_opt_check_kernel<<<bp_grid_1d(count), BP_BLOCK, 0, stream>>>(h, lr, params, grads, state,
                                                                  count, slots, step, bad);
  return cudaGetLastError();
}

extern "C" cudaError_t bp_launch_opt_update(bp_opt_hyper h, float lr, float *params,
                                            const float *grads, float *state, size_t count,
                                            int slots, long long *step, const float *batch_cost,
                                            const int *bad, int *skipped, cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  if (!params || !grads || !step || (slots > 0 && !state)) return cudaErrorInvalidValue;
  bp_opt_update_kernel<<<bp_grid_1d(count), BP_BLOCK, 0, stream>>>(
      h, lr, params, grads, state, count, slots, step, batch_cost, bad, skipped);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  bp_opt_commit_kernel<<<1, 1, 0, stream>>>(step, batch_cost, bad);
  return cudaGetLastError();
}
