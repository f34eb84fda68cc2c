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
 *          MPI broadcasts; or, for a BP_COMM_FILE communicator (no MPI), made
 *          in bp_network_set_comm (bp_cuda_comm_attach) from the id passed
 *          through the rendezvous (a file or rank 0's socket), and then also
 *          carrying the host collectives (the shape check, the weights'
 *          broadcast, the reductions of costs and counts) through a device
 *          buffer.
 *   MPI    (staged through host memory): each bucket is scaled and copied to
 *          pinned host memory on the compute stream; exchange_finish waits
 *          for the stream, all-reduces the host copy with MPI (polled against
 *          the deadline), copies it back, and reduces the cost on the host.
 *          Two ranks may share one GPU this way (NCCL refuses that): under
 *          MPI, AUTO compares the ranks' device UUIDs at the first exchange
 *          and takes this path, with a note on rank 0's stderr, when two
 *          match.
 *
 * The update that follows is queued on the compute stream after all of it,
 * so it reads the summed gradients and the global cost on every rank.
 */
#include <math.h>
#include <stdio.h>

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
  cudaStream_t stream; /* the host collectives' (BP_COMM_FILE) */
} nccl_state;

static void nccl_free(bp_comm *comm, int abort) {
  nccl_state *s = (nccl_state *)comm->nccl;
  if (!s) return;
  if (abort)
    (void)ncclCommAbort(s->comm);
  else
    (void)ncclCommDestroy(s->comm);
  if (s->stream) {
    if (!abort) (void)cudaStreamSynchronize(s->stream);
    (void)cudaStreamDestroy(s->stream);
  }
  free(s);
  comm->nccl = NULL;
  comm->dev_allreduce_doubles = NULL;
  comm->dev_bcast_floats = NULL;
}

/* Polls ev (or, if NULL, stream) against the deadline, with NCCL's async
 * error; on failure aborts the NCCL communicator and returns BP_ERR_COMM
 * (the message on comm). */
static bp_status nccl_poll(bp_comm *comm, ncclComm_t nc, cudaEvent_t ev, cudaStream_t stream,
                           const char *what) {
  const double deadline = bp_now_us() + comm->timeout_s * 1e6;
  for (;;) {
    cudaError_t e = ev ? cudaEventQuery(ev) : cudaStreamQuery(stream);
    if (e == cudaSuccess) return BP_OK;
    if (e != cudaErrorNotReady) {
      bp_comm_fail(comm, "rank %d: CUDA failed during the %s: %s", comm->rank, what,
                   cudaGetErrorString(e));
      nccl_free(comm, 1);
      return BP_ERR_COMM;
    }
    ncclResult_t async = ncclSuccess;
    if (ncclCommGetAsyncError(nc, &async) == ncclSuccess && async != ncclSuccess &&
        async != ncclInProgress) {
      bp_comm_fail(comm, "rank %d: NCCL reported an error during the %s: %s", comm->rank, what,
                   ncclGetErrorString(async));
      nccl_free(comm, 1);
      return BP_ERR_COMM;
    }
    if (bp_now_us() > deadline) {
      bp_comm_fail(comm,
                   "rank %d of %d: the %s (NCCL) did not complete within the communication "
                   "timeout of %g s (--comm-timeout, bp_comm_set_timeout): another rank stopped "
                   "responding or died",
                   comm->rank, comm->size, what, comm->timeout_s);
      nccl_free(comm, 1);
      return BP_ERR_COMM;
    }
  }
}

/* A host collective through NCCL (BP_COMM_FILE has no other): count
 * elements of `elem` bytes at v, all-reduced (sum) or broadcast from rank 0,
 * through a device buffer on the state's stream. */
