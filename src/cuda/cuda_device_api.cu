/* cuda_device_api.cu - what the device-pointer calls (backprop.h "Data
 * already on the GPU": bp_forward_device, bp_backward_device,
 * bp_train_batch_device) need of the CUDA backend beyond the step itself,
 * which the engine runs (src/engine/step.c): checking the caller's stream
 * and pointers, and joining the caller's stream (device_enter,
 * device_leave).
 *
 * The caller's row-major X (n x s[0]) in device memory is, read
 * column-major, the s[0] x n input matrix of the workspace layout
 * (internal.h), so it is the forward pass's input as it is: no copy. Y
 * likewise is the s[L] x n target matrix.
 *
 * Ordering, without any host wait on the normal path:
 *   caller's stream:  ... [record caller_ready]                [wait work_done] ...
 *   context stream:          [wait caller_ready] work [record work_done]
 * The two events belong to the context (cuda_context.cu) and are re-recorded
 * by every call; a wait uses the state of the event's latest record at the
 * time of the wait call, so a later call re-recording them does not disturb
 * an earlier wait. The only host wait is the engine's reserve when a larger
 * batch than any before needs a bigger workspace (it waits for the
 * context's own stream, never for the caller's).
 */
#include "cuda_internal.h"

/* A stream being captured into a CUDA graph is refused: the context's stream
 * would join the capture, and the library's synchronous calls on it would
 * then fail (and break the caller's capture) until the capture ends. */
static bp_status check_stream(bp_context *ctx, cudaStream_t user, const char *fn) {
  cudaStreamCaptureStatus status = cudaStreamCaptureStatusNone;
  cudaError_t err = cudaStreamIsCapturing(user, &status);
  if (err == cudaErrorStreamCaptureImplicit) {
    /* The legacy default stream while another (blocking) stream captures. */
    (void)cudaGetLastError();
    status = cudaStreamCaptureStatusActive;
  } else if (err != cudaSuccess) {
    return bp_cuda_fail(ctx, err, "cudaStreamIsCapturing", __FILE__, __LINE__);
  }
  if (status != cudaStreamCaptureStatusNone)
    return bp_error(ctx, BP_ERR_UNSUPPORTED,
                    "%s: the stream is being captured into a CUDA graph (or the legacy default "
                    "stream while another stream captures); the device-pointer calls do not "
                    "support stream capture",
                    fn);
  return BP_OK;
}

/* A pointer the device cannot read would fault, and a device fault poisons
 * every CUDA context of the process: refuse it here instead. Device memory
 * must be on the context's device; pinned host memory must be mapped at
 * the same address (as cudaHostAlloc's is, with unified addressing); plain
 * host memory only where the device reads pageable memory (HMM, ATS). */
static bp_status check_pointer(bp_context *ctx, const void *p, const char *fn, const char *name) {
  cudaPointerAttributes attr;
  memset(&attr, 0, sizeof attr);
  cudaError_t err = cudaPointerGetAttributes(&attr, p);
  if (err == cudaErrorInvalidValue) { /* some drivers: a pointer CUDA does not know */
    (void)cudaGetLastError();
    attr.type = cudaMemoryTypeUnregistered;
  } else if (err != cudaSuccess) {
    return bp_cuda_fail(ctx, err, "cudaPointerGetAttributes", __FILE__, __LINE__);
  }
  switch (attr.type) {
    case cudaMemoryTypeDevice:
      if (attr.device != ctx->device)
        return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                        "%s: %s is memory of CUDA device %d, but the context uses device %d", fn,
                        name, attr.device, ctx->device);
      return BP_OK;
    case cudaMemoryTypeManaged:
      return BP_OK;
    case cudaMemoryTypeHost:
      if (attr.devicePointer == p) return BP_OK;
      return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                      "%s: %s is pinned host memory that is not mapped at the same address on "
                      "the device; pass a device pointer",
                      fn, name);
    case cudaMemoryTypeUnregistered:
    default:
      if (ctx_state(ctx)->pageable_access) return BP_OK;
      return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                      "%s: %s is host memory the device cannot read; pass a device pointer "
                      "(cudaMalloc), or use the host-array call",
                      fn, name);
  }
}

bp_status cuda_device_enter(bp_network *net, void *stream, const char *fn, const float *X,
                            const float *Y, const float *out, const float *cost) {
  bp_context *ctx = net->ctx;
  cuda_context *cc = ctx_state(ctx);
  cudaStream_t user = (cudaStream_t)stream;
  bp_status st = cuda_enter(ctx);
  if (st == BP_OK) st = check_stream(ctx, user, fn);
  if (st == BP_OK) st = check_pointer(ctx, X, fn, "X");
  if (st == BP_OK && Y != NULL) st = check_pointer(ctx, Y, fn, "Y");
  if (st == BP_OK && out != NULL) st = check_pointer(ctx, out, fn, "out");
  if (st == BP_OK && cost != NULL) st = check_pointer(ctx, cost, fn, "cost");
  if (st != BP_OK) return st;
  /* The work starts after everything the caller queued on its stream. */
  BP_CUDA_CHECK(ctx, cudaEventRecord(cc->caller_ready, user));
  BP_CUDA_CHECK(ctx, cudaStreamWaitEvent(cc->stream, cc->caller_ready, 0));
  return BP_OK;
}

/* Queues the copies of the outputs to out and of the cost to cost (each
 * when not NULL), then joins back. cudaMemcpyDefault: out and cost are
 * device memory as a rule, but check_pointer also lets through managed and
 * mapped pinned memory, whose direction the runtime then works out from the
 * addresses (unified addressing). */
bp_status cuda_device_leave(bp_network *net, void *stream, int n, float *out, float *cost,
                            int failed) {
  bp_context *ctx = net->ctx;
  cuda_context *cc = ctx_state(ctx);
  cuda_network *cn = net_state(net);
  cudaStream_t user = (cudaStream_t)stream;
  const int L = net->n_layers;
  cudaError_t err = cudaSuccess;
  const char *call = "cudaMemcpyAsync";
  if (!failed && out != NULL)
    err = cudaMemcpyAsync(out, cn->ws.act[L - 1], (size_t)net->sizes[L] * (size_t)n * sizeof(float),
                          cudaMemcpyDefault, cc->stream);
  if (!failed && err == cudaSuccess && cost != NULL)
    err = cudaMemcpyAsync(cost, &cn->scalars->cost, sizeof(float), cudaMemcpyDefault, cc->stream);
  /* The caller's later work starts after ours, also when queueing failed
   * part-way: whatever was queued may still read X and Y. */
  cudaError_t join = cudaEventRecord(cc->work_done, cc->stream);
  if (join == cudaSuccess) join = cudaStreamWaitEvent(user, cc->work_done, 0);
  if (failed) {
    (void)cudaGetLastError(); /* the first failure is the one reported */
    return BP_ERR_DEVICE;
  }
  if (err != cudaSuccess) return bp_cuda_fail(ctx, err, call, __FILE__, __LINE__);
  if (join != cudaSuccess)
    return bp_cuda_fail(ctx, join, "cudaEventRecord/cudaStreamWaitEvent", __FILE__, __LINE__);
  return BP_OK;
}
