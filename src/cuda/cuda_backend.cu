/*
 * cuda_backend.cu - the CUDA backend: device memory, cuBLAS products and the
 * kernels of kernels/, behind struct bp_backend_ops (internal.h).
 *
 * Per context: one non-blocking stream and one cuBLAS handle bound to it, so
 * every operation of a context is ordered on that stream and contexts never
 * wait on each other. Every entry point selects ctx->device first (contexts
 * on different devices may share a thread in turn).
 *
 * Per network, in device memory:
 *   - params and grads: one buffer each, in the layout of internal.h;
 *   - a few scalars (batch cost, epoch cost sum, skip and correct counters);
 *   - a workspace for batches of up to `capacity` examples: input, targets,
 *     z and a of every layer, two delta buffers (ping-pong between layers),
 *     and the reductions' scratch. It grows (and only grows) when a larger
 *     batch first arrives: the new one is allocated in full before the old
 *     one is freed, so a failed growth leaves the network working at its old
 *     capacity. Nothing is allocated in the steady state.
 * Per data set: X, Y and room for one epoch's permutation.
 *
 * Synchronous API: each entry point waits for its work before returning, so
 * a device fault is reported by the call that caused it and host arrays are
 * complete on return. Inside bp_train_epoch nothing waits until the end.
 */
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
} cuda_context;

/* Device-side scalars of a network, one allocation. */
typedef struct cuda_scalars {
  double cost_sum;            /* epoch: sum of finite batch cost * batch size; evaluate: cost sum */
  unsigned long long correct; /* evaluate: examples classified right */
  float cost;                 /* the last batch's mean cost */
  int skipped;                /* epoch: batches whose update was not applied */
  int update_bad;             /* the last SGD check found an update that overflows */
} cuda_scalars;

/* Buffers for batches of up to `capacity` examples (0: none). */
typedef struct cuda_workspace {
  int capacity;
  float *x;              /* s[0] x capacity: the input (a_0) */
  float *y;              /* s[L] x capacity: the targets */
  float **z;             /* L (host array): z[i] is layer i's pre-activation, s[i+1] x capacity */
  float **act;           /* L (host array): act[i] = sigmoid(z[i]), layer i's output */
  float *delta[2];       /* delta_width x capacity each: errors, ping-pong */
  float *bias_partials;  /* bp_bias_grad_partials_count(delta_width, capacity) floats */
  double *cost_partials; /* bp_cost_partials_count(s[L], capacity) doubles */
} cuda_workspace;

typedef struct cuda_network {
  float *params; /* n_params */
  float *grads;  /* n_params, same layout */
  cuda_scalars *scalars;
  int delta_width;      /* widest layer after the input: s[1..L] */
  cuda_workspace ws;    /* in use */
  cuda_workspace fresh; /* being allocated while ws grows; empty otherwise */
} cuda_network;

typedef struct cuda_dataset {
  float *X;      /* n_in x n, column-major (the row-major host array as is) */
  float *Y;      /* n_out x n */
  int32_t *perm; /* n: the epoch's permutation */
} cuda_dataset;

static cuda_context *ctx_state(const bp_context *ctx) { return (cuda_context *)ctx->impl; }
static cuda_network *net_state(const bp_network *net) { return (cuda_network *)net->impl; }
static cuda_dataset *data_state(const bp_dataset *data) { return (cuda_dataset *)data->impl; }

/* ---- Helpers ---------------------------------------------------------------- */

/* Start of every entry point: drop a stale non-sticky error some other code
 * left in this thread's runtime state (the launchers report
 * cudaGetLastError(), which would blame it on them), then select the
 * context's device. */
static bp_status cuda_enter(bp_context *ctx) {
  (void)cudaGetLastError();
  BP_CUDA_CHECK(ctx, cudaSetDevice(ctx->device));
  return BP_OK;
}

/* Every device allocation goes through here: the test hook first, then
 * cudaMalloc. A failure is BP_ERR_OUT_OF_MEMORY naming the size and purpose
 * (or whatever bp_cuda_fail makes of another error). */
