/* cpu_backend.c - the reference backend: the math of backprop.h with BLAS for
 * the three products per layer and the shared formulas of elementwise.cuh for
 * everything else. Buffers are laid out exactly as the CUDA backend's (see
 * internal.h), so the two issue the same GEMMs on the same data.
 *
 * Math modes (bp_math_mode): FP32 calls sgemm on the data as it is. TF32 and
 * BF16 are emulated: both operands of each product are first rounded to
 * nearest-even to the shorter format (bp_round_tf32 / bp_round_bf16 of
 * elementwise.cuh, the rule the GPU conversion uses) into two scratch
 * buffers, then the float32 sgemm runs on the rounded copies. The products
 * of two such values are exact in float32 (at most 22 significant bits), so
 * what remains is float32 accumulation: the arithmetic of the tensor cores,
 * up to the order of the sums. Everything else stays float32. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../comm/comm.h"
#include "../internal.h"
#include "blas.h"
#include "cpu_model.h"
#include "cpu_passes.h"
#include "matmul.h"
#include "cpu_threads.h"
#include "elementwise.cuh"

/* Threads and passes. Each layer's elementwise work is one pass over the
 * product's output, split across the threads of the one pool (cpu_threads.h,
 * cpu_passes.h), for every activation, cost and optimizer
 * (cpu_activations.c, cpu_optimizers.c): forward, bias + activation in
 * place over W^T a (no z kept but the output layer's under cross-entropy);
 * backward, error x derivative + the bias-gradient sum, the derivative taken
 * from the stored activation. Results depend on the thread count only
 * through the BLAS (README "CPU backend: threads and speed"). */

typedef struct cpu_net {
  float *params;
  float *grads;
  /* The SGD update's target: the new parameters are written here while
   * checked, and the two pointers swap when all are finite (one pass, and a
   * refused update leaves params untouched). Everything reaches params
   * through c->params + offset at the time of use, so a swap is safe. */
  float *next;
  int cap;       /* batch capacity of the workspace below */
  float **a;     /* a[i]: activations of weight layer i, s[i+1] x cap */
  float *zL;     /* the output layer's pre-activations, s[L] x cap, under cross-entropy
                    only (its cost reads z); every other pass needs the activations alone */
  float *lse;    /* cap: a softmax output's log-sum-exp per example, from forward */
  float *col;    /* cap: the per-example scalar of the output error (cpu_model.h) */
  float *delta;  /* two error buffers, max_width x cap each */
  float *delta2;
  double *db_acc; /* max_width x bp_cpu_sum_blocks(cap): bias-gradient partial sums */
  double *cost_acc; /* cap: each example's cost, summed in example order */
  float *in;     /* gathered inputs for train_epoch, s[0] x cap */
  float *target; /* gathered targets, s[L] x cap */
  /* TF32/BF16 emulation: rounded copies of a product's two operands,
   * round_count floats each (the largest operand at batch cap). Allocated
   * the first time a reduced-precision mode needs them; kept until the
   * network is destroyed. */
  float *round_a, *round_b;
  size_t round_count;
  bp_cpu_opt opt; /* optimizer state (cpu_optimizers.c) */
  bp_cpu_matmuls *mm; /* the forward products' primitives (matmul.h); NULL: sgemm + pass */
  bp_counters counters;
  double last_cost; /* the last backward pass's mean cost, before rounding to float */
} cpu_net;

typedef struct cpu_data {
  float *X;
  float *Y;
} cpu_data;

static void *cpu_alloc(bp_context *ctx, size_t count, size_t elem, const char *what) {
  if (bp_debug_should_fail_alloc(ctx)) {
    bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "allocating %s failed: out of memory (test hook)", what);
    return NULL;
  }
  if (count != 0 && elem > SIZE_MAX / count) {
    bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "allocating %s: size overflows", what);
    return NULL;
  }
  void *p = malloc(count != 0 && elem != 0 ? count * elem : 1);
  if (!p)
    bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "allocating %s (%zu bytes) failed: out of host memory",
             what, count * elem);
  return p;
}

