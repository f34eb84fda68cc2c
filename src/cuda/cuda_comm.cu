/*
 * cuda_comm.cu - the gradient exchange of the CUDA backend (internal.h,
 * "The gradient exchange"), two transports:
 *
 *   NCCL   (BP_COMM_TRANSPORT_NCCL, or AUTO in an NCCL build): each bucket is
 *          scaled by n_local / n_global on the compute stream, an event hands
 *          it to the communication stream, and ncclAllReduce (sum) runs there
 *          while backward goes on with the layers below. exchange_finish
 *          reduces the weighted batch cost the same way, makes the compute
 *          stream wait for the communication stream, and polls that event
 *          against the communicator's deadline, with ncclCommGetAsyncError;
 *          past the deadline ncclCommAbort, and BP_ERR_COMM. The NCCL
 *          communicator belongs to the bp_comm (one per process and device),
 *          made at the first exchange from a unique id that rank 0 draws and
 *          MPI broadcasts.
 *   MPI    (staged through host memory): each bucket is scaled and copied to
 *          pinned host memory on the compute stream; exchange_finish waits
 *          for the stream, all-reduces the host copy with MPI (polled against
 *          the deadline), copies it back, and reduces the cost on the host.
 *          Two ranks may share one GPU this way (NCCL refuses that).
 *
 * The update that follows is queued on the compute stream after all of it,
 * so it reads the summed gradients and the global cost on every rank.
 */
#include <math.h>

#include "../comm/comm.h"
#include "cuda_internal.h"

#ifdef BP_WITH_NCCL
#include <nccl.h>
#endif

typedef struct cuda_exchange {
  int nccl;             /* 1: NCCL transport, 0: MPI staged */
  cudaStream_t stream;  /* NCCL: the communication stream */
  cudaEvent_t ready;    /* NCCL: recorded on the compute stream before a bucket's all-reduce */
  cudaEvent_t done;     /* NCCL: recorded on the communication stream after the step's */
  float *d_cost;        /* NCCL: the weighted cost, all-reduced (device) */
  float *host;          /* MPI: pinned copy of the gradients (n_params floats) */
  size_t lo, hi;        /* MPI: the range started this step */
} cuda_exchange;

/* ---- Kernels ------------------------------------------------------------------ */

/* g *= s over count floats; s == 0 writes zeros (a rank without examples:
 * its stale gradients may hold anything, NaN included). */
__global__ void exchange_scale_kernel(float *g, size_t count, float s) {
  for (size_t i = blockIdx.x * (size_t)blockDim.x + threadIdx.x; i < count;
       i += (size_t)gridDim.x * blockDim.x)
    g[i] = s == 0.0f ? 0.0f : g[i] * s;
}

/* *out = w x *cost (0 for w = 0, whatever *cost holds). */
__global__ void exchange_cost_weight_kernel(const float *cost, float w, float *out) {
  if (blockIdx.x == 0 && threadIdx.x == 0) *out = w == 0.0f ? 0.0f : *cost * w;
}

/* The global cost into the scalars, with the epoch's accumulation. */
__global__ void exchange_cost_apply_kernel(const float *global, cuda_scalars *sc, int n_global,
                                           int accumulate) {
  if (blockIdx.x != 0 || threadIdx.x != 0) return;
  const float c = *global;
  sc->cost = c;
  if (accumulate) {
    if (isfinite(c))
      sc->cost_sum += (double)c * (double)n_global;
    else
      sc->skipped += 1;
  }
}

static cudaError_t launch_scale(float *g, size_t count, float s, cudaStream_t stream) {
  if (count == 0 || s == 1.0f) return cudaSuccess;
  size_t blocks = (count + 255) / 256;
  if (blocks > 1024) blocks = 1024;
  exchange_scale_kernel<<<(unsigned)blocks, 256, 0, stream>>>(g, count, s);
  return cudaGetLastError();
}

/* ---- NCCL state of a communicator --------------------------------------------- */

