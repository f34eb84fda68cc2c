/*
 * fused.cu - the fused kernels of the fast path: fewer passes over memory
 * than the reference kernels of activation.cu, errors.cu and reduce.cu,
 * which stay as the reference these are tested against (tests/
 * test_cuda_kernels.cc) and timed against (bench/bench_kernels.cu).
 *
 *   bias_sigmoid_inplace   a = sigma(z + b), written over z: no z is kept,
 *                          because backward takes sigma'(z) as a (1 - a).
 *   output_error_fused     delta = 2 (a - y) a (1 - a), the batch cost and the
 *                          bias gradient, in one kernel.
 *   hidden_error_fused     delta = g a (1 - a) and the bias gradient, in one
 *                          kernel.
 * Where the width allows, each thread moves float4s (see "Vector width").
 *
 * Each fused reduction finishes in the same launch: every block writes its
 * partial sums, then the last block to arrive (an integer ticket, the only
 * atomic) adds the partials in a fixed order. The tiling and the order of
 * the bias sums are those of bp_launch_bias_grad (reduce_layout.cuh), so db
 * is bit-identical to the reference; the cost is summed in double over a
 * different partition than bp_launch_cost, so it agrees to rounding, and is
 * deterministic.
 */
#include "elementwise.cuh"
#include "kernels.cuh"
#include "reduce_layout.cuh"

#define FUSED_THREADS (BIAS_BX * BIAS_BY)

/* ---- Vector width --------------------------------------------------------------
 * Every fused kernel is a template on V, the rows one thread handles: 4 when
 * width is a multiple of 4 (then every column starts 16-byte aligned, as
 * cudaMalloc's 256-byte alignment and the workspace layout guarantee, and a
 * thread moves float4s: 16-byte loads and stores), else 1. Each row's bias
 * sum still adds the same columns in the same order (threadIdx.y picks the
 * columns, whatever V is), so db stays bit-identical to the reference. */

template <int V>
struct vec;
template <>
struct vec<1> {
  static __device__ __forceinline__ void load(const float *p, float *v) { v[0] = *p; }
  static __device__ __forceinline__ void store(float *p, const float *v) { *p = v[0]; }
};
template <>
struct vec<4> {
  static __device__ __forceinline__ void load(const float *p, float *v) {
    const float4 t = *reinterpret_cast<const float4 *>(p);
    v[0] = t.x;
    v[1] = t.y;
    v[2] = t.z;
    v[3] = t.w;
  }
  static __device__ __forceinline__ void store(float *p, const float *v) {
    *reinterpret_cast<float4 *>(p) = make_float4(v[0], v[1], v[2], v[3]);
  }
};

/* 4 if every column of a width-row matrix starting at each pointer is
 * 16-byte aligned, else 1. */
static int vector_width(int width, const void *p0, const void *p1 = nullptr,
                        const void *p2 = nullptr) {
  if (width % 4 != 0) return 1;
  const void *ps[3] = {p0, p1, p2};
  for (const void *p : ps)
    if (p != nullptr && (reinterpret_cast<uintptr_t>(p) & 15u) != 0) return 1;
  return 4;
}

/* Grid x: blocks of BIAS_BX threads, V rows each. */
static unsigned row_blocks(int width, int v) {
  const size_t rows = (size_t)BIAS_BX * (size_t)v;
  return (unsigned)(((size_t)width + rows - 1) / rows);
}

/* ---- Forward -------------------------------------------------------------- */

/* Block BIAS_BX x BIAS_BY: threadIdx.x picks V rows (b read once), the y
 * threads of the grid stride over the columns. No 64-bit division. */
