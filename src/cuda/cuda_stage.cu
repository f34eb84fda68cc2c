/* cuda_stage.cu - batches into device memory, for the engine's primitives
 * load, epoch_begin, stage and epoch_end (internal.h):
 *   - host arrays of one call (bp_forward, bp_backward): copied into the
 *     workspace's x and y on the context's stream;
 *   - a data set's epoch: the permutation uploaded once, then each batch
 *     gathered on the device into the workspace (one launch, no host round
 *     trip); one slot serves, since the stream orders gather and step;
 *   - host arrays' epoch (bp_train_epoch_host): streamed batch by batch
 *     through two staging sets, below.
 *
 * Double buffering with two staging sets s = 0, 1 (the engine's slot; batch
 * b uses set b % 2), each a pinned host buffer and a device buffer of
 * capacity x (s0 + sL) floats (inputs, then targets at an aligned offset).
 * The engine stages batch b+1 right after queueing the step of batch b:
 *
 *   host:        gather b+1 into pinned[s']   (rows perm[...] of X and Y)
 *   copy stream: [wait consumed[s']] copy pinned[s'] -> dev[s'] [record copied[s']]
 *   ctx stream:  ... step b [record consumed[s]] [wait copied[s']] step b+1 ...
 *
 * So the host gathers batch b+1 while the device computes batch b. Before it
 * writes pinned[s'] it waits (cudaEventSynchronize) until the copy of the
 * batch that last used that buffer has finished; the copy itself waits on
 * the device until the compute of the batch that last read dev[s'] is done.
 * The host runs at most two batches ahead of the device and never waits for
 * compute directly. The staged columns hold the same values the device
 * gather would put in the workspace, so the weights and costs are
 * bit-identical to bp_train_epoch on a data set of the same examples.
 *
 * The staging buffers belong to the network: allocated by the first epoch
 * that needs them, grown (never shrunk) when a larger batch arrives, and
 * freed with the network (cuda_stage_free, called from cuda_network_free).
 * A pinned allocation counts as a backend allocation for the test hook
 * (bp_debug_fail_allocation).
 */
#include "cuda_internal.h"

typedef struct host_stage {
  int capacity;     /* examples per staging set (0: none) */
  size_t y_offset;  /* floats from the start of a set to its targets */
  float *pinned[2]; /* host, cudaHostAlloc: y_offset + capacity * sL floats each */
  float *dev[2];    /* device: the same layout */
} host_stage;

static inline host_stage *stage_of(const bp_network *net) {
  return (host_stage *)net_state(net)->host_stage;
}

/* Frees the buffers of st (NULL members skipped); queued work must be done. */
static void free_buffers(host_stage *st) {
  for (int s = 0; s < 2; ++s) {
    if (st->pinned[s] != NULL && cudaFreeHost(st->pinned[s]) != cudaSuccess)
      (void)cudaGetLastError();
    cuda_device_free_quiet(st->dev[s]);
    st->pinned[s] = NULL;
    st->dev[s] = NULL;
  }
  st->capacity = 0;
}

void cuda_stage_free(bp_network *net) {
  cuda_network *cn = net_state(net);
  host_stage *st = stage_of(net);
  if (st == NULL) return;
  /* An epoch that failed part-way may have left copies in flight. */
  cuda_context *cc = ctx_state(net->ctx);
  if (cc != NULL) (void)cudaStreamSynchronize(cc->copy_stream);
  free_buffers(st);
  (void)cudaGetLastError();
  free(st);
  cn->host_stage = NULL;
}

/* Pinned host memory, through the allocation test hook like every backend
 * allocation. Default flags: the buffer is only used with this context's
 * device, so it need not be portable; it is written by the host and read by
 * the copy engine, never read back by the host. */
static bp_status pinned_alloc(bp_context *ctx, float **p, size_t bytes) {
  *p = NULL;
  if (bp_debug_should_fail_alloc(ctx))
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY,
                    "cudaHostAlloc of %zu bytes for the staging buffers failed: out of memory "
                    "(test hook)",
                    bytes);
  cudaError_t err = cudaHostAlloc((void **)p, bytes, cudaHostAllocDefault);
  if (err != cudaSuccess) {
    *p = NULL;
    bp_status status = bp_cuda_fail(ctx, err, "cudaHostAlloc", __FILE__, __LINE__);
    if (status == BP_ERR_OUT_OF_MEMORY)
      bp_error(ctx, status, "cudaHostAlloc of %zu bytes for the staging buffers failed: %s (%s:%d)",
               bytes, cudaGetErrorString(err), bp_cuda_short_path(__FILE__), __LINE__);
    return status;
  }
  return BP_OK;
}

/* Makes room for batches of `batch` examples. A failed growth keeps the old
 * buffers (the network stays as it was). */