static bp_status device_alloc(bp_context *ctx, void **p, size_t bytes, const char *what, int line) {
  *p = NULL;
  if (bytes == 0) bytes = 256; /* cudaMalloc(0) gives NULL; keep pointers real */
  if (bp_debug_should_fail_alloc(ctx))
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY,
                    "cudaMalloc of %zu bytes for %s failed: out of memory (test hook)", bytes,
                    what);
  cudaError_t err = cudaMalloc(p, bytes);
  if (err != cudaSuccess) {
    *p = NULL;
    bp_status st = bp_cuda_fail(ctx, err, "cudaMalloc", __FILE__, line);
    if (st == BP_ERR_OUT_OF_MEMORY)
      bp_error(ctx, st, "cudaMalloc of %zu bytes for %s failed: %s (%s:%d)", bytes, what,
               cudaGetErrorString(err), bp_cuda_short_path(__FILE__), line);
    return st;
  }
  return BP_OK;
}
#define DEVICE_ALLOC(ctx, p, bytes, what) \
  device_alloc((ctx), (void **)(p), (bytes), (what), __LINE__)

/* Host allocations of the backend also honour the test hook. */
static void *host_calloc(bp_context *ctx, size_t bytes, const char *what, bp_status *st) {
  void *p = NULL;
  if (bp_debug_should_fail_alloc(ctx)) {
    *st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY,
                   "allocating %zu bytes of host memory for %s "
                   "failed: out of memory (test hook)",
                   bytes, what);
    return NULL;
  }
  p = calloc(1, bytes);
  if (p == NULL) {
    *st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY,
                   "allocating %zu bytes of host memory for %s failed: out of memory", bytes, what);
    return NULL;
  }
  *st = BP_OK;
  return p;
}

/* Frees device memory where the error cannot be reported (destroy paths).
 * A failure leaves the runtime's last-error state set; clear it so the next
 * launch check does not report it. */
static void device_free_quiet(void *p) {
  if (p != NULL && cudaFree(p) != cudaSuccess) (void)cudaGetLastError();
}

/* ---- Context ---------------------------------------------------------------- */

extern "C" int bp_cuda_count_devices(void) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError(); /* no driver / no device: not an error for the caller */
    return 0;
  }
  return count;
}

extern "C" bp_status bp_cuda_context_init(bp_context *ctx) {
  bp_status st = BP_OK;
  ctx->impl = NULL;
  cuda_context *cc = (cuda_context *)calloc(1, sizeof *cc);
  if (cc == NULL)
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY,
                    "allocating the CUDA context state failed: out of memory");
  (void)cudaGetLastError();
  cudaError_t err = cudaSetDevice(ctx->device);
  if (err == cudaErrorInvalidDevice || err == cudaErrorNoDevice ||
      err == cudaErrorInsufficientDriver) {
    (void)cudaGetLastError();
    free(cc);
    return bp_error(ctx, BP_ERR_NO_DEVICE, "cudaSetDevice(%d) failed: %s (%s:%d)", ctx->device,
                    cudaGetErrorString(err), bp_cuda_short_path(__FILE__), __LINE__);
  }
  if (err != cudaSuccess) {
    st = bp_cuda_fail(ctx, err, "cudaSetDevice", __FILE__, __LINE__);
    goto fail;
  }
  BP_CUDA_CHECK_GOTO(ctx, cudaStreamCreateWithFlags(&cc->stream, cudaStreamNonBlocking), st, fail);
  BP_CUBLAS_CHECK_GOTO(ctx, cublasCreate(&cc->blas), st, fail);
  BP_CUBLAS_CHECK_GOTO(ctx, cublasSetStream(cc->blas, cc->stream), st, fail);
  /* No TF32 or other reduced-precision shortcuts: float32 products as the CPU
   * computes them, so the backends agree to float32 rounding. */
  BP_CUBLAS_CHECK_GOTO(ctx, cublasSetMathMode(cc->blas, CUBLAS_PEDANTIC_MATH), st, fail);
  ctx->impl = cc;
  return BP_OK;
fail:
  if (cc->blas != NULL) (void)cublasDestroy(cc->blas);
  if (cc->stream != NULL) (void)cudaStreamDestroy(cc->stream);
  (void)cudaGetLastError();
  free(cc);
  return st;
}

