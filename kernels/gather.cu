/*
 * gather.cu - assemble a shuffled mini-batch on the device.
 *
 * The data set is stored as column-major n_in x n_total (the row-major host
 * array as it is), so an example is one contiguous column and a batch is bn
 * columns picked by the permutation. Copying them into the network's input
 * and target buffers keeps bp_train_epoch free of host round trips.
 */
#include "kernels.cuh"

/* dst (width x count) column k = src column idx[k]. One thread per element of
 * dst, grid-stride; consecutive threads copy consecutive rows of one column,
 * so both the reads and the writes are coalesced. */
__global__ void bp_gather_columns_kernel(const float *__restrict__ src, size_t width,
                                         const int32_t *__restrict__ idx, size_t total,
                                         float *__restrict__ dst) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < total; i += stride) {
    size_t k = i / width;
    size_t j = i - k * width;
    dst[i] = src[(size_t)idx[k] * width + j];
  }
}

extern "C" cudaError_t bp_launch_gather(const float *X, const float *Y, int n_in, int n_out,
                                        const int32_t *perm, int start, int bn, float *x, float *y,
                                        cudaStream_t stream) {
  if (n_in < 0 || n_out < 0 || start < 0 || bn < 0) return cudaErrorInvalidValue;
  if (bn == 0) return cudaSuccess;
  if (!perm || (n_in > 0 && (!X || !x)) || (n_out > 0 && (!Y || !y))) return cudaErrorInvalidValue;
  const int32_t *idx = perm + start;
  size_t total_x = (size_t)n_in * (size_t)bn;
  if (total_x > 0) {
    bp_gather_columns_kernel<<<bp_grid_1d(total_x), BP_BLOCK, 0, stream>>>(X, (size_t)n_in, idx,
                                                                           total_x, x);
    cudaError_t err = cudaGetLastError();
    if (err != cudaSuccess) return err;
  }
  size_t total_y = (size_t)n_out * (size_t)bn;
  if (total_y > 0) {
    bp_gather_columns_kernel<<<bp_grid_1d(total_y), BP_BLOCK, 0, stream>>>(Y, (size_t)n_out, idx,
                                                                           total_y, y);
    return cudaGetLastError();
  }
  return cudaSuccess;
}
