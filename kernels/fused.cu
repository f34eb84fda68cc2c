/*
 * fused.cu - the fused kernels of the fast path: fewer passes over memory
 * than the reference kernels of activation.cu, errors.cu, reduce.cu,
 * model.cu and optimizers.cu, which stay as the reference these are tested
 * against (tests/test_cuda_kernels.cc) and timed against
 * (bench/bench_kernels.cu). Every activation and cost of elementwise.cuh:
 *
 *   bias_activation_fused  a = f(z + b), written over z when no z is kept:
 *                          backward takes f'(z) from a (sigmoid a (1 - a),
 *                          tanh 1 - a^2, ReLU a > 0, identity 1). Softmax:
 *                          one warp per column, bias and the stable softmax
 *                          in the same launch.
 *   output_error_fused     delta of every (activation, cost) pair, the batch
 *                          cost and the bias gradient, in one kernel. Only
 *                          cross-entropy reads z (softplus, logsumexp).
 *   hidden_error_fused     delta = g f'(a) and the bias gradient, in one
 *                          kernel.
 *   opt_check_fused,       the optimizers but the seed's SGD: the guard pass
 *   opt_update_fused       (which also fixes the step's scalars and counts
 *                          the step) and one update pass; the reference
 *                          needs a third launch and recomputes the bias
 *                          corrections (double pow) in every thread.
 * Templates on the activation and cost; the launchers dispatch on them. The
 * seed's launchers (sigmoid, quadratic) are the sigmoid instances.
 * Where the width allows, each elementwise kernel moves float4s (see
 * "Vector width").
 *
 * Each fused reduction finishes in the same launch: every block writes its
 * partial sums, then the last block to arrive (an integer ticket, the only
 * atomic) adds the partials in a fixed order. The tiling and the order of
 * the bias sums are those of bp_launch_bias_grad (reduce_layout.cuh), so db
 * is bit-identical to the reference's db of the same delta; the cost is
 * summed in double over a different partition than bp_launch_cost and
 * bp_launch_cost_sum, so it agrees to rounding, and is deterministic.
 * Elementwise layers give delta bit for bit; a softmax column's sums (max,
 * sum of exponentials, sum(y), the quadratic dot) go over 32 lanes, not in
 * the reference's one-thread order, so softmax a and delta agree with the
 * reference to rounding (a few ulps).
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
 * threads of the grid stride over the columns. No 64-bit division. z and a
 * may be the same buffer (in place, no z kept): each element is read, then
 * written, by one thread. keep_z: z += b is stored too (cross-entropy reads
 * it). */
template <int ACT, int V>
__global__ void bp_bias_activation_fused_kernel(float *z, float *a, const float *__restrict__ b,
                                                int width, int n, bool keep_z) {
  const int j0 = (blockIdx.x * BIAS_BX + threadIdx.x) * V;
  if (j0 >= width) return; /* V divides width: all V rows are in range */
  float bj[V];
  for (int v = 0; v < V; ++v) bj[v] = b[j0 + v];
  const size_t w = (size_t)width;
  for (size_t k = (size_t)blockIdx.y * BIAS_BY + threadIdx.y; k < (size_t)n;
       k += (size_t)gridDim.y * BIAS_BY) {
    const size_t e = (size_t)j0 + k * w;
    float x[V];
    vec<V>::load(z + e, x);
    for (int v = 0; v < V; ++v) x[v] = x[v] + bj[v];
    if (keep_z) vec<V>::store(z + e, x);
    for (int v = 0; v < V; ++v) x[v] = bp_activate(ACT, x[v]);
    vec<V>::store(a + e, x);
  }
}

/* The column sums of a softmax: each lane of warp threadIdx.y has its share
 * of one column; the 32 shares are combined in lane order through shared
 * memory (no warp shuffles: the same code runs in the CPU emulation), so
 * every lane gets the same value. Every thread of the block must call it the
 * same number of times (two barriers). */