static void cuda_context_destroy(bp_context *ctx) {
  cuda_context *cc = ctx_state(ctx);
  if (cc == NULL) return;
  (void)cudaSetDevice(ctx->device);
  if (cc->stream != NULL) (void)cudaStreamSynchronize(cc->stream);
  if (cc->blas != NULL) (void)cublasDestroy(cc->blas);
  if (cc->stream != NULL) (void)cudaStreamDestroy(cc->stream);
  (void)cudaGetLastError();
  free(cc);
  ctx->impl = NULL;
}

/* ---- Network: parameters ---------------------------------------------------- */

static void cuda_network_free(bp_network *net);
static void free_workspace(const bp_network *net, cuda_workspace *ws);

static bp_status cuda_network_init(bp_network *net) {
  bp_context *ctx = net->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  net->impl = NULL;

  int L = net->n_layers;
  /* The state and the z/act pointer arrays of both workspaces in one host
   * allocation. */
  size_t host_bytes = sizeof(cuda_network) + 4 * (size_t)L * sizeof(float *);
  cuda_network *cn = (cuda_network *)host_calloc(ctx, host_bytes, "the network state", &st);
  if (cn == NULL) return st;
  float **arrays = (float **)(cn + 1);
  cn->ws.z = arrays;
  cn->ws.act = arrays + L;
  cn->fresh.z = arrays + 2 * L;
  cn->fresh.act = arrays + 3 * L;
  cn->delta_width = 1;
  for (int i = 1; i <= L; ++i)
    if (net->sizes[i] > cn->delta_width) cn->delta_width = net->sizes[i];
  net->impl = cn;

  size_t param_bytes = net->n_params * sizeof(float);
  st = DEVICE_ALLOC(ctx, &cn->params, param_bytes, "the parameters");
  if (st != BP_OK) goto fail;
  st = DEVICE_ALLOC(ctx, &cn->grads, param_bytes, "the gradients");
  if (st != BP_OK) goto fail;
  st = DEVICE_ALLOC(ctx, &cn->scalars, sizeof(cuda_scalars), "the network's scalars");
  if (st != BP_OK) goto fail;

  /* The API fills params through write_params; zero them anyway so a
   * network never holds uninitialized memory. */
  BP_CUDA_CHECK_GOTO(ctx, cudaMemsetAsync(cn->params, 0, param_bytes, stream), st, fail);
  BP_CUDA_CHECK_GOTO(ctx, cudaMemsetAsync(cn->grads, 0, param_bytes, stream), st, fail);
  BP_CUDA_CHECK_GOTO(ctx, cudaMemsetAsync(cn->scalars, 0, sizeof(cuda_scalars), stream), st, fail);
  BP_CUDA_CHECK_GOTO(ctx, cudaStreamSynchronize(stream), st, fail);
  return BP_OK;
fail:
  cuda_network_free(net);
  return st;
}

static void cuda_network_free(bp_network *net) {
  cuda_network *cn = net_state(net);
  if (cn == NULL) return;
  bp_context *ctx = net->ctx;
  (void)cudaSetDevice(ctx->device);
  /* Work queued on the stream may still use these buffers. */
  if (ctx_state(ctx) != NULL) (void)cudaStreamSynchronize(ctx_state(ctx)->stream);
  free_workspace(net, &cn->ws);
  free_workspace(net, &cn->fresh);
  device_free_quiet(cn->scalars);
  device_free_quiet(cn->grads);
  device_free_quiet(cn->params);
  (void)cudaGetLastError();
  free(cn);
  net->impl = NULL;
}

/* Copies count floats at offset of a device buffer to the host and waits. */
static bp_status copy_out(bp_context *ctx, const float *src, size_t count, float *dst) {
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  if (count == 0) return BP_OK;
  cudaStream_t stream = ctx_state(ctx)->stream;
  BP_CUDA_CHECK(ctx,
                cudaMemcpyAsync(dst, src, count * sizeof(float), cudaMemcpyDeviceToHost, stream));
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream));
  return BP_OK;
}

static bp_status cuda_read_params(const bp_network *net, size_t offset, size_t count, float *dst) {
  return copy_out(net->ctx, net_state(net)->params + offset, count, dst);
}

static bp_status cuda_read_grads(const bp_network *net, size_t offset, size_t count, float *dst) {
  return copy_out(net->ctx, net_state(net)->grads + offset, count, dst);
}

