/*
 * cuda_backend.cu - the CUDA backend: device memory, cuBLAS products and the
 * kernels of kernels/, behind struct bp_backend_ops (internal.h).
 *
 * Per context: one non-blocking stream and one cuBLAS handle bound to it, so
 * every operation of a context is ordered on that stream and contexts never
 * wait on each other. Every entry point selects ctx->device first (contexts
 * on different devices may share a thread in turn).
 *
 * Per network, in device memory:
 *   - params and grads: one buffer each, in the layout of internal.h;
 *   - a few scalars (batch cost, epoch cost sum, skip and correct counters);
 *   - a workspace for batches of up to `capacity` examples: input, targets,
 *     z and a of every layer, two delta buffers (ping-pong between layers),
 *     and the reductions' scratch. It grows (and only grows) when a larger
 *     batch first arrives: the new one is allocated in full before the old
 *     one is freed, so a failed growth leaves the network working at its old
 *     capacity. Nothing is allocated in the steady state.
 * Per data set: X, Y and room for one epoch's permutation.
 *
 * Synchronous API: each entry point waits for its work before returning, so
 * a device fault is reported by the call that caused it and host arrays are
 * complete on return. Inside bp_train_epoch nothing waits until the end.
 */
#include "cuda_internal.h"

/* ---- The backend ------------------------------------------------------------------- */

/* In the member order of struct bp_backend_ops (internal.h). */
extern "C" const bp_backend_ops bp_cuda_ops = {
    "cuda",               /* name */
    cuda_context_destroy, /* context_destroy */
    cuda_network_init,    /* network_init: cuda_network.cu */
    cuda_network_free,    /* network_free */
    cuda_read_params,     /* read_params */
    cuda_write_params,    /* write_params */
    cuda_read_grads,      /* read_grads */
    cuda_dataset_init,    /* dataset_init: cuda_dataset.cu */
    cuda_dataset_free,    /* dataset_free */
    cuda_reserve,         /* reserve: cuda_network.cu */
    cuda_load,            /* load: cuda_stage.cu */
    cuda_epoch_begin,     /* epoch_begin */
    cuda_stage,           /* stage */
    cuda_epoch_end,       /* epoch_end */
    cuda_forward,         /* forward: cuda_step.cu */
    cuda_backward,        /* backward */
    cuda_update,          /* update */
    cuda_opt_reset,       /* opt_reset: cuda_optimizer.cu */
    cuda_opt_read,        /* opt_read */
    cuda_opt_write,       /* opt_write */
    cuda_train_step,      /* train_step */
    cuda_reset_counters,  /* reset_counters */
    cuda_read_counters,   /* read_counters */
    cuda_evaluate_chunk,  /* evaluate_chunk */
    cuda_read_output,     /* read_output */
    cuda_check_math_mode, /* check_math_mode: cuda_gemm.cu */
    cuda_device_enter,    /* device_enter: cuda_device_api.cu */
    cuda_device_leave,    /* device_leave */
    cuda_exchange_start,  /* exchange_start: cuda_comm.cu */
    cuda_exchange_finish, /* exchange_finish */
    cuda_train_share_step, /* train_share_step: cuda_step.cu */
};

/* Test hook behind bp_debug_inject_device_fault: a real sticky fault, caught
 * and classified by the same checks as any other. */
extern "C" bp_status bp_cuda_debug_fault(bp_context *ctx) {
  BP_CUDA_CHECK(ctx, cudaSetDevice(ctx->device));
  cudaStream_t stream = ctx_state(ctx)->stream;
  BP_LAUNCH_CHECK(ctx, bp_launch_debug_fault(stream));
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream));
  return bp_error(ctx, BP_ERR_DEVICE, "bp_debug_inject_device_fault: the fault did not happen");
}

