/* step.c - the order of one training step, and every call that runs part
 * of one on a caller's batch: host arrays (bp_forward, bp_backward,
 * bp_sgd_step, bp_train_batch) and device pointers (bp_forward_device,
 * bp_backward_device, bp_train_batch_device). Arguments are checked here,
 * the work is the backend's primitives in the engine's order. */
#include <math.h>

#include "../internal.h"

bp_status bp_engine_train_step(bp_network *net, const bp_batch *b, float lr) {
  const bp_backend_ops *ops = net->ctx->ops;
  /* The backend's whole-step unit (a replayable graph) has no room for an
   * exchange between backward and update; it serves single-device runs. */
  if (ops->train_step) return ops->train_step(net, b, lr);
  bp_status st = ops->forward(net, b);
  if (st == BP_OK) st = ops->backward(net, b, BP_BACKWARD_COST | BP_BACKWARD_CORRECT);
  if (st == BP_OK) st = ops->update(net, lr, 1, 1);
  return st;
}

bp_status bp_engine_train_share(bp_network *net, const bp_batch *b, int n_global, float lr) {
  const bp_backend_ops *ops = net->ctx->ops;
  /* Backward leaves the cost's accumulation to the exchange, which adds the
   * global cost once it is known, the same on every rank. */
  bp_engine_exchange_open(net, b ? b->n : 0, n_global);
  bp_status st = BP_OK;
  if (b && ops->train_share_step) {
    /* The same order replayed as one unit (a CUDA graph), when the backend
     * can; a rank without examples has nothing to replay. */
    int ran = 0;
    st = ops->train_share_step(net, b, n_global, lr, &ran);
    if (ran) {
      bp_engine_exchange_replayed(net);
      return st;
    }
    if (st != BP_OK) return st;
  }
  if (b) st = ops->forward(net, b);
  if (b && st == BP_OK) st = ops->backward(net, b, BP_BACKWARD_CORRECT);
  /* A local failure leaves the exchange unfinished here; the other ranks
   * then fail at their deadline (the command aborts the job first). */
  if (st == BP_OK) st = bp_engine_exchange_gradients(net, 1);
  if (st == BP_OK) st = ops->update(net, lr, 1, 1);
  return st;
}

/* ---- Host arrays ----------------------------------------------------------- */

/* Checks shared by forward/backward/train_batch. Y may be NULL (forward). */
static bp_status check_batch(bp_network *net, const float *X, const float *Y, int n,
                             const char *fn) {
  bp_context *ctx = net->ctx;
  if (!X) return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: X is NULL", fn);
  if (n <= 0 || n > BP_MAX_DIM)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: n = %d is out of range (1 .. %d)", fn, n,
                    BP_MAX_DIM);
  const size_t nx = (size_t)n * (size_t)net->sizes[0];
  if (!bp_all_finite(X, nx))
    return bp_error(ctx, BP_ERR_NUMERIC, "%s: X holds NaN or Inf; nothing was computed", fn);
  if (Y && !bp_all_finite(Y, (size_t)n * (size_t)net->sizes[net->n_layers]))
    return bp_error(ctx, BP_ERR_NUMERIC, "%s: Y holds NaN or Inf; nothing was computed", fn);
  return BP_OK;
}

bp_status bp_forward(bp_network *net, const float *X, int n, float *out) {
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(net->ctx);
  if (st != BP_OK) return st;
  if (!out) return bp_error(net->ctx, BP_ERR_INVALID_ARGUMENT, "bp_forward: out is NULL");
  st = check_batch(net, X, NULL, n, "bp_forward");
  if (st != BP_OK) return st;
  const bp_backend_ops *ops = net->ctx->ops;
  bp_batch b;
  st = ops->reserve(net, n);
  if (st == BP_OK) st = ops->load(net, X, NULL, n, &b);
  if (st == BP_OK) st = ops->forward(net, &b);
  if (st == BP_OK) st = ops->read_output(net, n, out);
  return st;
}

bp_status bp_backward(bp_network *net, const float *X, const float *Y, int n, float *cost) {
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(net->ctx);
  if (st != BP_OK) return st;
  if (!Y) return bp_error(net->ctx, BP_ERR_INVALID_ARGUMENT, "bp_backward: Y is NULL");
  st = check_batch(net, X, Y, n, "bp_backward");
  if (st != BP_OK) return st;
  const bp_backend_ops *ops = net->ctx->ops;
  bp_batch b;
  bp_counters c;
  st = ops->reserve(net, n);
  if (st == BP_OK) st = ops->load(net, X, Y, n, &b);
  if (st == BP_OK) st = ops->forward(net, &b);
  if (st == BP_OK) st = ops->backward(net, &b, 0);
  if (st == BP_OK) st = ops->read_counters(net, &c);
  if (st != BP_OK) return st;
  net->has_grads = 1;
  if (cost) *cost = c.cost;
  return BP_OK;
}

bp_status bp_sgd_step(bp_network *net, float learning_rate) {
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(net->ctx);
  if (st != BP_OK) return st;
  if (!isfinite(learning_rate))
    return bp_error(net->ctx, BP_ERR_INVALID_ARGUMENT, "bp_sgd_step: learning rate is not finite");
  const bp_backend_ops *ops = net->ctx->ops;
  bp_counters c;
  st = ops->update(net, learning_rate, 0, 0);
  if (st == BP_OK) st = ops->read_counters(net, &c);
  if (st != BP_OK) return st;
  if (c.update_bad)
    return bp_error(net->ctx, BP_ERR_NUMERIC,
                    "bp_sgd_step: learning rate %g would make weights non-finite; the update "
                    "was skipped and the weights are unchanged",
                    (double)learning_rate);
  return BP_OK;
}

