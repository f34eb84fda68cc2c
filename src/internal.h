/*
 * internal.h - the objects behind the opaque handles, and the one interface
 * between the API layer (src/ (the .c files)) and the backends (src/cpu, src/cuda).
 *
 * The API layer validates every argument, owns the shapes, and calls the
 * backend through bp_backend_ops; backends never re-check arguments and
 * never branch on which backend they are.
 *
 * Memory layout shared by both backends (the CUDA backend mirrors it in
 * device memory):
 *   - params: one buffer of n_params floats, layer i's W_i (row-major
 *     s[i+1] x s[i]) at w_offset[i], then b_i at b_offset[i]. grads: the same
 *     layout. So SGD is one pass over one buffer.
 *   - A row-major host matrix X (n x s0) is, read column-major, the matrix
 *     A_0 (s0 x n, leading dimension s0): column k is example k. Every
 *     activation, pre-activation and error buffer is stored that way
 *     (width x n, column-major), so the three products per layer are plain
 *     column-major GEMMs on the stored data, with no transposing copies:
 *       Z_i       = W_i A_i         gemm(T, N, s[i+1], n, s[i],   W: lda s[i])
 *       G         = W_i^T Delta_i   gemm(N, N, s[i], n, s[i+1])
 *       dW_i^T    = A_i Delta_i^T/n gemm(N, T, s[i], s[i+1], n)
 *     (W_i stored row-major is W_i^T stored column-major with ld s[i].)
 */
#ifndef BP_INTERNAL_H
#define BP_INTERNAL_H

#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include "backprop.h"

#ifdef __cplusplus
extern "C" {
#endif

#define BP_ERROR_LEN 1024

/* Largest width or batch the library accepts: keeps every dimension handed
 * to BLAS within int and every product of two of them within int64. */
#define BP_MAX_DIM (1 << 28)

typedef struct bp_backend_ops bp_backend_ops;

/* In-epoch progress reporting (bp_train_epoch_ex). */
typedef struct bp_epoch_progress {
  bp_progress_fn fn;
  void *user;
  int every;  /* batches between reports, >= 1 */
  int total;  /* examples in the epoch */
} bp_epoch_progress;

/* Calls the callback: done examples ran, cost_sum/cost_examples is the
 * running mean. Returns nonzero if the callback asks to stop. */
int bp_epoch_report(const bp_epoch_progress *p, int done, double cost_sum, int cost_examples);

struct bp_context {
  bp_backend backend;   /* never AUTO */
  int device;           /* CUDA ordinal; 0 for CPU */
  int failed;           /* sticky device fault: every later call fails */
  char last_error[BP_ERROR_LEN];
  const bp_backend_ops *ops;
  void *impl;           /* backend state (stream, BLAS handle, ...) */
  /* Test hook: when > 0, the Nth backend allocation from now fails as if
   * memory were exhausted (1 = the next one). See bp_debug_fail_allocation. */
  long fail_alloc_countdown;
};

struct bp_network {
  bp_context *ctx;
  int n_layers;         /* L = n_sizes - 1 */
  int *sizes;           /* L + 1 widths */
  size_t *w_offset;     /* L offsets of W_i in params */
  size_t *b_offset;     /* L offsets of b_i in params */
  size_t n_params;
  int max_width;
  int has_grads;        /* a backward pass has filled grads */
  /* Execution options (backprop.h "Execution options"). options_serial
   * changes whenever one of them does, so a backend can key caches (cuBLASLt
   * plans, captured graphs) on it. */
  bp_math_mode math;
  int deterministic;
  int cuda_graphs;
  unsigned options_serial;
  /* The last epoch call's statistics: the API layer fills steps and wall_us,
   * the backend queue_us and graph_replays. */
  bp_epoch_stats stats;
  void *impl;           /* backend buffers */
};

struct bp_dataset {
  bp_context *ctx;
  int n, n_in, n_out;
  void *impl;           /* backend copy of X (n x n_in) and Y (n x n_out) */
};

/* What a backend implements. Arguments are validated by the caller; host
 * pointers are host memory. Every function reports failures through
 * bp_error(net->ctx, ...) and returns the status. */
struct bp_backend_ops {
  const char *name;
  void (*context_destroy)(bp_context *ctx);

  /* Allocate params and grads (n_params floats each) and zero the grads; the
   * caller then fills params through write_params. */
  bp_status (*network_init)(bp_network *net);
  void (*network_free)(bp_network *net);
  /* Copy count floats at offset between params (or grads) and the host. */
  bp_status (*read_params)(const bp_network *net, size_t offset, size_t count, float *dst);
  bp_status (*write_params)(bp_network *net, size_t offset, size_t count, const float *src);
  bp_status (*read_grads)(const bp_network *net, size_t offset, size_t count, float *dst);

  /* Host arrays row-major (n x s0 in, n x sL out). */
  bp_status (*forward)(bp_network *net, const float *X, int n, float *out);
  /* Fills grads; *cost receives the batch's mean cost. */
  bp_status (*backward)(bp_network *net, const float *X, const float *Y, int n, float *cost);
  bp_status (*sgd_step)(bp_network *net, float lr);

  bp_status (*dataset_init)(bp_dataset *data, const float *X, const float *Y);
  void (*dataset_free)(bp_dataset *data);
  /* perm: data->n indices (a permutation, made on the host). For each batch:
   * gather, forward, backward, and the SGD step unless the batch cost is not
   * finite. *cost_sum = sum over batches of (batch mean cost * batch size)
   * over the batches that were finite; *skipped = batches skipped;
   * *examples_done = examples whose batch ran (less than data->n only when
   * the progress callback stopped the epoch). progress may be NULL; else
   * bp_epoch_report is called after every progress->every batches and after
   * the last, with the running sums. */
  bp_status (*train_epoch)(bp_network *net, const bp_dataset *data, int batch_size, float lr,
                           const int32_t *perm, const bp_epoch_progress *progress,
                           double *cost_sum, int *skipped, int *examples_done);
  /* *cost_sum = sum of per-example costs, *correct = examples classified right. */
  bp_status (*evaluate)(bp_network *net, const bp_dataset *data, double *cost_sum,
                        int64_t *correct);

  /* bp_train_epoch_host: as train_epoch (no progress), but the examples come
   * from the row-major host arrays X (n x s[0]) and Y (n x s[L]). */
  bp_status (*train_epoch_host)(bp_network *net, const float *X, const float *Y, int n,
                                int batch_size, float lr, const int32_t *perm, double *cost_sum,
                                int *skipped);

  /* Optional members: NULL where the backend has no such thing. */

  /* Called by bp_network_set_math_mode before the mode changes; refuses a
   * mode the device cannot run (BP_ERR_UNSUPPORTED). NULL: every mode is fine. */
  bp_status (*check_math_mode)(bp_network *net, bp_math_mode mode);
  /* The device-pointer calls (backprop.h "Data already on the GPU"); stream
   * is the caller's cudaStream_t. NULL: BP_ERR_UNSUPPORTED. */
  bp_status (*forward_device)(bp_network *net, const float *X, int n, float *out, void *stream);
  bp_status (*backward_device)(bp_network *net, const float *X, const float *Y, int n,
                               float *cost, void *stream);
  bp_status (*train_batch_device)(bp_network *net, const float *X, const float *Y, int n,
                                  float lr, float *cost, void *stream);
};

/* The epoch permutation of bp_train_epoch: perm[0..n) = 0..n-1 shuffled by
 * Fisher-Yates from shuffle_seed. Shared by bp_train_epoch_host so both
 * calls visit the examples in the same order. */
void bp_epoch_permutation(int32_t *perm, int n, uint64_t shuffle_seed);

/* ---- Shared helpers (src/common.c) ---- */

/* Records a formatted message on ctx (if not NULL) and returns status. */
bp_status bp_error(bp_context *ctx, bp_status status, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 3, 4)))
#endif
    ;
