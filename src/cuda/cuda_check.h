/*
 * cuda_check.h - turn a failed CUDA runtime or cuBLAS call into a bp_status.
 *
 * In the manner of llm.c's cudaCheck, but a library must not exit: the macros
 * record "<call> failed: <reason> (<file>:<line>)" on the context with
 * bp_error and return the status from the enclosing function.
 *
 *   BP_CUDA_CHECK(ctx, cudaMalloc(&p, bytes));
 *   BP_CUBLAS_CHECK(ctx, cublasSgemm(...));
 *   BP_LAUNCH_CHECK(ctx, bp_launch_sgd(...));   (a launcher's cudaError_t)
 *
 * Classification:
 *   - cudaErrorMemoryAllocation: BP_ERR_OUT_OF_MEMORY. The error is not
 *     sticky; it is cleared with cudaGetLastError() (as every non-sticky
 *     error is) so that the next call on the context does not see it again.
 *     The context stays usable.
 *   - CUBLAS_STATUS_ALLOC_FAILED: BP_ERR_OUT_OF_MEMORY.
 *   - Sticky faults (illegal address, launch failure, assert, ECC, ...): the
 *     CUDA context of the process is corrupt and every later CUDA call fails.
 *     ctx->failed is set, so the API refuses further calls on ctx, and the
 *     message says the process must restart. BP_ERR_DEVICE.
 *   - Anything else: BP_ERR_DEVICE.
 * A cuBLAS failure other than an allocation also looks at the CUDA runtime's
 * error state: a kernel fault inside cuBLAS shows there as a sticky error.
 */
#ifndef BP_CUDA_CHECK_H
#define BP_CUDA_CHECK_H

#include <string.h>

#include <cublas_v2.h>
#include <cuda_runtime.h>

#include "internal.h"

/* 1 for the errors after which the process's CUDA context is unusable. */
static inline int bp_cuda_error_is_sticky(cudaError_t err) {
  switch (err) {
    case cudaErrorIllegalAddress:
    case cudaErrorLaunchFailure:
    case cudaErrorHardwareStackError:
    case cudaErrorIllegalInstruction:
    case cudaErrorMisalignedAddress:
    case cudaErrorInvalidAddressSpace:
    case cudaErrorInvalidPc:
    case cudaErrorAssert:
    case cudaErrorLaunchTimeout:
    case cudaErrorECCUncorrectable:
    case cudaErrorNvlinkUncorrectable:
    case cudaErrorContained:
    case cudaErrorTensorMemoryLeak:
    case cudaErrorExternalDevice:
    case cudaErrorUnknown:
      return 1;
    default:
      return 0;
  }
}

/* The source path from its "src/" or "kernels/" component on, so messages do
 * not depend on where the tree was built ("src/cuda/cuda_backend.cu"). */
static inline const char *bp_cuda_short_path(const char *file) {
  const char *best = NULL;
  const char *p;
  if ((p = strstr(file, "/src/")) != NULL) best = p + 1;
  if ((p = strstr(file, "/kernels/")) != NULL && (best == NULL || p + 1 < best)) best = p + 1;
  if (best != NULL) return best;
  return file;
}

/* Length of the function name at the start of a stringified call
 * ("cudaMalloc(&p, n)" -> 10), so the message names the call, not its
 * arguments. */
static inline int bp_cuda_call_name_len(const char *call) {
  const char *paren = strchr(call, '(');
  size_t len = paren != NULL ? (size_t)(paren - call) : strlen(call);
  while (len > 0 && call[len - 1] == ' ') --len;
  return (int)len;
}

