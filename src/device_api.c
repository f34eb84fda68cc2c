/* device_api.c - the device-pointer calls (backprop.h "Data already on the
 * GPU"): argument checks, then the backend. Only the CUDA backend has these
 * ops; elsewhere they are BP_ERR_UNSUPPORTED, after the argument checks, so
 * a program gets the same argument errors on every backend. */
#include <math.h>

#include "internal.h"

/* Checks shared by the three calls. Y may be NULL (forward); the data are
 * device memory and are not scanned here. */
static bp_status check_device_batch(bp_network *net, const float *X, const float *Y, int need_y,
                                    int n, const char *fn) {
  bp_context *ctx = net->ctx;
  if (!X) return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: X is NULL", fn);
  if (need_y && !Y) return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: Y is NULL", fn);
  if (n <= 0 || n > BP_MAX_DIM)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "%s: n = %d is out of range (1 .. %d)", fn, n,
                    BP_MAX_DIM);
  return BP_OK;
}

static bp_status unsupported(bp_network *net, const char *fn) {
  return bp_error(net->ctx, BP_ERR_UNSUPPORTED,
                  "%s: device pointers need the CUDA backend, but this context uses the %s "
                  "backend%s",
                  fn, bp_backend_name(net->ctx->backend),
                  bp_has_cuda() ? "" : " (and this build has no CUDA)");
}

bp_status bp_forward_device(bp_network *net, const float *X, int n, float *out,
                            bp_cuda_stream stream) {
  static const char fn[] = "bp_forward_device";
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(net->ctx);
  if (st != BP_OK) return st;
  if (!out) return bp_error(net->ctx, BP_ERR_INVALID_ARGUMENT, "%s: out is NULL", fn);
  st = check_device_batch(net, X, NULL, 0, n, fn);
  if (st != BP_OK) return st;
  if (!net->ctx->ops->forward_device) return unsupported(net, fn);
  return net->ctx->ops->forward_device(net, X, n, out, (void *)stream);
}

bp_status bp_backward_device(bp_network *net, const float *X, const float *Y, int n, float *cost,
                             bp_cuda_stream stream) {
  static const char fn[] = "bp_backward_device";
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(net->ctx);
  if (st != BP_OK) return st;
  st = check_device_batch(net, X, Y, 1, n, fn);
  if (st != BP_OK) return st;
  if (!net->ctx->ops->backward_device) return unsupported(net, fn);
  st = net->ctx->ops->backward_device(net, X, Y, n, cost, (void *)stream);
  if (st == BP_OK) net->has_grads = 1;
  return st;
}

bp_status bp_train_batch_device(bp_network *net, const float *X, const float *Y, int n,
                                float learning_rate, float *cost, bp_cuda_stream stream) {
  static const char fn[] = "bp_train_batch_device";
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(net->ctx);
  if (st != BP_OK) return st;
  if (!isfinite(learning_rate))
    return bp_error(net->ctx, BP_ERR_INVALID_ARGUMENT, "%s: learning rate is not finite", fn);
  st = check_device_batch(net, X, Y, 1, n, fn);
  if (st != BP_OK) return st;
  if (!net->ctx->ops->train_batch_device) return unsupported(net, fn);
  st = net->ctx->ops->train_batch_device(net, X, Y, n, learning_rate, cost, (void *)stream);
  if (st == BP_OK) net->has_grads = 1;
  return st;
}