static bp_status cuda_write_params(bp_network *net, size_t offset, size_t count, const float *src) {
  bp_context *ctx = net->ctx;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  if (count == 0) return BP_OK;
  cudaStream_t stream = ctx_state(ctx)->stream;
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(net_state(net)->params + offset, src, count * sizeof(float),
                                     cudaMemcpyHostToDevice, stream));
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream));
  return BP_OK;
}

/* ---- Network: workspace ------------------------------------------------------ */

/* Frees a workspace's buffers (queued work must be finished) and empties it;
 * its z/act host arrays stay. */
static void free_workspace(const bp_network *net, cuda_workspace *ws) {
  device_free_quiet(ws->x);
  device_free_quiet(ws->y);
  for (int i = 0; i < net->n_layers; ++i) {
    device_free_quiet(ws->z[i]);
    device_free_quiet(ws->act[i]);
    ws->z[i] = ws->act[i] = NULL;
  }
  device_free_quiet(ws->delta[0]);
  device_free_quiet(ws->delta[1]);
  device_free_quiet(ws->bias_partials);
  device_free_quiet(ws->cost_partials);
  ws->x = ws->y = ws->delta[0] = ws->delta[1] = ws->bias_partials = NULL;
  ws->cost_partials = NULL;
  ws->capacity = 0;
}

/* Allocates every buffer of ws for `cap` examples; on failure frees what it
 * got and leaves ws empty. Sizes: each count is a product of two values
 * <= BP_MAX_DIM (2^28), so it and its byte size fit in size_t. */
static bp_status alloc_workspace(const bp_network *net, const cuda_network *cn, cuda_workspace *ws,
                                 int cap) {
  bp_context *ctx = net->ctx;
  const int L = net->n_layers;
  const size_t n = (size_t)cap;
  bp_status st =
      DEVICE_ALLOC(ctx, &ws->x, (size_t)net->sizes[0] * n * sizeof(float), "the batch inputs");
  if (st == BP_OK)
    st = DEVICE_ALLOC(ctx, &ws->y, (size_t)net->sizes[L] * n * sizeof(float), "the batch targets");
  for (int i = 0; i < L && st == BP_OK; ++i) {
    size_t bytes = (size_t)net->sizes[i + 1] * n * sizeof(float);
    st = DEVICE_ALLOC(ctx, &ws->z[i], bytes, "pre-activations");
    if (st == BP_OK) st = DEVICE_ALLOC(ctx, &ws->act[i], bytes, "activations");
  }
  for (int k = 0; k < 2 && st == BP_OK; ++k)
    st = DEVICE_ALLOC(ctx, &ws->delta[k], (size_t)cn->delta_width * n * sizeof(float), "errors");
  /* The partial counts never decrease with n, so sizes for the widest layer
   * at full capacity cover every layer and every smaller batch. */
  if (st == BP_OK)
    st = DEVICE_ALLOC(ctx, &ws->bias_partials,
                      bp_bias_grad_partials_count(cn->delta_width, cap) * sizeof(float),
                      "bias-gradient scratch");
  if (st == BP_OK)
    st = DEVICE_ALLOC(ctx, &ws->cost_partials,
                      bp_cost_partials_count(net->sizes[L], cap) * sizeof(double), "cost scratch");
  if (st != BP_OK) {
    free_workspace(net, ws);
    return st;
  }
  ws->capacity = cap;
  return BP_OK;
}

/* Makes room for batches of n examples. Grow-only; the old workspace stays
 * in use until the new one is complete. */
static bp_status ensure_capacity(bp_network *net, int n) {
  bp_context *ctx = net->ctx;
  cuda_network *cn = net_state(net);
  if (n <= cn->ws.capacity) return BP_OK;
  bp_status st = alloc_workspace(net, cn, &cn->fresh, n);
  if (st != BP_OK) return st;
  /* Queued work may still read the old buffers. */
  cudaError_t err = cudaStreamSynchronize(ctx_state(ctx)->stream);
  if (err != cudaSuccess) {
    free_workspace(net, &cn->fresh);
    return bp_cuda_fail(ctx, err, "cudaStreamSynchronize", __FILE__, __LINE__);
  }
  free_workspace(net, &cn->ws);
  cuda_workspace t = cn->ws; /* swap, so each keeps its own z/act arrays */
  cn->ws = cn->fresh;
  cn->fresh = t;
  return BP_OK;
}

