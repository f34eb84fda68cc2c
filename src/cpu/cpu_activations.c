/* cpu_activations.c - the per-layer passes of every model: one pass over a
 * layer's product per direction, split across the one pool (cpu_passes.h),
 * each element a formula of elementwise.cuh, the CUDA kernels' very text.
 *
 * Forward columns across the threads. The backward passes that end in a
 * bias sum split the examples into fixed blocks of BP_CPU_SUM_BLOCK columns
 * (cpu_passes.h), one block to a thread at a time: each block's row sums in
 * double in example order, then the blocks' sums in block order, the same
 * sum for any thread count (and up to one block, the plain sum in example
 * order). Each thread reads whole columns, contiguous memory; the earlier
 * split of the rows made both threads touch every column, and a 256-wide
 * pass over 4096 examples took 1.7x its one-thread time on two threads
 * (bench/NOTES.md section 14). The output layer's pass does each column's
 * cost (and, with softmax, its column sums) just before its error.
 *
 * The derivatives come from the stored activation a: sigma' = a (1 - a),
 * tanh' = 1 - a^2, ReLU' = [a > 0], identity' = 1
 * (bp_activation_prime_of_a). For tanh, ReLU and identity that is what the
 * scalar loops computed before; for the sigmoid, a (1 - a) is bit for bit
 * what the z form gives from the same a (elementwise.cuh). So no z is kept
 * but the output layer's under cross-entropy, whose cost reads it. */
#include "cpu_model.h"
#include "cpu_passes.h"
#include "elementwise.cuh"

/* ---- Per-column kernels: plain loops, vectorized (omp simd: expf and tanhf
 * become libmvec's) and built per instruction set (BP_VECTOR_CLONES). Kept
 * out of the OpenMP regions, whose outlined bodies would not be cloned. The
 * switch is outside each loop so every loop has one formula to vectorize. */

/* a = f(a + b) in place over one column. */
BP_VECTOR_CLONES static void bias_act_inplace(int act, float *a, const float *b, int out) {
  switch (act) {
    case BP_EW_TANH:
      BP_SIMD("omp simd")
      for (int j = 0; j < out; ++j) a[j] = bp_activate(BP_EW_TANH, a[j] + b[j]);
      break;
    case BP_EW_RELU:
      BP_SIMD("omp simd")
      for (int j = 0; j < out; ++j) a[j] = bp_activate(BP_EW_RELU, a[j] + b[j]);
      break;
    case BP_EW_IDENTITY:
      BP_SIMD("omp simd")
      for (int j = 0; j < out; ++j) a[j] = a[j] + b[j];
      break;
    default:
      BP_SIMD("omp simd")
      for (int j = 0; j < out; ++j) a[j] = bp_sigmoid(a[j] + b[j]);
      break;
  }
}

/* z = z + b, a = f(z) over one column (z kept for the cost). */
BP_VECTOR_CLONES static void bias_act_keep(int act, float *z, float *a, const float *b, int out) {
  BP_SIMD("omp simd")
  for (int j = 0; j < out; ++j) z[j] = z[j] + b[j];
  switch (act) {
    case BP_EW_TANH:
      BP_SIMD("omp simd")
      for (int j = 0; j < out; ++j) a[j] = bp_activate(BP_EW_TANH, z[j]);
      break;
    case BP_EW_RELU:
      BP_SIMD("omp simd")
      for (int j = 0; j < out; ++j) a[j] = bp_activate(BP_EW_RELU, z[j]);
      break;
    case BP_EW_IDENTITY:
      for (int j = 0; j < out; ++j) a[j] = z[j];
      break;
    default:
      BP_SIMD("omp simd")
      for (int j = 0; j < out; ++j) a[j] = bp_sigmoid(z[j]);
      break;
  }
}

