/* dataset.c - data sets in backend memory: creation, release, shape. The
 * epochs and evaluation over them are the engine's (src/engine/epoch.c). */
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