/* ---- Forward and backward passes (queued on the stream; no waiting) ----------- */

/* Layer by layer: Z_i = W_i A_i (cuBLAS), then z += b, a = sigmoid(z).
 * x: s[0] x n input (the workspace's x, or a data set's columns). */
static bp_status run_forward(bp_network *net, const float *x, int n) {
  bp_context *ctx = net->ctx;
  cuda_context *cc = ctx_state(ctx);
  cuda_network *cn = net_state(net);
  const float one = 1.0f, zero = 0.0f;
  const float *in = x;
  for (int i = 0; i < net->n_layers; ++i) {
    int fan_in = net->sizes[i], width = net->sizes[i + 1];
    const float *W = cn->params + net->w_offset[i];
    const float *b = cn->params + net->b_offset[i];
    /* W_i stored row-major (width x fan_in) is W_i^T column-major with ld
     * fan_in: Z (width x n) = op_T(W^T) * A (fan_in x n). */
    BP_CUBLAS_CHECK(ctx, cublasSgemm(cc->blas, CUBLAS_OP_T, CUBLAS_OP_N, width, n, fan_in, &one, W,
                                     fan_in, in, fan_in, &zero, cn->ws.z[i], width));
    BP_LAUNCH_CHECK(ctx,
                    bp_launch_bias_sigmoid(cn->ws.z[i], cn->ws.act[i], b, width, n, cc->stream));
    in = cn->ws.act[i];
  }
  return BP_OK;
}

/* After run_forward on (x, n): the output error, the batch cost into
 * scalars->cost (with the optional device-side accumulation of
 * bp_launch_cost), then for each layer from the last: dW_i, db_i into grads,
 * and the error of the layer below. y: s[L] x n targets. */
static bp_status run_backward(bp_network *net, const float *x, const float *y, int n,
                              double *cost_acc, int *skipped) {
  bp_context *ctx = net->ctx;
  cuda_context *cc = ctx_state(ctx);
  cuda_network *cn = net_state(net);
  const int L = net->n_layers;
  const int out_width = net->sizes[L];
  const float one = 1.0f, zero = 0.0f;
  const float inv_n = 1.0f / (float)n;
  const size_t out_count = (size_t)out_width * (size_t)n;
  int cur = 0;

  BP_LAUNCH_CHECK(ctx, bp_launch_output_error(cn->ws.act[L - 1], y, cn->ws.z[L - 1],
                                              cn->ws.delta[cur], out_count, cc->stream));
  BP_LAUNCH_CHECK(ctx, bp_launch_cost(cn->ws.act[L - 1], y, out_width, n, cn->ws.cost_partials,
                                      &cn->scalars->cost, cost_acc, skipped, cc->stream));
  for (int i = L - 1; i >= 0; --i) {
    int fan_in = net->sizes[i], width = net->sizes[i + 1];
    const float *in = i == 0 ? x : cn->ws.act[i - 1];
    const float *W = cn->params + net->w_offset[i];
    float *dW = cn->grads + net->w_offset[i];
    float *db = cn->grads + net->b_offset[i];
    const float *delta = cn->ws.delta[cur];
    /* dW_i^T (fan_in x width, column-major = dW_i row-major) =
     * A_i (fan_in x n) * Delta_i^T (n x width) / n. */
    BP_CUBLAS_CHECK(ctx, cublasSgemm(cc->blas, CUBLAS_OP_N, CUBLAS_OP_T, fan_in, width, n, &inv_n,
                                     in, fan_in, delta, width, &zero, dW, fan_in));
    BP_LAUNCH_CHECK(ctx,
                    bp_launch_bias_grad(delta, width, n, cn->ws.bias_partials, db, cc->stream));
    if (i > 0) {
      /* G (fan_in x n) = W_i^T (fan_in x width, stored as is) * Delta_i. */
      float *g = cn->ws.delta[1 - cur];
      BP_CUBLAS_CHECK(ctx, cublasSgemm(cc->blas, CUBLAS_OP_N, CUBLAS_OP_N, fan_in, n, width, &one,
                                       W, fan_in, delta, width, &zero, g, fan_in));
      /* The layer below has width fan_in = s[i]; its pre-activation is z[i-1]. */
      BP_LAUNCH_CHECK(ctx, bp_launch_hidden_error(g, cn->ws.z[i - 1], g, (size_t)fan_in * (size_t)n,
                                                  cc->stream));
      cur = 1 - cur;
    }
  }
  return BP_OK;
}

