/* epoch.c - the one epoch loop and the one evaluation loop of the library.
 *
 * bp_train_epoch, bp_train_epoch_ex and bp_train_epoch_host all run
 * run_epoch below: the same permutation, the same batches, the same
 * non-finite rule, the same progress and statistics, whatever the backend
 * and wherever the examples live (a data set in backend memory or host
 * arrays). The backend only stages a batch and computes a step
 * (internal.h, "The engine and the backends"). */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "../internal.h"

/* Examples per forward pass of bp_evaluate. Bounds the workspace that
 * evaluation needs; the cost and accuracy do not depend on it. */
#define EVAL_CHUNK 8192

/* The epoch permutation: perm[0..n) = 0..n-1 shuffled by Fisher-Yates from
 * shuffle_seed; BP_SHUFFLE_NONE (backprop.h) keeps the examples in order. */
static void epoch_permutation(int32_t *perm, int n, uint64_t shuffle_seed) {
  for (int i = 0; i < n; ++i) perm[i] = i;
  if (shuffle_seed == BP_SHUFFLE_NONE) return;
  bp_rng rng;
  bp_rng_seed(&rng, shuffle_seed);
  for (int i = n - 1; i > 0; --i) {
    int j = (int)bp_rng_below(&rng, (uint64_t)i + 1);
    int32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

/* Stages this rank's slice of the global batch perm[start .. start+global):
 * rank r of W takes [global*r/W, global*(r+1)/W), so the slices differ by at
 * most one example and cover the batch in order. *n_out is 0 (and nothing is
 * staged) when the slice is empty. */
static bp_status stage_share(bp_network *net, const bp_epoch_source *src, int start, int global,
                             int ranks, int rank, int slot, bp_batch *out, int *n_out) {
  const int lo = (int)((int64_t)global * rank / ranks);
  const int hi = (int)((int64_t)global * (rank + 1) / ranks);
  *n_out = hi - lo;
  if (hi == lo) return BP_OK;
  return net->ctx->ops->stage(net, src, start + lo, hi - lo, slot, out);
}

/* What a caller of run_epoch asks for besides the source. */
typedef struct epoch_request {
  const char *fn; /* the public call, for messages */
  int batch_size;
  float lr;
  uint64_t shuffle_seed;
  bp_progress_fn progress; /* may be NULL */
  void *user;
  int every;
} epoch_request;

/* Checks shared by every epoch call. */
static bp_status check_request(bp_context *ctx, const epoch_request *r) {
  if (r->batch_size <= 0 || r->batch_size > BP_MAX_DIM)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: batch_size = %d must be in 1 .. %d", r->fn,
                    r->batch_size, BP_MAX_DIM);
  if (!isfinite(r->lr))
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: learning rate is not finite", r->fn);
  if (r->progress && r->every < 1)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                    "%s: every = %d must be >= 1 with a progress callback", r->fn, r->every);
  return BP_OK;
}

/* One epoch over src (its perm filled here). The backend stages batch b+1
 * into the other slot while batch b computes; a progress report is the only
 * wait inside the epoch. *mean_cost covers the examples done: the sum of
 * each finite batch's cost x size over every example done (a batch whose
 * cost is not finite adds nothing but counts its examples), the same rule
 * for the running cost of a report and for the result. */
