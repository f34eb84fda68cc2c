/*
 * cuda_step.cu - the engine's step primitives on CUDA: forward, backward,
 * update and the whole training step, queued on the context's stream
 * (nothing here waits); the CUDA graphs that replay a training step or a
 * forward pass; the counters, evaluation and outputs.
 *
 * Two kernel paths (bp_network.kernels, bp_network_set_kernel_path):
 *   reference  per layer: GEMM, bias + activation (keeps z); backward:
 *              output error, cost (2 kernels), then per layer GEMM dW, bias
 *              grad (2 kernels), GEMM G, hidden error; update: check,
 *              update (and, for the optimizers but SGD, a step count).
 *   fused      per layer: GEMM into a, bias + activation in place (z kept
 *              only for a cross-entropy output); backward: one kernel for
 *              output error + cost + db, then per layer GEMM dW, GEMM G,
 *              one kernel for hidden error + db; update: check (which
 *              counts the step), update.
 * Every model the fused kernels cover (uses_fused: all but a softmax
 * output wider than BP_FUSED_SOFTMAX_MAX_WIDTH) gives the same weights as
 * the reference bit for bit where every layer is elementwise (the same
 * formulas on the same floats, the bias sums in the same order); a softmax
 * output's column sums are added in another order, so there the two agree
 * to rounding. The batch cost agrees to double rounding.
 */
#include "cuda_internal.h"

/* ---- Forward and backward ---------------------------------------------------- */

static bp_status run_forward(bp_network *net, const float *x, int n) {
  bp_context *ctx = net->ctx;
  cuda_context *cc = ctx_state(ctx);
  cuda_network *cn = net_state(net);
  bp_status st = BP_OK;
  const float *in = x;
  for (int i = 0; i < net->n_layers; ++i) {
    int fan_in = net->sizes[i], width = net->sizes[i + 1];
    const float *W = cn->params + net->w_offset[i];
    const float *b = cn->params + net->b_offset[i];
    /* The fused path writes a over the product unless z is kept. */
    float *product = keeps_z(net, i) ? cn->ws.z[i] : cn->ws.act[i];
    /* W_i stored row-major (width x fan_in) is W_i^T column-major with ld
     * fan_in: Z (width x n) = op_T(W^T) * A (fan_in x n). */
    st = cuda_gemm(net, CUBLAS_OP_T, CUBLAS_OP_N, width, n, fan_in, 1.0f, W, fan_in, in, fan_in,
                   0.0f, product, width);
    if (st != BP_OK) return st;
    if (uses_fused(net))
      NET_LAUNCH(net, bp_launch_bias_activation_fused((int)net->acts[i], product, cn->ws.act[i],
                                                      b, width, n, cc->stream));
    else if (net->acts[i] != BP_ACTIVATION_SIGMOID) /* model.cu */
      NET_LAUNCH(net, bp_launch_bias_activation((int)net->acts[i], product, cn->ws.act[i], b,
                                                width, n, cc->stream));
    else
      NET_LAUNCH(net, bp_launch_bias_sigmoid(product, cn->ws.act[i], b, width, n, cc->stream));
    in = cn->ws.act[i];
  }
  return BP_OK;
}

/* After run_forward on (x, n): the output error, the batch cost into
 * scalars->cost (added to *cost_acc when finite, else counted in *skipped;
 * either may be NULL), the examples classified right into scalars->correct
 * (count_correct), then for each layer from the last: dW_i, db_i into
 * grads, and the error of the layer below. */
