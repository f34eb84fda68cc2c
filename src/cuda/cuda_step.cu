/* cuda_step.cu - the work of one batch: forward, backward, update. Queued on
 * the context's stream; nothing here waits. */
#include "cuda_internal.h"

/* ---- Forward and backward passes (queued on the stream; no waiting) ----------- */

/* Layer by layer: Z_i = W_i A_i (cuBLAS), then z += b, a = sigmoid(z).
 * x: s[0] x n input (the workspace's x, or a data set's columns). */
bp_status cuda_run_forward(bp_network *net, const float *x, int n) {
  bp_context *ctx = net->ctx;
  cuda_context *cc = ctx_state(ctx);
  cuda_network *cn = net_state(net);
  bp_status st = BP_OK;
  const float *in = x;
  for (int i = 0; i < net->n_layers; ++i) {
    int fan_in = net->sizes[i], width = net->sizes[i + 1];
    const float *W = cn->params + net->w_offset[i];
    const float *b = cn->params + net->b_offset[i];
    /* W_i stored row-major (width x fan_in) is W_i^T column-major with ld
     * fan_in: Z (width x n) = op_T(W^T) * A (fan_in x n). */
    st = cuda_gemm(net, CUBLAS_OP_T, CUBLAS_OP_N, width, n, fan_in, 1.0f, W, fan_in, in, fan_in,
                   0.0f, cn->ws.z[i], width);
    if (st != BP_OK) return st;
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
bp_status cuda_run_backward(bp_network *net, const float *x, const float *y, int n,
                            double *cost_acc, int *skipped) {
  bp_context *ctx = net->ctx;
  cuda_context *cc = ctx_state(ctx);
  cuda_network *cn = net_state(net);
  const int L = net->n_layers;
  const int out_width = net->sizes[L];
  bp_status st = BP_OK;
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
    st = cuda_gemm(net, CUBLAS_OP_N, CUBLAS_OP_T, fan_in, width, n, inv_n, in, fan_in, delta,
                   width, 0.0f, dW, fan_in);
    if (st != BP_OK) return st;
    BP_LAUNCH_CHECK(ctx,
                    bp_launch_bias_grad(delta, width, n, cn->ws.bias_partials, db, cc->stream));
    if (i > 0) {
      /* G (fan_in x n) = W_i^T (fan_in x width, stored as is) * Delta_i. */
      float *g = cn->ws.delta[1 - cur];
      st = cuda_gemm(net, CUBLAS_OP_N, CUBLAS_OP_N, fan_in, n, width, 1.0f, W, fan_in, delta,
                     width, 0.0f, g, fan_in);
      if (st != BP_OK) return st;
      /* The layer below has width fan_in = s[i]; its pre-activation is z[i-1]. */
      BP_LAUNCH_CHECK(ctx, bp_launch_hidden_error(g, cn->ws.z[i - 1], g, (size_t)fan_in * (size_t)n,
                                                  cc->stream));
      cur = 1 - cur;
    }
  }
  return BP_OK;
}


bp_status cuda_run_update(bp_network *net, float lr, int gate_on_cost, int *skipped) {
  bp_context *ctx = net->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  cuda_network *cn = net_state(net);
  cuda_scalars *sc = cn->scalars;
  BP_CUDA_CHECK(ctx, cudaMemsetAsync(&sc->update_bad, 0, sizeof sc->update_bad, stream));
  BP_LAUNCH_CHECK(ctx, bp_launch_sgd_check(cn->params, cn->grads, net->n_params, lr,
                                           &sc->update_bad, stream));
  BP_LAUNCH_CHECK(ctx, bp_launch_sgd(cn->params, cn->grads, net->n_params, lr,
                                     gate_on_cost ? &sc->cost : NULL, &sc->update_bad, skipped,
                                     stream));
  return BP_OK;
}

void cuda_graphs_free(bp_network *net) { (void)net; }
