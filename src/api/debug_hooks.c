/* debug_hooks.c - the test hooks backprop.h declares (bp_debug_*): failing
 * the nth allocation, faulting the device. */
#include "internal.h"

int bp_debug_should_fail_alloc(bp_context *ctx) {
  if (!ctx || ctx->fail_alloc_countdown <= 0) return 0;
  return --ctx->fail_alloc_countdown == 0;
}

bp_status bp_debug_fail_allocation(bp_context *ctx, long nth) {
  if (!ctx) return BP_ERR_INVALID_ARGUMENT;
  if (nth < 0) return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_debug_fail_allocation: nth < 0");
  ctx->fail_alloc_countdown = nth;
  return BP_OK;
}

bp_status bp_debug_inject_device_fault(bp_context *ctx) {
  if (!ctx) return BP_ERR_INVALID_ARGUMENT;
#ifdef BP_WITH_CUDA
  if (ctx->backend == BP_BACKEND_CUDA) return bp_cuda_debug_fault(ctx);
#endif
  return bp_error(ctx, BP_ERR_UNSUPPORTED,
                  "bp_debug_inject_device_fault: only the CUDA backend has a device to fault");
}