/* ---- Network: operations on host arrays --------------------------------------- */

static bp_status cuda_forward(bp_network *net, const float *X, int n, float *out) {
  bp_context *ctx = net->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  st = ensure_capacity(net, n);
  if (st != BP_OK) return st;
  cuda_network *cn = net_state(net);
  const int L = net->n_layers;
  /* Row-major n x s0 on the host is column-major s0 x n: a plain copy. */
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(cn->ws.x, X, (size_t)net->sizes[0] * (size_t)n * sizeof(float),
                                     cudaMemcpyHostToDevice, stream));
  st = run_forward(net, cn->ws.x, n);
  if (st != BP_OK) return st;
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(out, cn->ws.act[L - 1],
                                     (size_t)net->sizes[L] * (size_t)n * sizeof(float),
                                     cudaMemcpyDeviceToHost, stream));
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream));
  return BP_OK;
}

static bp_status cuda_backward(bp_network *net, const float *X, const float *Y, int n,
                               float *cost) {
  bp_context *ctx = net->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  st = ensure_capacity(net, n);
  if (st != BP_OK) return st;
  cuda_network *cn = net_state(net);
  const int L = net->n_layers;
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(cn->ws.x, X, (size_t)net->sizes[0] * (size_t)n * sizeof(float),
                                     cudaMemcpyHostToDevice, stream));
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(cn->ws.y, Y, (size_t)net->sizes[L] * (size_t)n * sizeof(float),
                                     cudaMemcpyHostToDevice, stream));
  st = run_forward(net, cn->ws.x, n);
  if (st != BP_OK) return st;
  st = run_backward(net, cn->ws.x, cn->ws.y, n, NULL, NULL);
  if (st != BP_OK) return st;
  float batch_cost = 0.0f;
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(&batch_cost, &cn->scalars->cost, sizeof(float),
                                     cudaMemcpyDeviceToHost, stream));
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream));
  if (cost != NULL) *cost = batch_cost;
  return BP_OK;
}

static bp_status cuda_sgd_step(bp_network *net, float lr) {
  bp_context *ctx = net->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  cuda_network *cn = net_state(net);
  int *bad = &cn->scalars->update_bad;
  BP_CUDA_CHECK(ctx, cudaMemsetAsync(bad, 0, sizeof *bad, stream));
  BP_LAUNCH_CHECK(ctx, bp_launch_sgd_check(cn->params, cn->grads, net->n_params, lr, bad, stream));
  BP_LAUNCH_CHECK(ctx, bp_launch_sgd(cn->params, cn->grads, net->n_params, lr, NULL, bad, NULL,
                                     stream));
  int host_bad = 0;
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(&host_bad, bad, sizeof host_bad, cudaMemcpyDeviceToHost,
                                     stream));
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream));
  if (host_bad)
    return bp_error(ctx, BP_ERR_NUMERIC,
                    "bp_sgd_step: learning rate %g would make weights non-finite; the update "
                    "was skipped and the weights are unchanged",
                    (double)lr);
  return BP_OK;
}

/* ---- Data sets ------------------------------------------------------------------ */

static void cuda_dataset_free(bp_dataset *data);