/* The softmax column's reductions (its max and its sum, and the
 * cross-entropy cost's sums) are over the whole width, which is the class
 * count: 10 for most data, hundreds in some. Summed one after another they
 * are a chain of dependent adds, 4 cycles each, which at width 256 cost
 * about 1.7 ms of a 50 ms step on one thread (bench/NOTES.md section 12).
 * So the sums run in LANES fixed partial sums (lane l takes the elements
 * j = l mod LANES of the whole blocks), combined in lane order, then the
 * tail in order; the max is a vector reduction. The grouping depends on
 * nothing but the width: the same bits for any thread count and from the
 * AVX2 and the baseline clone alike, though not the bits of
 * bp_softmax_column's one-after-another sum (a few units in the last place
 * of the sum). Below LANES elements it is that sum exactly. */
enum { LANES = 8 };

/* The max is exact in any order, so an OpenMP max reduction gives
 * bp_column_max's value (but for NaN, which makes the whole column NaN
 * anyway). */
static inline float lane_max(const float *x, int w) {
  float m = x[0];
  BP_SIMD("omp simd reduction(max : m)")
  for (int j = 1; j < w; ++j) m = x[j] > m ? x[j] : m;
  return m;
}

static inline float lane_sum(const float *x, int w) {
  float p[LANES] = {0};
  int j = 0;
  for (; j + LANES <= w; j += LANES)
    for (int l = 0; l < LANES; ++l) p[l] += x[j + l];
  float s = 0.0f;
  for (int l = 0; l < LANES; ++l) s += p[l];
  for (; j < w; ++j) s += x[j];
  return s;
}

/* sum_j y_j (lse - z_j) in double, each term as bp_output_column forms it. */
static inline double lane_ce_cost(const float *y, const float *z, float lse, int w) {
  double p[LANES] = {0};
  int j = 0;
  for (; j + LANES <= w; j += LANES)
    for (int l = 0; l < LANES; ++l) p[l] += (double)y[j + l] * (double)(lse - z[j + l]);
  double c = 0.0;
  for (int l = 0; l < LANES; ++l) c += p[l];
  for (; j < w; ++j) c += (double)y[j] * (double)(lse - z[j]);
  return c;
}

/* The first index of the largest value, as bp_example_correct's loop finds
 * it: one chain of compares there, about 50 us of a 256x4@256 step and most
 * of its output pass (bench/NOTES.md section 14). Here LANES running maxima
 * with their indices, lane l taking the elements j = l mod LANES of the
 * whole blocks (vectorized: a compare and two blends per block), then the
 * lanes combined and the tail scanned. The loop's answer exactly: within a
 * lane a strict > keeps the first index of a tie, across lanes the smallest
 * index holding the maximum wins; NaN never wins a compare, so a NaN lane
 * start is -inf with index w (no index); a NaN in x[0] wins in the loop
 * (nothing compares greater), so that is answered first. */
static inline int scalar_argmax(const float *x, int w) {
  int best = 0;
  float m = x[0];
  for (int j = 1; j < w; ++j)
    if (x[j] > m) {
      m = x[j];
      best = j;
    }
  return best;
}

/* LANES floats or ints in one vector (GCC's and clang's vector extension:
 * one AVX2 register in the avx2 clone, two SSE ones in the baseline). The
 * plain loop over lanes vectorized into masked stores and branches, at 2x
 * the time of the scalar chain it replaced; written with whole-vector
 * compares and bit blends it is a compare and two blends per block. */
typedef float lane_f __attribute__((vector_size(LANES * sizeof(float))));
typedef int32_t lane_i __attribute__((vector_size(LANES * sizeof(int32_t))));

static inline int lane_argmax(const float *x, int w) {
  if (w < 2 * LANES || x[0] != x[0]) return scalar_argmax(x, w);
  lane_f mv;
  lane_i mi, at;
  for (int l = 0; l < LANES; ++l) {
    const int number = x[l] == x[l];
    mv[l] = number ? x[l] : -INFINITY;
    mi[l] = number ? l : w;
    at[l] = l;
  }
  int j = LANES;
  for (; j + LANES <= w; j += LANES) {
    lane_f v;
    memcpy(&v, x + j, sizeof v);
    at += LANES;
    const lane_i gt = v > mv; /* all ones where greater; NaN never is */
    mv = (lane_f)(((lane_i)v & gt) | ((lane_i)mv & ~gt));
    mi = (at & gt) | (mi & ~gt);
  }
  float m = mv[0];
  for (int l = 1; l < LANES; ++l) m = mv[l] > m ? mv[l] : m;
  int best = w;
  for (int l = 0; l < LANES; ++l)
    if (mv[l] == m && mi[l] < best) best = mi[l];
  for (; j < w; ++j) /* the tail comes after every lane's elements */
    if (x[j] > m) {
      m = x[j];
      best = j;
    }
  return best;
}

