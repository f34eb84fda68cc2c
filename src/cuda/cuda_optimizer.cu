/* cuda_optimizer.cu - the optimizer state in device memory (slots x
 * n_params floats in the parameters' layout, and the step count) and the
 * queueing of every optimizer's update but the seed's SGD (kernels/
 * optimizers.cu, or fused.cu's two-launch version on the fused path). */
#include "cuda_internal.h"

void cuda_opt_free(bp_network *net) {
  cuda_network *cn = net_state(net);
  cuda_device_free_quiet(cn->opt_state);
  cuda_device_free_quiet(cn->opt_step);
  cn->opt_state = NULL;
  cn->opt_step = NULL;
  cn->opt_count = 0;
}

bp_status cuda_opt_reset(bp_network *net, size_t count) {
  bp_context *ctx = net->ctx;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  cuda_network *cn = net_state(net);
  cudaStream_t stream = ctx_state(ctx)->stream;
  float *state = NULL;
  long long *step = cn->opt_step;
  if (step == NULL) {
    st = DEVICE_ALLOC(ctx, &step, sizeof(long long), "the optimizer's step count");
    if (st != BP_OK) return st;
    cn->opt_step = step;
  }
  if (count > 0) {
    st = DEVICE_ALLOC(ctx, &state, count * sizeof(float), "the optimizer state");
    if (st != BP_OK) return st; /* the old state stays */
    BP_CUDA_CHECK(ctx, cudaMemsetAsync(state, 0, count * sizeof(float), stream));
  }
  BP_CUDA_CHECK(ctx, cudaMemsetAsync(step, 0, sizeof(long long), stream));
  /* Queued work may still use the old state. */
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream));
  cuda_device_free_quiet(cn->opt_state);
  cn->opt_state = state;
  cn->opt_count = count;
  ++cn->ws_serial; /* captured graphs hold the old pointer */
  return BP_OK;
}

bp_status cuda_opt_read(const bp_network *net, size_t offset, size_t count, float *dst,
                        int64_t *step) {
  bp_context *ctx = net->ctx;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  const cuda_network *cn = net_state(net);
  cudaStream_t stream = ctx_state(ctx)->stream;
  long long t = 0;
  if (count > 0)
    BP_CUDA_CHECK(ctx, cudaMemcpyAsync(dst, cn->opt_state + offset, count * sizeof(float),
                                       cudaMemcpyDeviceToHost, stream));
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(&t, cn->opt_step, sizeof t, cudaMemcpyDeviceToHost, stream));
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream));
  if (step) *step = (int64_t)t;
  return BP_OK;
}

bp_status cuda_opt_write(bp_network *net, size_t offset, size_t count, const float *src,
                         const int64_t *step) {
  bp_context *ctx = net->ctx;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  cuda_network *cn = net_state(net);
  cudaStream_t stream = ctx_state(ctx)->stream;
  const long long t = step ? (long long)*step : 0;
  if (count > 0)
    BP_CUDA_CHECK(ctx, cudaMemcpyAsync(cn->opt_state + offset, src, count * sizeof(float),
                                       cudaMemcpyHostToDevice, stream));
  if (step)
    BP_CUDA_CHECK(ctx, cudaMemcpyAsync(cn->opt_step, &t, sizeof t, cudaMemcpyHostToDevice, stream));
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream));
  return BP_OK;
}

bp_status cuda_queue_optimizer(bp_network *net, float lr, int gate_on_cost, int *skipped) {
  bp_context *ctx = net->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  cuda_network *cn = net_state(net);
  cuda_scalars *sc = cn->scalars;
  bp_opt_hyper h;
  bp_optimizer_hyper(&net->opt, &h);
  const size_t count = net->n_params;
  const int slots = count > 0 ? (int)(cn->opt_count / count) : 0;
  if (uses_fused(net)) { /* fused.cu: the guard counts the step; one update pass */
    NET_LAUNCH(net, bp_launch_opt_check_fused(h, lr, cn->params, cn->grads, cn->opt_state, count,
                                              slots, cn->opt_step, gate_on_cost ? &sc->cost : NULL,
                                              &sc->update_bad, &sc->opt_step, &sc->ticket,
                                              stream));
    NET_LAUNCH(net, bp_launch_opt_update_fused(h, cn->params, cn->grads, cn->opt_state, count,
                                               slots, &sc->opt_step,
                                               gate_on_cost ? &sc->cost : NULL, &sc->update_bad,
                                               skipped, stream));
    return BP_OK;
  }
  NET_LAUNCH(net, bp_launch_opt_check(h, lr, cn->params, cn->grads, cn->opt_state, count, slots,
                                      cn->opt_step, &sc->update_bad, stream));
  NET_LAUNCH(net, bp_launch_opt_update(h, lr, cn->params, cn->grads, cn->opt_state, count, slots,
                                       cn->opt_step, gate_on_cost ? &sc->cost : NULL,
                                       &sc->update_bad, skipped, stream));
  return BP_OK;
}