template <int V>
__global__ void bp_bias_sigmoid_inplace_kernel(float *__restrict__ za, const float *__restrict__ b,
                                               int width, int n) {
  const int j0 = (blockIdx.x * BIAS_BX + threadIdx.x) * V;
  if (j0 >= width) return; /* V divides width: all V rows are in range */
  float bj[V];
  for (int v = 0; v < V; ++v) bj[v] = b[j0 + v];
  const size_t w = (size_t)width;
  for (size_t k = (size_t)blockIdx.y * BIAS_BY + threadIdx.y; k < (size_t)n;
       k += (size_t)gridDim.y * BIAS_BY) {
    float *p = za + (size_t)j0 + k * w;
    float x[V];
    vec<V>::load(p, x);
    for (int v = 0; v < V; ++v) x[v] = bp_sigmoid(x[v] + bj[v]);
    vec<V>::store(p, x);
  }
}

extern "C" cudaError_t bp_launch_bias_sigmoid_inplace(float *za, const float *b, int width, int n,
                                                      cudaStream_t stream) {
  if (width < 0 || n < 0 || ((width > 0 && n > 0) && (!za || !b))) return cudaErrorInvalidValue;
  if (width == 0 || n == 0) return cudaSuccess;
  const int v = vector_width(width, za);
  const unsigned gx = row_blocks(width, v);
  /* Enough blocks in all to fill the device several times over, each thread
   * then taking a handful of columns. */
  size_t gy = ((size_t)n + BIAS_BY - 1) / BIAS_BY;
  size_t cap = (size_t)BP_MAX_BLOCKS / gx + 1;
  if (gy > cap) gy = cap;
  if (gy > BIAS_MAX_CHUNKS) gy = BIAS_MAX_CHUNKS;
  dim3 grid(gx, (unsigned)gy), block(BIAS_BX, BIAS_BY);
  if (v == 4)
    bp_bias_sigmoid_inplace_kernel<4><<<grid, block, 0, stream>>>(za, b, width, n);
  else
    bp_bias_sigmoid_inplace_kernel<1><<<grid, block, 0, stream>>>(za, b, width, n);
  return cudaGetLastError();
}

/* ---- Shared pieces of the fused reductions ---------------------------------- */

/* The block's per-row partial sums, in the reference order: thread row 0
 * adds the BIAS_BY shares in order. s[v] is this thread's sum over its
 * columns for row j0 + v. */
template <int V>
static __device__ void write_bias_partials(const float *s, int j0, int width, float *partials) {
  __shared__ float share[BIAS_BY][BIAS_BX * V];
  for (int v = 0; v < V; ++v) share[threadIdx.y][threadIdx.x * V + v] = s[v];
  __syncthreads();
  if (threadIdx.y == 0 && j0 < width)
    for (int v = 0; v < V; ++v) {
      float t = share[0][threadIdx.x * V + v];
      for (int r = 1; r < BIAS_BY; ++r) t += share[r][threadIdx.x * V + v];
      partials[(size_t)blockIdx.y * (size_t)width + (size_t)(j0 + v)] = t;
    }
}

/* Called by every thread of every block after its partials are written.
 * Returns true in exactly one block, the last to finish, once every other
 * block's partials are visible to it; that block also resets the ticket for
 * the next launch (a graph replays the same counter). */
static __device__ bool last_block_done(unsigned *counter) {
  __shared__ bool last;
  __threadfence(); /* this thread's partial writes, before the ticket */
  __syncthreads();
  if (threadIdx.x == 0 && threadIdx.y == 0) {
    unsigned ticket = atomicAdd(counter, 1u);
    last = ticket == gridDim.x * gridDim.y - 1;
  }
  __syncthreads();
  if (last) {
    __threadfence(); /* order the partial reads after the ticket */
    if (threadIdx.x == 0 && threadIdx.y == 0) *counter = 0;
  }
  return last;
}

/* Last block: db[j] = (sum over chunks, in chunk order, in double) / n, as
 * bp_bias_grad_final_kernel does. __ldcg reads through L2, where the other
 * blocks' writes are, never a stale L1 line. */
static __device__ void finish_bias(const float *partials, int width, unsigned chunks, int n,
                                   float *db) {
  const int tid = threadIdx.y * BIAS_BX + threadIdx.x;
  for (size_t j = (size_t)tid; j < (size_t)width; j += FUSED_THREADS) {
    double s = 0.0;
    for (unsigned c = 0; c < chunks; ++c) s += (double)__ldcg(&partials[(size_t)c * width + j]);
    db[j] = (float)(s / (double)n);
  }
}