static bp_status cuda_dataset_init(bp_dataset *data, const float *X, const float *Y) {
  bp_context *ctx = data->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  data->impl = NULL;
  cuda_dataset *cd = (cuda_dataset *)host_calloc(ctx, sizeof *cd, "the data set state", &st);
  if (cd == NULL) return st;
  data->impl = cd;

  /* n, n_in, n_out <= BP_MAX_DIM (2^28): the byte sizes fit in size_t. */
  const size_t n = (size_t)data->n;
  const size_t x_count = (size_t)data->n_in * n, y_count = (size_t)data->n_out * n;
  st = DEVICE_ALLOC(ctx, &cd->X, x_count * sizeof(float), "the data set's inputs");
  if (st == BP_OK)
    st = DEVICE_ALLOC(ctx, &cd->Y, y_count * sizeof(float), "the data set's targets");
  if (st == BP_OK) st = DEVICE_ALLOC(ctx, &cd->perm, n * sizeof(int32_t), "the epoch permutation");
  if (st != BP_OK) goto fail;

  /* Row-major n x n_in on the host is column-major n_in x n: plain copies. */
  BP_CUDA_CHECK_GOTO(
      ctx, cudaMemcpyAsync(cd->X, X, x_count * sizeof(float), cudaMemcpyHostToDevice, stream), st,
      fail);
  BP_CUDA_CHECK_GOTO(
      ctx, cudaMemcpyAsync(cd->Y, Y, y_count * sizeof(float), cudaMemcpyHostToDevice, stream), st,
      fail);
  BP_CUDA_CHECK_GOTO(ctx, cudaStreamSynchronize(stream), st, fail);
  return BP_OK;
fail:
  cuda_dataset_free(data);
  return st;
}

static void cuda_dataset_free(bp_dataset *data) {
  cuda_dataset *cd = data_state(data);
  if (cd == NULL) return;
  bp_context *ctx = data->ctx;
  (void)cudaSetDevice(ctx->device);
  if (ctx_state(ctx) != NULL) (void)cudaStreamSynchronize(ctx_state(ctx)->stream);
  device_free_quiet(cd->X);
  device_free_quiet(cd->Y);
  device_free_quiet(cd->perm);
  (void)cudaGetLastError();
  free(cd);
  data->impl = NULL;
}

/* ---- Training and evaluation on a data set ---------------------------------------- */

static bp_status cuda_train_epoch(bp_network *net, const bp_dataset *data, int batch_size, float lr,
                                  const int32_t *perm, const bp_epoch_progress *progress,
                                  double *cost_sum, int *skipped, int *examples_done) {
  bp_context *ctx = net->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  const int n = data->n;
  if (batch_size < 1) /* validated by the API; guards the loop below */
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "batch_size must be >= 1, got %d", batch_size);
  st = ensure_capacity(net, batch_size < n ? batch_size : n);
  if (st != BP_OK) return st;
  cuda_network *cn = net_state(net);
  cuda_dataset *cd = data_state(data);
  cuda_scalars *sc = cn->scalars;

  /* The permutation once per epoch; the counters start at zero. */
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(cd->perm, perm, (size_t)n * sizeof(int32_t),
                                     cudaMemcpyHostToDevice, stream));
  BP_CUDA_CHECK(ctx, cudaMemsetAsync(sc, 0, sizeof(cuda_scalars), stream));

  /* Per batch, all queued, nothing waits: gather, forward, backward (the cost
   * kernel adds the batch's total cost, = mean * bn, to sc->cost_sum when the
   * mean is finite, else counts a skip), then the SGD check and update,
   * which do nothing when sc->cost is not finite or the update would
   * overflow a weight (counted as a skip too). */
  int done = 0, batches = 0;
  for (int64_t start = 0; start < n; start += batch_size) {
    int bn = (int)((int64_t)n - start < batch_size ? (int64_t)n - start : batch_size);
    BP_LAUNCH_CHECK(ctx, bp_launch_gather(cd->X, cd->Y, data->n_in, data->n_out, cd->perm,
                                          (int)start, bn, cn->ws.x, cn->ws.y, stream));
    st = run_forward(net, cn->ws.x, bn);
    if (st != BP_OK) return st;
    st = run_backward(net, cn->ws.x, cn->ws.y, bn, &sc->cost_sum, &sc->skipped);
    if (st != BP_OK) return st;
    BP_CUDA_CHECK(ctx, cudaMemsetAsync(&sc->update_bad, 0, sizeof sc->update_bad, stream));
    BP_LAUNCH_CHECK(ctx, bp_launch_sgd_check(cn->params, cn->grads, net->n_params, lr,
                                             &sc->update_bad, stream));
    BP_LAUNCH_CHECK(ctx, bp_launch_sgd(cn->params, cn->grads, net->n_params, lr, &sc->cost,
                                       &sc->update_bad, &sc->skipped, stream));
    done = (int)(start + bn);
    ++batches;
    /* A progress report is the only wait inside the epoch: one copy of the
     * scalars every progress->every batches, at the caller's choice. */
    if (progress != NULL && (batches % progress->every == 0 || done == n)) {
      cuda_scalars now;
      BP_CUDA_CHECK(ctx, cudaMemcpyAsync(&now, sc, sizeof now, cudaMemcpyDeviceToHost, stream));
      BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream));
      if (bp_epoch_report(progress, done, now.cost_sum, done)) break;
    }
  }

  cuda_scalars host;
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(&host, sc, sizeof host, cudaMemcpyDeviceToHost, stream));
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream));
  *cost_sum = host.cost_sum;
  *skipped = host.skipped;
  *examples_done = done;
  return BP_OK;
}