static void free_workspace(bp_network *net, cpu_net *c) {
  if (c->a)
    for (int i = 0; i < net->n_layers; ++i) free(c->a[i]);
  free(c->a);
  free(c->zL);
  free(c->lse);
  free(c->col);
  c->zL = c->lse = c->col = NULL;
  free(c->delta);
  free(c->delta2);
  free(c->in);
  free(c->target);
  free(c->db_acc);
  free(c->cost_acc);
  c->db_acc = NULL;
  c->cost_acc = NULL;
  c->a = NULL;
  c->delta = c->delta2 = c->in = c->target = NULL;
  c->cap = 0;
}

/* Grows the workspace to hold n examples. On failure the old workspace is
 * kept, so the network stays usable at its old capacity. */
static bp_status grow_workspace(bp_network *net, int n) {
  cpu_net *c = net->impl;
  bp_context *ctx = net->ctx;
  cpu_net fresh = {0};
  const int L = net->n_layers;
  fresh.a = calloc((size_t)L, sizeof(float *));
  bp_status st = BP_ERR_OUT_OF_MEMORY;
  if (!fresh.a) {
    bp_error(ctx, st, "allocating the workspace for batch %d: out of host memory", n);
    goto fail;
  }
  for (int i = 0; i < L; ++i) {
    size_t count = (size_t)net->sizes[i + 1] * (size_t)n;
    if (!(fresh.a[i] = cpu_alloc(ctx, count, sizeof(float), "activations"))) goto fail;
  }
  if (net->cost == BP_COST_CROSS_ENTROPY &&
      !(fresh.zL = cpu_alloc(ctx, (size_t)net->sizes[L] * n, sizeof(float), "pre-activations")))
    goto fail;
  if (!(fresh.lse = cpu_alloc(ctx, (size_t)n, sizeof(float), "log-sum-exps"))) goto fail;
  if (!(fresh.col = cpu_alloc(ctx, (size_t)n, sizeof(float), "error scalars"))) goto fail;
  size_t wide = (size_t)net->max_width * (size_t)n;
  if (!(fresh.delta = cpu_alloc(ctx, wide, sizeof(float), "errors"))) goto fail;
  if (!(fresh.delta2 = cpu_alloc(ctx, wide, sizeof(float), "errors"))) goto fail;
  if (!(fresh.in = cpu_alloc(ctx, (size_t)net->sizes[0] * n, sizeof(float), "batch inputs")))
    goto fail;
  if (!(fresh.target = cpu_alloc(ctx, (size_t)net->sizes[L] * n, sizeof(float), "batch targets")))
    goto fail;
  if (!(fresh.db_acc = cpu_alloc(ctx, (size_t)net->max_width * (size_t)bp_cpu_sum_blocks(n),
                                 sizeof(double), "bias sums")))
    goto fail;
  if (!(fresh.cost_acc = cpu_alloc(ctx, (size_t)n, sizeof(double), "example costs"))) goto fail;
  fresh.params = c->params;
  fresh.grads = c->grads;
  fresh.next = c->next;
  fresh.round_a = c->round_a;
  fresh.round_b = c->round_b;
  fresh.round_count = c->round_count;
  fresh.opt = c->opt;
  fresh.mm = c->mm;
  fresh.cap = n;
  free_workspace(net, c);
  *c = fresh;
  return BP_OK;
fail:
  free_workspace(net, &fresh); /* a holds NULL where nothing was allocated */
  return st;
}

/* Room for the rounded operands at the workspace's capacity. */
static bp_status ensure_round_scratch(bp_network *net) {
  cpu_net *c = net->impl;
  const size_t need = bp_largest_operand(net, c->cap);
  if (need <= c->round_count) return BP_OK;
  float *a = cpu_alloc(net->ctx, need, sizeof(float), "rounded operands");
  float *b = a ? cpu_alloc(net->ctx, need, sizeof(float), "rounded operands") : NULL;
  if (!a || !b) {
    free(a);
    return BP_ERR_OUT_OF_MEMORY; /* the old scratch stays */
  }
  free(c->round_a);
  free(c->round_b);
  c->round_a = a;
  c->round_b = b;
  c->round_count = need;
  return BP_OK;
}

