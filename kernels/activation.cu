/*
 * activation.cu - bias add and sigmoid after the forward GEMM.
 *
 * The GEMM leaves Z = W A (width x n, column-major); this kernel adds the
 * bias and applies the activation in one pass, keeping z (needed by the
 * backward pass for sigma'(z)) and writing a.
 */
#include "elementwise.cuh"
#include "kernels.cuh"

/* One thread per element, grid-stride. Element i is (j, k) = (i % width,
 * i / width); 64-bit indices because width * n may exceed 2^31. */
__global__ void bp_bias_sigmoid_kernel(float *__restrict__ z, float *__restrict__ a,
                                       const float *__restrict__ b, size_t width, size_t total) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
    float zi = z[i] + b[i % width];
    z[i] = zi;
    a[i] = bp_sigmoid(zi);
  }
}

extern "C" cudaError_t bp_launch_bias_sigmoid(float *z, float *a, const float *b, int width, int n,
                                              cudaStream_t stream) {
  if (width < 0 || n < 0 || ((width > 0 && n > 0) && (!z || !a || !b)))
    return cudaErrorInvalidValue;
  size_t total = (size_t)width * (size_t)n;
  if (total == 0) return cudaSuccess;
  bp_bias_sigmoid_kernel<<<bp_grid_1d(total), BP_BLOCK, 0, stream>>>(z, a, b, (size_t)width, total);
  return cudaGetLastError();
}