#define SOFTMAX_OP_SUM 0
#define SOFTMAX_OP_MAX 1
template <int OP>
static __device__ float column_combine(float v, float (*red)[BIAS_BX]) {
  red[threadIdx.y][threadIdx.x] = v;
  __syncthreads();
  float r = red[threadIdx.y][0];
  for (int l = 1; l < BIAS_BX; ++l) {
    const float t = red[threadIdx.y][l];
    if (OP == SOFTMAX_OP_MAX) {
      if (t > r) r = t; /* bp_column_max's comparison */
    } else {
      r += t;
    }
  }
  __syncthreads(); /* red is reused by the next call */
  return r;
}

/* Softmax forward: warp threadIdx.y of block x takes columns x*BIAS_BY + y,
 * then strides by the grid; the lanes split the rows. The column's steps are
 * bp_softmax_column's: z += b (kept, or a written over z), max, a = e^(z -
 * max) with their sum, a / sum. z and a may be the same buffer. */
__global__ void bp_bias_softmax_fused_kernel(float *z, float *a, const float *__restrict__ b,
                                             int width, int n) {
  __shared__ float red[BIAS_BY][BIAS_BX];
  const int lane = threadIdx.x;
  const size_t w = (size_t)width;
  for (size_t base = (size_t)blockIdx.x * BIAS_BY; base < (size_t)n;
       base += (size_t)gridDim.x * BIAS_BY) { /* uniform over the block: barriers below */
    const size_t k = base + threadIdx.y;
    const bool valid = k < (size_t)n;
    float *zk = z + k * w, *ak = a + k * w;
    float m = -INFINITY;
    if (valid)
      for (int j = lane; j < width; j += BIAS_BX) {
        const float zj = zk[j] + b[j];
        zk[j] = zj;
        if (zj > m) m = zj;
      }
    m = column_combine<SOFTMAX_OP_MAX>(m, red);
    float s = 0.0f;
    if (valid)
      for (int j = lane; j < width; j += BIAS_BX) {
        const float e = expf(zk[j] - m);
        ak[j] = e;
        s += e;
      }
    s = column_combine<SOFTMAX_OP_SUM>(s, red);
    if (valid)
      for (int j = lane; j < width; j += BIAS_BX) ak[j] = ak[j] / s;
  }
}

/* Launch geometry of the elementwise forward: enough blocks in all to fill
 * the device several times over, each thread then taking a handful of
 * columns. */
static dim3 forward_grid(int width, int n, int v) {
  const unsigned gx = row_blocks(width, v);
  size_t gy = ((size_t)n + BIAS_BY - 1) / BIAS_BY;
  size_t cap = (size_t)BP_MAX_BLOCKS / gx + 1;
  if (gy > cap) gy = cap;
  if (gy > BIAS_MAX_CHUNKS) gy = BIAS_MAX_CHUNKS;
  return dim3(gx, (unsigned)gy);
}

template <int ACT>
static void launch_bias_activation(float *z, float *a, const float *b, int width, int n, int v,
                                   cudaStream_t stream) {
  const dim3 grid = forward_grid(width, n, v), block(BIAS_BX, BIAS_BY);
  const bool keep_z = z != a;
  if (v == 4)
    bp_bias_activation_fused_kernel<ACT, 4><<<grid, block, 0, stream>>>(z, a, b, width, n, keep_z);
  else
    bp_bias_activation_fused_kernel<ACT, 1><<<grid, block, 0, stream>>>(z, a, b, width, n, keep_z);
}

