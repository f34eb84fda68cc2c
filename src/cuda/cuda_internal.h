/*
 * cuda_internal.h - what the files of the CUDA backend share: the state
 * behind the handles and the helpers every entry point uses. Not installed.
 *
 * Files: cuda_util.cu (allocation, device selection), cuda_context.cu,
 * cuda_network.cu (parameters, workspace), cuda_dataset.cu (data sets),
 * cuda_gemm.cu (the products), cuda_stage.cu (batches into the workspace:
 * host copies, device gathers, the host-streamed epoch's double buffers),
 * cuda_step.cu (forward, backward, update, counters, graphs),
 * cuda_device_api.cu (joining a caller's stream) and cuda_backend.cu (the
 * ops table). The engine (src/engine/) drives them; nothing here loops over
 * an epoch's batches.
 */
#ifndef BP_CUDA_INTERNAL_H
#define BP_CUDA_INTERNAL_H

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "cuda_check.h"
#include "internal.h"
#include "kernels.cuh"

/* ---- Backend state -------------------------------------------------------- */

typedef struct cuda_context {
  cudaStream_t stream;
  cublasHandle_t blas;
  void *blas_workspace; /* the handle's fixed workspace (cublasSetWorkspace) */
  /* Device-pointer calls (cuda_device_api.cu): caller_ready is recorded on
   * the caller's stream and waited on by `stream`; work_done is recorded on
   * `stream` after the work and waited on by the caller's stream. */
  cudaEvent_t caller_ready, work_done;
  /* Host-streamed epoch (cuda_stage.cu): a second non-blocking stream
   * for the host-to-device copies, and per staging set s (0, 1): copied[s],
   * recorded on copy_stream after the batch's copy into set s, and
   * consumed[s], recorded on `stream` after the last work that reads set s. */
  cudaStream_t copy_stream;
  cudaEvent_t copied[2], consumed[2];
  /* cudaDevAttrPageableMemoryAccess: the device may read pageable host
   * memory (HMM or ATS, e.g. Grace Hopper). */
  int pageable_access;
} cuda_context;

/* Device-side scalars of a network, one allocation. */
typedef struct cuda_scalars {
  double cost_sum;            /* epoch: sum of finite batch cost * batch size; evaluate: cost sum */
  unsigned long long correct; /* evaluate: examples classified right */
  float cost;                 /* the last batch's mean cost */
  int skipped;                /* epoch: batches whose update was not applied */
  int update_bad;             /* the last SGD check found an update that overflows */
  unsigned ticket;            /* fused kernels' last-block counter; 0 between launches */
  bp_opt_step opt_step;       /* the fused optimizer check's scalars for its update */
} cuda_scalars;

/* Buffers for batches of up to `capacity` examples (0: none). */
typedef struct cuda_workspace {
  int capacity;
  float *x;              /* s[0] x capacity: the input (a_0) */
  float *y;              /* s[L] x capacity: the targets */
  int has_z;             /* the z buffers allocated: a z_layers value */
  float **z;             /* L (host array): z[i] is layer i's pre-activation, s[i+1] x capacity;
                            NULL where the kernel path keeps none (z_layers) */
  float **act;           /* L (host array): act[i] = f(z[i]), layer i's output */
  float *delta[2];       /* delta_width x capacity each: errors, ping-pong */
  float *bias_partials;  /* bp_bias_grad_partials_count(delta_width, capacity) floats */
  double *cost_partials; /* bp_cost_partials_count(s[L], capacity) doubles (or the fused
                            kernel's count, if larger) */
  double *col_cost;      /* capacity doubles: per-example costs of the model kernels */
} cuda_workspace;

typedef struct cuda_network {
  float *params; /* n_params */
  float *grads;  /* n_params, same layout */
  cuda_scalars *scalars;
  int delta_width;      /* widest layer after the input: s[1..L] */
  cuda_workspace ws;    /* in use */
  cuda_workspace fresh; /* being allocated while ws grows; empty otherwise */
  unsigned ws_serial;   /* changes whenever the workspace is reallocated */
  void *gemm;           /* cuda_gemm.cu's state (plans, workspace) */
  void *graphs;         /* cuda_step.cu's captured graphs */
  void *host_stage;     /* cuda_stage.cu's staging buffers (NULL: none yet) */
  /* Optimizer state (cuda_optimizer.cu): opt_count floats (slots x n_params)
   * and the step count, a device long long. */
  float *opt_state;
  size_t opt_count;
  long long *opt_step;
  void *exchange;       /* cuda_comm.cu's exchange state (NULL: none yet) */
} cuda_network;

