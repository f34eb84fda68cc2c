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

/* ---- The graph-friendly gather --------------------------------------------
 * For a captured training step the batch's offset cannot be a launch
 * argument (a graph replays its arguments as captured), so it lives on the
 * device: bp_launch_gather_at reads it, and bp_launch_advance moves it on at
 * the end of the step. One launch gathers both X (blockIdx.z == 0) and Y
 * (blockIdx.z == 1); a 2-D block (32 rows x 8 columns) needs no division. */
#define GATHER_BX 32
#define GATHER_BY 8

__global__ void bp_gather_at_kernel(const float *__restrict__ X, const float *__restrict__ Y,
                                    int n_in, int n_out, const int32_t *__restrict__ perm,
                                    const int *__restrict__ start, int bn, float *__restrict__ x,
                                    float *__restrict__ y) {
  const bool targets = blockIdx.z == 1;
  const float *src = targets ? Y : X;
  float *dst = targets ? y : x;
  const size_t width = (size_t)(targets ? n_out : n_in);
  const size_t j = (size_t)blockIdx.x * GATHER_BX + threadIdx.x;
  if (j >= width) return;
  const int32_t *idx = perm + *start;
  for (size_t k = (size_t)blockIdx.y * GATHER_BY + threadIdx.y; k < (size_t)bn;
       k += (size_t)gridDim.y * GATHER_BY)
    dst[j + k * width] = src[(size_t)idx[k] * width + j];
}

extern "C" cudaError_t bp_launch_gather_at(const float *X, const float *Y, int n_in, int n_out,
                                           const int32_t *perm, const int *start, int bn,
                                           float *x, float *y, cudaStream_t stream) {
  if (n_in < 1 || n_out < 1 || bn < 0) return cudaErrorInvalidValue;
  if (bn == 0) return cudaSuccess;
  if (!X || !Y || !perm || !start || !x || !y) return cudaErrorInvalidValue;
  const int widest = n_in > n_out ? n_in : n_out;
  const unsigned gx = (unsigned)(((size_t)widest + GATHER_BX - 1) / GATHER_BX);
  size_t gy = ((size_t)bn + GATHER_BY - 1) / GATHER_BY;
  const size_t cap = (size_t)BP_MAX_BLOCKS / gx + 1;
  if (gy > cap) gy = cap;
  if (gy > 65535) gy = 65535;
  dim3 grid(gx, (unsigned)gy, 2), block(GATHER_BX, GATHER_BY);
  bp_gather_at_kernel<<<grid, block, 0, stream>>>(X, Y, n_in, n_out, perm, start, bn, x, y);
  return cudaGetLastError();
}

__global__ void bp_advance_kernel(int *counter, int by) { *counter += by; }

extern "C" cudaError_t bp_launch_advance(int *counter, int by, cudaStream_t stream) {
  if (!counter) return cudaErrorInvalidValue;
  bp_advance_kernel<<<1, 1, 0, stream>>>(counter, by);
  return cudaGetLastError();
}