extern "C" cudaError_t bp_launch_bias_activation_fused(int act, float *z, float *a, const float *b,
                                                       int width, int n, cudaStream_t stream) {
  if (width < 0 || n < 0 || ((width > 0 && n > 0) && (!z || !a || !b)))
    return cudaErrorInvalidValue;
  if (act < BP_EW_SIGMOID || act > BP_EW_SOFTMAX) return cudaErrorInvalidValue;
  if (width == 0 || n == 0) return cudaSuccess;
  if (act == BP_EW_SOFTMAX) {
    size_t blocks = ((size_t)n + BIAS_BY - 1) / BIAS_BY;
    if (blocks > BP_MAX_BLOCKS) blocks = BP_MAX_BLOCKS;
    bp_bias_softmax_fused_kernel<<<(unsigned)blocks, dim3(BIAS_BX, BIAS_BY), 0, stream>>>(
        z, a, b, width, n);
    return cudaGetLastError();
  }
  const int v = vector_width(width, z, a);
  switch (act) {
    case BP_EW_TANH: launch_bias_activation<BP_EW_TANH>(z, a, b, width, n, v, stream); break;
    case BP_EW_RELU: launch_bias_activation<BP_EW_RELU>(z, a, b, width, n, v, stream); break;
    case BP_EW_IDENTITY:
      launch_bias_activation<BP_EW_IDENTITY>(z, a, b, width, n, v, stream);
      break;
    default: launch_bias_activation<BP_EW_SIGMOID>(z, a, b, width, n, v, stream); break;
  }
  return cudaGetLastError();
}