bp_status bp_train_batch(bp_network *net, const float *X, const float *Y, int n,
                         float learning_rate, float *cost) {
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(net->ctx);
  if (st != BP_OK) return st;
  if (!isfinite(learning_rate))
    return bp_error(net->ctx, BP_ERR_INVALID_ARGUMENT,
                    "bp_train_batch: learning rate is not finite");
  float c = 0.0f;
  if (bp_engine_data_parallel(net)) {
    /* X is this rank's share of a global batch: its size is the sum of the
     * ranks' n, the gradient and the cost are the global batch's. */
    st = check_batch(net, X, Y, n, "bp_train_batch");
    if (st != BP_OK) return st;
    double n_global = (double)n;
    st = bp_engine_reduce_doubles(net, &n_global, 1, "sum of the ranks' batch sizes");
    if (st != BP_OK) return st;
    const bp_backend_ops *ops = net->ctx->ops;
    bp_batch b;
    bp_counters counters;
    st = ops->reserve(net, n);
    if (st == BP_OK) st = ops->load(net, X, Y, n, &b);
    if (st == BP_OK) st = ops->forward(net, &b);
    bp_engine_exchange_open(net, n, (int)n_global);
    if (st == BP_OK) st = ops->backward(net, &b, 0);
    if (st == BP_OK) st = bp_engine_exchange_gradients(net, 0);
    if (st == BP_OK) st = ops->read_counters(net, &counters);
    if (st != BP_OK) return st;
    net->has_grads = 1;
    c = counters.cost;
  } else {
    st = bp_backward(net, X, Y, n, &c);
    if (st != BP_OK) return st;
  }
  if (cost) *cost = c;
  if (!isfinite(c))
    return bp_error(net->ctx, BP_ERR_NUMERIC,
                    "bp_train_batch: the batch cost is not finite (%g); the update was skipped "
                    "and the weights are unchanged",
                    (double)c);
  return bp_sgd_step(net, learning_rate);
}

/* ---- Device pointers ----------------------------------------------------------
 * Only a backend with device_enter/device_leave has these; elsewhere they
 * are BP_ERR_UNSUPPORTED after the argument checks, so a program gets the
 * same argument errors on every backend. */

static bp_status unsupported(bp_network *net, const char *fn) {
  return bp_error(net->ctx, BP_ERR_UNSUPPORTED,
                  "%s: device pointers need the CUDA backend, but this context uses the %s "
                  "backend%s",
                  fn, bp_backend_name(net->ctx->backend),
                  bp_has_cuda() ? "" : " (and this build has no CUDA)");
}

typedef enum device_work { DEVICE_FORWARD, DEVICE_BACKWARD, DEVICE_TRAIN } device_work;

/* The three calls: checks, join the caller's stream, the step's primitives
 * for `work`, join back. Nothing waits on the host. */
static bp_status device_call(bp_network *net, const char *fn, device_work work, const float *X,
                             const float *Y, int n, float lr, float *out, float *cost,
                             bp_cuda_stream stream) {
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_context *ctx = net->ctx;
  bp_status st = bp_check_context(ctx);
  if (st != BP_OK) return st;
  if (work == DEVICE_FORWARD && !out)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
  if (work == DEVICE_TRAIN && !isfinite(lr))
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: learning rate is not finite", fn);
  if (!X) return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: X is NULL", fn);
  if (work != DEVICE_FORWARD && !Y)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: Y is NULL", fn);
  if (n <= 0 || n > BP_MAX_DIM)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: n = %d is out of range (1 .. %d)", fn, n,
                    BP_MAX_DIM);
  const bp_backend_ops *ops = ctx->ops;
  if (!ops->device_enter) return unsupported(net, fn);
  if (work == DEVICE_TRAIN && bp_engine_data_parallel(net))
    return bp_error(ctx, BP_ERR_UNSUPPORTED,
                    "%s: data-parallel training takes host batches (bp_train_batch) or epochs; "
                    "the device-pointer step exchanges no gradients",
                    fn);

  st = ops->device_enter(net, (void *)stream, fn, X, Y, out, cost);
  if (st != BP_OK) return st;
  const bp_batch b = {X, work == DEVICE_FORWARD ? NULL : Y, n};
  st = ops->reserve(net, n);
  if (st == BP_OK) st = ops->forward(net, &b);
  if (st == BP_OK && work != DEVICE_FORWARD) st = ops->backward(net, &b, 0);
  if (st == BP_OK && work == DEVICE_TRAIN) st = ops->update(net, lr, 1, 0);
  bp_status left = ops->device_leave(net, (void *)stream, n, out, cost, st != BP_OK);
  if (st != BP_OK) return st; /* the first failure is the one reported */
  if (left != BP_OK) return left;
  if (work != DEVICE_FORWARD) net->has_grads = 1;
  return BP_OK;
}

bp_status bp_forward_device(bp_network *net, const float *X, int n, float *out,
                            bp_cuda_stream stream) {
  return device_call(net, "bp_forward_device", DEVICE_FORWARD, X, NULL, n, 0.0f, out, NULL,
                     stream);
}

bp_status bp_backward_device(bp_network *net, const float *X, const float *Y, int n, float *cost,
                             bp_cuda_stream stream) {
  return device_call(net, "bp_backward_device", DEVICE_BACKWARD, X, Y, n, 0.0f, NULL, cost,
                     stream);
}

bp_status bp_train_batch_device(bp_network *net, const float *X, const float *Y, int n,
                                float learning_rate, float *cost, bp_cuda_stream stream) {
  return device_call(net, "bp_train_batch_device", DEVICE_TRAIN, X, Y, n, learning_rate, NULL,
                     cost, stream);
}
