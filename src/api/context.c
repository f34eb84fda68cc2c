/* context.c - creating and destroying contexts; picking the backend. */
#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

#include "internal.h"

int bp_has_cuda(void) {
#ifdef BP_WITH_CUDA
  return 1;
#else
  return 0;
#endif
}

int bp_cuda_device_count(void) {
#ifdef BP_WITH_CUDA
  return bp_cuda_count_devices();
#else
  return 0;
#endif
}

bp_status bp_context_create(bp_backend backend, int device, bp_context **out) {
  if (!out) return BP_ERR_INVALID_ARGUMENT;
  *out = NULL;
  if (device < 0) return BP_ERR_INVALID_ARGUMENT;
  if (backend != BP_BACKEND_AUTO && backend != BP_BACKEND_CPU && backend != BP_BACKEND_CUDA)
    return BP_ERR_INVALID_ARGUMENT;

  bp_context *ctx = calloc(1, sizeof *ctx);
  if (!ctx) return BP_ERR_OUT_OF_MEMORY;
  ctx->device = device;
  /* Ids key the per-thread error records (errors.c); never 0, never reused. */
  static atomic_uint_fast64_t next_id;
  ctx->id = (uint64_t)atomic_fetch_add(&next_id, 1) + 1;

  /* The CPU backend never touches CUDA, not even to count devices. */
  int devices = backend == BP_BACKEND_CPU ? 0 : bp_cuda_device_count();
  if (backend == BP_BACKEND_AUTO) backend = devices > device ? BP_BACKEND_CUDA : BP_BACKEND_CPU;
  ctx->backend = backend;

  if (backend == BP_BACKEND_CPU) {
    ctx->ops = &bp_cpu_ops;
    ctx->device = 0;
    *out = ctx;
    return BP_OK;
  }
#ifdef BP_WITH_CUDA
  if (device >= devices) {
    free(ctx);
    return BP_ERR_NO_DEVICE;
  }
  ctx->ops = &bp_cuda_ops;
  bp_status st = bp_cuda_context_init(ctx);
  if (st != BP_OK) {
    free(ctx);
    return st;
  }
  *out = ctx;
  return BP_OK;
#else
  free(ctx);
  return BP_ERR_NO_DEVICE;
#endif
}

void bp_context_destroy(bp_context *ctx) {
  if (!ctx) return;
  if (ctx->ops && ctx->ops->context_destroy) ctx->ops->context_destroy(ctx);
  bp_clear_error(ctx); /* this thread's slot; other threads' records can never match again */
  free(ctx);
}

bp_backend bp_context_backend(const bp_context *ctx) {
  return ctx ? ctx->backend : BP_BACKEND_AUTO;
}