/* The seed's forward: the sigmoid instance, in place. */
extern "C" cudaError_t bp_launch_bias_sigmoid_inplace(float *za, const float *b, int width, int n,
                                                      cudaStream_t stream) {
  return bp_launch_bias_activation_fused(BP_EW_SIGMOID, za, za, b, width, n, stream);
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

/* The end of every fused output kernel, after each block has written its
 * bias partials and its cost partial: the last block finishes db and the
 * batch cost. */
static __device__ void finish_output(const float *bias_partials, int width, int n, float *db,
                                     const double *cost_partials, float *cost, double *cost_acc,
                                     int *skipped, double *sh) {
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

/* Elementwise output layers: the seed's (sigmoid, quadratic), any other
 * activation with the quadratic cost, and the sigmoid with cross-entropy
 * (the only pair that reads z). */
template <int ACT, int COST, int V>
__global__ void bp_output_error_fused_kernel(const float *__restrict__ z,
                                             const float *__restrict__ a,
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
      float av[V], yv[V], zv[V], d[V];
      vec<V>::load(a + e, av);
      vec<V>::load(y + e, yv);
      if (COST == BP_EW_CROSS_ENTROPY) vec<V>::load(z + e, zv);
      for (int v = 0; v < V; ++v) {
        if (COST == BP_EW_CROSS_ENTROPY) {
          d[v] = av[v] - yv[v];
          c += bp_ce_sigmoid_term(zv[v], yv[v]);
        } else {
          d[v] = bp_quadratic_error_of_a(ACT, av[v], yv[v]);
          c += (double)bp_cost_term(av[v], yv[v]);
        }
        s[v] = __fadd_rn(s[v], d[v]); /* never fused with d's product into an FMA */
      }
      vec<V>::store(delta + e, d);
    }
  write_bias_partials<V>(s, j0, width, bias_partials);
  const double block_cost = block_sum(c, sh);
  const unsigned block = blockIdx.y * gridDim.x + blockIdx.x;
  if (threadIdx.x == 0 && threadIdx.y == 0) cost_partials[block] = block_cost;
  if (!last_block_done(counter)) return;
  finish_output(bias_partials, width, n, db, cost_partials, cost, cost_acc, skipped, sh);
}

/* Softmax output layers, both costs. A block takes a chunk of columns (the
 * bias reduction's chunk) and every row: warp threadIdx.y takes columns
 * k0 + y, k0 + y + BIAS_BY, ..., the bias reduction's order, and its lanes
 * split the rows, each keeping its rows' sums in acc[y][j]; then acc's
 * BIAS_BY shares are added in order, as write_bias_partials does. MAXW
 * bounds the width (acc is static shared memory: the emulation has no
 * dynamic shared memory). */
template <int COST, int MAXW>
__global__ void bp_output_error_softmax_fused_kernel(
    const float *__restrict__ z, const float *__restrict__ a, const float *__restrict__ y,
    float *__restrict__ delta, int width, int n, size_t chunk_cols,
    float *__restrict__ bias_partials, float *__restrict__ db, double *__restrict__ cost_partials,
    float *cost, double *cost_acc, int *skipped, unsigned *counter) {
  __shared__ double sh[FUSED_THREADS];
  __shared__ float red[BIAS_BY][BIAS_BX];
  __shared__ float acc[BIAS_BY][MAXW];
  const int lane = threadIdx.x;
  const size_t w = (size_t)width;
  const size_t k0 = (size_t)blockIdx.y * chunk_cols;
  const size_t k1 = k0 + chunk_cols < (size_t)n ? k0 + chunk_cols : (size_t)n;
  for (int j = lane; j < width; j += BIAS_BX) acc[threadIdx.y][j] = 0.0f;
  double c = 0.0;
  for (size_t base = k0; base < k1; base += BIAS_BY) { /* uniform over the block */
    const size_t k = base + threadIdx.y;
    const bool valid = k < k1;
    const float *zk = z + k * w, *ak = a + k * w, *yk = y + k * w;
    float *dk = delta + k * w;
    if (COST == BP_EW_CROSS_ENTROPY) {
      /* lse = max + log(sum e^(z - max)), from z: no log of a rounded a. */
      float m = -INFINITY;
      if (valid)
        for (int j = lane; j < width; j += BIAS_BX)
          if (zk[j] > m) m = zk[j];
      m = column_combine<SOFTMAX_OP_MAX>(m, red);
      float se = 0.0f, ys = 0.0f;
      if (valid)
        for (int j = lane; j < width; j += BIAS_BX) {
          se += expf(zk[j] - m);
          ys += yk[j];
        }
      se = column_combine<SOFTMAX_OP_SUM>(se, red);
      ys = column_combine<SOFTMAX_OP_SUM>(ys, red);
      const float lse = m + logf(se);
      if (valid)
        for (int j = lane; j < width; j += BIAS_BX) {
          c += bp_ce_softmax_term(zk[j], yk[j], lse);
          const float d = bp_ce_softmax_error(ak[j], yk[j], ys);
          dk[j] = d;
          acc[threadIdx.y][j] = __fadd_rn(acc[threadIdx.y][j], d);
        }
    } else {
      float dot = 0.0f;
      if (valid)
        for (int j = lane; j < width; j += BIAS_BX) {
          c += (double)bp_cost_term(ak[j], yk[j]);
          dot += bp_softmax_dot_term(ak[j], yk[j]);
        }
      dot = column_combine<SOFTMAX_OP_SUM>(dot, red);
      if (valid)
        for (int j = lane; j < width; j += BIAS_BX) {
          const float d = bp_softmax_quadratic_error(ak[j], yk[j], dot);
          dk[j] = d;
          acc[threadIdx.y][j] = __fadd_rn(acc[threadIdx.y][j], d);
        }
    }
  }
  __syncthreads();
  for (int j = threadIdx.y * BIAS_BX + lane; j < width; j += FUSED_THREADS) {
    float t = acc[0][j];
    for (int r = 1; r < BIAS_BY; ++r) t += acc[r][j];
    bias_partials[(size_t)blockIdx.y * w + (size_t)j] = t;
  }
  const double block_cost = block_sum(c, sh);
  if (threadIdx.x == 0 && threadIdx.y == 0) cost_partials[blockIdx.y] = block_cost;
  if (!last_block_done(counter)) return;
  finish_output(bias_partials, width, n, db, cost_partials, cost, cost_acc, skipped, sh);
}

#define OUTPUT_ARGS                                                                        \
  z, a, y, delta, width, n, chunk_cols, bias_partials, db, cost_partials, cost, cost_acc, \
      skipped, counter

template <int ACT, int COST>
static void launch_output(int v, dim3 grid, const float *z, const float *a, const float *y,
                          float *delta, int width, int n, size_t chunk_cols, float *bias_partials,
                          float *db, double *cost_partials, float *cost, double *cost_acc,
                          int *skipped, unsigned *counter, cudaStream_t stream) {
  const dim3 block(BIAS_BX, BIAS_BY);
  if (v == 4)
    bp_output_error_fused_kernel<ACT, COST, 4><<<grid, block, 0, stream>>>(OUTPUT_ARGS);
  else
    bp_output_error_fused_kernel<ACT, COST, 1><<<grid, block, 0, stream>>>(OUTPUT_ARGS);
}

template <int COST>
static void launch_output_softmax(int n_chunks, const float *z, const float *a, const float *y,
                                  float *delta, int width, int n, size_t chunk_cols,
                                  float *bias_partials, float *db, double *cost_partials,
                                  float *cost, double *cost_acc, int *skipped, unsigned *counter,
                                  cudaStream_t stream) {
  const dim3 grid(1, (unsigned)n_chunks), block(BIAS_BX, BIAS_BY);
  /* A narrow output (a classifier's tens of classes) takes little shared
   * memory, so more blocks fit on a multiprocessor. */
  if (width <= 128)
    bp_output_error_softmax_fused_kernel<COST, 128><<<grid, block, 0, stream>>>(OUTPUT_ARGS);
  else
    bp_output_error_softmax_fused_kernel<COST, BP_FUSED_SOFTMAX_MAX_WIDTH>
        <<<grid, block, 0, stream>>>(OUTPUT_ARGS);
}

extern "C" cudaError_t bp_launch_output_error_fused_act(
    int act, int cost_kind, const float *z, const float *a, const float *y, float *delta,
    int width, int n, float *bias_partials, float *db, double *cost_partials, float *cost,
    double *cost_acc, int *skipped, unsigned *counter, cudaStream_t stream) {
  const bool ce = cost_kind == BP_EW_CROSS_ENTROPY;
  if (act < BP_EW_SIGMOID || act > BP_EW_SOFTMAX ||
      (cost_kind != BP_EW_QUADRATIC && cost_kind != BP_EW_CROSS_ENTROPY))
    return cudaErrorInvalidValue;
  /* Cross-entropy is defined for softmax and sigmoid outputs only. */
  if (ce && act != BP_EW_SOFTMAX && act != BP_EW_SIGMOID) return cudaErrorInvalidValue;
  if (ce && !z) return cudaErrorInvalidValue;
  if (act == BP_EW_SOFTMAX && width > BP_FUSED_SOFTMAX_MAX_WIDTH) return cudaErrorInvalidValue;
  int v = act == BP_EW_SOFTMAX ? 1 : vector_width(width, a, y, delta);
  if (ce && vector_width(width, z) != 4) v = 1;
  dim3 grid;
  size_t chunk_cols = 0;
  if (!fused_grid(width, n, v, &grid, &chunk_cols) || !a || !y || !delta || !bias_partials ||
      !db || !cost_partials || !cost || !counter)
    return cudaErrorInvalidValue;
  if (act == BP_EW_SOFTMAX) {
    if (ce)
      launch_output_softmax<BP_EW_CROSS_ENTROPY>((int)grid.y, OUTPUT_ARGS, stream);
    else
      launch_output_softmax<BP_EW_QUADRATIC>((int)grid.y, OUTPUT_ARGS, stream);
  } else if (ce) { /* sigmoid */
    launch_output<BP_EW_SIGMOID, BP_EW_CROSS_ENTROPY>(v, grid, OUTPUT_ARGS, stream);
  } else if (act == BP_EW_TANH) {
    launch_output<BP_EW_TANH, BP_EW_QUADRATIC>(v, grid, OUTPUT_ARGS, stream);
  } else if (act == BP_EW_RELU) {
    launch_output<BP_EW_RELU, BP_EW_QUADRATIC>(v, grid, OUTPUT_ARGS, stream);
  } else if (act == BP_EW_IDENTITY) {
    launch_output<BP_EW_IDENTITY, BP_EW_QUADRATIC>(v, grid, OUTPUT_ARGS, stream);
  } else {
    launch_output<BP_EW_SIGMOID, BP_EW_QUADRATIC>(v, grid, OUTPUT_ARGS, stream);
  }
  return cudaGetLastError();
}
#undef OUTPUT_ARGS

/* The seed's output layer: the (sigmoid, quadratic) instance. */
extern "C" cudaError_t bp_launch_output_error_fused(const float *a, const float *y, float *delta,
                                                    int width, int n, float *bias_partials,
                                                    float *db, double *cost_partials, float *cost,
                                                    double *cost_acc, int *skipped,
                                                    unsigned *counter, cudaStream_t stream) {
  return bp_launch_output_error_fused_act(BP_EW_SIGMOID, BP_EW_QUADRATIC, nullptr, a, y, delta,
                                          width, n, bias_partials, db, cost_partials, cost,
                                          cost_acc, skipped, counter, stream);
}

/* ---- Hidden layers ------------------------------------------------------------ */

/* No __restrict__ on g and delta: they may be the same buffer (in place).
 * Each element is read, then written, by the same thread only; the loads of
 * one vector come before its store. */
template <int ACT, int V>
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
        d[v] = gv[v] * bp_activation_prime_of_a(ACT, av[v]);
        s[v] = __fadd_rn(s[v], d[v]); /* never fused with d's product into an FMA */
      }
      vec<V>::store(delta + e, d);
    }
  write_bias_partials<V>(s, j0, width, bias_partials);
  if (!last_block_done(counter)) return;
  finish_bias(bias_partials, width, gridDim.y, n, db);
}