typedef struct cuda_dataset {
  float *X;      /* n_in x n, column-major (the row-major host array as is) */
  float *Y;      /* n_out x n */
  int32_t *perm; /* n: the epoch's permutation */
} cuda_dataset;

static inline cuda_context *ctx_state(const bp_context *ctx) { return (cuda_context *)ctx->impl; }
static inline cuda_network *net_state(const bp_network *net) { return (cuda_network *)net->impl; }
static inline cuda_dataset *data_state(const bp_dataset *data) { return (cuda_dataset *)data->impl; }

/* The fused kernels (bp_network.kernels): a written over z, reductions
 * fused into the error kernels, the optimizers' guard and update in two
 * launches. They cover every activation, cost and optimizer; a softmax
 * output wider than the fused output kernel's shared memory holds runs the
 * reference kernels, whatever the path. */
static inline int uses_fused(const bp_network *net) {
  const int L = net->n_layers;
  return net->kernels == BP_KERNELS_FUSED &&
         (net->acts[L - 1] != BP_ACTIVATION_SOFTMAX ||
          net->sizes[L] <= BP_FUSED_SOFTMAX_MAX_WIDTH);
}

/* Which layers keep z = W a + b: the reference kernels read every layer's;
 * the fused ones take f' from a, and keep the output layer's only for
 * cross-entropy, whose cost needs z (softplus, logsumexp). Ordered: a
 * workspace with more z serves a path that needs fewer. */
enum { Z_NONE = 0, Z_OUTPUT = 1, Z_ALL = 2 };
static inline int z_layers(const bp_network *net) {
  if (!uses_fused(net)) return Z_ALL;
  return net->cost == BP_COST_CROSS_ENTROPY ? Z_OUTPUT : Z_NONE;
}
static inline int keeps_z(const bp_network *net, int layer) {
  const int kind = z_layers(net);
  return kind == Z_ALL || (kind == Z_OUTPUT && layer == net->n_layers - 1);
}

/* The seed's output layer: sigmoid with the quadratic cost (errors.cu and
 * bp_launch_cost); any other pair takes model.cu's output kernel. */
static inline int seed_output(const bp_network *net) {
  return net->acts[net->n_layers - 1] == BP_ACTIVATION_SIGMOID && net->cost == BP_COST_QUADRATIC;
}

/* Counts one piece of device work the host issued (bp_epoch_stats.launches)
 * and checks its launch. */
#define NET_LAUNCH(net, call)   \
  do {                          \
    ++(net)->launches;          \
    BP_LAUNCH_CHECK((net)->ctx, call); \
  } while (0)

/* ---- The ops of bp_cuda_ops (cuda_backend.cu lists them) ---------------------- */
void cuda_context_destroy(bp_context *ctx);
/* cuda_network.cu */
bp_status cuda_network_init(bp_network *net);
void cuda_network_free(bp_network *net);
bp_status cuda_read_params(const bp_network *net, size_t offset, size_t count, float *dst);
bp_status cuda_write_params(bp_network *net, size_t offset, size_t count, const float *src);
bp_status cuda_read_grads(const bp_network *net, size_t offset, size_t count, float *dst);
bp_status cuda_reserve(bp_network *net, int n);
/* cuda_dataset.cu */
bp_status cuda_dataset_init(bp_dataset *data, const float *X, const float *Y);
void cuda_dataset_free(bp_dataset *data);
/* cuda_stage.cu */
bp_status cuda_load(bp_network *net, const float *X, const float *Y, int n, bp_batch *out);
bp_status cuda_epoch_begin(bp_network *net, const bp_epoch_source *src, int batch);
bp_status cuda_stage(bp_network *net, const bp_epoch_source *src, int start, int n, int slot,
                     bp_batch *out);
void cuda_epoch_end(bp_network *net, const bp_epoch_source *src);
/* cuda_step.cu */
bp_status cuda_forward(bp_network *net, const bp_batch *b);
bp_status cuda_backward(bp_network *net, const bp_batch *b, int accumulate);
bp_status cuda_update(bp_network *net, float lr, int gate_on_cost, int count_skip);
bp_status cuda_train_step(bp_network *net, const bp_batch *b, float lr);
bp_status cuda_reset_counters(bp_network *net);
bp_status cuda_read_counters(bp_network *net, bp_counters *out);
bp_status cuda_evaluate_chunk(bp_network *net, const bp_dataset *data, int start, int n);
bp_status cuda_read_output(bp_network *net, int n, float *out);
/* cuda_optimizer.cu */
bp_status cuda_opt_reset(bp_network *net, size_t count);
bp_status cuda_opt_read(const bp_network *net, size_t offset, size_t count, float *dst,
                        int64_t *step);
bp_status cuda_opt_write(bp_network *net, size_t offset, size_t count, const float *src,
                         const int64_t *step);