/* Makes the network ready for batches of n examples in its math mode. */
static bp_status ensure_capacity(bp_network *net, int n) {
  cpu_net *c = net->impl;
  bp_status st = BP_OK;
  if (n > c->cap) st = grow_workspace(net, n);
  if (st == BP_OK && net->math != BP_MATH_FP32) st = ensure_round_scratch(net);
  return st;
}

/* Elements a column-major rows x cols matrix with leading dimension ld
 * spans in memory. */
static size_t span(int rows, int cols, int ld) {
  if (rows <= 0 || cols <= 0) return 0;
  return (size_t)(cols - 1) * (size_t)ld + (size_t)rows;
}

/* dst[i] = src[i] rounded to the mode's input precision. */
static void round_operand(float *dst, const float *src, size_t count, bp_math_mode mode) {
  const int par = count >= PAR_MIN_COPY;
  (void)par;
  if (mode == BP_MATH_BF16) {
    BP_OMP("omp parallel for schedule(static) if(par)")
    for (size_t i = 0; i < count; ++i) dst[i] = bp_round_bf16(src[i]);
  } else {
    BP_OMP("omp parallel for schedule(static) if(par)")
    for (size_t i = 0; i < count; ++i) dst[i] = bp_round_tf32(src[i]);
  }
}

/* Every product of the backend: bp_cpu_sgemm's arguments, in the network's
 * math mode. FP32 is the sgemm call itself, bit for bit. */