static bp_status run_backward(bp_network *net, const float *x, const float *y, int n,
                              double *cost_acc, int *skipped, int count_correct) {
  bp_context *ctx = net->ctx;
  cuda_context *cc = ctx_state(ctx);
  cuda_network *cn = net_state(net);
  const int L = net->n_layers;
  const int out_width = net->sizes[L];
  bp_status st = BP_OK;
  const float inv_n = 1.0f / (float)n;
  const size_t out_count = (size_t)out_width * (size_t)n;
  int cur = 0;

  if (uses_fused(net)) {
    NET_LAUNCH(net, bp_launch_output_error_fused_act(
                        (int)net->acts[L - 1], (int)net->cost,
                        keeps_z(net, L - 1) ? cn->ws.z[L - 1] : NULL, cn->ws.act[L - 1], y,
                        cn->ws.delta[cur], out_width, n, cn->ws.bias_partials,
                        cn->grads + net->b_offset[L - 1], cn->ws.cost_partials,
                        &cn->scalars->cost, cost_acc, skipped, &cn->scalars->ticket,
                        cc->stream));
  } else if (!seed_output(net)) { /* model.cu: any other (activation, cost) pair */
    NET_LAUNCH(net, bp_launch_output_error_model((int)net->acts[L - 1], (int)net->cost,
                                                 cn->ws.z[L - 1], cn->ws.act[L - 1], y,
                                                 cn->ws.delta[cur], out_width, n,
                                                 cn->ws.col_cost, cc->stream));
    NET_LAUNCH(net, bp_launch_cost_sum(cn->ws.col_cost, n, cn->ws.cost_partials,
                                       &cn->scalars->cost, cost_acc, skipped, cc->stream));
  } else {
    NET_LAUNCH(net, bp_launch_output_error(cn->ws.act[L - 1], y, cn->ws.z[L - 1],
                                                cn->ws.delta[cur], out_count, cc->stream));
    NET_LAUNCH(net, bp_launch_cost(cn->ws.act[L - 1], y, out_width, n, cn->ws.cost_partials,
                                        &cn->scalars->cost, cost_acc, skipped, cc->stream));
  }
  /* Training: the running accuracy of bp_epoch_stats, from the output this
   * step's forward made. */
  if (count_correct)
    NET_LAUNCH(net, bp_launch_accuracy(cn->ws.act[L - 1], y, out_width, n,
                                       &cn->scalars->correct, cc->stream));
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
    /* The fused kernels computed db with delta itself. */
    if (!uses_fused(net))
      NET_LAUNCH(net,
                      bp_launch_bias_grad(delta, width, n, cn->ws.bias_partials, db, cc->stream));
    bp_engine_grads_ready(net, i); /* data-parallel: layer i's all-reduce may start */
    if (i > 0) {
      /* G (fan_in x n) = W_i^T (fan_in x width, stored as is) * Delta_i. */
      float *g = cn->ws.delta[1 - cur];
      st = cuda_gemm(net, CUBLAS_OP_N, CUBLAS_OP_N, fan_in, n, width, 1.0f, W, fan_in, delta,
                     width, 0.0f, g, fan_in);
      if (st != BP_OK) return st;
      /* The layer below has width fan_in = s[i]; its output is act[i-1]. */
      if (uses_fused(net))
        NET_LAUNCH(net, bp_launch_hidden_error_fused_act(
                            (int)net->acts[i - 1], g, cn->ws.act[i - 1], g, fan_in, n,
                            cn->ws.bias_partials, cn->grads + net->b_offset[i - 1],
                            &cn->scalars->ticket, cc->stream));
      else if (net->acts[i - 1] != BP_ACTIVATION_SIGMOID) /* model.cu */
        NET_LAUNCH(net, bp_launch_hidden_error_act((int)net->acts[i - 1], g, cn->ws.z[i - 1],
                                                   cn->ws.act[i - 1], g,
                                                   (size_t)fan_in * (size_t)n, cc->stream));
      else
        NET_LAUNCH(net, bp_launch_hidden_error(g, cn->ws.z[i - 1], g,
                                                    (size_t)fan_in * (size_t)n, cc->stream));
      cur = 1 - cur;
    }
  }
  return BP_OK;
}

/* The guarded SGD update: clears scalars->update_bad, checks, and applies
 * unless scalars->cost is not finite (when gate_on_cost) or the update
 * overflows; skipped (may be NULL) counts the latter. */
