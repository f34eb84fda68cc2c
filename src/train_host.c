/* train_host.c - bp_train_epoch_host: one epoch of bp_train_epoch's
 * schedule (the same permutation, batches and skipping rules, the same
 * reporting) over examples read from host arrays batch by batch. */
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

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
  if (batch_size <= 0 || batch_size > BP_MAX_DIM)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: batch_size = %d must be >= 1", fn,
                    batch_size);
  if (!isfinite(learning_rate))
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: learning rate is not finite", fn);
  /* As bp_dataset_create does for bp_train_epoch: nothing is trained on
   * data that holds NaN or Inf. */
  if (!bp_all_finite(X, (size_t)n * (size_t)net->sizes[0]))
    return bp_error(ctx, BP_ERR_NUMERIC, "%s: X holds NaN or Inf; nothing was trained", fn);
  if (!bp_all_finite(Y, (size_t)n * (size_t)net->sizes[net->n_layers]))
    return bp_error(ctx, BP_ERR_NUMERIC, "%s: Y holds NaN or Inf; nothing was trained", fn);
  if (batch_size > n) batch_size = n;

  int32_t *perm = malloc(sizeof(int32_t) * (size_t)n);
  if (!perm) return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  bp_epoch_permutation(perm, n, shuffle_seed);
  double cost_sum = 0.0;
  int skipped = 0;
  const double t0 = bp_now_us();
  memset(&net->stats, 0, sizeof net->stats);
  st = ctx->ops->train_epoch_host(net, X, Y, n, batch_size, learning_rate, perm, &cost_sum,
                                  &skipped);
  net->stats.wall_us = bp_now_us() - t0;
  net->stats.steps = (int)(((int64_t)n + batch_size - 1) / batch_size);
  free(perm);
  if (st != BP_OK) return st;
  net->has_grads = 1;
  if (mean_cost) *mean_cost = (float)(cost_sum / (double)n);
  if (skipped > 0)
    return bp_error(ctx, BP_ERR_NUMERIC,
                    "%s: %d batch(es) had a non-finite cost or an update that would make "
                    "weights non-finite; their updates were skipped (learning rate %g may be "
                    "too large)",
                    fn, skipped, (double)learning_rate);
  return BP_OK;
}