static bp_status run_epoch(bp_network *net, bp_epoch_source *src, const epoch_request *r,
                           float *mean_cost) {
  bp_context *ctx = net->ctx;
  const bp_backend_ops *ops = ctx->ops;
  const int n = src->n;
  const int batch = r->batch_size < n ? r->batch_size : n;
  const double t0 = bp_now_us();
  const long long launches = net->launches;
  memset(&net->stats, 0, sizeof net->stats);

  int32_t *perm = malloc(sizeof(int32_t) * (size_t)n);
  if (!perm) return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of host memory", r->fn);
  epoch_permutation(perm, n, r->shuffle_seed);
  src->perm = perm;

  /* Data-parallel: every rank runs the same global batches and takes its
   * slice of each (share below); one rank: the slice is the batch. */
  const int dp = bp_engine_data_parallel(net);
  const int ranks = dp ? bp_comm_size(net->comm) : 1, rank = dp ? bp_comm_rank(net->comm) : 0;
  const int most = (batch + ranks - 1) / ranks; /* the largest slice */
  bp_status st = ops->reserve(net, most);
  if (st == BP_OK) st = ops->epoch_begin(net, src, most);
  if (st == BP_OK) st = ops->reset_counters(net);
  const double q0 = bp_now_us();
  int done = 0, steps = 0;
  bp_batch cur;
  int cur_n = 0; /* this rank's examples in the current global batch */
  int global = batch < n ? batch : n;
  if (st == BP_OK) st = stage_share(net, src, 0, global, ranks, rank, 0, &cur, &cur_n);
  while (st == BP_OK && done < n) {
    if (dp)
      st = bp_engine_train_share(net, cur_n > 0 ? &cur : NULL, global, r->lr);
    else
      st = bp_engine_train_step(net, &cur, r->lr);
    if (st != BP_OK) break;
    done += global;
    ++steps;
    if (done < n) {
      global = n - done < batch ? n - done : batch;
      st = stage_share(net, src, done, global, ranks, rank, steps & 1, &cur, &cur_n);
      if (st != BP_OK) break;
    }
    if (r->progress && (steps % r->every == 0 || done == n)) {
      bp_counters now;
      st = ops->read_counters(net, &now);
      if (st != BP_OK) break;
      /* The counters are the global ones; a stop asked on any rank (a
       * signal reaches the ranks at different batches) stops every rank
       * after the same batch. */
      double stop = r->progress(r->user, done, n, (float)(now.cost_sum / (double)done)) != 0;
      if (dp) st = bp_engine_reduce_doubles(net, &stop, 1, "progress report's stop decision");
      if (st != BP_OK || stop != 0.0) break;
    }
  }
  net->stats.queue_us = bp_now_us() - q0; /* the host's share; the device may run behind */
  bp_counters end;
  memset(&end, 0, sizeof end);
  if (st == BP_OK) st = ops->read_counters(net, &end);
  ops->epoch_end(net, src);
  src->perm = NULL;
  free(perm);
  net->stats.steps = steps;
  net->stats.launches = net->launches - launches;
  net->stats.examples = done;
  net->stats.correct = end.correct;
  if (st == BP_OK && dp) { /* each rank counted its own slices */
    double correct = (double)end.correct;
    st = bp_engine_reduce_doubles(net, &correct, 1, "epoch's training accuracy");
    net->stats.correct = (long long)correct;
  }
  net->stats.wall_us = bp_now_us() - t0;
  if (st != BP_OK) return st;
  net->has_grads = 1;
  if (mean_cost) *mean_cost = (float)(end.cost_sum / (double)(done > 0 ? done : 1));
  if (end.skipped > 0)
    return bp_error(ctx, BP_ERR_NUMERIC,
                    "%s: %d batch(es) had a non-finite cost or an update that would make "
                    "weights non-finite; their updates were skipped (learning rate %g may be "
                    "too large)",
                    r->fn, end.skipped, (double)r->lr);
  return BP_OK;
}

/* Net and data must share a context and agree on widths. */
static bp_status check_pair(bp_network *net, const bp_dataset *data, const char *fn) {
  bp_context *ctx = net->ctx;
  bp_status st = bp_check_context(ctx);
  if (st != BP_OK) return st;
  if (!data) return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: data is NULL", fn);
  if (data->ctx != ctx)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                    "%s: the network and the data set belong to different contexts", fn);
  if (data->n_in != net->sizes[0] || data->n_out != net->sizes[net->n_layers])
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                    "%s: the data set has %d inputs and %d outputs but the network takes %d "
                    "and gives %d",
                    fn, data->n_in, data->n_out, net->sizes[0], net->sizes[net->n_layers]);
  return BP_OK;
}