/* Cloned per instruction set as a static function: GCC exports the ifunc
 * of a cloned global one whatever the visibility (tests/exported_symbols). */
BP_VECTOR_CLONES static int example_correct(const float *a, const float *y, int w) {
  if (w == 1) return bp_example_correct(a, y, w, 1);
  return lane_argmax(a, w) == lane_argmax(y, w);
}

int bp_cpu_example_correct(const float *a, const float *y, int w) {
  return example_correct(a, y, w);
}

/* sum_j (a_j - y_j)^2 in double, each term bp_cost_term's float. One sum
 * after another, this chain of dependent double adds was most of the output
 * pass: 88 us of a 1.2 ms 256x4@256 step on one thread (bench/NOTES.md
 * section 14). */
static inline double lane_quadratic_cost(const float *a, const float *y, int w) {
  double p[LANES] = {0};
  int j = 0;
  for (; j + LANES <= w; j += LANES)
    for (int l = 0; l < LANES; ++l) p[l] += (double)bp_cost_term(a[j + l], y[j + l]);
  double c = 0.0;
  for (int l = 0; l < LANES; ++l) c += p[l];
  for (; j < w; ++j) c += (double)bp_cost_term(a[j], y[j]);
  return c;
}

/* Softmax of one column, bp_softmax_column's steps with a vector exp and
 * the lane reductions above: z (or a itself, in place) gets the bias, then
 * max, exp, sum, division. *lse = m + log(s), the column's log-sum-exp, for
 * the cross-entropy cost (the value bp_output_column computes from z). */
BP_VECTOR_CLONES static void bias_softmax_column(float *z, float *a, const float *b, int out,
                                                 float *lse) {
  float *src = z ? z : a;
  BP_SIMD("omp simd")
  for (int j = 0; j < out; ++j) src[j] = src[j] + b[j];
  const float m = lane_max(src, out);
  BP_SIMD("omp simd")
  for (int j = 0; j < out; ++j) a[j] = expf(src[j] - m);
  const float s = lane_sum(a, out);
  BP_SIMD("omp simd")
  for (int j = 0; j < out; ++j) a[j] = a[j] / s;
  if (lse) *lse = m + logf(s);
}

void bp_cpu_bias_activation(int act, float *z, float *a, const float *b, int out, int n,
                            float *lse) {
  const int par = (size_t)out * (size_t)n >= PAR_MIN;
  (void)par;
  BP_OMP("omp parallel for schedule(static) if(par)")
  for (int k = 0; k < n; ++k) {
    const size_t o = (size_t)k * (size_t)out;
    if (act == BP_EW_SOFTMAX)
      bias_softmax_column(z ? z + o : NULL, a + o, b, out, lse ? lse + k : NULL);
    else if (z)
      bias_act_keep(act, z + o, a + o, b, out);
    else
      bias_act_inplace(act, a + o, b, out);
  }
}

/* ---- The output layer ---- */

/* One example's cost C0 and the scalar its error needs: bp_output_column's
 * sums, in index order but for softmax + cross-entropy and for the quadratic
 * cost of an elementwise output, whose sums run in lanes as the softmax's
 * do. */