static bp_status run_update(bp_network *net, float lr, int gate_on_cost, int *skipped) {
  bp_context *ctx = net->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  cuda_network *cn = net_state(net);
  cuda_scalars *sc = cn->scalars;
  BP_CUDA_CHECK(ctx, cudaMemsetAsync(&sc->update_bad, 0, sizeof sc->update_bad, stream));
  if (!bp_optimizer_is_plain_sgd(&net->opt)) /* optimizers.cu */
    return cuda_queue_optimizer(net, lr, gate_on_cost, skipped);
  NET_LAUNCH(net, bp_launch_sgd_check(cn->params, cn->grads, net->n_params, lr,
                                           &sc->update_bad, stream));
  NET_LAUNCH(net, bp_launch_sgd(cn->params, cn->grads, net->n_params, lr,
                                     gate_on_cost ? &sc->cost : NULL, &sc->update_bad, skipped,
                                     stream));
  return BP_OK;
}

/* ---- Graphs ----------------------------------------------------------------------
 * A captured graph bakes in every pointer and argument, so it is kept per
 * key: the kind of work, the batch size, the learning rate's bits, the data
 * pointers, and the serials of the workspace (reallocated buffers) and of
 * the options (math mode, determinism). A small cache replaced in turn. The
 * first run of a key is not captured: it runs as it is, so that everything
 * the products create on first use (plans, workspaces) exists before a
 * capture, in which nothing may be allocated. */

#define GRAPH_SLOTS 8

typedef enum graph_kind {
  GRAPH_FORWARD = 1,
  GRAPH_TRAIN_STEP = 2,
  GRAPH_SHARE_STEP = 3 /* data-parallel: the step with its NCCL exchange */
} graph_kind;

typedef struct graph_key {
  graph_kind kind;
  int n, n_global; /* n_global: the share step's scale n / n_global is baked in */
  uint32_t lr_bits;
  const void *p[2];
  unsigned ws_serial, options_serial;
} graph_key;

typedef struct graph_slot {
  int used;
  int uncapturable;     /* its capture failed: the key always runs uncaptured */
  graph_key key;
  cudaGraphExec_t exec; /* NULL: seen once, not captured yet */
} graph_slot;

typedef struct cuda_graphs {
  graph_slot slot[GRAPH_SLOTS];
  int next; /* the slot replaced next */
} cuda_graphs;

static int key_equal(const graph_key *a, const graph_key *b) {
  return a->kind == b->kind && a->n == b->n && a->n_global == b->n_global &&
         a->lr_bits == b->lr_bits && a->p[0] == b->p[0] &&
         a->p[1] == b->p[1] && a->ws_serial == b->ws_serial &&
         a->options_serial == b->options_serial;
}

void cuda_graphs_free(bp_network *net) {
  cuda_network *cn = net_state(net);
  cuda_graphs *g = (cuda_graphs *)cn->graphs;
  if (g == NULL) return;
  for (int i = 0; i < GRAPH_SLOTS; ++i)
    if (g->slot[i].exec != NULL) (void)cudaGraphExecDestroy(g->slot[i].exec);
  (void)cudaGetLastError();
  free(g);
  cn->graphs = NULL;
}

typedef bp_status (*queue_fn)(bp_network *net, const void *arg);

/* Runs `queue(net, arg)` on the context's stream: replayed from the graph of
 * `key` when there is one; else run as it is the first time the key is
 * seen, and captured and replayed the second time. With `ran` not NULL,
 * whatever would run uncaptured (the first sight, a key whose capture
 * failed) is left to the caller instead: *ran = 0, nothing queued. */
