/* cuda_host_epoch.cu - bp_train_epoch_host on CUDA: an epoch whose examples
 * stay in host memory, streamed to the device batch by batch.
 *
 * Double buffering with two staging sets s = 0, 1 (batch b uses set b % 2),
 * each a pinned host buffer and a device buffer of capacity x (s0 + sL)
 * floats (inputs, then targets at an aligned offset):
 *
 *   host:        gather b+1 into pinned[s']   (rows perm[...] of X and Y)
 *   copy stream: [wait consumed[s']] copy pinned[s'] -> dev[s'] [record copied[s']]
 *   ctx stream:  [wait copied[s]] forward, backward, update of b [record consumed[s]]
 *
 * The host gathers batch b+1 while the device computes batch b. Before it
 * writes pinned[s'] it waits (cudaEventSynchronize) until the copy of the
 * batch that last used that buffer has finished; the copy itself waits on
 * the device until the compute of the batch that last read dev[s'] is done.
 * So the host runs at most two batches ahead of the device and never waits
 * for compute directly. The per-batch work on the context's stream is that
 * of cuda_train_epoch (the same kernels, the same cost accumulation into
 * scalars->cost_sum and skip counting), and the staged columns hold the same
 * values the device gather would put in the workspace, so the weights and
 * costs are bit-identical to bp_train_epoch on a data set of the same
 * examples.
 *
 * The staging buffers belong to the network: allocated by the first epoch
 * that needs them, grown (never shrunk) when a larger batch arrives, and
 * freed with the network (cuda_host_epoch_free, called from
 * cuda_network_free). A pinned allocation counts as a backend allocation
 * for the test hook (bp_debug_fail_allocation).
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

void cuda_host_epoch_free(bp_network *net) {
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

/* Host side of batch `start .. start+bn`: wait until set s's previous copy
 * has read its pinned buffer, gather the rows, and queue the copy on the
 * copy stream after the compute that last read dev[s]. */
static bp_status stage_batch(bp_network *net, const float *X, const float *Y, const int32_t *perm,
                             int64_t start, int bn, int s) {
  bp_context *ctx = net->ctx;
  cuda_context *cc = ctx_state(ctx);
  host_stage *st = stage_of(net);
  const size_t s0 = (size_t)net->sizes[0], sL = (size_t)net->sizes[net->n_layers];
  BP_CUDA_CHECK(ctx, cudaEventSynchronize(cc->copied[s]));
  float *hx = st->pinned[s], *hy = st->pinned[s] + st->y_offset;
  for (int k = 0; k < bn; ++k) {
    const size_t row = (size_t)perm[start + k];
    memcpy(hx + (size_t)k * s0, X + row * s0, s0 * sizeof(float));
    memcpy(hy + (size_t)k * sL, Y + row * sL, sL * sizeof(float));
  }
  BP_CUDA_CHECK(ctx, cudaStreamWaitEvent(cc->copy_stream, cc->consumed[s], 0));
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(st->dev[s], hx, s0 * (size_t)bn * sizeof(float),
                                     cudaMemcpyHostToDevice, cc->copy_stream));
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(st->dev[s] + st->y_offset, hy, sL * (size_t)bn * sizeof(float),
                                     cudaMemcpyHostToDevice, cc->copy_stream));
  BP_CUDA_CHECK(ctx, cudaEventRecord(cc->copied[s], cc->copy_stream));
  return BP_OK;
}

/* Device side of a batch staged in set s: as one batch of cuda_train_epoch. */
static bp_status compute_batch(bp_network *net, int bn, int s, float lr) {
  bp_context *ctx = net->ctx;
  cuda_context *cc = ctx_state(ctx);
  host_stage *st = stage_of(net);
  const float *x = st->dev[s], *y = st->dev[s] + st->y_offset;
  BP_CUDA_CHECK(ctx, cudaStreamWaitEvent(cc->stream, cc->copied[s], 0));
  /* The event waits stay outside any graph: a graph replays the step only. */
  bp_status status = cuda_train_step_xy(net, x, y, bn, lr);
  if (status != BP_OK) return status;
  BP_CUDA_CHECK(ctx, cudaEventRecord(cc->consumed[s], cc->stream));
  return BP_OK;
}

bp_status cuda_train_epoch_host(bp_network *net, const float *X, const float *Y, int n,
                                int batch_size, float lr, const int32_t *perm, double *cost_sum,
                                int *skipped) {
  bp_context *ctx = net->ctx;
  cuda_context *cc = ctx_state(ctx);
  bp_status status = cuda_enter(ctx);
  if (status != BP_OK) return status;
  if (batch_size < 1) /* validated by the API; guards the loop below */
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "batch_size must be >= 1, got %d", batch_size);
  const int batch = batch_size < n ? batch_size : n;
  status = cuda_ensure_capacity(net, batch);
  if (status == BP_OK) status = ensure_stage(net, batch);
  if (status != BP_OK) return status;
  cuda_scalars *sc = net_state(net)->scalars;
  BP_CUDA_CHECK(ctx, cudaMemsetAsync(sc, 0, sizeof(cuda_scalars), cc->stream));

  /* Stage batch 0; then per batch: queue its compute, and while the device
   * runs it, gather and queue the next one into the other set. */
  int bn = batch;
  const double t0 = bp_now_us();
  status = stage_batch(net, X, Y, perm, 0, bn, 0);
  for (int64_t start = 0, b = 0; status == BP_OK && start < n; start += batch, ++b) {
    bn = (int)((int64_t)n - start < batch ? (int64_t)n - start : batch);
    const int s = (int)(b & 1);
    status = compute_batch(net, bn, s, lr);
    const int64_t next = start + batch;
    if (status == BP_OK && next < n) {
      const int next_bn = (int)((int64_t)n - next < batch ? (int64_t)n - next : batch);
      status = stage_batch(net, X, Y, perm, next, next_bn, 1 - s);
    }
  }
  if (status != BP_OK) {
    /* Leave nothing in flight that reads the staging buffers or scalars. */
    (void)cudaStreamSynchronize(cc->copy_stream);
    (void)cudaStreamSynchronize(cc->stream);
    (void)cudaGetLastError();
    return status;
  }

  /* Queued (the host gathers included): the host's share ends here. */
  net->stats.queue_us = bp_now_us() - t0;
  cuda_scalars host;
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(&host, sc, sizeof host, cudaMemcpyDeviceToHost, cc->stream));
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(cc->stream));
  *cost_sum = host.cost_sum;
  *skipped = host.skipped;
  return BP_OK;
}