template <int ACT>
static void launch_hidden(int v, dim3 grid, const float *g, const float *a, float *delta,
                          int width, int n, size_t chunk_cols, float *bias_partials, float *db,
                          unsigned *counter, cudaStream_t stream) {
  const dim3 block(BIAS_BX, BIAS_BY);
  if (v == 4)
    bp_hidden_error_fused_kernel<ACT, 4><<<grid, block, 0, stream>>>(
        g, a, delta, width, n, chunk_cols, bias_partials, db, counter);
  else
    bp_hidden_error_fused_kernel<ACT, 1><<<grid, block, 0, stream>>>(
        g, a, delta, width, n, chunk_cols, bias_partials, db, counter);
}

extern "C" cudaError_t bp_launch_hidden_error_fused_act(int act, const float *g, const float *a,
                                                        float *delta, int width, int n,
                                                        float *bias_partials, float *db,
                                                        unsigned *counter, cudaStream_t stream) {
  dim3 grid;
  size_t chunk_cols = 0;
  /* Softmax is an output layer only. */
  if (act < BP_EW_SIGMOID || act > BP_EW_IDENTITY) return cudaErrorInvalidValue;
  const int v = vector_width(width, g, a, delta);
  if (!fused_grid(width, n, v, &grid, &chunk_cols) || !g || !a || !delta || !bias_partials ||
      !db || !counter)
    return cudaErrorInvalidValue;
  switch (act) {
    case BP_EW_TANH:
      launch_hidden<BP_EW_TANH>(v, grid, g, a, delta, width, n, chunk_cols, bias_partials, db,
                                counter, stream);
      break;
    case BP_EW_RELU:
      launch_hidden<BP_EW_RELU>(v, grid, g, a, delta, width, n, chunk_cols, bias_partials, db,
                                counter, stream);
      break;
    case BP_EW_IDENTITY:
      launch_hidden<BP_EW_IDENTITY>(v, grid, g, a, delta, width, n, chunk_cols, bias_partials,
                                    db, counter, stream);
      break;
    default:
      launch_hidden<BP_EW_SIGMOID>(v, grid, g, a, delta, width, n, chunk_cols, bias_partials, db,
                                   counter, stream);
      break;
  }
  return cudaGetLastError();
}

