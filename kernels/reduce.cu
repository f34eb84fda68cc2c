/*
 * reduce.cu - the reductions: bias gradient, batch cost, accuracy count.
 *
 * Determinism: every floating-point reduction runs in two stages with a grid
 * that depends only on the problem size (never on the device or on timing),
 * adds in a fixed order, and uses no floating-point atomics, so the same
 * inputs give bit-identical results on every run. The accuracy count uses an
 * integer atomic, which is exact whatever the order.
 */
#include "elementwise.cuh"
#include "kernels.cuh"
#include "reduce_layout.cuh"

/* ---- Bias gradient ------------------------------------------------------
 * The tiling is in reduce_layout.cuh (shared with fused.cu). */
extern "C" size_t bp_bias_grad_partials_count(int width, int n) {
  if (width < 1 || n < 1) return 0;
  /* An upper bound on the chunks actually used that never decreases as n
   * grows (the exact count dips where the chunk width steps up). */
  size_t chunks = ((size_t)n + BIAS_CHUNK - 1) / BIAS_CHUNK;
  if (chunks > BIAS_MAX_CHUNKS) chunks = BIAS_MAX_CHUNKS;
  return chunks * (size_t)width;
}

/* Stage 1: partials[c * width + j] = sum of delta(j, k) over the columns k of
 * chunk c. Each thread adds its strided share of the chunk in order; then
 * thread row 0 adds the BIAS_BY shares in order. */
__global__ void bp_bias_grad_partial_kernel(const float *__restrict__ delta, int width, int n,
                                            size_t chunk_cols, float *__restrict__ partials) {
  __shared__ float share[BIAS_BY][BIAS_BX];
  int j = blockIdx.x * BIAS_BX + threadIdx.x;
  size_t k0 = (size_t)blockIdx.y * chunk_cols;
  size_t k1 = k0 + chunk_cols < (size_t)n ? k0 + chunk_cols : (size_t)n;
  float s = 0.0f;
  if (j < width)
    for (size_t k = k0 + threadIdx.y; k < k1; k += BIAS_BY)
      s += delta[(size_t)j + k * (size_t)width];
  share[threadIdx.y][threadIdx.x] = s;
  __syncthreads();
  if (threadIdx.y == 0 && j < width) {
    float t = share[0][threadIdx.x];
    for (int r = 1; r < BIAS_BY; ++r) t += share[r][threadIdx.x];
    partials[(size_t)blockIdx.y * (size_t)width + (size_t)j] = t;
  }
}

/* Stage 2: one thread per row adds its chunks' partials in chunk order, in
 * double (there can be tens of thousands), and divides by n once. */
__global__ void bp_bias_grad_final_kernel(const float *__restrict__ partials, int width,
                                          unsigned chunks, int n, float *__restrict__ db) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t j = (size_t)blockIdx.x * blockDim.x + threadIdx.x; j < (size_t)width; j += stride) {
    double s = 0.0;
    for (unsigned c = 0; c < chunks; ++c) s += (double)partials[(size_t)c * (size_t)width + j];
    db[j] = (float)(s / (double)n);
  }
}

extern "C" cudaError_t bp_launch_bias_grad(const float *delta, int width, int n, float *partials,
                                           float *db, cudaStream_t stream) {
  if (width < 1 || n < 1 || !delta || !partials || !db) return cudaErrorInvalidValue;
  size_t chunk_cols = bias_chunk_cols(n);
  unsigned chunks = (unsigned)(((size_t)n + chunk_cols - 1) / chunk_cols);
  dim3 block(BIAS_BX, BIAS_BY);
  dim3 grid((unsigned)(((size_t)width + BIAS_BX - 1) / BIAS_BX), chunks);
  bp_bias_grad_partial_kernel<<<grid, block, 0, stream>>>(delta, width, n, chunk_cols, partials);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  bp_bias_grad_final_kernel<<<bp_grid_1d((size_t)width), BP_BLOCK, 0, stream>>>(partials, width,
                                                                                chunks, n, db);
  return cudaGetLastError();
}

/* ---- Cost ---------------------------------------------------------------
 * The batch cost is the sum of bp_cost_term over the whole width x n block,
 * divided by n: the layout does not matter, so it is a flat reduction over
 * width * n elements. */
#define COST_MAX_BLOCKS 1024

static unsigned cost_blocks(size_t total) {
  size_t blocks = (total + BP_BLOCK - 1) / BP_BLOCK;
  return (unsigned)(blocks < COST_MAX_BLOCKS ? blocks : COST_MAX_BLOCKS);
}

extern "C" size_t bp_cost_partials_count(int width, int n) {
  if (width < 1 || n < 1) return 0;
  return cost_blocks((size_t)width * (size_t)n);
}

/* In-block tree sum of sh[0..BP_BLOCK) into sh[0], always the same pairs. */
static __device__ void block_sum_double(double *sh) {
  for (int half = BP_BLOCK / 2; half > 0; half >>= 1) {
    __syncthreads();
    if ((int)threadIdx.x < half) sh[threadIdx.x] += sh[threadIdx.x + half];
  }
  __syncthreads();
}

/* Stage 1: partials[block] = sum of the block's grid-stride share, in double
 * (the terms are float; their sum over a large batch needs the headroom). */