/* In-block tree sum in double over FUSED_THREADS values; always the same
 * pairs. Result in sh[0], visible to all threads on return. */
static __device__ double block_sum(double v, double *sh) {
  const int tid = threadIdx.y * BIAS_BX + threadIdx.x;
  sh[tid] = v;
  for (int half = FUSED_THREADS / 2; half > 0; half >>= 1) {
    __syncthreads();
    if (tid < half) sh[tid] += sh[tid + half];
  }
  __syncthreads();
  return sh[0];
}

static bool fused_grid(int width, int n, int v, dim3 *grid, size_t *chunk_cols) {
  if (width < 1 || n < 1) return false;
  *chunk_cols = bias_chunk_cols(n);
  *grid = dim3(row_blocks(width, v), bias_chunks(n));
  return true;
}

/* ---- Output layer ------------------------------------------------------------ */

extern "C" size_t bp_output_fused_cost_partials_count(int width, int n) {
  if (width < 1 || n < 1) return 0;
  /* Nondecreasing in n: bias_chunks never exceeds this bound; V = 1 has the
   * most row blocks. */
  size_t chunks = ((size_t)n + BIAS_CHUNK - 1) / BIAS_CHUNK;
  if (chunks > BIAS_MAX_CHUNKS) chunks = BIAS_MAX_CHUNKS;
  return chunks * (((size_t)width + BIAS_BX - 1) / BIAS_BX);
}

template <int V>
__global__ void bp_output_error_fused_kernel(const float *__restrict__ a,
                                             const float *__restrict__ y,
                                             float *__restrict__ delta, int width, int n,
                                             size_t chunk_cols, float *__restrict__ bias_partials,
                                             float *__restrict__ db,
                                             double *__restrict__ cost_partials, float *cost,
                                             double *cost_acc, int *skipped, unsigned *counter) {
  __shared__ double sh[FUSED_THREADS];
  const int j0 = (blockIdx.x * BIAS_BX + threadIdx.x) * V;
  const size_t k0 = (size_t)blockIdx.y * chunk_cols;
  const size_t k1 = k0 + chunk_cols < (size_t)n ? k0 + chunk_cols : (size_t)n;
  float s[V];
  for (int v = 0; v < V; ++v) s[v] = 0.0f;
  double c = 0.0;
  if (j0 < width)
    for (size_t k = k0 + threadIdx.y; k < k1; k += BIAS_BY) {
      const size_t e = (size_t)j0 + k * (size_t)width;
      float av[V], yv[V], d[V];
      vec<V>::load(a + e, av);
      vec<V>::load(y + e, yv);
      for (int v = 0; v < V; ++v) {
        d[v] = bp_output_error_of_a(av[v], yv[v]);
        s[v] = __fadd_rn(s[v], d[v]); /* never fused with d's product into an FMA */
        c += (double)bp_cost_term(av[v], yv[v]);
      }
      vec<V>::store(delta + e, d);
    }
  write_bias_partials<V>(s, j0, width, bias_partials);
  const double block_cost = block_sum(c, sh);
  const unsigned block = blockIdx.y * gridDim.x + blockIdx.x;
  if (threadIdx.x == 0 && threadIdx.y == 0) cost_partials[block] = block_cost;
  if (!last_block_done(counter)) return;

  finish_bias(bias_partials, width, gridDim.y, n, db);
  /* The cost: each thread adds a strided share of the block partials in
   * order, then the fixed tree. */
  const int tid = threadIdx.y * BIAS_BX + threadIdx.x;
  const unsigned blocks = gridDim.x * gridDim.y;
  double t = 0.0;
  for (unsigned i = (unsigned)tid; i < blocks; i += FUSED_THREADS) t += __ldcg(&cost_partials[i]);
  const double total = block_sum(t, sh);
  if (tid == 0) {
    const float mean = (float)(total / (double)n);
    *cost = mean;
    /* The rule of bp_cost_final_kernel (kernels.cuh, bp_launch_cost). */
    if (skipped != nullptr && !isfinite(mean)) {
      *skipped += 1;
    } else if (cost_acc != nullptr) {
      *cost_acc += total;
    }
  }
}