static bp_status run_graphed(bp_network *net, const graph_key *key, queue_fn queue,
                             const void *arg, int *ran) {
  bp_context *ctx = net->ctx;
  cuda_network *cn = net_state(net);
  cudaStream_t stream = ctx_state(ctx)->stream;
  bp_status st = BP_OK;
  if (cn->graphs == NULL) {
    cn->graphs = cuda_host_calloc(ctx, sizeof(cuda_graphs), "the graph cache", &st);
    if (cn->graphs == NULL) return st;
  }
  cuda_graphs *g = (cuda_graphs *)cn->graphs;
  graph_slot *slot = NULL;
  for (int i = 0; i < GRAPH_SLOTS && slot == NULL; ++i)
    if (g->slot[i].used && key_equal(&g->slot[i].key, key)) slot = &g->slot[i];
  if (slot == NULL) { /* first sight: remember the key, run uncaptured */
    slot = &g->slot[g->next];
    g->next = (g->next + 1) % GRAPH_SLOTS;
    if (slot->exec != NULL) {
      BP_CUDA_CHECK(ctx, cudaGraphExecDestroy(slot->exec));
      slot->exec = NULL;
    }
    slot->used = 1;
    slot->uncapturable = 0;
    slot->key = *key;
    if (ran) return BP_OK;
    return queue(net, arg);
  }
  if (slot->uncapturable) return ran ? BP_OK : queue(net, arg);
  if (slot->exec == NULL) { /* second sight: capture */
    cudaGraph_t graph = NULL;
    const long long launches = net->launches; /* captured work is not launched */
    BP_CUDA_CHECK(ctx, cudaStreamBeginCapture(stream, cudaStreamCaptureModeThreadLocal));
    st = queue(net, arg);
    net->launches = launches;
    cudaError_t end = cudaStreamEndCapture(stream, &graph);
    if (st == BP_OK && end != cudaSuccess)
      st = bp_cuda_fail(ctx, end, "cudaStreamEndCapture", __FILE__, __LINE__);
    if (st == BP_OK) {
      cudaError_t err = cudaGraphInstantiate(&slot->exec, graph, 0);
      if (err != cudaSuccess) {
        slot->exec = NULL;
        st = bp_cuda_fail(ctx, err, "cudaGraphInstantiate", __FILE__, __LINE__);
      }
    }
    if (graph != NULL) (void)cudaGraphDestroy(graph);
    if (st != BP_OK) {
      /* Nothing of the captured work ran. A sticky fault ends here; any
       * other failure of the capture leaves this key uncaptured for good and
       * runs the step as it is, so a graph that cannot be made costs speed,
       * never a result (bp_epoch_stats.graph_replays shows it). */
      if (ctx->failed) {
        if (ran) *ran = 1;
        return st;
      }
      (void)cudaGetLastError();
      bp_clear_error(ctx);
      slot->exec = NULL;
      slot->uncapturable = 1;
      return ran ? BP_OK : queue(net, arg);
    }
  }
  if (ran) *ran = 1;
  NET_LAUNCH(net, cudaGraphLaunch(slot->exec, stream));
  if (key->kind != GRAPH_FORWARD) ++net->stats.graph_replays;
  return BP_OK;
}

static uint32_t float_bits(float f) {
  uint32_t u;
  memcpy(&u, &f, sizeof u);
  return u;
}

/* ---- The engine's primitives ------------------------------------------------------ */

typedef struct step_args {
  const float *x, *y;
  int n;
  float lr;
} step_args;

static bp_status queue_forward(bp_network *net, const void *arg) {
  const step_args *t = (const step_args *)arg;
  return run_forward(net, t->x, t->n);
}

bp_status cuda_forward(bp_network *net, const bp_batch *b) {
  bp_status st = cuda_enter(net->ctx);
  if (st != BP_OK) return st;
  const step_args t = {b->x, NULL, b->n, 0.0f};
  if (!net->cuda_graphs) return queue_forward(net, &t);
  graph_key key;
  memset(&key, 0, sizeof key);
  key.kind = GRAPH_FORWARD;
  key.n = b->n;
  key.p[0] = b->x;
  key.ws_serial = net_state(net)->ws_serial;
  key.options_serial = net->options_serial;
  return run_graphed(net, &key, queue_forward, &t, NULL);
}

