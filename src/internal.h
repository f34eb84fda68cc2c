/*
 * internal.h - the objects behind the opaque handles, and the one interface
 * between the API layer (src/ (the .c files)) and the backends (src/cpu, src/cuda).
 *
 * The API layer validates every argument and owns the shapes; the engine
 * (src/engine/) runs the training loops and calls the backend through
 * bp_backend_ops; backends never re-check arguments, never loop over an
 * epoch's batches, and never branch on which backend they are.
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
#include <string.h>

#include "backprop.h"

/* 1 when x is Inf or NaN: its exponent bits all set. OR-ed over a pass it
 * is a reduction the compiler vectorizes (a float sum of x*0, the first
 * version of the SGD check, was a serial chain of adds). */
static inline uint32_t bp_nonfinite_bits(float x) {
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return (u & 0x7f800000u) == 0x7f800000u;
}

#ifdef __cplusplus
extern "C" {
#endif

#define BP_ERROR_LEN 1024

/* Largest width or batch the library accepts: keeps every dimension handed
 * to BLAS within int and every product of two of them within int64. */
#define BP_MAX_DIM (1 << 28)

typedef struct bp_backend_ops bp_backend_ops;

struct bp_context {
  bp_backend backend;   /* never AUTO */
  int device;           /* CUDA ordinal; 0 for CPU */
  int failed;           /* sticky device fault: every later call fails */
  const bp_backend_ops *ops;
  void *impl;           /* backend state (stream, BLAS handle, ...) */
  /* Test hook: when > 0, the Nth backend allocation from now fails as if
   * memory were exhausted (1 = the next one). See bp_debug_fail_allocation. */
  long fail_alloc_countdown;
  uint64_t id;          /* unique per process, never 0: keys the per-thread error records */
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
  bp_kernel_path kernels;
  bp_product_path products;
  unsigned options_serial;
  /* The model beyond the seed (backprop.h bp_activation, bp_cost,
   * "Optimizers"). seed_model: sigmoid everywhere and the quadratic cost,
   * the math the seed's kernels (and the fused CUDA path) implement. */
  bp_activation *acts;  /* L: layer i's activation */
  bp_cost cost;
  int seed_model;
  bp_optimizer_config opt;
  size_t opt_state_count; /* floats of optimizer state: slots x n_params */
  /* The last epoch call's statistics: the engine fills steps, wall_us and
   * queue_us; the backend adds graph_replays and launches. */
  bp_epoch_stats stats;
  long long launches;   /* device work issued so far (the backend counts; the engine takes
                           the difference over an epoch for stats.launches) */
  void *impl;           /* backend buffers */
  /* Data-parallel training (bp_network_set_comm, src/engine/exchange.c):
   * the communicator (NULL: none) and the engine's exchange state (its
   * buckets and the open step's timings); NULL unless comm has 2+ ranks. */
  bp_comm *comm;
  struct bp_exchange *exchange;
};

struct bp_dataset {
  bp_context *ctx;
  int n, n_in, n_out;
  void *impl;           /* backend copy of X (n x n_in) and Y (n x n_out) */
};

/* ---- The engine and the backends -----------------------------------------
 *
 * The training engine (src/engine/) owns every loop: the epoch's
 * permutation, batch slicing, progress, statistics, the non-finite rule,
 * evaluation chunking, and the order of a step
 *     stage -> forward -> backward -> (gradient exchange) -> update.
 * A backend supplies the primitives below and never loops over the batches
 * of an epoch. Arguments are validated by the caller; backends report
 * failures through bp_error(net->ctx, ...) and return the status.
 */

/* A batch in backend memory: x is s[0] x n and y is s[L] x n, column-major
 * (internal.h's layout); y is NULL for a forward pass. For the CPU backend
 * these are host pointers, for CUDA device pointers. */
typedef struct bp_batch {
  const float *x, *y;
  int n;
} bp_batch;

/* Where an epoch's examples come from: a data set in backend memory, or
 * row-major host arrays X (n x s[0]) and Y (n x s[L]). perm is the epoch's
 * permutation (host memory, n entries). */
typedef struct bp_epoch_source {
  const bp_dataset *data; /* NULL: the host arrays below */
  const float *X, *Y;
  int n;
  const int32_t *perm;
} bp_epoch_source;

/* What a backend counts on its side (on the device for CUDA), so that a
 * whole epoch runs without a host round trip per batch. */
typedef struct bp_counters {
  double cost_sum;  /* training: sum over accumulated batches with a finite cost of (mean cost x
                       batch size); evaluation: the sum of every example's cost */
  int64_t correct;  /* evaluation: examples classified right (bp_example_correct) */
  int skipped;      /* batches whose update was not applied */
  int update_bad;   /* the last update was refused: it would make a weight non-finite */
  float cost;       /* the last backward pass's mean cost */
} bp_counters;

/* What a training step's backward adds to the epoch's counters. A
 * data-parallel step leaves the cost to the exchange (the global cost) but
 * counts its own slice's correct examples. */
enum { BP_BACKWARD_COST = 1, BP_BACKWARD_CORRECT = 2 };

struct bp_backend_ops {
  const char *name;
  void (*context_destroy)(bp_context *ctx);

  /* ---- Memory ---- */
  /* Allocate params and grads (n_params floats each) and zero the grads; the
   * caller then fills params through write_params. */
  bp_status (*network_init)(bp_network *net);
  void (*network_free)(bp_network *net);
  /* Copy count floats at offset between params (or grads) and the host. */
  bp_status (*read_params)(const bp_network *net, size_t offset, size_t count, float *dst);
  bp_status (*write_params)(bp_network *net, size_t offset, size_t count, const float *src);
  bp_status (*read_grads)(const bp_network *net, size_t offset, size_t count, float *dst);
  bp_status (*dataset_init)(bp_dataset *data, const float *X, const float *Y);
  void (*dataset_free)(bp_dataset *data);
  /* Makes room for batches of up to n examples (grow-only; a failure keeps
   * the old workspace). */
  bp_status (*reserve)(bp_network *net, int n);

  /* ---- Batches ---- */
  /* Host arrays (row-major n x s[0], and n x s[L] unless Y is NULL) as a
   * batch in backend memory (a copy into the workspace, or the arrays
   * themselves where backend memory is host memory). */
  bp_status (*load)(bp_network *net, const float *X, const float *Y, int n, bp_batch *out);
  /* Before an epoch's first stage: whatever the source needs (the
   * permutation on the device, staging buffers for host arrays). batch is
   * the largest batch of the epoch. */
  bp_status (*epoch_begin)(bp_network *net, const bp_epoch_source *src, int batch);
  /* Queues the gather of examples perm[start .. start+n) of the source into
   * staging slot `slot` (0 or 1: the engine alternates, so a backend may
   * stage the next batch while the current one computes) and describes it
   * in *out. */
  bp_status (*stage)(bp_network *net, const bp_epoch_source *src, int start, int n, int slot,
                     bp_batch *out);
  /* After an epoch (also one that failed part-way): nothing the epoch
   * queued may still read the source when this returns. */
  void (*epoch_end)(bp_network *net, const bp_epoch_source *src);

  /* ---- The step ---- */
  /* Layer by layer z = W a + b, a = f(z), over the batch's inputs. */
  bp_status (*forward)(bp_network *net, const bp_batch *b);
  /* After forward on the same batch: the gradients of the batch's mean cost
   * into grads and the cost into counters.cost. accumulate is a set of
   * BP_BACKWARD_* flags: with _COST a finite cost adds cost x n to
   * counters.cost_sum and a non-finite one counts a skip; with _CORRECT the
   * examples forward classified right add to counters.correct (an epoch's
   * running accuracy). */
  bp_status (*backward)(bp_network *net, const bp_batch *b, int accumulate);
  /* The guarded SGD update: refused (nothing changes) when it would make a
   * weight non-finite (counters.update_bad), or, with gate_on_cost, when
   * counters.cost is not finite; with count_skip a refusal counts a skip.
   * Decided in backend memory, without a host round trip. */
  bp_status (*update)(bp_network *net, float lr, int gate_on_cost, int count_skip);
  /* The optimizer state (backprop.h "Optimizers"): opt_reset replaces it by
   * count zeros in backend memory and sets the step count to 0 (count 0:
   * none); opt_read/opt_write copy count floats at offset and, when step is
   * not NULL, the step count. update reads net->opt. */
  bp_status (*opt_reset)(bp_network *net, size_t count);
  bp_status (*opt_read)(const bp_network *net, size_t offset, size_t count, float *dst,
                        int64_t *step);
  bp_status (*opt_write)(bp_network *net, size_t offset, size_t count, const float *src,
                         const int64_t *step);
  /* Optional: forward, backward (accumulate) and update (gated, counted)
   * as one unit, for a backend that can replay it cheaper (CUDA graphs).
   * NULL: the engine calls the three. */
  bp_status (*train_step)(bp_network *net, const bp_batch *b, float lr);

  /* ---- Reductions and results ---- */
  bp_status (*reset_counters)(bp_network *net);
  /* Waits for the queued work and copies the counters out. */
  bp_status (*read_counters)(bp_network *net, bp_counters *out);
  /* Forward over data set examples start .. start+n in place, then adds
   * their costs to counters.cost_sum and their hits to counters.correct. */
  bp_status (*evaluate_chunk)(bp_network *net, const bp_dataset *data, int start, int n);
  /* Copies the last forward pass's outputs (s[L] x n) to host memory and
   * waits. */
  bp_status (*read_output)(bp_network *net, int n, float *out);

  /* ---- Optional members: NULL where the backend has no such thing ---- */
  /* Called by bp_network_set_math_mode before the mode changes; refuses a
   * mode the device cannot run (BP_ERR_UNSUPPORTED). NULL: every mode is fine. */
  bp_status (*check_math_mode)(bp_network *net, bp_math_mode mode);
  /* The device-pointer calls (backprop.h "Data already on the GPU"). enter
   * checks the caller's stream and pointers (out, cost may be NULL) and
   * makes the backend's work start after the caller's; leave queues the
   * copies of the outputs (n examples) and of the cost into the caller's
   * buffers and makes the caller's later work start after the backend's,
   * also when `failed` (the queued part may still read X and Y). NULL: the
   * calls are BP_ERR_UNSUPPORTED. */
  bp_status (*device_enter)(bp_network *net, void *stream, const char *fn, const float *X,
                            const float *Y, const float *out, const float *cost);
  bp_status (*device_leave)(bp_network *net, void *stream, int n, float *out, float *cost,
                            int failed);

  /* ---- The gradient exchange (data-parallel; NULL: the backend trains on
   * one rank only). net->comm has 2 or more ranks. The engine calls them in
   * this order per step, between backward (called without accumulate) and
   * update. ---- */
  /* grads[offset .. offset+count) *= scale (scale 0: the range is set to 0,
   * also over non-finite values: a rank with no example in this step), then
   * the range's all-reduce (sum) over the ranks starts. May return before it
   * completes: the range belongs to the exchange until exchange_finish. */
  bp_status (*exchange_start)(bp_network *net, size_t offset, size_t count, float scale);
  /* Completes every started range: grads hold the global batch's mean
   * gradient. Then the global cost, the sum over ranks of
   * (n_local / n_global) x the last backward's cost (0 for n_local = 0),
   * replaces counters.cost (so update's cost gate is the same decision on
   * every rank); with accumulate, a finite global cost adds cost x n_global to
   * counters.cost_sum and a non-finite one counts a skip. */
  bp_status (*exchange_finish)(bp_network *net, int n_local, int n_global, int accumulate);
  /* Optional: the data-parallel step (forward, backward without
   * accumulation, the exchange with accumulation, the gated update, in that
   * order, the exchange through bp_engine_grads_ready and
   * bp_engine_exchange_close) replayed as one unit, for a backend whose
   * exchange can be captured (CUDA graphs with NCCL). Sets *ran to 0 and
   * does nothing when it will not replay this step (graphs off, the first
   * sight of a shape, a transport that waits on the host): the engine then
   * runs the step itself. The wait for the exchange, against the deadline,
   * is part of it, outside anything captured. NULL: never. */
  bp_status (*train_share_step)(bp_network *net, const bp_batch *b, int n_global, float lr,
                                int *ran);
};

/* The engine's step on a staged batch: forward, backward with the epoch's
 * accumulation, the gradient exchange, the gated update
 * (src/engine/step.c). */
bp_status bp_engine_train_step(bp_network *net, const bp_batch *b, float lr);
/* The data-parallel step: this rank's share b (NULL when the rank has no
 * example of this global batch) of a global batch of n_global examples:
 * forward, backward, the exchange, the gated update, the same on every rank
 * (src/engine/step.c). */
bp_status bp_engine_train_share(bp_network *net, const bp_batch *b, int n_global, float lr);

/* ---- The gradient exchange (src/engine/exchange.c) ----
 * 1 if net trains data-parallel: a communicator of 2 or more ranks. */
int bp_engine_data_parallel(const bp_network *net);
/* Opens a step's exchange before backward: this rank has n_local of the
 * global batch's n_global examples. */
void bp_engine_exchange_open(bp_network *net, int n_local, int n_global);
/* Called by a backend's backward as soon as layer's dW and db are in grads
 * (the last layer first): starts the all-reduce of every bucket that is
 * complete, so the exchange overlaps the rest of backward. A no-op without
 * an open exchange. */
void bp_engine_grads_ready(bp_network *net, int layer);
/* Closes the step's exchange between backward and update: starts what is
 * left, waits (against the communicator's deadline), reduces the cost
 * (exchange_finish), adds the timings to net->stats. BP_OK at once without
 * an open exchange (one device: the gradients are already the global
 * batch's). */
bp_status bp_engine_exchange_gradients(bp_network *net, int accumulate);
/* For a backend's train_share_step: starts what is left of the open
 * exchange and closes it, without waiting; the first failure of a start.
 * The backend then queues its exchange_finish's work itself. */
bp_status bp_engine_exchange_close(bp_network *net);
/* After a step the backend's train_share_step ran: the step's statistics
 * (bytes, world size; no timings: the host saw no bucket). */
void bp_engine_exchange_replayed(bp_network *net);
/* Reduces count doubles (sum) over net's ranks: the evaluation's and the
 * statistics' counters. BP_OK at once on one rank. */
bp_status bp_engine_reduce_doubles(bp_network *net, double *v, int count, const char *what);
/* Frees the exchange state (bp_network_destroy). */
void bp_engine_exchange_free(bp_network *net);


/* ---- Optimizers (src/api/optimizer.c) ---- */

/* Checks cfg (a full-size copy): BP_OK or BP_ERR_INVALID_ARGUMENT on ctx,
 * naming fn and the field. */
bp_status bp_optimizer_config_check(bp_context *ctx, const bp_optimizer_config *cfg,
                                    const char *fn);
/* Slots of optimizer state cfg needs (0, 1 or 2). */
int bp_optimizer_slots(const bp_optimizer_config *cfg);
/* 1 if cfg is the seed's SGD (no momentum, no decay): p -= lr g. */
int bp_optimizer_is_plain_sgd(const bp_optimizer_config *cfg);
/* The formulas' view of cfg (elementwise.cuh's bp_opt_hyper), for the
 * backends; hyper points to a bp_opt_hyper. */
void bp_optimizer_hyper(const bp_optimizer_config *cfg, void *hyper);

/* ---- Shared helpers (src/api/errors.c, rng.c, stats.c, debug_hooks.c) ---- */

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

/* The kernel path that bp_network_desc_init writes: BP_KERNELS_REFERENCE,
 * unless a test changed it with bp_testing_set_default_kernel_path so that
 * a whole test suite runs on the other path (tests/support/kernel_path_env.cc,
 * BP_TEST_KERNELS). A test hook: not exported from the shared library, and
 * nothing but the tests calls the setter. (src/api/options.c) */
bp_kernel_path bp_default_kernel_path(void);
void bp_testing_set_default_kernel_path(bp_kernel_path path);

/* A monotonic clock in microseconds (src/api/stats.c). */
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
 * (BP_PRODUCTS_CUBLASLT; 0 on the cuBLAS path), so a test can tell that the Lt path
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


#ifdef __cplusplus
}
#endif
#endif /* BP_INTERNAL_H */