BP_VECTOR_CLONES static double column_cost(int act, int cost, const float *z, const float *a,
                                           float lse, const float *y, int w, float *col) {
  double c = 0.0;
  if (cost == BP_EW_CROSS_ENTROPY && act == BP_EW_SOFTMAX) {
    *col = lane_sum(y, w);
    c = lane_ce_cost(y, z, lse, w);
  } else if (cost == BP_EW_CROSS_ENTROPY) { /* sigmoid output */
    for (int j = 0; j < w; ++j) c += (double)bp_softplus(z[j]) - (double)y[j] * (double)z[j];
  } else if (act == BP_EW_SOFTMAX) { /* quadratic */
    float dot = 0.0f;
    for (int j = 0; j < w; ++j) {
      c += (double)bp_cost_term(a[j], y[j]);
      dot += 2.0f * (a[j] - y[j]) * a[j];
    }
    *col = dot;
  } else {
    c = lane_quadratic_cost(a, y, w);
  }
  return c;
}

/* The quadratic cost's output error through f'(a) for one activation ACT,
 * a constant in each loop so that the derivative inlines and the loop
 * vectorizes (one loop with act as a variable would not). */
#define QUADRATIC_ROWS(ACT)                                                     \
  do {                                                                          \
    BP_SIMD("omp simd")                                                         \
    for (int j = 0; j < w; ++j) {                                             \
      const float d = 2.0f * (a[j] - y[j]) * bp_activation_prime_of_a(ACT, a[j]); \
      delta[j] = d;                                                             \
      acc[j] += d;                                                              \
    }                                                                           \
  } while (0)

/* One column of w rows: delta = dC0/dz (bp_output_column's
 * formulas; the sigmoid's quadratic error is bp_output_error_of_a), and
 * acc[j] += delta. */
BP_VECTOR_CLONES static void output_rows(int act, int cost, const float *a, const float *y,
                                         float col, float *delta, double *acc, int w) {
  if (cost == BP_EW_CROSS_ENTROPY && act == BP_EW_SOFTMAX) {
    BP_SIMD("omp simd")
    for (int j = 0; j < w; ++j) {
      const float d = a[j] * col - y[j];
      delta[j] = d;
      acc[j] += d;
    }
  } else if (cost == BP_EW_CROSS_ENTROPY) {
    BP_SIMD("omp simd")
    for (int j = 0; j < w; ++j) {
      const float d = a[j] - y[j];
      delta[j] = d;
      acc[j] += d;
    }
  } else if (act == BP_EW_SOFTMAX) {
    BP_SIMD("omp simd")
    for (int j = 0; j < w; ++j) {
      const float d = a[j] * (2.0f * (a[j] - y[j]) - col);
      delta[j] = d;
      acc[j] += d;
    }
  } else if (act == BP_EW_TANH) {
    QUADRATIC_ROWS(BP_EW_TANH);
  } else if (act == BP_EW_RELU) {
    QUADRATIC_ROWS(BP_EW_RELU);
  } else if (act == BP_EW_IDENTITY) {
    QUADRATIC_ROWS(BP_EW_IDENTITY);
  } else {
    BP_SIMD("omp simd")
    for (int j = 0; j < w; ++j) {
      const float d = bp_output_error_of_a(a[j], y[j]);
      delta[j] = d;
      acc[j] += d;
    }
  }
}

/* Block b's row of partial bias sums (acc holds one row of w per block),
 * zeroed, and the end of its examples. */
static inline double *block_start(double *acc, int b, int w) {
  double *part = acc + (size_t)b * (size_t)w;
  for (int j = 0; j < w; ++j) part[j] = 0.0;
  return part;
}

static inline int block_end(int b, int n) {
  const int end = (b + 1) * BP_CPU_SUM_BLOCK;
  return n < end ? n : end;
}

/* db[j] = (sum over blocks b of part[b w + j]) / n, blocks in order, into
 * block 0's row as the running sum (contiguous rows, not a strided walk per
 * j through up to a thousand blocks). */
static void finish_bias(double *part, int blocks, int w, int n, float *db) {
  for (int b = 1; b < blocks; ++b) {
    const double *p = part + (size_t)b * (size_t)w;
    for (int j = 0; j < w; ++j) part[j] += p[j];
  }
  for (int j = 0; j < w; ++j) db[j] = (float)(part[j] / (double)n);
}