#ifdef BP_WITH_NCCL
typedef struct nccl_state {
  ncclComm_t comm;
  int device;
} nccl_state;

static void nccl_free(bp_comm *comm, int abort) {
  nccl_state *s = (nccl_state *)comm->nccl;
  if (!s) return;
  if (abort)
    (void)ncclCommAbort(s->comm);
  else
    (void)ncclCommDestroy(s->comm);
  free(s);
  comm->nccl = NULL;
}

/* The communicator's NCCL communicator on ctx's device, made on first use
 * (collective: every rank gets here in the same exchange). */
static bp_status nccl_get(bp_network *net, ncclComm_t *out) {
  bp_comm *comm = net->comm;
  bp_context *ctx = net->ctx;
  nccl_state *s = (nccl_state *)comm->nccl;
  if (s) {
    if (s->device != ctx->device)
      return bp_error(ctx, BP_ERR_UNSUPPORTED,
                      "data-parallel: this communicator's NCCL communicator is on device %d; "
                      "a network on device %d needs its own bp_comm",
                      s->device, ctx->device);
    *out = s->comm;
    return BP_OK;
  }
  ncclUniqueId id;
  memset(&id, 0, sizeof id);
  if (comm->rank == 0) {
    ncclResult_t r = ncclGetUniqueId(&id);
    if (r != ncclSuccess)
      return bp_error(ctx, BP_ERR_COMM, "ncclGetUniqueId failed: %s", ncclGetErrorString(r));
  }
  bp_status st = bp_comm_bcast_bytes(comm, &id, (int)sizeof id, "broadcast of NCCL's unique id");
  if (st != BP_OK) return bp_error(ctx, st, "%s", comm->last_error);
  s = (nccl_state *)calloc(1, sizeof *s);
  if (!s) return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "NCCL state: out of host memory");
  ncclResult_t r = ncclCommInitRank(&s->comm, comm->size, id, comm->rank);
  if (r != ncclSuccess) {
    free(s);
    return bp_comm_fail(comm, "rank %d: ncclCommInitRank failed: %s (two ranks on one GPU? use "
                        "the MPI transport)", comm->rank, ncclGetErrorString(r)),
           bp_error(ctx, BP_ERR_COMM, "%s", comm->last_error);
  }
  s->device = ctx->device;
  comm->nccl = s;
  comm->nccl_free = nccl_free;
  *out = s->comm;
  return BP_OK;
}
#endif

/* ---- The exchange state of a network ------------------------------------------ */

void cuda_exchange_free(bp_network *net) {
  cuda_network *cn = net_state(net);
  cuda_exchange *x = (cuda_exchange *)cn->exchange;
  if (!x) return;
  if (x->stream) {
    (void)cudaStreamSynchronize(x->stream);
    (void)cudaStreamDestroy(x->stream);
  }
  if (x->ready) (void)cudaEventDestroy(x->ready);
  if (x->done) (void)cudaEventDestroy(x->done);
  cuda_device_free_quiet(x->d_cost);
  if (x->host) (void)cudaFreeHost(x->host);
  free(x);
  cn->exchange = NULL;
}