static void product(bp_network *net, int ta, int tb, int m, int n, int k, float alpha,
                    const float *A, int lda, const float *B, int ldb, float beta, float *C,
                    int ldc) {
  if (net->math != BP_MATH_FP32) {
    cpu_net *c = net->impl;
    round_operand(c->round_a, A, span(ta ? k : m, ta ? m : k, lda), net->math);
    round_operand(c->round_b, B, span(tb ? n : k, tb ? k : n, ldb), net->math);
    A = c->round_a;
    B = c->round_b;
  }
  bp_cpu_sgemm(ta, tb, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

static bp_status cpu_network_init(bp_network *net) {
  cpu_net *c = calloc(1, sizeof *c);
  if (!c) return bp_error(net->ctx, BP_ERR_OUT_OF_MEMORY, "network: out of host memory");
  c->params = cpu_alloc(net->ctx, net->n_params, sizeof(float), "parameters");
  c->grads = c->params ? cpu_alloc(net->ctx, net->n_params, sizeof(float), "gradients") : NULL;
  c->next = c->grads ? cpu_alloc(net->ctx, net->n_params, sizeof(float), "parameters") : NULL;
  if (!c->params || !c->grads || !c->next) {
    free(c->params);
    free(c->grads);
    free(c);
    return BP_ERR_OUT_OF_MEMORY;
  }
  memset(c->grads, 0, sizeof(float) * net->n_params);
  c->mm = bp_cpu_matmuls_create();
  net->impl = c;
  return BP_OK;
}

static void cpu_network_free(bp_network *net) {
  cpu_net *c = net->impl;
  if (!c) return;
  free_workspace(net, c);
  free(c->round_a);
  free(c->round_b);
  bp_cpu_opt_free(&c->opt);
  bp_cpu_matmuls_destroy(c->mm);
  free(c->params);
  free(c->grads);
  free(c->next);
  free(c);
  net->impl = NULL;
}

static bp_status cpu_read_params(const bp_network *net, size_t offset, size_t count, float *dst) {
  memcpy(dst, ((cpu_net *)net->impl)->params + offset, sizeof(float) * count);
  return BP_OK;
}

static bp_status cpu_write_params(bp_network *net, size_t offset, size_t count, const float *src) {
  memcpy(((cpu_net *)net->impl)->params + offset, src, sizeof(float) * count);
  return BP_OK;
}

static bp_status cpu_read_grads(const bp_network *net, size_t offset, size_t count, float *dst) {
  memcpy(dst, ((cpu_net *)net->impl)->grads + offset, sizeof(float) * count);
  return BP_OK;
}

/* The seed's output layer: sigmoid with the quadratic cost. Its evaluation
 * keeps the seed's running sum of every term. */
static int seed_output(const bp_network *net) {
  return net->acts[net->n_layers - 1] == BP_ACTIVATION_SIGMOID && net->cost == BP_COST_QUADRATIC;
}

/* Forward over n examples whose inputs A0 are s[0] x n column-major: per
 * layer the product, then bias + activation. In FP32 the product is oneDNN's
 * matmul primitive (matmul.h), which for the sigmoid, tanh and identity also
 * adds the bias and applies the activation to each tile while it is in
 * cache, so no pass over the layer's output follows; the other layers (ReLU,
 * softmax, an output whose z the cost reads) and the TF32/BF16 emulation
 * keep the product + pass. */
static void forward_core(bp_network *net, const float *A0, int n) {
  cpu_net *c = net->impl;
  const int L = net->n_layers;
  const int fp32 = net->math == BP_MATH_FP32;
  const float *prev = A0;
  for (int i = 0; i < L; ++i) {
    const int in = net->sizes[i], out = net->sizes[i + 1];
    const float *W = c->params + net->w_offset[i];
    const float *b = c->params + net->b_offset[i];
    float *a = c->a[i];
    float *z = i + 1 == L ? c->zL : NULL; /* kept only where the cost reads it */
    const int epi = z ? -1 : bp_cpu_matmul_epilogue(net->acts[i]);
    const int fused =
        fp32 && epi >= 0 && bp_cpu_matmul(c->mm, epi, 1, 0, out, n, in, W, in, prev, in, b, a, out);
    if (!fused) {
      if (!fp32 || !bp_cpu_matmul(c->mm, BP_MM_PLAIN, 1, 0, out, n, in, W, in, prev, in, NULL,
                                  z ? z : a, out))
        product(net, 1, 0, out, n, in, 1.0f, W, in, prev, in, 0.0f, z ? z : a, out);
      bp_cpu_bias_activation(net->acts[i], z, a, b, out, n, i + 1 == L ? c->lse : NULL);
    }
    prev = a;
  }
}

/* Backward over the n examples forward_core last ran on (inputs A0);
 * fills grads, adds the examples classified right to *correct when it is not
 * NULL, returns the mean cost. */
static double backward_core(bp_network *net, const float *A0, const float *Y, int n,
                            int64_t *correct) {
  cpu_net *c = net->impl;
  const int L = net->n_layers;

  const int out = net->sizes[L];
  float *delta = c->delta, *spare = c->delta2;
  /* The output error and its bias gradient: a pass over the columns (the
   * costs, the softmax's column scalars), then one over the rows. */
  const double cost =
      bp_cpu_output_pass(net->acts[L - 1], net->cost, c->zL, c->a[L - 1], c->lse, Y, delta, out,
                         n, c->cost_acc, c->col, c->db_acc, c->grads + net->b_offset[L - 1],
                         correct) /
      (double)n;

  const float inv_n = 1.0f / (float)n;
  for (int i = L - 1; i >= 0; --i) {
    const int in = net->sizes[i], w = net->sizes[i + 1];
    const float *prev = i == 0 ? A0 : c->a[i - 1];
    /* dW_i^T (in x w, column-major) = A_i Delta_i^T / n. */
    product(net, 0, 1, in, w, n, inv_n, prev, in, delta, w, 0.0f, c->grads + net->w_offset[i], in);
    /* db_i came with delta_i (the pass that made it): layer i is complete. */
    bp_engine_grads_ready(net, i); /* data-parallel: this layer's all-reduce may start */
    if (i > 0) {
      /* G = W_i^T Delta_i (in x n), then Delta_{i-1} = G * f'(a_{i-1}) and
       * the bias gradient of layer i-1, in one pass. */
      const float *W = c->params + net->w_offset[i];
      product(net, 0, 0, in, n, w, 1.0f, W, in, delta, w, 0.0f, spare, in);
      bp_cpu_hidden_pass(net->acts[i - 1], spare, c->a[i - 1], in, n, c->db_acc,
                         c->grads + net->b_offset[i - 1]);
      float *t = delta;
      delta = spare;
      spare = t;
    }
  }
  return cost;
}

/* The SGD update in one pass: next = params - lr grads, checked as it is
 * written; 1 (and the buffers swapped) when every new value is finite, 0
 * (params untouched) otherwise. */
static int sgd_update_swap(cpu_net *c, size_t count, float lr) {
  const int par = count >= PAR_MIN_COPY;
  (void)par;
  const float *p = c->params, *g = c->grads;
  float *q = c->next;
  uint32_t bad = 0;
  BP_OMP("omp parallel for schedule(static) reduction(| : bad) if(par)")
  for (size_t i = 0; i < count; ++i) {
    const float v = bp_sgd_update(p[i], g[i], lr);
    q[i] = v;
    bad |= bp_nonfinite_bits(v);
  }
  if (bad) return 0;
  c->next = c->params;
  c->params = q;
  return 1;
}

static bp_status cpu_dataset_init(bp_dataset *data, const float *X, const float *Y) {
  cpu_data *d = calloc(1, sizeof *d);
  if (!d) return bp_error(data->ctx, BP_ERR_OUT_OF_MEMORY, "data set: out of host memory");
  size_t nx = (size_t)data->n * data->n_in, ny = (size_t)data->n * data->n_out;
  d->X = cpu_alloc(data->ctx, nx, sizeof(float), "data set inputs");
  d->Y = d->X ? cpu_alloc(data->ctx, ny, sizeof(float), "data set targets") : NULL;
  if (!d->X || !d->Y) {
    free(d->X);
    free(d);
    return BP_ERR_OUT_OF_MEMORY;
  }
  memcpy(d->X, X, sizeof(float) * nx);
  memcpy(d->Y, Y, sizeof(float) * ny);
  data->impl = d;
  return BP_OK;
}

static void cpu_dataset_free(bp_dataset *data) {
  cpu_data *d = data->impl;
  if (!d) return;
  free(d->X);
  free(d->Y);
  free(d);
  data->impl = NULL;
}

/* ---- The engine's primitives (internal.h) ---- */

static bp_status cpu_reserve(bp_network *net, int n) { return ensure_capacity(net, n); }

/* Host memory is backend memory: the caller's arrays are the batch. */
static bp_status cpu_load(bp_network *net, const float *X, const float *Y, int n, bp_batch *out) {
  (void)net;
  out->x = X;
  out->y = Y;
  out->n = n;
  return BP_OK;
}

static bp_status cpu_epoch_begin(bp_network *net, const bp_epoch_source *src, int batch) {
  (void)net;
  (void)src;
  (void)batch;
  return BP_OK;
}

/* Gathers rows perm[start ..] of the source into the workspace (one slot
 * serves: a CPU step is done before the next batch is staged). A data set
 * and host arrays are the same row-major layout, so both epochs do the same
 * arithmetic on the same values. */
static bp_status cpu_stage(bp_network *net, const bp_epoch_source *src, int start, int n, int slot,
                           bp_batch *out) {
  (void)slot;
  cpu_net *c = net->impl;
  const cpu_data *d = src->data ? src->data->impl : NULL;
  const float *X = d ? d->X : src->X, *Y = d ? d->Y : src->Y;
  const size_t in = (size_t)net->sizes[0], width = (size_t)net->sizes[net->n_layers];
  const int saved = bp_cpu_threads_enter(net->ctx);
  const int par = (size_t)n * (in + width) >= PAR_MIN_COPY;
  (void)par;
  BP_OMP("omp parallel for schedule(static) if(par)")
  for (int k = 0; k < n; ++k) {
    const size_t row = (size_t)src->perm[start + k];
    memcpy(c->in + (size_t)k * in, X + row * in, sizeof(float) * in);
    memcpy(c->target + (size_t)k * width, Y + row * width, sizeof(float) * width);
  }
  bp_cpu_threads_leave(saved);
  out->x = c->in;
  out->y = c->target;
  out->n = n;
  return BP_OK;
}

static void cpu_epoch_end(bp_network *net, const bp_epoch_source *src) {
  (void)net;
  (void)src;
}

static bp_status cpu_forward(bp_network *net, const bp_batch *b) {
  const int saved = bp_cpu_threads_enter(net->ctx);
  forward_core(net, b->x, b->n);
  bp_cpu_threads_leave(saved);
  return BP_OK;
}

static bp_status cpu_backward(bp_network *net, const bp_batch *b, int accumulate) {
  cpu_net *c = net->impl;
  const int saved = bp_cpu_threads_enter(net->ctx);
  const double cost = backward_core(net, b->x, b->y, b->n,
                                    accumulate & BP_BACKWARD_CORRECT ? &c->counters.correct : NULL);
  bp_cpu_threads_leave(saved);
  c->last_cost = cost;
  c->counters.cost = (float)cost;
  if (accumulate & BP_BACKWARD_COST) {
    if (isfinite(cost))
      c->counters.cost_sum += cost * b->n;
    else
      ++c->counters.skipped;
  }
  return BP_OK;
}

static bp_status cpu_update(bp_network *net, float lr, int gate_on_cost, int count_skip) {
  cpu_net *c = net->impl;
  c->counters.update_bad = 0;
  if (gate_on_cost && !isfinite(c->last_cost)) return BP_OK; /* counted by backward */
  const int saved = bp_cpu_threads_enter(net->ctx);
  const int applied = bp_optimizer_is_plain_sgd(&net->opt)
                          ? sgd_update_swap(c, net->n_params, lr)
                          : bp_cpu_opt_update(net, &c->opt, &c->params, &c->next, c->grads, lr);
  if (!applied) {
    c->counters.update_bad = 1;
    if (count_skip) ++c->counters.skipped;
  }
  bp_cpu_threads_leave(saved);
  return BP_OK;
}

static bp_status cpu_reset_counters(bp_network *net) {
  cpu_net *c = net->impl;
  memset(&c->counters, 0, sizeof c->counters);
  return BP_OK;
}

static bp_status cpu_read_counters(bp_network *net, bp_counters *out) {
  *out = ((cpu_net *)net->impl)->counters;
  return BP_OK;
}

static bp_status cpu_evaluate_chunk(bp_network *net, const bp_dataset *data, int start, int n) {
  cpu_net *c = net->impl;
  const cpu_data *d = data->impl;
  const int out = data->n_out;
  const int L = net->n_layers;
  const float *a = c->a[L - 1];
  const float *y = d->Y + (size_t)start * out;
  double sum = c->counters.cost_sum;
  int64_t right = c->counters.correct;
  const int saved = bp_cpu_threads_enter(net->ctx);
  forward_core(net, d->X + (size_t)start * data->n_in, n);
  if (!seed_output(net)) /* the costs alone: no error, no bias gradient */
    sum += bp_cpu_output_pass(net->acts[L - 1], net->cost, c->zL, a, c->lse, y, NULL, out, n,
                              c->cost_acc, c->col, NULL, NULL, NULL);
  bp_cpu_threads_leave(saved);
  for (int k = 0; k < n; ++k) {
    const float *ak = a + (size_t)k * out, *yk = y + (size_t)k * out;
    if (seed_output(net))
      for (int j = 0; j < out; ++j) sum += bp_cost_term(ak[j], yk[j]);
    right += bp_cpu_example_correct(ak, yk, out);
  }
  c->counters.cost_sum = sum;
  c->counters.correct = right;
  return BP_OK;
}

static bp_status cpu_read_output(bp_network *net, int n, float *out) {
  cpu_net *c = net->impl;
  memcpy(out, c->a[net->n_layers - 1], sizeof(float) * (size_t)n * net->sizes[net->n_layers]);
  return BP_OK;
}

static bp_status cpu_opt_reset(bp_network *net, size_t count) {
  return bp_cpu_opt_reset(net, &((cpu_net *)net->impl)->opt, count);
}

static bp_status cpu_opt_read(const bp_network *net, size_t offset, size_t count, float *dst,
                              int64_t *step) {
  const bp_cpu_opt *o = &((const cpu_net *)net->impl)->opt;
  if (count > 0) memcpy(dst, o->state + offset, sizeof(float) * count);
  if (step) *step = o->step;
  return BP_OK;
}

static bp_status cpu_opt_write(bp_network *net, size_t offset, size_t count, const float *src,
                               const int64_t *step) {
  bp_cpu_opt *o = &((cpu_net *)net->impl)->opt;
  if (count > 0) memcpy(o->state + offset, src, sizeof(float) * count);
  if (step) o->step = *step;
  return BP_OK;
}

/* ---- The gradient exchange (data-parallel, internal.h): MPI on the host
 * buffers themselves (src/comm). ---- */

static bp_status cpu_exchange_start(bp_network *net, size_t offset, size_t count, float scale) {
  float *g = ((cpu_net *)net->impl)->grads + offset;
  if (scale == 0.0f)
    memset(g, 0, sizeof(float) * count);
  else if (scale != 1.0f)
    for (size_t i = 0; i < count; ++i) g[i] *= scale;
  bp_status st = bp_comm_iallreduce_floats(net->comm, g, count);
  return st == BP_OK ? st : bp_error(net->ctx, st, "%s", bp_comm_last_error(net->comm));
}

static bp_status cpu_exchange_finish(bp_network *net, int n_local, int n_global, int accumulate) {
  cpu_net *c = net->impl;
  bp_status st = bp_comm_wait(net->comm, "gradient all-reduce");
  double cost = n_local > 0 ? c->last_cost * ((double)n_local / (double)n_global) : 0.0;
  if (st == BP_OK) st = bp_comm_allreduce_doubles(net->comm, &cost, 1, "batch cost's reduction");
  if (st != BP_OK) return bp_error(net->ctx, st, "%s", bp_comm_last_error(net->comm));
  c->last_cost = cost;
  c->counters.cost = (float)cost;
  if (accumulate) {
    if (isfinite(cost))
      c->counters.cost_sum += cost * n_global;
    else
      ++c->counters.skipped;
  }
  return BP_OK;
}

static void cpu_context_destroy(bp_context *ctx) { bp_cpu_context_free(ctx); }

const bp_backend_ops bp_cpu_ops = {
    .name = "cpu",
    .context_destroy = cpu_context_destroy,
    .network_init = cpu_network_init,
    .network_free = cpu_network_free,
    .read_params = cpu_read_params,
    .write_params = cpu_write_params,
    .read_grads = cpu_read_grads,
    .dataset_init = cpu_dataset_init,
    .dataset_free = cpu_dataset_free,
    .reserve = cpu_reserve,
    .load = cpu_load,
    .epoch_begin = cpu_epoch_begin,
    .stage = cpu_stage,
    .epoch_end = cpu_epoch_end,
    .forward = cpu_forward,
    .backward = cpu_backward,
    .update = cpu_update,
    .opt_reset = cpu_opt_reset,
    .opt_read = cpu_opt_read,
    .opt_write = cpu_opt_write,
    .reset_counters = cpu_reset_counters,
    .read_counters = cpu_read_counters,
    .evaluate_chunk = cpu_evaluate_chunk,
    .read_output = cpu_read_output,
    .exchange_start = cpu_exchange_start,
    .exchange_finish = cpu_exchange_finish,
    /* No device: no train_step or train_share_step unit, no device-pointer
     * calls. */
};
