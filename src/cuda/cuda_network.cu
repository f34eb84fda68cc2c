/* cuda_network.cu - a network's device memory: parameters, gradients,
 * scalars and the batch workspace. */
#include "cuda_internal.h"

/* ---- Network: parameters ---------------------------------------------------- */

static void free_workspace(const bp_network *net, cuda_workspace *ws);

bp_status cuda_network_init(bp_network *net) {
  bp_context *ctx = net->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  net->impl = NULL;

  int L = net->n_layers;
  /* The state and the z/act pointer arrays of both workspaces in one host
   * allocation. */
  size_t host_bytes = sizeof(cuda_network) + 4 * (size_t)L * sizeof(float *);
  cuda_network *cn = (cuda_network *)cuda_host_calloc(ctx, host_bytes, "the network state", &st);
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
  st = cuda_gemm_init(net);
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

void cuda_network_free(bp_network *net) {
  cuda_network *cn = net_state(net);
  if (cn == NULL) return;
  bp_context *ctx = net->ctx;
  (void)cudaSetDevice(ctx->device);
  /* Work queued on the stream may still use these buffers. */
  if (ctx_state(ctx) != NULL) (void)cudaStreamSynchronize(ctx_state(ctx)->stream);
  cuda_graphs_free(net);
  cuda_stage_free(net);
  cuda_exchange_free(net);
  cuda_gemm_free(net);
  cuda_opt_free(net);
  free_workspace(net, &cn->ws);
  free_workspace(net, &cn->fresh);
  cuda_device_free_quiet(cn->scalars);
  cuda_device_free_quiet(cn->grads);
  cuda_device_free_quiet(cn->params);
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

bp_status cuda_read_params(const bp_network *net, size_t offset, size_t count, float *dst) {
  return copy_out(net->ctx, net_state(net)->params + offset, count, dst);
}

bp_status cuda_read_grads(const bp_network *net, size_t offset, size_t count, float *dst) {
  return copy_out(net->ctx, net_state(net)->grads + offset, count, dst);
}

bp_status cuda_write_params(bp_network *net, size_t offset, size_t count, const float *src) {
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
  cuda_device_free_quiet(ws->x);
  cuda_device_free_quiet(ws->y);
  for (int i = 0; i < net->n_layers; ++i) {
    cuda_device_free_quiet(ws->z[i]);
    cuda_device_free_quiet(ws->act[i]);
    ws->z[i] = ws->act[i] = NULL;
  }
  cuda_device_free_quiet(ws->delta[0]);
  cuda_device_free_quiet(ws->delta[1]);
  cuda_device_free_quiet(ws->bias_partials);
  cuda_device_free_quiet(ws->cost_partials);
  cuda_device_free_quiet(ws->col_cost);
  ws->col_cost = NULL;
  ws->x = ws->y = ws->delta[0] = ws->delta[1] = ws->bias_partials = NULL;
  ws->cost_partials = NULL;
  ws->capacity = 0;
  ws->has_z = 0;
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
    if (keeps_z(net, i)) st = DEVICE_ALLOC(ctx, &ws->z[i], bytes, "pre-activations");
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
  size_t cost_count = bp_cost_partials_count(net->sizes[L], cap);
  size_t fused_count = bp_output_fused_cost_partials_count(net->sizes[L], cap);
  if (fused_count > cost_count) cost_count = fused_count;
  if (st == BP_OK)
    st = DEVICE_ALLOC(ctx, &ws->cost_partials, cost_count * sizeof(double), "cost scratch");
  if (st == BP_OK) st = DEVICE_ALLOC(ctx, &ws->col_cost, n * sizeof(double), "example costs");
  if (st != BP_OK) {
    free_workspace(net, ws);
    return st;
  }
  ws->capacity = cap;
  ws->has_z = z_layers(net);
  return BP_OK;
}

/* Makes room for batches of n examples. Grow-only; the old workspace stays
 * in use until the new one is complete. */
bp_status cuda_ensure_capacity(bp_network *net, int n) {
  bp_context *ctx = net->ctx;
  cuda_network *cn = net_state(net);
  /* A workspace made for a path that keeps fewer z (the fused kernels) is
   * made again, at least as large, when this path reads more. */
  const int need_z = z_layers(net) > cn->ws.has_z;
  if (n <= cn->ws.capacity && !need_z) return BP_OK;
  if (n < cn->ws.capacity) n = cn->ws.capacity;
  bp_status st = alloc_workspace(net, cn, &cn->fresh, n);
  if (st != BP_OK) return st;
  st = cuda_gemm_reserve(net, n);
  if (st != BP_OK) {
    free_workspace(net, &cn->fresh);
    return st;
  }
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
  ++cn->ws_serial; /* captured graphs hold the old pointers */
  return BP_OK;
}


bp_status cuda_reserve(bp_network *net, int n) {
  bp_status st = cuda_enter(net->ctx);
  if (st != BP_OK) return st;
  return cuda_ensure_capacity(net, n);
}