bp_status cuda_backward(bp_network *net, const bp_batch *b, int accumulate) {
  cuda_scalars *sc = net_state(net)->scalars;
  const int cost = (accumulate & BP_BACKWARD_COST) != 0;
  return run_backward(net, b->x, b->y, b->n, cost ? &sc->cost_sum : NULL,
                      cost ? &sc->skipped : NULL, (accumulate & BP_BACKWARD_CORRECT) != 0);
}

bp_status cuda_update(bp_network *net, float lr, int gate_on_cost, int count_skip) {
  bp_status st = cuda_enter(net->ctx);
  if (st != BP_OK) return st;
  return run_update(net, lr, gate_on_cost, count_skip ? &net_state(net)->scalars->skipped : NULL);
}

/* Forward, backward with the epoch's accumulation into scalars->cost_sum
 * and skipped, guarded update: the sequence a graph captures, and also what
 * runs uncaptured. */
static bp_status queue_train_step(bp_network *net, const void *arg) {
  const step_args *t = (const step_args *)arg;
  cuda_scalars *sc = net_state(net)->scalars;
  bp_status st = run_forward(net, t->x, t->n);
  if (st == BP_OK) st = run_backward(net, t->x, t->y, t->n, &sc->cost_sum, &sc->skipped, 1);
  if (st == BP_OK) st = run_update(net, t->lr, 1, &sc->skipped);
  return st;
}

bp_status cuda_train_step(bp_network *net, const bp_batch *b, float lr) {
  const step_args t = {b->x, b->y, b->n, lr};
  if (!net->cuda_graphs) return queue_train_step(net, &t);
  graph_key key;
  memset(&key, 0, sizeof key);
  key.kind = GRAPH_TRAIN_STEP;
  key.n = b->n;
  key.lr_bits = float_bits(lr);
  key.p[0] = b->x;
  key.p[1] = b->y;
  key.ws_serial = net_state(net)->ws_serial;
  key.options_serial = net->options_serial;
  return run_graphed(net, &key, queue_train_step, &t, NULL);
}

typedef struct share_args {
  step_args step;
  int n_global;
} share_args;

/* The data-parallel step in the engine's order (engine/step.c,
 * bp_engine_train_share): forward, backward without accumulation (its hooks
 * start the buckets' all-reduces on the communication stream), the rest of
 * the buckets, the cost's all-reduce and the global cost into the counters,
 * the gated update; nothing in it waits on the host, so a capture takes the
 * NCCL calls with it (NCCL >= 2.9), joined to the compute stream by the
 * exchange's events. */
static bp_status queue_share_step(bp_network *net, const void *arg) {
  const share_args *t = (const share_args *)arg;
  cuda_scalars *sc = net_state(net)->scalars;
  bp_engine_exchange_open(net, t->step.n, t->n_global);
  bp_status st = run_forward(net, t->step.x, t->step.n);
  if (st == BP_OK) st = run_backward(net, t->step.x, t->step.y, t->step.n, NULL, NULL, 1);
  if (st == BP_OK) st = bp_engine_exchange_close(net);
  if (st == BP_OK) st = cuda_exchange_finish_queue(net, t->step.n, t->n_global, 1);
  if (st == BP_OK) st = run_update(net, t->step.lr, 1, &sc->skipped);
  return st;
}

