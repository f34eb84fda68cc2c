/* cuda_context.cu - per-context CUDA state: one non-blocking stream and one
 * cuBLAS handle bound to it. */
#include "cuda_internal.h"

/* ---- Context ---------------------------------------------------------------- */

extern "C" int bp_cuda_count_devices(void) {
  int count = 0;
  cudaError_t err = cudaGetDeviceCount(&count);
  if (err != cudaSuccess) {
    (void)cudaGetLastError(); /* no driver / no device: not an error for the caller */
    return 0;
  }
  return count;
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
  /* No TF32 or other reduced-precision shortcuts: float32 products as the CPU
   * computes them, so the backends agree to float32 rounding. */
  BP_CUBLAS_CHECK_GOTO(ctx, cublasSetMathMode(cc->blas, CUBLAS_PEDANTIC_MATH), st, fail);
  ctx->impl = cc;
  return BP_OK;
fail:
  if (cc->blas != NULL) (void)cublasDestroy(cc->blas);
  if (cc->stream != NULL) (void)cudaStreamDestroy(cc->stream);
  (void)cudaGetLastError();
  free(cc);
  return st;
}

void cuda_context_destroy(bp_context *ctx) {
  cuda_context *cc = ctx_state(ctx);
  if (cc == NULL) return;
  (void)cudaSetDevice(ctx->device);
  if (cc->stream != NULL) (void)cudaStreamSynchronize(cc->stream);
  if (cc->blas != NULL) (void)cublasDestroy(cc->blas);
  if (cc->stream != NULL) (void)cudaStreamDestroy(cc->stream);
  (void)cudaGetLastError();
  free(cc);
  ctx->impl = NULL;
}