bp_status bp_train_epoch_ex(bp_network *net, const bp_dataset *data, int batch_size,
                            float learning_rate, uint64_t shuffle_seed, float *mean_cost,
                            bp_progress_fn progress, void *user, int every) {
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  const char *fn = progress ? "bp_train_epoch_ex" : "bp_train_epoch";
  bp_status st = check_pair(net, data, fn);
  if (st != BP_OK) return st;
  const epoch_request r = {fn, batch_size, learning_rate, shuffle_seed, progress, user, every};
  st = check_request(net->ctx, &r);
  if (st != BP_OK) return st;
  bp_epoch_source src = {data, NULL, NULL, data->n, NULL};
  return run_epoch(net, &src, &r, mean_cost);
}

bp_status bp_train_epoch(bp_network *net, const bp_dataset *data, int batch_size,
                         float learning_rate, uint64_t shuffle_seed, float *mean_cost) {
  return bp_train_epoch_ex(net, data, batch_size, learning_rate, shuffle_seed, mean_cost, NULL,
                           NULL, 0);
}

bp_status bp_train_epoch_host(bp_network *net, const float *X, const float *Y, int n,
                              int batch_size, float learning_rate, uint64_t shuffle_seed,
                              float *mean_cost) {
  static const char fn[] = "bp_train_epoch_host";
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_context *ctx = net->ctx;
  bp_status st = bp_check_context(ctx);
  if (st != BP_OK) return st;
  if (!X || !Y) return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: X or Y is NULL", fn);
  if (n <= 0 || n > BP_MAX_DIM)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: n = %d is out of range (1 .. %d)", fn, n,
                    BP_MAX_DIM);
  const epoch_request r = {fn, batch_size, learning_rate, shuffle_seed, NULL, NULL, 0};
  st = check_request(ctx, &r);
  if (st != BP_OK) return st;
  /* As bp_dataset_create does for bp_train_epoch: nothing is trained on
   * data that holds NaN or Inf. */
  if (!bp_all_finite(X, (size_t)n * (size_t)net->sizes[0]))
    return bp_error(ctx, BP_ERR_NUMERIC, "%s: X holds NaN or Inf; nothing was trained", fn);
  if (!bp_all_finite(Y, (size_t)n * (size_t)net->sizes[net->n_layers]))
    return bp_error(ctx, BP_ERR_NUMERIC, "%s: Y holds NaN or Inf; nothing was trained", fn);
  bp_epoch_source src = {NULL, X, Y, n, NULL};
  return run_epoch(net, &src, &r, mean_cost);
}

bp_status bp_evaluate(bp_network *net, const bp_dataset *data, float *mean_cost, float *accuracy) {
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = check_pair(net, data, "bp_evaluate");
  if (st != BP_OK) return st;
  const bp_backend_ops *ops = net->ctx->ops;
  const int n = data->n;
  /* Data-parallel: rank r of W evaluates examples [n*r/W, n*(r+1)/W) and
   * the sums are reduced over the ranks. */
  int lo = 0, hi = n;
  if (bp_engine_data_parallel(net)) {
    const int ranks = bp_comm_size(net->comm), rank = bp_comm_rank(net->comm);
    lo = (int)((int64_t)n * rank / ranks);
    hi = (int)((int64_t)n * (rank + 1) / ranks);
  }
  const int chunk = n < EVAL_CHUNK ? n : EVAL_CHUNK;
  st = ops->reserve(net, chunk);
  if (st == BP_OK) st = ops->reset_counters(net);
  for (int start = lo; st == BP_OK && start < hi; start += chunk)
    st = ops->evaluate_chunk(net, data, start, hi - start < chunk ? hi - start : chunk);
  bp_counters c;
  if (st == BP_OK) st = ops->read_counters(net, &c);
  if (st != BP_OK) return st;
  double sums[2] = {c.cost_sum, (double)c.correct};
  st = bp_engine_reduce_doubles(net, sums, 2, "evaluation's reduction");
  if (st != BP_OK) return st;
  if (mean_cost) *mean_cost = (float)(sums[0] / (double)n);
  if (accuracy) *accuracy = (float)(sums[1] / (double)n);
  return BP_OK;
}