bp_status cuda_train_share_step(bp_network *net, const bp_batch *b, int n_global, float lr,
                                int *ran) {
  *ran = 0;
  /* Graphs off, or an exchange not made yet (its first step makes it, with
   * host collectives) or staged through MPI (host waits: not capturable):
   * the engine runs the step. */
  if (!net->cuda_graphs || !cuda_exchange_capturable(net)) return BP_OK;
  bp_status st = cuda_enter(net->ctx);
  if (st != BP_OK) return st;
  const share_args t = {{b->x, b->y, b->n, lr}, n_global};
  graph_key key;
  memset(&key, 0, sizeof key);
  key.kind = GRAPH_SHARE_STEP;
  key.n = b->n;
  key.n_global = n_global;
  key.lr_bits = float_bits(lr);
  key.p[0] = b->x;
  key.p[1] = b->y;
  key.ws_serial = net_state(net)->ws_serial;
  key.options_serial = net->options_serial;
  st = run_graphed(net, &key, queue_share_step, &t, ran);
  if (!*ran) {
    /* A failed capture went through the hooks: the engine's step starts
     * from an open exchange again. */
    bp_engine_exchange_open(net, b->n, n_global);
    return st;
  }
  if (st != BP_OK) return st;
  /* The deadline's polling, outside the graph: the replay's completion is
   * the exchange's. */
  return cuda_exchange_wait(net);
}

bp_status cuda_reset_counters(bp_network *net) {
  bp_context *ctx = net->ctx;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  BP_CUDA_CHECK(ctx, cudaMemsetAsync(net_state(net)->scalars, 0, sizeof(cuda_scalars),
                                     ctx_state(ctx)->stream));
  return BP_OK;
}

bp_status cuda_read_counters(bp_network *net, bp_counters *out) {
  bp_context *ctx = net->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  cuda_scalars host;
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(&host, net_state(net)->scalars, sizeof host,
                                     cudaMemcpyDeviceToHost, stream));
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream));
  out->cost_sum = host.cost_sum;
  out->correct = (int64_t)host.correct;
  out->skipped = host.skipped;
  out->update_bad = host.update_bad;
  out->cost = host.cost;
  return BP_OK;
}

/* The data set's columns are read in place: a chunk of examples is a
 * contiguous block of columns, so no copy into the workspace is needed. */
bp_status cuda_evaluate_chunk(bp_network *net, const bp_dataset *data, int start, int n) {
  bp_context *ctx = net->ctx;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  cudaStream_t stream = ctx_state(ctx)->stream;
  cuda_network *cn = net_state(net);
  cuda_dataset *cd = data_state(data);
  cuda_scalars *sc = cn->scalars;
  const int L = net->n_layers;
  const float *xs = cd->X + (size_t)start * (size_t)data->n_in;
  const float *ys = cd->Y + (size_t)start * (size_t)data->n_out;
  st = run_forward(net, xs, n);
  if (st != BP_OK) return st;
  /* skipped == NULL: every chunk's cost is added, a non-finite one too.
   * The quadratic cost is sum (a - y)^2 whatever the activation, so the
   * fused path, which keeps no z for it, takes bp_launch_cost. */
  if (!seed_output(net) && !(uses_fused(net) && net->cost == BP_COST_QUADRATIC)) {
    /* the errors land in the unused delta buffer */
    NET_LAUNCH(net, bp_launch_output_error_model((int)net->acts[L - 1], (int)net->cost,
                                                 cn->ws.z[L - 1], cn->ws.act[L - 1], ys,
                                                 cn->ws.delta[0], net->sizes[L], n,
                                                 cn->ws.col_cost, stream));
    NET_LAUNCH(net, bp_launch_cost_sum(cn->ws.col_cost, n, cn->ws.cost_partials, &sc->cost,
                                       &sc->cost_sum, NULL, stream));
  } else {
    NET_LAUNCH(net, bp_launch_cost(cn->ws.act[L - 1], ys, net->sizes[L], n,
                                   cn->ws.cost_partials, &sc->cost, &sc->cost_sum, NULL, stream));
  }
  NET_LAUNCH(net, bp_launch_accuracy(cn->ws.act[L - 1], ys, net->sizes[L], n, &sc->correct,
                                     stream));
  return BP_OK;
}

bp_status cuda_read_output(bp_network *net, int n, float *out) {
  bp_context *ctx = net->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  const int L = net->n_layers;
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(out, net_state(net)->ws.act[L - 1],
                                     (size_t)net->sizes[L] * (size_t)n * sizeof(float),
                                     cudaMemcpyDeviceToHost, stream));
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream));
  return BP_OK;
}