static inline bp_status bp_cuda_fail(bp_context *ctx, cudaError_t err, const char *call,
                                     const char *file, int line) {
  int name_len = bp_cuda_call_name_len(call);
  const char *path = bp_cuda_short_path(file);
  /* The runtime also records a failed call as the thread's "last error",
   * which the next launcher's cudaGetLastError() would report as its own.
   * Clear it (a sticky error cannot be cleared, and stays). */
  (void)cudaGetLastError();
  if (err == cudaErrorMemoryAllocation) {
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%.*s failed: %s (%s:%d)", name_len, call,
                    cudaGetErrorString(err), path, line);
  }
  if (bp_cuda_error_is_sticky(err)) {
    if (ctx != NULL) ctx->failed = 1;
    return bp_error(ctx, BP_ERR_DEVICE,
                    "%.*s failed: %s (%s, %s:%d); the CUDA context is unusable: destroy "
                    "everything and restart the process",
                    name_len, call, cudaGetErrorString(err), cudaGetErrorName(err), path, line);
  }
  return bp_error(ctx, BP_ERR_DEVICE, "%.*s failed: %s (%s, %s:%d)", name_len, call,
                  cudaGetErrorString(err), cudaGetErrorName(err), path, line);
}

static inline bp_status bp_cublas_fail(bp_context *ctx, cublasStatus_t st, const char *call,
                                       const char *file, int line) {
  int name_len = bp_cuda_call_name_len(call);
  const char *path = bp_cuda_short_path(file);
  /* A device fault during a cuBLAS kernel is reported by cuBLAS as an
   * execution failure; the runtime holds the real (sticky) cause. Read it,
   * which also clears a non-sticky error cuBLAS's own runtime calls left. */
  cudaError_t cause = cudaGetLastError();
  if (st == CUBLAS_STATUS_ALLOC_FAILED) {
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%.*s failed: %s (%s:%d)", name_len, call,
                    cublasGetStatusString(st), path, line);
  }
  if (bp_cuda_error_is_sticky(cause)) {
    if (ctx != NULL) ctx->failed = 1;
    return bp_error(ctx, BP_ERR_DEVICE,
                    "%.*s failed: %s, %s (%s:%d); the CUDA context is unusable: destroy "
                    "everything and restart the process",
                    name_len, call, cublasGetStatusString(st), cudaGetErrorString(cause), path,
                    line);
  }
  return bp_error(ctx, BP_ERR_DEVICE, "%.*s failed: %s (%s:%d)", name_len, call,
                  cublasGetStatusString(st), path, line);
}

#define BP_CUDA_CHECK(ctx, call)                                           \
  do {                                                                     \
    cudaError_t bp_cuda_err_ = (call);                                     \
    if (bp_cuda_err_ != cudaSuccess)                                       \
      return bp_cuda_fail((ctx), bp_cuda_err_, #call, __FILE__, __LINE__); \
  } while (0)

#define BP_CUBLAS_CHECK(ctx, call)                                            \
  do {                                                                        \
    cublasStatus_t bp_cublas_st_ = (call);                                    \
    if (bp_cublas_st_ != CUBLAS_STATUS_SUCCESS)                               \
      return bp_cublas_fail((ctx), bp_cublas_st_, #call, __FILE__, __LINE__); \
  } while (0)

/* A kernel launcher (kernels.cuh) returns cudaGetLastError() after its
 * launch; the message names the launcher. */
#define BP_LAUNCH_CHECK(ctx, call) BP_CUDA_CHECK(ctx, call)

/* Same as BP_CUDA_CHECK but stores the status in `status_var` and jumps to
 * `label` instead of returning, for functions that must clean up. */
#define BP_CUDA_CHECK_GOTO(ctx, call, status_var, label)                           \
  do {                                                                             \
    cudaError_t bp_cuda_err_ = (call);                                             \
    if (bp_cuda_err_ != cudaSuccess) {                                             \
      (status_var) = bp_cuda_fail((ctx), bp_cuda_err_, #call, __FILE__, __LINE__); \
      goto label;                                                                  \
    }                                                                              \
  } while (0)

#define BP_CUBLAS_CHECK_GOTO(ctx, call, status_var, label)                            \
  do {                                                                                \
    cublasStatus_t bp_cublas_st_ = (call);                                            \
    if (bp_cublas_st_ != CUBLAS_STATUS_SUCCESS) {                                     \
      (status_var) = bp_cublas_fail((ctx), bp_cublas_st_, #call, __FILE__, __LINE__); \
      goto label;                                                                     \
    }                                                                                 \
  } while (0)

#endif /* BP_CUDA_CHECK_H */