/* The seed's hidden layers: the sigmoid instance. */
extern "C" cudaError_t bp_launch_hidden_error_fused(const float *g, const float *a, float *delta,
                                                    int width, int n, float *bias_partials,
                                                    float *db, unsigned *counter,
                                                    cudaStream_t stream) {
  return bp_launch_hidden_error_fused_act(BP_EW_SIGMOID, g, a, delta, width, n, bias_partials, db,
                                          counter, stream);
}

/* ---- Optimizers ------------------------------------------------------------------
 * The guarded update of optimizers.cu in two launches instead of three. The
 * check pass also fixes the step: one thread per block computes the step's
 * scalars (bp_opt_step_of: double pow) instead of every thread, and the last
 * block to finish, which sees every block's verdict, stores them for the
 * update pass and counts the step when it will be applied. The update pass
 * then reads each parameter, gradient and state value once and writes them
 * once, all or nothing under the same gates as bp_launch_opt_update. */

__global__ void bp_opt_check_fused_kernel(bp_opt_hyper h, float lr, const float *__restrict__ p,
                                          const float *__restrict__ g,
                                          const float *__restrict__ state, size_t count,
                                          int slots, long long *step, const float *batch_cost,
                                          int *bad, bp_opt_step *step_out, unsigned *counter) {
  __shared__ bp_opt_step sst;
  if (threadIdx.x == 0) sst = bp_opt_step_of(&h, lr, *step);
  __syncthreads();
  const bp_opt_step st = sst;
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride) {
    float s0 = slots > 0 ? state[i] : 0.0f, s1 = slots > 1 ? state[count + i] : 0.0f;
    const float np = bp_opt_update(&h, &st, p[i], g[i], &s0, &s1);
    if (!bp_opt_finite(np, s0, s1)) *bad = 1; /* only ever 1: writers agree */
  }
  if (!last_block_done(counter)) return;
  if (threadIdx.x == 0) {
    *step_out = st;
    const bool cost_ok = batch_cost == nullptr || isfinite(*batch_cost);
    /* volatile: through L2, where the other blocks' writes of *bad are. */
    if (cost_ok && *(volatile int *)bad == 0) *step += 1;
  }
}