double bp_cpu_output_pass(int act, int cost, const float *z, const float *a, const float *lse,
                          const float *y, float *delta, int w, int n, double *cost_acc,
                          float *col, double *acc, float *db, int64_t *correct) {
  const int par = (size_t)w * (size_t)n >= PAR_MIN;
  (void)par;
  int64_t right = 0;
  if (!delta) { /* the costs alone (evaluation): columns across the threads */
    BP_OMP("omp parallel for schedule(static) reduction(+ : right) if(par)")
    for (int k = 0; k < n; ++k) {
      const size_t o = (size_t)k * (size_t)w;
      cost_acc[k] = column_cost(act, cost, z ? z + o : NULL, a + o, lse ? lse[k] : 0.0f, y + o,
                                w, col + k);
      if (correct) right += bp_cpu_example_correct(a + o, y + o, w);
    }
  } else {
    const int blocks = bp_cpu_sum_blocks(n);
    const int bpar = par && blocks > 1;
    (void)bpar;
    BP_OMP("omp parallel for schedule(static) reduction(+ : right) if(bpar)")
    for (int b = 0; b < blocks; ++b) {
      double *part = block_start(acc, b, w);
      for (int k = b * BP_CPU_SUM_BLOCK; k < block_end(b, n); ++k) {
        const size_t o = (size_t)k * (size_t)w;
        /* The column's cost and scalar, its accuracy and its error while
         * it is in cache. */
        cost_acc[k] = column_cost(act, cost, z ? z + o : NULL, a + o, lse ? lse[k] : 0.0f,
                                  y + o, w, col + k);
        if (correct) right += bp_cpu_example_correct(a + o, y + o, w);
        output_rows(act, cost, a + o, y + o, col[k], delta + o, part, w);
      }
    }
    finish_bias(acc, blocks, w, n, db);
  }
  if (correct) *correct += right;
  double sum = 0.0;
  for (int k = 0; k < n; ++k) sum += cost_acc[k];
  return sum;
}

/* ---- Hidden layers ---- */

/* One column of w rows: g = g f'(a) in place, acc[j] += g. */
BP_VECTOR_CLONES static void hidden_rows(int act, float *g, const float *a, double *acc, int w) {
  switch (act) {
    case BP_EW_TANH:
      BP_SIMD("omp simd")
      for (int j = 0; j < w; ++j) {
        const float d = g[j] * bp_activation_prime_of_a(BP_EW_TANH, a[j]);
        g[j] = d;
        acc[j] += d;
      }
      break;
    case BP_EW_RELU:
      BP_SIMD("omp simd")
      for (int j = 0; j < w; ++j) {
        const float d = g[j] * bp_activation_prime_of_a(BP_EW_RELU, a[j]);
        g[j] = d;
        acc[j] += d;
      }
      break;
    case BP_EW_IDENTITY:
      BP_SIMD("omp simd")
      for (int j = 0; j < w; ++j) {
        const float d = g[j] * bp_activation_prime_of_a(BP_EW_IDENTITY, a[j]);
        g[j] = d;
        acc[j] += d;
      }
      break;
    default:
      BP_SIMD("omp simd")
      for (int j = 0; j < w; ++j) {
        const float d = bp_hidden_error_of_a(g[j], a[j]);
        g[j] = d;
        acc[j] += d;
      }
      break;
  }
}

void bp_cpu_hidden_pass(int act, float *g, const float *a, int w, int n, double *acc, float *db) {
  const int blocks = bp_cpu_sum_blocks(n);
  const int par = blocks > 1 && (size_t)w * (size_t)n >= PAR_MIN;
  (void)par;
  BP_OMP("omp parallel for schedule(static) if(par)")
  for (int b = 0; b < blocks; ++b) {
    double *part = block_start(acc, b, w);
    for (int k = b * BP_CPU_SUM_BLOCK; k < block_end(b, n); ++k) {
      const size_t o = (size_t)k * (size_t)w;
      hidden_rows(act, g + o, a + o, part, w);
    }
  }
  finish_bias(acc, blocks, w, n, db);
}