extern "C" cudaError_t bp_launch_output_error_fused(const float *a, const float *y, float *delta,
                                                    int width, int n, float *bias_partials,
                                                    float *db, double *cost_partials, float *cost,
                                                    double *cost_acc, int *skipped,
                                                    unsigned *counter, cudaStream_t stream) {
  dim3 grid;
  size_t chunk_cols = 0;
  const int v = vector_width(width, a, y, delta);
  if (!fused_grid(width, n, v, &grid, &chunk_cols) || !a || !y || !delta || !bias_partials ||
      !db || !cost_partials || !cost || !counter)
    return cudaErrorInvalidValue;
  dim3 block(BIAS_BX, BIAS_BY);
  if (v == 4)
    bp_output_error_fused_kernel<4><<<grid, block, 0, stream>>>(
        a, y, delta, width, n, chunk_cols, bias_partials, db, cost_partials, cost, cost_acc,
        skipped, counter);
  else
    bp_output_error_fused_kernel<1><<<grid, block, 0, stream>>>(
        a, y, delta, width, n, chunk_cols, bias_partials, db, cost_partials, cost, cost_acc,
        skipped, counter);
  return cudaGetLastError();
}

/* ---- Hidden layers ------------------------------------------------------------ */

/* No __restrict__ on g and delta: they may be the same buffer (in place).
 * Each element is read, then written, by the same thread only; the loads of
 * one vector come before its store. */
template <int V>
__global__ void bp_hidden_error_fused_kernel(const float *g, const float *__restrict__ a,
                                             float *delta, int width, int n, size_t chunk_cols,
                                             float *__restrict__ bias_partials,
                                             float *__restrict__ db, unsigned *counter) {
  const int j0 = (blockIdx.x * BIAS_BX + threadIdx.x) * V;
  const size_t k0 = (size_t)blockIdx.y * chunk_cols;
  const size_t k1 = k0 + chunk_cols < (size_t)n ? k0 + chunk_cols : (size_t)n;
  float s[V];
  for (int v = 0; v < V; ++v) s[v] = 0.0f;
  if (j0 < width)
    for (size_t k = k0 + threadIdx.y; k < k1; k += BIAS_BY) {
      const size_t e = (size_t)j0 + k * (size_t)width;
      float gv[V], av[V], d[V];
      vec<V>::load(g + e, gv);
      vec<V>::load(a + e, av);
      for (int v = 0; v < V; ++v) {
        d[v] = bp_hidden_error_of_a(gv[v], av[v]);
        s[v] = __fadd_rn(s[v], d[v]); /* never fused with d's product into an FMA */
      }
      vec<V>::store(delta + e, d);
    }
  write_bias_partials<V>(s, j0, width, bias_partials);
  if (!last_block_done(counter)) return;
  finish_bias(bias_partials, width, gridDim.y, n, db);
}

extern "C" cudaError_t bp_launch_hidden_error_fused(const float *g, const float *a, float *delta,
                                                    int width, int n, float *bias_partials,
                                                    float *db, unsigned *counter,
                                                    cudaStream_t stream) {
  dim3 grid;
  size_t chunk_cols = 0;
  const int v = vector_width(width, g, a, delta);
  if (!fused_grid(width, n, v, &grid, &chunk_cols) || !g || !a || !delta || !bias_partials ||
      !db || !counter)
    return cudaErrorInvalidValue;
  dim3 block(BIAS_BX, BIAS_BY);
  if (v == 4)
    bp_hidden_error_fused_kernel<4><<<grid, block, 0, stream>>>(g, a, delta, width, n, chunk_cols,
                                                                bias_partials, db, counter);
  else
    bp_hidden_error_fused_kernel<1><<<grid, block, 0, stream>>>(g, a, delta, width, n, chunk_cols,
                                                                bias_partials, db, counter);
  return cudaGetLastError();
}