/* Examples per evaluation chunk when the workspace is smaller. */
#define EVAL_CHUNK 8192

static bp_status cuda_evaluate(bp_network *net, const bp_dataset *data, double *cost_sum,
                               int64_t *correct) {
  bp_context *ctx = net->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  const int n = data->n;
  int chunk = net_state(net)->ws.capacity > EVAL_CHUNK ? net_state(net)->ws.capacity : EVAL_CHUNK;
  if (chunk > n) chunk = n;
  if (chunk > 0) {
    st = ensure_capacity(net, chunk);
    if (st != BP_OK) return st;
  }
  cuda_network *cn = net_state(net);
  cuda_dataset *cd = data_state(data);
  cuda_scalars *sc = cn->scalars;
  const int L = net->n_layers;
  const int out_width = net->sizes[L];

  BP_CUDA_CHECK(ctx, cudaMemsetAsync(sc, 0, sizeof(cuda_scalars), stream));
  /* The data set's columns are read in place: a chunk of examples is a
   * contiguous block of columns, so no copy into the workspace is needed. */
  for (int64_t start = 0; start < n; start += chunk) {
    int cn_n = (int)((int64_t)n - start < chunk ? (int64_t)n - start : chunk);
    const float *xs = cd->X + (size_t)start * (size_t)data->n_in;
    const float *ys = cd->Y + (size_t)start * (size_t)data->n_out;
    st = run_forward(net, xs, cn_n);
    if (st != BP_OK) return st;
    /* skipped == NULL: every chunk's cost is added, a non-finite one too. */
    BP_LAUNCH_CHECK(
        ctx, bp_launch_cost(cn->ws.act[L - 1], ys, out_width, cn_n, cn->ws.cost_partials, &sc->cost,
                            &sc->cost_sum, NULL, stream));
    BP_LAUNCH_CHECK(
        ctx, bp_launch_accuracy(cn->ws.act[L - 1], ys, out_width, cn_n, &sc->correct, stream));
  }

  cuda_scalars host;
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(&host, sc, sizeof host, cudaMemcpyDeviceToHost, stream));
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream));
  *cost_sum = host.cost_sum;
  *correct = (int64_t)host.correct;
  return BP_OK;
}

/* ---- The backend ------------------------------------------------------------------- */

/* In the member order of struct bp_backend_ops (internal.h). */
extern "C" const bp_backend_ops bp_cuda_ops = {
    "cuda",               /* name */
    cuda_context_destroy, /* context_destroy */
    cuda_network_init,    /* network_init */
    cuda_network_free,    /* network_free */
    cuda_read_params,     /* read_params */
    cuda_write_params,    /* write_params */
    cuda_read_grads,      /* read_grads */
    cuda_forward,         /* forward */
    cuda_backward,        /* backward */
    cuda_sgd_step,        /* sgd_step */
    cuda_dataset_init,    /* dataset_init */
    cuda_dataset_free,    /* dataset_free */
    cuda_train_epoch,     /* train_epoch */
    cuda_evaluate,        /* evaluate */
};

/* Test hook behind bp_debug_inject_device_fault: a real sticky fault, caught
 * and classified by the same checks as any other. */
extern "C" bp_status bp_cuda_debug_fault(bp_context *ctx) {
  BP_CUDA_CHECK(ctx, cudaSetDevice(ctx->device));
  cudaStream_t stream = ctx_state(ctx)->stream;
  BP_LAUNCH_CHECK(ctx, bp_launch_debug_fault(stream));
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream));
  return bp_error(ctx, BP_ERR_DEVICE, "bp_debug_inject_device_fault: the fault did not happen");
}