static bp_status nccl_host_collective(bp_comm *comm, void *v, size_t count, ncclDataType_t type,
                                      size_t elem, int bcast, const char *what) {
  nccl_state *s = (nccl_state *)comm->nccl;
  if (comm->failed) return BP_ERR_COMM;
  if (!s) return bp_comm_fail(comm, "rank %d: the %s: no NCCL communicator", comm->rank, what);
  const size_t bytes = count * elem;
  void *d = NULL;
  cudaError_t e = cudaSetDevice(s->device);
  if (e == cudaSuccess) e = cudaMalloc(&d, bytes);
  if (e == cudaSuccess) e = cudaMemcpyAsync(d, v, bytes, cudaMemcpyHostToDevice, s->stream);
  if (e != cudaSuccess) {
    if (d) (void)cudaFree(d);
    return bp_comm_fail(comm, "rank %d: the %s: %s", comm->rank, what, cudaGetErrorString(e));
  }
  ncclResult_t r = bcast ? ncclBroadcast(d, d, count, type, 0, s->comm, s->stream)
                         : ncclAllReduce(d, d, count, type, ncclSum, s->comm, s->stream);
  if (r != ncclSuccess) {
    (void)cudaStreamSynchronize(s->stream);
    (void)cudaFree(d);
    return bp_comm_fail(comm, "rank %d: the %s: %s failed: %s", comm->rank, what,
                        bcast ? "ncclBroadcast" : "ncclAllReduce", ncclGetErrorString(r));
  }
  bp_status st = nccl_poll(comm, s->comm, NULL, s->stream, what);
  if (st == BP_OK) {
    e = cudaMemcpy(v, d, bytes, cudaMemcpyDeviceToHost);
    if (e != cudaSuccess)
      st = bp_comm_fail(comm, "rank %d: the %s: %s", comm->rank, what, cudaGetErrorString(e));
  }
  (void)cudaFree(d); /* after an abort too: the stream no longer runs NCCL's kernels */
  return st;
}

static bp_status nccl_allreduce_doubles(bp_comm *comm, double *v, int count, const char *what) {
  return nccl_host_collective(comm, v, (size_t)count, ncclDouble, sizeof(double), 0, what);
}

static bp_status nccl_bcast_floats(bp_comm *comm, float *v, size_t count, const char *what) {
  return nccl_host_collective(comm, v, count, ncclFloat, sizeof(float), 1, what);
}

/* comm's NCCL communicator on ctx's device, made on first use (collective:
 * every rank gets here in the same exchange, or in bp_network_set_comm for
 * BP_COMM_FILE). The unique id goes from rank 0 to the others by MPI, or
 * through the rendezvous, a file or rank 0's TCP socket (BP_COMM_FILE). */
static bp_status nccl_get(bp_comm *comm, bp_context *ctx, ncclComm_t *out) {
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
  if (comm->failed) return bp_error(ctx, BP_ERR_COMM, "%s", comm->last_error);
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
  if (cudaStreamCreateWithFlags(&s->stream, cudaStreamNonBlocking) != cudaSuccess) {
    s->stream = NULL;
    bp_comm_fail(comm, "rank %d: cannot create the NCCL host-collective stream", comm->rank);
    nccl_free(comm, 1);
    return bp_error(ctx, BP_ERR_COMM, "%s", comm->last_error);
  }
  comm->dev_allreduce_doubles = nccl_allreduce_doubles;
  comm->dev_bcast_floats = nccl_bcast_floats;
  *out = s->comm;
  return BP_OK;
}
#endif

bp_status bp_cuda_comm_attach(bp_network *net, bp_comm *comm) {
  bp_context *ctx = net->ctx;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
#ifdef BP_WITH_NCCL
  if (comm->transport == BP_COMM_TRANSPORT_MPI)
    return bp_error(ctx, BP_ERR_UNSUPPORTED,
                    "bp_network_set_comm: the MPI transport was asked for, but this communicator "
                    "comes from BP_RENDEZVOUS (BP_COMM_FILE), which has no MPI: use NCCL (AUTO) "
                    "or an MPI launcher");
  ncclComm_t nc;
  return nccl_get(comm, ctx, &nc);
#else
  (void)comm;
  return bp_error(ctx, BP_ERR_UNSUPPORTED,
                  "bp_network_set_comm: this communicator comes from BP_RENDEZVOUS "
                  "(BP_COMM_FILE), which serves the NCCL transport only, and this build has no "
                  "NCCL");
#endif
}

#ifdef BP_WITH_NCCL
/* 1 in *shared when two of the ranks' devices are one GPU (NCCL refuses
 * that), from the devices' UUIDs summed over MPI: every rank decides alike. */