/* Frees the state (queued work finished); from cuda_network_free. */
void cuda_opt_free(bp_network *net);
/* Queues the configured optimizer's guarded update (not the seed's SGD):
 * the rules of run_update in cuda_step.cu. */
bp_status cuda_queue_optimizer(bp_network *net, float lr, int gate_on_cost, int *skipped);
/* cuda_device_api.cu; stream is the caller's cudaStream_t. */
bp_status cuda_device_enter(bp_network *net, void *stream, const char *fn, const float *X,
                            const float *Y, const float *out, const float *cost);
bp_status cuda_device_leave(bp_network *net, void *stream, int n, float *out, float *cost,
                            int failed);
/* cuda_comm.cu: the gradient exchange (NCCL, or MPI staged through host memory). */
bp_status cuda_exchange_start(bp_network *net, size_t offset, size_t count, float scale);
bp_status cuda_exchange_finish(bp_network *net, int n_local, int n_global, int accumulate);
/* For the data-parallel step as one graph (cuda_train_share_step): 1 once
 * the exchange runs on NCCL (its state is made at the first exchange, which
 * is never captured); the finish's work queued without waiting; the wait
 * for everything queued, against the deadline (never inside a capture). */
int cuda_exchange_capturable(const bp_network *net);
bp_status cuda_exchange_finish_queue(bp_network *net, int n_local, int n_global, int accumulate);
bp_status cuda_exchange_wait(bp_network *net);
bp_status cuda_train_share_step(bp_network *net, const bp_batch *b, int n_global, float lr,
                                int *ran);
/* Releases the network's exchange buffers (cuda_network_free). */
void cuda_exchange_free(bp_network *net);

/* ---- Helpers (cuda_util.cu) ------------------------------------------------ */

/* Start of every entry point: drop a stale non-sticky error some other code
 * left in this thread's runtime state, then select the context's device. */
bp_status cuda_enter(bp_context *ctx);
/* Every device allocation goes through here: the test hook first, then
 * cudaMalloc. A failure is BP_ERR_OUT_OF_MEMORY naming the size and purpose
 * (or whatever bp_cuda_fail makes of another error). */
bp_status cuda_device_alloc(bp_context *ctx, void **p, size_t bytes, const char *what, int line);
#define DEVICE_ALLOC(ctx, p, bytes, what) \
  cuda_device_alloc((ctx), (void **)(p), (bytes), (what), __LINE__)
/* Host allocations of the backend also honour the test hook. */
void *cuda_host_calloc(bp_context *ctx, size_t bytes, const char *what, bp_status *st);
/* Frees device memory where the error cannot be reported (destroy paths). */
void cuda_device_free_quiet(void *p);

/* ---- Network (cuda_network.cu) ---------------------------------------------- */

/* Makes room for batches of n examples (cuda_reserve). Grow-only; the old
 * workspace stays in use until the new one is complete. Waits for the
 * stream when it grows, or when the kernel path needs z buffers the
 * workspace lacks. */
bp_status cuda_ensure_capacity(bp_network *net, int n);

/* Releases the host-streamed epoch's staging buffers (cuda_stage.cu);
 * called by cuda_network_free after the context's stream is idle. */
void cuda_stage_free(bp_network *net);
/* Releases the captured graphs (cuda_step.cu). */
void cuda_graphs_free(bp_network *net);

/* ---- Products (cuda_gemm.cu) ------------------------------------------------ */

/* Column-major C (m x n, ld ldc) = alpha op(A) op(B) + beta C, the cuBLAS
 * argument convention, in the precision of net->math, honouring
 * net->deterministic, queued on the context's stream. May be called during
 * stream capture once the same shape has run outside capture. */
bp_status cuda_gemm(bp_network *net, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                    int k, float alpha, const float *A, int lda, const float *B, int ldb,
                    float beta, float *C, int ldc);
/* Per-network product state (plan cache, workspace): created with the
 * network, released with it. The cuBLASLt handle and workspace are made
 * when the product path first asks for them (outside any capture: a graph
 * key's first run is never captured). */
bp_status cuda_gemm_init(bp_network *net);
void cuda_gemm_free(bp_network *net);
/* Makes room for products over batches of up to n examples (scratch for
 * reduced-precision copies). Called by cuda_ensure_capacity. */
bp_status cuda_gemm_reserve(bp_network *net, int n);
/* bp_backend_ops.check_math_mode: TF32 and BF16 need compute capability 8.0
 * or later (BP_ERR_UNSUPPORTED otherwise). */
bp_status cuda_check_math_mode(bp_network *net, bp_math_mode mode);

#endif /* BP_CUDA_INTERNAL_H */