static bp_status exchange_state(bp_network *net, cuda_exchange **out) {
  cuda_network *cn = net_state(net);
  bp_context *ctx = net->ctx;
  if (cn->exchange) {
    *out = (cuda_exchange *)cn->exchange;
    return BP_OK;
  }
  bp_status st = BP_OK;
  cuda_exchange *x = (cuda_exchange *)cuda_host_calloc(ctx, sizeof *x, "exchange state", &st);
  if (!x) return st;
  cn->exchange = x;
#ifdef BP_WITH_NCCL
  x->nccl = net->comm->transport != BP_COMM_TRANSPORT_MPI;
#else
  if (net->comm->transport == BP_COMM_TRANSPORT_NCCL)
    return bp_error(ctx, BP_ERR_UNSUPPORTED,
                    "data-parallel: the NCCL transport was asked for, but this build has no "
                    "NCCL");
  x->nccl = 0;
#endif
  if (x->nccl) {
    BP_CUDA_CHECK(ctx, cudaStreamCreateWithFlags(&x->stream, cudaStreamNonBlocking));
    BP_CUDA_CHECK(ctx, cudaEventCreateWithFlags(&x->ready, cudaEventDisableTiming));
    BP_CUDA_CHECK(ctx, cudaEventCreateWithFlags(&x->done, cudaEventDisableTiming));
    st = DEVICE_ALLOC(ctx, &x->d_cost, sizeof(float), "exchanged cost");
  } else {
    if (bp_debug_should_fail_alloc(ctx))
      return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "pinned gradient copy: out of memory (test hook)");
    BP_CUDA_CHECK(ctx, cudaMallocHost((void **)&x->host, sizeof(float) * net->n_params));
  }
  if (st == BP_OK) *out = x;
  return st;
}

/* ---- The ops ------------------------------------------------------------------ */

bp_status cuda_exchange_start(bp_network *net, size_t offset, size_t count, float scale) {
  bp_context *ctx = net->ctx;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  cuda_exchange *x = NULL;
  st = exchange_state(net, &x);
  if (st != BP_OK) return st;
  cudaStream_t stream = ctx_state(ctx)->stream;
  float *g = net_state(net)->grads + offset;
  NET_LAUNCH(net, launch_scale(g, count, scale, stream));
  if (!x->nccl) {
    BP_CUDA_CHECK(ctx, cudaMemcpyAsync(x->host + offset, g, sizeof(float) * count,
                                       cudaMemcpyDeviceToHost, stream));
    if (x->hi == 0 || offset < x->lo) x->lo = offset;
    if (offset + count > x->hi) x->hi = offset + count;
    return BP_OK;
  }
#ifdef BP_WITH_NCCL
  ncclComm_t nc;
  st = nccl_get(net, &nc);
  if (st != BP_OK) return st;
  BP_CUDA_CHECK(ctx, cudaEventRecord(x->ready, stream));
  BP_CUDA_CHECK(ctx, cudaStreamWaitEvent(x->stream, x->ready, 0));
  ncclResult_t r = ncclAllReduce(g, g, count, ncclFloat, ncclSum, nc, x->stream);
  if (r != ncclSuccess)
    return bp_comm_fail(net->comm, "rank %d: ncclAllReduce failed: %s", net->comm->rank,
                        ncclGetErrorString(r)),
           bp_error(ctx, BP_ERR_COMM, "%s", net->comm->last_error);
  ++net->launches;
#endif
  return BP_OK;
}

#ifdef BP_WITH_NCCL
/* Polls the communication stream's `done` against the deadline. */
static bp_status nccl_wait(bp_network *net, cuda_exchange *x, ncclComm_t nc) {
  bp_comm *comm = net->comm;
  const double deadline = bp_now_us() + comm->timeout_s * 1e6;
  for (;;) {
    cudaError_t e = cudaEventQuery(x->done);
    if (e == cudaSuccess) return BP_OK;
    if (e != cudaErrorNotReady) BP_CUDA_CHECK(net->ctx, e);
    ncclResult_t async = ncclSuccess;
    if (ncclCommGetAsyncError(nc, &async) == ncclSuccess && async != ncclSuccess &&
        async != ncclInProgress) {
      bp_comm_fail(comm, "rank %d: NCCL reported an error during the gradient all-reduce: %s",
                   comm->rank, ncclGetErrorString(async));
      nccl_free(comm, 1);
      return bp_error(net->ctx, BP_ERR_COMM, "%s", comm->last_error);
    }
    if (bp_now_us() > deadline) {
      bp_comm_fail(comm,
                   "rank %d of %d: the gradient all-reduce (NCCL) did not complete within the "
                   "communication timeout of %g s (--comm-timeout, bp_comm_set_timeout): another "
                   "rank stopped responding or died",
                   comm->rank, comm->size, comm->timeout_s);
      nccl_free(comm, 1);
      return bp_error(net->ctx, BP_ERR_COMM, "%s", comm->last_error);
    }
  }
}
#endif