static bp_status ranks_share_a_device(bp_network *net, int *shared) {
  bp_comm *comm = net->comm;
  bp_context *ctx = net->ctx;
  cudaDeviceProp prop;
  BP_CUDA_CHECK(ctx, cudaGetDeviceProperties(&prop, ctx->device));
  double *keys = (double *)calloc((size_t)comm->size, sizeof *keys);
  if (!keys) return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "device check: out of host memory");
  keys[comm->rank] = bp_comm_device_key(prop.uuid.bytes, sizeof prop.uuid.bytes);
  bp_status st = bp_comm_allreduce_doubles(comm, keys, comm->size, "check of the ranks' GPUs");
  if (st == BP_OK) *shared = bp_comm_keys_repeat(keys, comm->size);
  free(keys);
  if (st != BP_OK) return bp_error(ctx, st, "%s", comm->last_error);
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
#ifdef BP_WITH_NCCL
  int use_nccl = net->comm->transport != BP_COMM_TRANSPORT_MPI;
  if (use_nccl && net->comm->bootstrap == BP_COMM_MPI) {
    /* NCCL refuses two ranks on one GPU: AUTO then stages through MPI. */
    int shared = 0;
    st = ranks_share_a_device(net, &shared);
    if (st != BP_OK) return st;
    if (shared && net->comm->transport == BP_COMM_TRANSPORT_NCCL)
      return bp_error(ctx, BP_ERR_UNSUPPORTED,
                      "data-parallel: the NCCL transport was asked for, but two ranks share one "
                      "GPU, which NCCL refuses: use the MPI transport (or AUTO), or one GPU per "
                      "rank");
    if (shared) {
      use_nccl = 0;
      if (net->comm->rank == 0)
        fprintf(stderr, "backprop: two ranks share one GPU, which NCCL refuses: the gradients "
                        "are exchanged through MPI, staged in host memory\n");
    }
  }
#else
  if (net->comm->transport == BP_COMM_TRANSPORT_NCCL)
    return bp_error(ctx, BP_ERR_UNSUPPORTED,
                    "data-parallel: the NCCL transport was asked for, but this build has no "
                    "NCCL");
  const int use_nccl = 0;
#endif
  cuda_exchange *x = (cuda_exchange *)cuda_host_calloc(ctx, sizeof *x, "exchange state", &st);
  if (!x) return st;
  cn->exchange = x;
  x->nccl = use_nccl;
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
  st = nccl_get(net->comm, ctx, &nc);
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
/* NCCL: queues the weighted cost's all-reduce after the started buckets,
 * the compute stream's wait for the communication stream, and the global
 * cost into the scalars; waits for nothing, so a capture can take it. */
static bp_status nccl_finish_queue(bp_network *net, cuda_exchange *x, int n_local, int n_global,
                                   int accumulate) {
  bp_context *ctx = net->ctx;
  bp_comm *comm = net->comm;
  cudaStream_t stream = ctx_state(ctx)->stream;
  cuda_network *cn = net_state(net);
  const double w = n_local > 0 ? (double)n_local / (double)n_global : 0.0;
  ncclComm_t nc;
  bp_status st = nccl_get(comm, ctx, &nc);
  if (st != BP_OK) return st;
  NET_LAUNCH(net, (exchange_cost_weight_kernel<<<1, 1, 0, stream>>>(&cn->scalars->cost, (float)w,
                                                                     x->d_cost),
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
  return BP_OK;
}
#endif

int cuda_exchange_capturable(const bp_network *net) {
  const cuda_exchange *x = (const cuda_exchange *)net_state(net)->exchange;
  return x != NULL && x->nccl && net->comm != NULL && !net->comm->failed;
}

bp_status cuda_exchange_finish_queue(bp_network *net, int n_local, int n_global, int accumulate) {
#ifdef BP_WITH_NCCL
  cuda_exchange *x = (cuda_exchange *)net_state(net)->exchange;
  if (x == NULL || !x->nccl)
    return bp_error(net->ctx, BP_ERR_UNSUPPORTED,
                    "cuda_exchange_finish_queue: the exchange is not NCCL's");
  return nccl_finish_queue(net, x, n_local, n_global, accumulate);
#else
  (void)n_local;
  (void)n_global;
  (void)accumulate;
  return bp_error(net->ctx, BP_ERR_UNSUPPORTED, "cuda_exchange_finish_queue: no NCCL");
#endif
}

bp_status cuda_exchange_wait(bp_network *net) {
#ifdef BP_WITH_NCCL
  bp_context *ctx = net->ctx;
  cuda_exchange *x = (cuda_exchange *)net_state(net)->exchange;
  ncclComm_t nc = NULL;
  bp_status st = nccl_get(net->comm, ctx, &nc);
  if (st != BP_OK) return st;
  /* Recorded after everything queued so far (a replayed graph's exchange
   * included): its completion is the exchange's. */
  BP_CUDA_CHECK(ctx, cudaEventRecord(x->done, ctx_state(ctx)->stream));
  st = nccl_poll(net->comm, nc, x->done, NULL, "gradient all-reduce");
  return st == BP_OK ? st : bp_error(ctx, st, "%s", net->comm->last_error);
#else
  return bp_error(net->ctx, BP_ERR_UNSUPPORTED, "cuda_exchange_wait: no NCCL");
#endif
}

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
    st = nccl_finish_queue(net, x, n_local, n_global, accumulate);
    if (st != BP_OK) return st;
    return cuda_exchange_wait(net);
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
