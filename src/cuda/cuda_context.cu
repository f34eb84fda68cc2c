/* cuda_context.cu - per-context CUDA state: one non-blocking stream and one
 * cuBLAS handle bound to it; the events that join the device-pointer calls
 * to the caller's stream; the copy stream and events of the host-streamed
 * epoch. Created once here, so no call creates CUDA objects per batch. */
#include "cuda_internal.h"

/* ---- Context ---------------------------------------------------------------- */

#define BLAS_WORKSPACE_BYTES ((size_t)32 << 20)

extern "C" int bp_cuda_count_devices(void) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError(); /* no driver / no device: not an error for the caller */
    return 0;
  }
  return count;
}

/* Releases whatever of cc was created (NULL members are skipped), and cc.
 * The device must be current and the streams idle. */
static void destroy_state(cuda_context *cc) {
  for (int s = 0; s < 2; ++s) {
    if (cc->copied[s] != NULL) (void)cudaEventDestroy(cc->copied[s]);
    if (cc->consumed[s] != NULL) (void)cudaEventDestroy(cc->consumed[s]);
  }
  if (cc->copy_stream != NULL) (void)cudaStreamDestroy(cc->copy_stream);
  if (cc->work_done != NULL) (void)cudaEventDestroy(cc->work_done);
  if (cc->caller_ready != NULL) (void)cudaEventDestroy(cc->caller_ready);
  if (cc->blas != NULL) (void)cublasDestroy(cc->blas);
  cuda_device_free_quiet(cc->blas_workspace);
  if (cc->stream != NULL) (void)cudaStreamDestroy(cc->stream);
  (void)cudaGetLastError();
  free(cc);
}

extern "C" bp_status bp_cuda_context_init(bp_context *ctx) {
  bp_status st = BP_OK;
  ctx->impl = NULL;
  cuda_context *cc = (cuda_context *)calloc(1, sizeof *cc);
  if (cc == NULL)
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY,
                    "allocating the CUDA context state failed: out of memory");
  (void)cudaGetLastError();
  cudaError_t err = cudaSetDevice(ctx->device);
  if (err == cudaErrorInvalidDevice || err == cudaErrorNoDevice ||
      err == cudaErrorInsufficientDriver) {
    (void)cudaGetLastError();
    free(cc);
    return bp_error(ctx, BP_ERR_NO_DEVICE, "cudaSetDevice(%d) failed: %s (%s:%d)", ctx->device,
                    cudaGetErrorString(err), bp_cuda_short_path(__FILE__), __LINE__);
  }
  if (err != cudaSuccess) {
    st = bp_cuda_fail(ctx, err, "cudaSetDevice", __FILE__, __LINE__);
    goto fail;
  }
  BP_CUDA_CHECK_GOTO(ctx, cudaStreamCreateWithFlags(&cc->stream, cudaStreamNonBlocking), st, fail);
  BP_CUBLAS_CHECK_GOTO(ctx, cublasCreate(&cc->blas), st, fail);
  BP_CUBLAS_CHECK_GOTO(ctx, cublasSetStream(cc->blas, cc->stream), st, fail);
  /* A workspace of the handle's own, set after cublasSetStream (which
   * resets it to the default pool): without one, cuBLAS takes scratch from
   * cudaMallocAsync, which inside a CUDA graph capture becomes an
   * allocation node of each graph. With it, captured and uncaptured
   * products see the same workspace. 32 MiB is the size NVIDIA's cuBLAS
   * guide gives for Hopper. */
  st = DEVICE_ALLOC(ctx, &cc->blas_workspace, BLAS_WORKSPACE_BYTES, "the cuBLAS workspace");
  if (st != BP_OK) goto fail;
  BP_CUBLAS_CHECK_GOTO(
      ctx, cublasSetWorkspace(cc->blas, cc->blas_workspace, BLAS_WORKSPACE_BYTES), st, fail);
  /* No TF32 or other reduced-precision shortcuts: float32 products as the CPU
   * computes them, so the backends agree to float32 rounding. */
  BP_CUBLAS_CHECK_GOTO(ctx, cublasSetMathMode(cc->blas, CUBLAS_PEDANTIC_MATH), st, fail);
  /* Events only order streams: no timing (cheaper to record and wait on). */
  BP_CUDA_CHECK_GOTO(ctx, cudaEventCreateWithFlags(&cc->caller_ready, cudaEventDisableTiming), st,
                     fail);
  BP_CUDA_CHECK_GOTO(ctx, cudaEventCreateWithFlags(&cc->work_done, cudaEventDisableTiming), st,
                     fail);
  BP_CUDA_CHECK_GOTO(ctx, cudaStreamCreateWithFlags(&cc->copy_stream, cudaStreamNonBlocking), st,
                     fail);
  for (int s = 0; s < 2; ++s) {
    BP_CUDA_CHECK_GOTO(ctx, cudaEventCreateWithFlags(&cc->copied[s], cudaEventDisableTiming), st,
                       fail);
    BP_CUDA_CHECK_GOTO(ctx, cudaEventCreateWithFlags(&cc->consumed[s], cudaEventDisableTiming), st,
                       fail);
  }
  BP_CUDA_CHECK_GOTO(ctx, cudaDeviceGetAttribute(&cc->pageable_access,
                                                 cudaDevAttrPageableMemoryAccess, ctx->device),
                     st, fail);
  ctx->impl = cc;
  return BP_OK;
fail:
  destroy_state(cc);
  return st;
}

void cuda_context_destroy(bp_context *ctx) {
  cuda_context *cc = ctx_state(ctx);
  if (cc == NULL) return;
  (void)cudaSetDevice(ctx->device);
  if (cc->stream != NULL) (void)cudaStreamSynchronize(cc->stream);
  if (cc->copy_stream != NULL) (void)cudaStreamSynchronize(cc->copy_stream);
  destroy_state(cc);
  ctx->impl = NULL;
}

