/*
 * model.cu - the reference kernels of the model beyond the seed: the
 * activations other than the sigmoid (tanh, ReLU, identity, softmax), the
 * output error and cost of every (activation, cost) pair, and the hidden
 * error from the stored activation. Each element is a formula of
 * elementwise.cuh, the CPU backend's very text. The seed's network (sigmoid,
 * quadratic) keeps its own kernels (activation.cu, errors.cu, fused.cu).
 */
#include "elementwise.cuh"
#include "kernels.cuh"

/* Elementwise activations: one thread per element, grid-stride. */
__global__ void bp_bias_activation_kernel(int act, float *__restrict__ z, float *__restrict__ a,
                                          const float *__restrict__ b, size_t width,
                                          size_t total) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
    float zi = z[i] + b[i % width];
    z[i] = zi;
    a[i] = bp_activate(act, zi);
  }
}

/* Softmax: one thread per example (column): bias, then the stable softmax
 * of the column. The output layer of a classifier is narrow (tens of
 * classes), so a thread per column is enough for the reference path. */
__global__ void bp_bias_softmax_kernel(float *__restrict__ z, float *__restrict__ a,
                                       const float *__restrict__ b, int width, int n) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x; k < (size_t)n; k += stride) {
    float *zk = z + k * (size_t)width;
    for (int j = 0; j < width; ++j) zk[j] += b[j];
    bp_softmax_column(zk, a + k * (size_t)width, width);
  }
}

extern "C" cudaError_t bp_launch_bias_activation(int act, float *z, float *a, const float *b,
                                                 int width, int n, cudaStream_t stream) {
  if (width < 0 || n < 0 || ((width > 0 && n > 0) && (!z || !a || !b)))
    return cudaErrorInvalidValue;
  size_t total = (size_t)width * (size_t)n;
  if (total == 0) return cudaSuccess;
  if (act == BP_EW_SOFTMAX)
    bp_bias_softmax_kernel<<<bp_grid_1d((size_t)n), BP_BLOCK, 0, stream>>>(z, a, b, width, n);
  else
    bp_bias_activation_kernel<<<bp_grid_1d(total), BP_BLOCK, 0, stream>>>(act, z, a, b,
                                                                          (size_t)width, total);
  return cudaGetLastError();
}

/* One thread per example: the column's error and its cost. */
__global__ void bp_output_error_model_kernel(int act, int cost, const float *__restrict__ z,
                                             const float *__restrict__ a,
                                             const float *__restrict__ y,
                                             float *__restrict__ delta, int width, int n,
                                             double *__restrict__ col_cost) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t k = (size_t)blockIdx.x * blockDim.x + threadIdx.x; k < (size_t)n; k += stride) {
    const size_t o = k * (size_t)width;
    col_cost[k] = bp_output_column(act, cost, z + o, a + o, y + o, delta + o, width);
  }
}

extern "C" cudaError_t bp_launch_output_error_model(int act, int cost, const float *z,
                                                    const float *a, const float *y, float *delta,
                                                    int width, int n, double *col_cost,
                                                    cudaStream_t stream) {
  if (width < 1 || n < 1 || !z || !a || !y || !delta || !col_cost) return cudaErrorInvalidValue;
  bp_output_error_model_kernel<<<bp_grid_1d((size_t)n), BP_BLOCK, 0, stream>>>(
      act, cost, z, a, y, delta, width, n, col_cost);
  return cudaGetLastError();
}

/* No __restrict__ on g and delta: they may be the same buffer (in place). */
__global__ void bp_hidden_error_act_kernel(int act, const float *g, const float *__restrict__ z,
                                           const float *__restrict__ a, float *delta,
                                           size_t count) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride)
    delta[i] = bp_hidden_error_act(act, g[i], z[i], a[i]);
}

extern "C" cudaError_t bp_launch_hidden_error_act(int act, const float *g, const float *z,
                                                  const float *a, float *delta, size_t count,
                                                  cudaStream_t stream) {
  if (count == 0) return cudaSuccess;
  if (!g || !z || !a || !delta) return cudaErrorInvalidValue;
  bp_hidden_error_act_kernel<<<bp_grid_1d(count), BP_BLOCK, 0, stream>>>(act, g, z, a, delta,
                                                                         count);
  return cudaGetLastError();
}