bp_status cuda_exchange_finish(bp_network *net, int n_local, int n_global, int accumulate) {
  bp_context *ctx = net->ctx;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  cuda_exchange *x = NULL;
  st = exchange_state(net, &x);
  if (st != BP_OK) return st;
  bp_comm *comm = net->comm;
  cudaStream_t stream = ctx_state(ctx)->stream;
  cuda_network *cn = net_state(net);
  const double w = n_local > 0 ? (double)n_local / (double)n_global : 0.0;
  if (x->nccl) {
#ifdef BP_WITH_NCCL
    ncclComm_t nc;
    st = nccl_get(net, &nc);
    if (st != BP_OK) return st;
    NET_LAUNCH(net, (exchange_cost_weight_kernel<<<1, 1, 0, stream>>>(&cn->scalars->cost,
                                                                       (float)w, x->d_cost),
                     cudaGetLastError()));
    BP_CUDA_CHECK(ctx, cudaEventRecord(x->ready, stream));
    BP_CUDA_CHECK(ctx, cudaStreamWaitEvent(x->stream, x->ready, 0));
    ncclResult_t r = ncclAllReduce(x->d_cost, x->d_cost, 1, ncclFloat, ncclSum, nc, x->stream);
    if (r != ncclSuccess)
      return bp_comm_fail(comm, "rank %d: ncclAllReduce failed: %s", comm->rank,
                          ncclGetErrorString(r)),
             bp_error(ctx, BP_ERR_COMM, "%s", comm->last_error);
    BP_CUDA_CHECK(ctx, cudaEventRecord(x->done, x->stream));
    BP_CUDA_CHECK(ctx, cudaStreamWaitEvent(stream, x->done, 0));
    NET_LAUNCH(net, (exchange_cost_apply_kernel<<<1, 1, 0, stream>>>(x->d_cost, cn->scalars,
                                                                      n_global, accumulate),
                     cudaGetLastError()));
    return nccl_wait(net, x, nc);
#endif
  }
  /* MPI staged: the host copies of the started ranges are complete once
   * the stream is. */
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream));
  if (x->hi > x->lo) st = bp_comm_iallreduce_floats(comm, x->host + x->lo, x->hi - x->lo);
  if (st == BP_OK) st = bp_comm_wait(comm, "gradient all-reduce");
  cuda_scalars sc;
  if (st == BP_OK)
    BP_CUDA_CHECK(ctx, cudaMemcpy(&sc, cn->scalars, sizeof sc, cudaMemcpyDeviceToHost));
  double cost = n_local > 0 ? (double)sc.cost * w : 0.0;
  if (st == BP_OK) st = bp_comm_allreduce_doubles(comm, &cost, 1, "batch cost's reduction");
  if (st != BP_OK) return bp_error(ctx, st, "%s", comm->last_error);
  if (x->hi > x->lo)
    BP_CUDA_CHECK(ctx, cudaMemcpyAsync(cn->grads + x->lo, x->host + x->lo,
                                       sizeof(float) * (x->hi - x->lo), cudaMemcpyHostToDevice,
                                       stream));
  x->lo = x->hi = 0;
  sc.cost = (float)cost;
  if (accumulate) {
    if (isfinite(sc.cost))
      sc.cost_sum += (double)sc.cost * (double)n_global;
    else
      ++sc.skipped;
  }
  BP_CUDA_CHECK(ctx, cudaMemcpyAsync(cn->scalars, &sc, sizeof sc, cudaMemcpyHostToDevice, stream));
  BP_CUDA_CHECK(ctx, cudaStreamSynchronize(stream)); /* sc is on this stack frame */
  return BP_OK;
}
