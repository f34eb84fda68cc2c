/* dataset.c - data sets in backend memory, epochs and evaluation. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

bp_status bp_dataset_create(bp_context *ctx, int n, int n_in, int n_out, const float *X,
                            const float *Y, bp_dataset **out) {
  if (out) *out = NULL;
  if (!ctx) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(ctx);
  if (st != BP_OK) return st;
  if (!out || !X || !Y)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_dataset_create: out, X or Y is NULL");
  if (n <= 0 || n > BP_MAX_DIM || n_in <= 0 || n_in > BP_MAX_DIM || n_out <= 0 ||
      n_out > BP_MAX_DIM)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                    "bp_dataset_create: n = %d, n_in = %d, n_out = %d: each must be in 1 .. %d",
                    n, n_in, n_out, BP_MAX_DIM);
  if (!bp_all_finite(X, (size_t)n * (size_t)n_in))
    return bp_error(ctx, BP_ERR_NUMERIC, "bp_dataset_create: X holds NaN or Inf");
  if (!bp_all_finite(Y, (size_t)n * (size_t)n_out))
    return bp_error(ctx, BP_ERR_NUMERIC, "bp_dataset_create: Y holds NaN or Inf");
  bp_dataset *data = calloc(1, sizeof *data);
  if (!data) return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "bp_dataset_create: out of host memory");
  data->ctx = ctx;
  data->n = n;
  data->n_in = n_in;
  data->n_out = n_out;
  st = ctx->ops->dataset_init(data, X, Y);
  if (st != BP_OK) {
    free(data);
    return st;
  }
  *out = data;
  return BP_OK;
}

void bp_dataset_destroy(bp_dataset *data) {
  if (!data) return;
  data->ctx->ops->dataset_free(data);
  free(data);
}

int bp_dataset_size(const bp_dataset *data) { return data ? data->n : -1; }
int bp_dataset_n_in(const bp_dataset *data) { return data ? data->n_in : -1; }
int bp_dataset_n_out(const bp_dataset *data) { return data ? data->n_out : -1; }

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

void bp_epoch_permutation(int32_t *perm, int n, uint64_t shuffle_seed) {
  for (int i = 0; i < n; ++i) perm[i] = i;
  bp_rng rng;
  bp_rng_seed(&rng, shuffle_seed);
  for (int i = n - 1; i > 0; --i) { /* Fisher-Yates */
    int j = (int)bp_rng_below(&rng, (uint64_t)i + 1);
    int32_t t = perm[i];
    perm[i] = perm[j];
    perm[j] = t;
  }
}

int bp_epoch_report(const bp_epoch_progress *p, int done, double cost_sum, int cost_examples) {
  const float running = cost_examples > 0 ? (float)(cost_sum / (double)cost_examples) : 0.0f;
  return p->fn(p->user, done, p->total, running) != 0;
}

bp_status bp_train_epoch_ex(bp_network *net, const bp_dataset *data, int batch_size,
                            float learning_rate, uint64_t shuffle_seed, float *mean_cost,
                            bp_progress_fn progress, void *user, int every) {
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = check_pair(net, data, "bp_train_epoch");
  if (st != BP_OK) return st;
  bp_context *ctx = net->ctx;
  if (batch_size <= 0 || batch_size > BP_MAX_DIM)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_train_epoch: batch_size = %d must be >= 1",
                    batch_size);
  if (!isfinite(learning_rate))
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_train_epoch: learning rate is not finite");
  if (progress && every < 1)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                    "bp_train_epoch_ex: every = %d must be >= 1 with a progress callback", every);
  if (batch_size > data->n) batch_size = data->n;

  int32_t *perm = malloc(sizeof(int32_t) * (size_t)data->n);
  if (!perm) return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "bp_train_epoch: out of host memory");
  bp_epoch_permutation(perm, data->n, shuffle_seed);
  bp_epoch_progress report = {progress, user, every, data->n};
  double cost_sum = 0.0;
  int skipped = 0, done = data->n;
  const double t0 = bp_now_us();
  memset(&net->stats, 0, sizeof net->stats);
  st = ctx->ops->train_epoch(net, data, batch_size, learning_rate, perm,
                             progress ? &report : NULL, &cost_sum, &skipped, &done);
  net->stats.wall_us = bp_now_us() - t0;
  net->stats.steps = (int)(((int64_t)done + batch_size - 1) / batch_size);
  free(perm);
  if (st != BP_OK) return st;
  net->has_grads = 1;
  if (mean_cost) *mean_cost = (float)(cost_sum / (double)(done > 0 ? done : 1));
  if (skipped > 0)
    return bp_error(ctx, BP_ERR_NUMERIC,
                    "bp_train_epoch: %d batch(es) had a non-finite cost or an update that "
                    "would make weights non-finite; their updates were skipped (learning "
                    "rate %g may be too large)",
                    skipped, (double)learning_rate);
  return BP_OK;
}

bp_status bp_train_epoch(bp_network *net, const bp_dataset *data, int batch_size,
                         float learning_rate, uint64_t shuffle_seed, float *mean_cost) {
  return bp_train_epoch_ex(net, data, batch_size, learning_rate, shuffle_seed, mean_cost, NULL,
                           NULL, 0);
}

bp_status bp_evaluate(bp_network *net, const bp_dataset *data, float *mean_cost, float *accuracy) {
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = check_pair(net, data, "bp_evaluate");
  if (st != BP_OK) return st;
  double cost_sum = 0.0;
  int64_t correct = 0;
  st = net->ctx->ops->evaluate(net, data, &cost_sum, &correct);
  if (st != BP_OK) return st;
  if (mean_cost) *mean_cost = (float)(cost_sum / (double)data->n);
  if (accuracy) *accuracy = (float)((double)correct / (double)data->n);
  return BP_OK;
}