static bp_status ensure_stage(bp_network *net, int batch) {
  bp_context *ctx = net->ctx;
  cuda_context *cc = ctx_state(ctx);
  cuda_network *cn = net_state(net);
  bp_status status = BP_OK;
  if (cn->host_stage == NULL) {
    cn->host_stage = cuda_host_calloc(ctx, sizeof(host_stage), "the staging state", &status);
    if (cn->host_stage == NULL) return status;
  }
  host_stage *st = stage_of(net);
  if (batch <= st->capacity) return BP_OK;

  const size_t s0 = (size_t)net->sizes[0], sL = (size_t)net->sizes[net->n_layers];
  /* Targets start 256-byte aligned, as a separate cudaMalloc would. Sizes:
   * batch, s0, sL <= 2^28, so every count fits in size_t. */
  const size_t y_offset = (s0 * (size_t)batch + 63) / 64 * 64;
  const size_t bytes = (y_offset + sL * (size_t)batch) * sizeof(float);
  host_stage fresh;
  memset(&fresh, 0, sizeof fresh);
  for (int s = 0; s < 2 && status == BP_OK; ++s) {
    status = pinned_alloc(ctx, &fresh.pinned[s], bytes);
    if (status == BP_OK)
      status = DEVICE_ALLOC(ctx, &fresh.dev[s], bytes, "the staging buffers");
  }
  if (status != BP_OK) {
    free_buffers(&fresh);
    return status;
  }
  /* Nothing may still use the old buffers (both streams are idle between
   * epochs unless one failed part-way). */
  cudaError_t err = cudaStreamSynchronize(cc->copy_stream);
  if (err == cudaSuccess) err = cudaStreamSynchronize(cc->stream);
  if (err != cudaSuccess) {
    free_buffers(&fresh);
    return bp_cuda_fail(ctx, err, "cudaStreamSynchronize", __FILE__, __LINE__);
  }
  free_buffers(st);
  fresh.capacity = batch;
  fresh.y_offset = y_offset;
  *st = fresh;
  return BP_OK;
}

/* Host arrays' batch: waits until set s's previous copy has read its pinned
 * buffer, gathers the rows, queues the copy on the copy stream after the
 * compute that last read dev[s], and makes the context's stream wait for
 * the copy. The batch before this one (in the other set) was queued just
 * before: consumed[1 - s] marks its end. */
static bp_status stage_host(bp_network *net, const bp_epoch_source *src, int start, int bn, int s,
                            bp_batch *out) {
  bp_context *ctx = net->ctx;
  cuda_context *cc = ctx_state(ctx);
  host_stage *st = stage_of(net);
  const size_t s0 = (size_t)net->sizes[0], sL = (size_t)net->sizes[net->n_layers];
  BP_CUDA_CHECK(ctx, cudaEventRecord(cc->consumed[1 - s], cc->stream));
  BP_CUDA_CHECK(ctx, cudaEventSynchronize(cc->copied[s]));
  float *hx = st->pinned[s], *hy = st->pinned[s] + st->y_offset;
  for (int k = 0; k < bn; ++k) {
    const size_t row = (size_t)src->perm[start + k];
    memcpy(hx + (size_t)k * s0, src->X + row * s0, s0 * sizeof(float));
    memcpy(hy + (size_t)k * sL, src->Y + row * sL, sL * sizeof(float));
  }
  BP_CUDA_CHECK(ctx, cudaStreamWaitEvent(cc->copy_stream, cc->consumed[s], 0));
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(st->dev[s], hx, s0 * (size_t)bn * sizeof(float),
                                     cudaMemcpyHostToDevice, cc->copy_stream));
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(st->dev[s] + st->y_offset, hy, sL * (size_t)bn * sizeof(float),
                                     cudaMemcpyHostToDevice, cc->copy_stream));
  BP_CUDA_CHECK(ctx, cudaEventRecord(cc->copied[s], cc->copy_stream));
  /* The event waits stay outside any graph: a graph replays the step only. */
  BP_CUDA_CHECK(ctx, cudaStreamWaitEvent(cc->stream, cc->copied[s], 0));
  out->x = st->dev[s];
  out->y = st->dev[s] + st->y_offset;
  out->n = bn;
  return BP_OK;
}

bp_status cuda_load(bp_network *net, const float *X, const float *Y, int n, bp_batch *out) {
  bp_context *ctx = net->ctx;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  cudaStream_t stream = ctx_state(ctx)->stream;
  cuda_network *cn = net_state(net);
  /* Row-major n x s0 on the host is column-major s0 x n: a plain copy. */
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(cn->ws.x, X, (size_t)net->sizes[0] * (size_t)n * sizeof(float),
                                     cudaMemcpyHostToDevice, stream));
  if (Y != NULL)
    BP_CUDA_CHECK(ctx, cudaMemcpyAsync(cn->ws.y, Y,
                                       (size_t)net->sizes[net->n_layers] * (size_t)n * sizeof(float),
                                       cudaMemcpyHostToDevice, stream));
  out->x = cn->ws.x;
  out->y = Y != NULL ? cn->ws.y : NULL;
  out->n = n;
  return BP_OK;
}

bp_status cuda_epoch_begin(bp_network *net, const bp_epoch_source *src, int batch) {
  bp_context *ctx = net->ctx;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  if (src->data == NULL) return ensure_stage(net, batch);
  /* The permutation once per epoch. */
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(data_state(src->data)->perm, src->perm,
                                     (size_t)src->n * sizeof(int32_t), cudaMemcpyHostToDevice,
                                     ctx_state(ctx)->stream));
  return BP_OK;
}

bp_status cuda_stage(bp_network *net, const bp_epoch_source *src, int start, int n, int slot,
                     bp_batch *out) {
  if (src->data == NULL) return stage_host(net, src, start, n, slot, out);
  const bp_dataset *data = src->data;
  const cuda_dataset *cd = data_state(data);
  cuda_network *cn = net_state(net);
  NET_LAUNCH(net, bp_launch_gather(cd->X, cd->Y, data->n_in, data->n_out, cd->perm, start, n,
                                   cn->ws.x, cn->ws.y, ctx_state(net->ctx)->stream));
  out->x = cn->ws.x;
  out->y = cn->ws.y;
  out->n = n;
  return BP_OK;
}

void cuda_epoch_end(bp_network *net, const bp_epoch_source *src) {
  if (src->data != NULL) return;
  /* Leave nothing in flight that reads the staging buffers or the caller's
   * arrays (an epoch that stopped early or failed may have a copy queued). */
  cuda_context *cc = ctx_state(net->ctx);
  (void)cudaStreamSynchronize(cc->copy_stream);
  (void)cudaStreamSynchronize(cc->stream);
  (void)cudaGetLastError();
}