__global__ void bp_opt_update_fused_kernel(bp_opt_hyper h, float *__restrict__ p,
                                           const float *__restrict__ g,
                                           float *__restrict__ state, size_t count, int slots,
                                           const bp_opt_step *__restrict__ step_in,
                                           const float *__restrict__ batch_cost,
                                           const int *__restrict__ bad, int *__restrict__ skipped) {
  /* Uniform across the grid, as in bp_sgd_kernel. */
  const bool cost_ok = batch_cost == nullptr || isfinite(*batch_cost);
  if (!cost_ok) return;
  if (*bad != 0) {
    if (skipped != nullptr && blockIdx.x == 0 && threadIdx.x == 0) *skipped += 1;
    return;
  }
  const bp_opt_step st = *step_in;
  size_t stride = (size_t)gridDim.x * blockDim.x;
  for (size_t i = (size_t)blockIdx.x * blockDim.x + threadIdx.x; i < count; i += stride) {
    float s0 = slots > 0 ? state[i] : 0.0f, s1 = slots > 1 ? state[count + i] : 0.0f;
    p[i] = bp_opt_update(&h, &st, p[i], g[i], &s0, &s1);
    if (slots > 0) state[i] = s0;
    if (slots > 1) state[count + i] = s1;
  }
}

extern "C" cudaError_t bp_launch_opt_check_fused(bp_opt_hyper h, float lr, const float *params,
                                                 const float *grads, const float *state,
                                                 size_t count, int slots, long long *step,
                                                 const float *batch_cost, int *bad,
                                                 bp_opt_step *step_out, unsigned *counter,
                                                 cudaStream_t stream) {
  if (!params || !grads || !step || !bad || !step_out || !counter || (slots > 0 && !state))
    return cudaErrorInvalidValue;
  if (count == 0) return cudaSuccess; /* as bp_launch_opt_update: no step either */
  bp_opt_check_fused_kernel<<<bp_grid_1d(count), BP_BLOCK, 0, stream>>>(
      h, lr, params, grads, state, count, slots, step, batch_cost, bad, step_out, counter);
  return cudaGetLastError();
}

extern "C" cudaError_t bp_launch_opt_update_fused(bp_opt_hyper h, float *params,
                                                  const float *grads, float *state, size_t count,
                                                  int slots, const bp_opt_step *step_in,
                                                  const float *batch_cost, const int *bad,
                                                  int *skipped, cudaStream_t stream) {
  if (!params || !grads || !step_in || !bad || (slots > 0 && !state))
    return cudaErrorInvalidValue;
  if (count == 0) return cudaSuccess;
  bp_opt_update_fused_kernel<<<bp_grid_1d(count), BP_BLOCK, 0, stream>>>(
      h, params, grads, state, count, slots, step_in, batch_cost, bad, skipped);
  return cudaGetLastError();
}
