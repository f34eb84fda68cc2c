/* cuda_train.cu - the calls on host arrays, data sets, epochs and evaluation. */
#include "cuda_internal.h"

/* ---- Network: operations on host arrays --------------------------------------- */

bp_status cuda_forward(bp_network *net, const float *X, int n, float *out) {
  bp_context *ctx = net->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  st = cuda_ensure_capacity(net, n);
  if (st != BP_OK) return st;
  cuda_network *cn = net_state(net);
  const int L = net->n_layers;
  /* Row-major n x s0 on the host is column-major s0 x n: a plain copy. */
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(cn->ws.x, X, (size_t)net->sizes[0] * (size_t)n * sizeof(float),
                                     cudaMemcpyHostToDevice, stream));
  st = cuda_forward_ws(net, n);
  if (st != BP_OK) return st;
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(out, cn->ws.act[L - 1],
                                     (size_t)net->sizes[L] * (size_t)n * sizeof(float),
                                     cudaMemcpyDeviceToHost, stream));
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream));
  return BP_OK;
}

bp_status cuda_backward(bp_network *net, const float *X, const float *Y, int n,
                               float *cost) {
  bp_context *ctx = net->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  st = cuda_ensure_capacity(net, n);
  if (st != BP_OK) return st;
  cuda_network *cn = net_state(net);
  const int L = net->n_layers;
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(cn->ws.x, X, (size_t)net->sizes[0] * (size_t)n * sizeof(float),
                                     cudaMemcpyHostToDevice, stream));
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(cn->ws.y, Y, (size_t)net->sizes[L] * (size_t)n * sizeof(float),
                                     cudaMemcpyHostToDevice, stream));
  st = cuda_run_forward(net, cn->ws.x, n);
  if (st != BP_OK) return st;
  st = cuda_run_backward(net, cn->ws.x, cn->ws.y, n, NULL, NULL);
  if (st != BP_OK) return st;
  float batch_cost = 0.0f;
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(&batch_cost, &cn->scalars->cost, sizeof(float),
                                     cudaMemcpyDeviceToHost, stream));
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream));
  if (cost != NULL) *cost = batch_cost;
  return BP_OK;
}

bp_status cuda_sgd_step(bp_network *net, float lr) {
  bp_context *ctx = net->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  cuda_network *cn = net_state(net);
  int *bad = &cn->scalars->update_bad;
  st = cuda_run_update(net, lr, 0, NULL);
  if (st != BP_OK) return st;
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


bp_status cuda_dataset_init(bp_dataset *data, const float *X, const float *Y) {
  bp_context *ctx = data->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  data->impl = NULL;
  cuda_dataset *cd = (cuda_dataset *)cuda_host_calloc(ctx, sizeof *cd, "the data set state", &st);
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

void cuda_dataset_free(bp_dataset *data) {
  cuda_dataset *cd = data_state(data);
  if (cd == NULL) return;
  bp_context *ctx = data->ctx;
  (void)cudaSetDevice(ctx->device);
  if (ctx_state(ctx) != NULL) (void)cudaStreamSynchronize(ctx_state(ctx)->stream);
  cuda_device_free_quiet(cd->X);
  cuda_device_free_quiet(cd->Y);
  cuda_device_free_quiet(cd->perm);
  (void)cudaGetLastError();
  free(cd);
  data->impl = NULL;
}

/* ---- Training and evaluation on a data set ---------------------------------------- */

bp_status cuda_train_epoch(bp_network *net, const bp_dataset *data, int batch_size, float lr,
                                  const int32_t *perm, const bp_epoch_progress *progress,
                                  double *cost_sum, int *skipped, int *examples_done) {
  bp_context *ctx = net->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  const int n = data->n;
  if (batch_size < 1) /* validated by the API; guards the loop below */
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "batch_size must be >= 1, got %d", batch_size);
  st = cuda_ensure_capacity(net, batch_size < n ? batch_size : n);
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
  /* With graphs or the fused kernels, the batch offset lives on the device
   * (scalars->batch_start, zeroed above) and one step is one cuda_epoch_step;
   * the reference path passes it as an argument. */
  const int device_offset = net->cuda_graphs || cn->fused;
  const double t0 = bp_now_us();
  for (int64_t start = 0; start < n; start += batch_size) {
    int bn = (int)((int64_t)n - start < batch_size ? (int64_t)n - start : batch_size);
    if (device_offset) {
      cuda_epoch_batch b = {cd->X, cd->Y, data->n_in, data->n_out, cd->perm, bn, lr};
      st = cuda_epoch_step(net, &b);
      if (st != BP_OK) return st;
    } else {
      BP_LAUNCH_CHECK(ctx, bp_launch_gather(cd->X, cd->Y, data->n_in, data->n_out, cd->perm,
                                            (int)start, bn, cn->ws.x, cn->ws.y, stream));
      st = cuda_run_forward(net, cn->ws.x, bn);
      if (st != BP_OK) return st;
      st = cuda_run_backward(net, cn->ws.x, cn->ws.y, bn, &sc->cost_sum, &sc->skipped);
      if (st != BP_OK) return st;
      st = cuda_run_update(net, lr, 1, &sc->skipped);
      if (st != BP_OK) return st;
    }
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

  /* Queued: the host's share ends here, the device's runs on. */
  net->stats.queue_us = bp_now_us() - t0;
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

bp_status cuda_evaluate(bp_network *net, const bp_dataset *data, double *cost_sum,
                               int64_t *correct) {
  bp_context *ctx = net->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  const int n = data->n;
  int chunk = net_state(net)->ws.capacity > EVAL_CHUNK ? net_state(net)->ws.capacity : EVAL_CHUNK;
  if (chunk > n) chunk = n;
  if (chunk > 0) {
    st = cuda_ensure_capacity(net, chunk);
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
    st = cuda_run_forward(net, xs, cn_n);
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