__global__ void bp_cost_partial_kernel(const float *__restrict__ a, const float *__restrict__ y,
                                       size_t total, double *__restrict__ partials) {
  __shared__ double sh[BP_BLOCK];
  double s = 0.0;
  size_t stride = (size_t)gridDim.x * BP_BLOCK;
  for (size_t i = (size_t)blockIdx.x * BP_BLOCK + threadIdx.x; i < total; i += stride)
    s += (double)bp_cost_term(a[i], y[i]);
  sh[threadIdx.x] = s;
  block_sum_double(sh);
  if (threadIdx.x == 0) partials[blockIdx.x] = sh[0];
}

/* Stage 2, one block: total of the partials, the mean as float, and the
 * optional accumulation (see kernels.cuh). Single thread writes the scalars,
 * so there are no races between them. */
__global__ void bp_cost_final_kernel(const double *__restrict__ partials, unsigned count, int n,
                                     float *cost, double *cost_acc, int *skipped) {
  __shared__ double sh[BP_BLOCK];
  double s = 0.0;
  for (unsigned i = threadIdx.x; i < count; i += BP_BLOCK) s += partials[i];
  sh[threadIdx.x] = s;
  block_sum_double(sh);
  if (threadIdx.x == 0) {
    double total = sh[0];
    float c = (float)(total / (double)n);
    *cost = c;
    /* Finiteness is judged on the float mean: the very value the SGD kernel
     * tests, so a batch is either counted and applied, or skipped, never half.
     * The accumulator takes the double total (= mean * n before rounding). */
    if (skipped != nullptr && !isfinite(c)) {
      *skipped += 1;
    } else if (cost_acc != nullptr) {
      *cost_acc += total;
    }
  }
}

extern "C" cudaError_t bp_launch_cost(const float *a, const float *y, int width, int n,
                                      double *partials, float *cost, double *cost_acc, int *skipped,
                                      cudaStream_t stream) {
  if (width < 1 || n < 1 || !a || !y || !partials || !cost) return cudaErrorInvalidValue;
  size_t total = (size_t)width * (size_t)n;
  unsigned blocks = cost_blocks(total);
  bp_cost_partial_kernel<<<blocks, BP_BLOCK, 0, stream>>>(a, y, total, partials);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  bp_cost_final_kernel<<<1, BP_BLOCK, 0, stream>>>(partials, blocks, n, cost, cost_acc, skipped);
  return cudaGetLastError();
}

/* The batch cost from per-example costs (the model kernels' col_cost): the
 * same two stages over n doubles, the same final kernel and rules. */
__global__ void bp_cost_sum_partial_kernel(const double *__restrict__ terms, size_t total,
                                           double *__restrict__ partials) {
  __shared__ double sh[BP_BLOCK];
  double s = 0.0;
  size_t stride = (size_t)gridDim.x * BP_BLOCK;
  for (size_t i = (size_t)blockIdx.x * BP_BLOCK + threadIdx.x; i < total; i += stride)
    s += terms[i];
  sh[threadIdx.x] = s;
  block_sum_double(sh);
  if (threadIdx.x == 0) partials[blockIdx.x] = sh[0];
}

extern "C" cudaError_t bp_launch_cost_sum(const double *terms, int n, double *partials,
                                          float *cost, double *cost_acc, int *skipped,
                                          cudaStream_t stream) {
  if (n < 1 || !terms || !partials || !cost) return cudaErrorInvalidValue;
  unsigned blocks = cost_blocks((size_t)n);
  bp_cost_sum_partial_kernel<<<blocks, BP_BLOCK, 0, stream>>>(terms, (size_t)n, partials);
  cudaError_t err = cudaGetLastError();
  if (err != cudaSuccess) return err;
  bp_cost_final_kernel<<<1, BP_BLOCK, 0, stream>>>(partials, blocks, n, cost, cost_acc, skipped);
  return cudaGetLastError();
}

/* ---- Accuracy -----------------------------------------------------------
 * One thread per example (column), with the rule of bp_example_correct
 * (elementwise.cuh), the same text the CPU backend runs: strict '>' keeps
 * the first index on ties, and a NaN never wins. */

/* The loop bound is the same for every thread of a block (it steps over
 * block-sized tiles), so __syncthreads_count is reached by all of them; it
 * gives the block's count, and one integer atomic per block and tile adds it
 * to the total. */
__global__ void bp_accuracy_kernel(const float *__restrict__ a, const float *__restrict__ y,
                                   int width, int n, unsigned long long *correct) {
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t base = (size_t)blockIdx.x * blockDim.x; base < (size_t)n; base += stride) {
    size_t k = base + threadIdx.x;
    int ok = 0;
    if (k < (size_t)n) ok = bp_example_correct(a + k * (size_t)width, y + k * (size_t)width, width, 1);
    int block_count = __syncthreads_count(ok);
    if (threadIdx.x == 0 && block_count > 0) atomicAdd(correct, (unsigned long long)block_count);
  }
}

extern "C" cudaError_t bp_launch_accuracy(const float *a, const float *y, int width, int n,
                                          unsigned long long *correct, cudaStream_t stream) {
  if (width < 1 || n < 0 || !correct) return cudaErrorInvalidValue;
  if (n == 0) return cudaSuccess;
  if (!a || !y) return cudaErrorInvalidValue;
  bp_accuracy_kernel<<<bp_grid_1d((size_t)n), BP_BLOCK, 0, stream>>>(a, y, width, n, correct);
  return cudaGetLastError();
}