void bp_clear_error(bp_context *ctx);
/* The entry check of every call that works on ctx: a context poisoned by a
 * sticky device fault refuses all work (BP_ERR_DEVICE); otherwise the last
 * error is cleared and BP_OK returned. ctx must not be NULL. */
bp_status bp_check_context(bp_context *ctx);

/* A monotonic clock in microseconds (src/stats.c). */
double bp_now_us(void);

/* 1 if all count floats are finite. */
int bp_all_finite(const float *x, size_t count);

/* Calls the allocation test hook: returns 1 if this allocation must fail. */
int bp_debug_should_fail_alloc(bp_context *ctx);

/* Deterministic random numbers (xoshiro256** seeded through SplitMix64). */
typedef struct bp_rng { uint64_t s[4]; } bp_rng;
void bp_rng_seed(bp_rng *rng, uint64_t seed);
uint64_t bp_rng_next(bp_rng *rng);
double bp_rng_uniform(bp_rng *rng);          /* [0, 1) with 53 random bits */
double bp_rng_normal(bp_rng *rng);           /* standard normal (Box-Muller) */
uint64_t bp_rng_below(bp_rng *rng, uint64_t bound); /* uniform in [0, bound), unbiased */

/* The backends. bp_cuda_ops is NULL-equivalent (absent) without CUDA. */
extern const bp_backend_ops bp_cpu_ops;
#ifdef BP_WITH_CUDA
extern const bp_backend_ops bp_cuda_ops;
/* Creates the CUDA state of ctx on ctx->device (stream, cuBLAS handle). */
bp_status bp_cuda_context_init(bp_context *ctx);
int bp_cuda_count_devices(void);
bp_status bp_cuda_debug_fault(bp_context *ctx);
/* Tests only: how many of the network's product plans run on cuBLASLt
 * (BP_GEMM=lt; 0 on the cuBLAS path), so a test can tell that the Lt path
 * was taken rather than its fallback. */
int bp_cuda_debug_lt_plans(const bp_network *net);
#endif

/* The largest operand any product of net reads at batch n: a weight matrix
 * (s[i] x s[i+1]) or a batch of activations or errors (at most
 * max_width x n). Both backends size their reduced-precision operand
 * scratch with it. */
static inline size_t bp_largest_operand(const bp_network *net, int n) {
  size_t most = (size_t)net->max_width * (size_t)n;
  for (int i = 0; i < net->n_layers; ++i) {
    size_t w = (size_t)net->sizes[i] * (size_t)net->sizes[i + 1];
    if (w > most) most = w;
  }
  return most;
}

/* Evaluate's accuracy rule for one example, shared by both backends'
 * references: out and y have `width` entries. */
static inline int bp_example_correct(const float *out, const float *y, int width, size_t stride) {
  if (width == 1) return (out[0] >= 0.5f) == (y[0] >= 0.5f);
  int ia = 0, iy = 0;
  for (int j = 1; j < width; ++j) {
    if (out[(size_t)j * stride] > out[(size_t)ia * stride]) ia = j;
    if (y[(size_t)j * stride] > y[(size_t)iy * stride]) iy = j;
  }
  return ia == iy;
}

#ifdef __cplusplus
}
#endif
#endif /* BP_INTERNAL_H */
