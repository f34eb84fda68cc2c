/* cuda_util.cu - allocation and device selection for the CUDA backend. */
#include "cuda_internal.h"

/* ---- Helpers ---------------------------------------------------------------- */

/* Start of every entry point: drop a stale non-sticky error some other code
 * left in this thread's runtime state (the launchers report
 * cudaGetLastError(), which would blame it on them), then select the
 * context's device. */
bp_status cuda_enter(bp_context *ctx) {
  (void)cudaGetLastError();
  BP_CUDA_CHECK(ctx, cudaSetDevice(ctx->device));
  return BP_OK;
}

/* Every device allocation goes through here: the test hook first, then
 * cudaMalloc. A failure is BP_ERR_OUT_OF_MEMORY naming the size and purpose
 * (or whatever bp_cuda_fail makes of another error). */
bp_status cuda_device_alloc(bp_context *ctx, void **p, size_t bytes, const char *what, int line) {
  *p = NULL;
  if (bytes == 0) bytes = 256; /* cudaMalloc(0) gives NULL; keep pointers real */
  if (bp_debug_should_fail_alloc(ctx))
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY,
                    "cudaMalloc of %zu bytes for %s failed: out of memory (test hook)", bytes,
                    what);
  cudaError_t err = cudaMalloc(p, bytes);
  if (err != cudaSuccess) {
    *p = NULL;
    bp_status st = bp_cuda_fail(ctx, err, "cudaMalloc", __FILE__, line);
    if (st == BP_ERR_OUT_OF_MEMORY)
      bp_error(ctx, st, "cudaMalloc of %zu bytes for %s failed: %s (%s:%d)", bytes, what,
               cudaGetErrorString(err), bp_cuda_short_path(__FILE__), line);
    return st;
  }
  return BP_OK;
}

/* Host allocations of the backend also honour the test hook. */
void *cuda_host_calloc(bp_context *ctx, size_t bytes, const char *what, bp_status *st) {
  void *p = NULL;
  if (bp_debug_should_fail_alloc(ctx)) {
    *st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY,
                   "allocating %zu bytes of host memory for %s "
                   "failed: out of memory (test hook)",
                   bytes, what);
    return NULL;
  }
  p = calloc(1, bytes);
  if (p == NULL) {
    *st = bp_error(ctx, BP_ERR_OUT_OF_MEMORY,
                   "allocating %zu bytes of host memory for %s failed: out of memory", bytes, what);
    return NULL;
  }
  *st = BP_OK;
  return p;
}

/* Frees device memory where the error cannot be reported (destroy paths).
 * A failure leaves the runtime's last-error state set; clear it so the next
 * launch check does not report it. */
void cuda_device_free_quiet(void *p) {
  if (p != NULL && cudaFree(p) != cudaSuccess) (void)cudaGetLastError();
}

