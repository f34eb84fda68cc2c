/* exchange.c - the gradient exchange of data-parallel training: where the
 * ranks' gradients are summed, between backward and the update
 * (internal.h, "The gradient exchange").
 *
 * The gradients are all-reduced in buckets of whole layers, the last layer
 * first, in the order backward produces them: grads holds layer 0's W and b,
 * then layer 1's, ..., so the layers hi .. lo of a bucket are one contiguous
 * range. A bucket closes once it holds at least comm->bucket_bytes (small
 * layers travel together, as in PyTorch DDP), or earlier when enough of
 * backward is left to hide it (plan_buckets); its all-reduce starts when
 * backward reports its lowest layer ready (bp_engine_grads_ready), while
 * backward goes on with the layers below.
 *
 * Weighting: rank r has n_r of the global batch's N examples and its
 * backward gives the mean over its n_r; the backend scales its range by
 * n_r / N before the sum, so the sum is the mean over all N examples, also
 * when N does not divide evenly (a rank with no example contributes 0).
 *
 * Timing (bp_epoch_stats): a step's exchange lasts from its first bucket's
 * start to the last one's completion, as seen by this rank (a completion is
 * noticed when backward reports a layer, or by the final wait); the part
 * after backward ended is the exposed wait, the rest was hidden behind
 * backward. */
#include <stdlib.h>
#include <string.h>

#include "../comm/comm.h"
#include "../internal.h"

struct bp_exchange {
  int n_buckets;
  size_t *offset, *count; /* bucket b: grads[offset[b] .. offset[b]+count[b]) */
  int *low;               /* bucket b's lowest layer: it starts when that layer is ready */
  /* The open step */
  int open, next;         /* next: the first bucket not started yet (buckets go high to low) */
  int n_local, n_global;
  float scale;
  bp_status status;       /* the first failure of a start inside backward */
  double t_start, t_done; /* first start; completion seen (0: not yet) */
};

int bp_engine_data_parallel(const bp_network *net) { return net->exchange != NULL; }

void bp_engine_exchange_free(bp_network *net) {
  struct bp_exchange *x = net->exchange;
  if (!x) return;
  free(x->offset);
  free(x->count);
  free(x->low);
  free(x);
  net->exchange = NULL;
}

/* The buckets of net for a bucket size in bytes. */
static bp_status plan_buckets(bp_network *net, size_t bucket_bytes, struct bp_exchange **out) {
  const int L = net->n_layers;
  struct bp_exchange *x = calloc(1, sizeof *x);
  if (x) {
    x->offset = calloc((size_t)L, sizeof *x->offset);
    x->count = calloc((size_t)L, sizeof *x->count);
    x->low = calloc((size_t)L, sizeof *x->low);
  }
  if (!x || !x->offset || !x->count || !x->low) {
    if (x) {
      free(x->offset);
      free(x->count);
      free(x->low);
      free(x);
    }
    return bp_error(net->ctx, BP_ERR_OUT_OF_MEMORY, "bp_network_set_comm: out of host memory");
  }
  /* A bucket closes once it holds bucket_bytes; or earlier, at a layer
   * boundary, once it holds bucket_bytes / 16 (below that an all-reduce is
   * mostly latency) and backward still has at least as many weights' worth
   * of products to run as the bucket holds (after layer i's dW: layer i's
   * dX, then dW and dX of every layer below; layer 0 has no dX). A proxy for
   * "enough work left to hide it", not a model of either side's speed: it
   * splits a network smaller than bucket_bytes into buckets that can start
   * during backward, where one bucket could only start once backward had
   * ended (256x3 at 1 MiB: 1% hidden; bench/NOTES.md). */
  const size_t min_bytes = bucket_bytes / 16;
  size_t *below = calloc((size_t)L + 1, sizeof *below); /* weights of layers 0 .. i-1 */
  if (!below) {
    free(x->offset);
    free(x->count);
    free(x->low);
    free(x);
    return bp_error(net->ctx, BP_ERR_OUT_OF_MEMORY, "bp_network_set_comm: out of host memory");
  }
  for (int i = 0; i < L; ++i)
    below[i + 1] = below[i] + (size_t)net->sizes[i] * (size_t)net->sizes[i + 1];
  size_t end = net->n_params; /* the open bucket covers [.., end) */
  for (int i = L - 1; i >= 0; --i) {
    const size_t begin = net->w_offset[i];
    const size_t held = end - begin;
    const size_t w_i = below[i + 1] - below[i];
    const size_t work_left = i == 0 ? 0 : w_i + 2 * below[i] - below[1];
    if (held * sizeof(float) >= bucket_bytes || i == 0 ||
        (held * sizeof(float) >= min_bytes && work_left >= held)) {
      x->offset[x->n_buckets] = begin;
      x->count[x->n_buckets] = end - begin;
      x->low[x->n_buckets] = i;
      ++x->n_buckets;
      end = begin;
    }
  }
  free(below);
  *out = x;
  return BP_OK;
}

bp_status bp_network_set_comm(bp_network *net, bp_comm *comm) {
  static const char fn[] = "bp_network_set_comm";
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  bp_context *ctx = net->ctx;
  bp_status st = bp_check_context(ctx);
  if (st != BP_OK) return st;
  if (comm && comm->failed)
    return bp_error(ctx, BP_ERR_COMM, "%s: the communicator failed before: %s", fn,
                    comm->last_error);
  if (!comm || comm->size == 1) {
    bp_engine_exchange_free(net);
    net->comm = comm;
    return BP_OK;
  }
  const bp_backend_ops *ops = ctx->ops;
  if (!ops->exchange_start || !ops->exchange_finish)
    return bp_error(ctx, BP_ERR_UNSUPPORTED,
                    "%s: the %s backend of this build cannot exchange gradients", fn, ops->name);
  if (ctx->backend == BP_BACKEND_CPU && comm->transport == BP_COMM_TRANSPORT_NCCL)
    return bp_error(ctx, BP_ERR_UNSUPPORTED,
                    "%s: NCCL moves device memory; the CPU backend exchanges over MPI "
                    "(BP_COMM_TRANSPORT_MPI or AUTO)",
                    fn);
  if (comm->bootstrap == BP_COMM_FILE) {
    /* No MPI: the NCCL communicator is the only way between the ranks, the
     * host reductions below included; make it now. */
    if (ctx->backend != BP_BACKEND_CUDA)
      return bp_error(ctx, BP_ERR_UNSUPPORTED,
                      "%s: this communicator comes from BP_RENDEZVOUS (BP_COMM_FILE, no MPI), "
                      "which serves the NCCL transport of the CUDA backend only; the %s backend "
                      "exchanges over MPI: start the ranks with an MPI launcher (mpirun, srun)",
                      fn, ops->name);
#ifdef BP_WITH_CUDA
    st = bp_cuda_comm_attach(net, comm);
    if (st != BP_OK) return st;
#endif
  }
  /* The ranks must hold the same shape: sum n and n^2 over the ranks; both
   * match size x rank 0's only if every rank's n is the same. */
  double shape[2] = {(double)net->n_params, (double)net->n_params * (double)net->n_params};
  st = bp_comm_allreduce_doubles(comm, shape, 2, "network shape check");
  if (st != BP_OK) return bp_error(ctx, st, "%s: %s", fn, comm->last_error);
  const double n = (double)net->n_params, w = (double)comm->size;
  if (shape[0] != w * n || shape[1] != w * n * n)
    return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                    "%s: the ranks' networks differ in size (this rank has %zu parameters)", fn,
                    net->n_params);
  struct bp_exchange *x = NULL;
  st = plan_buckets(net, comm->bucket_bytes, &x);
  if (st != BP_OK) return st;
  /* Rank 0's weights everywhere: the ranks start bit-identical, whatever
   * each loaded or drew. */
  float *params = malloc(sizeof(float) * net->n_params);
  if (!params) {
    free(x->offset);
    free(x->count);
    free(x->low);
    free(x);
    return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "%s: out of host memory", fn);
  }
  st = ops->read_params(net, 0, net->n_params, params);
  if (st == BP_OK) {
    st = bp_comm_bcast_floats(comm, params, net->n_params, "broadcast of rank 0's weights");
    if (st != BP_OK) st = bp_error(ctx, st, "%s: %s", fn, comm->last_error);
  }
  if (st == BP_OK) st = ops->write_params(net, 0, net->n_params, params);
  free(params);
  if (st != BP_OK) {
    free(x->offset);
    free(x->count);
    free(x->low);
    free(x);
    return st;
  }
  bp_engine_exchange_free(net);
  net->comm = comm;
  net->exchange = x;
  return BP_OK;
}

bp_comm *bp_network_get_comm(const bp_network *net) { return net ? net->comm : NULL; }

void bp_engine_exchange_open(bp_network *net, int n_local, int n_global) {
  struct bp_exchange *x = net->exchange;
  if (!x) return;
  x->open = 1;
  x->next = 0;
  x->n_local = n_local;
  x->n_global = n_global;
  x->scale = n_local > 0 ? (float)((double)n_local / (double)n_global) : 0.0f;
  x->status = BP_OK;
  x->t_start = 0.0;
  x->t_done = 0.0;
}

static void start_bucket(bp_network *net, struct bp_exchange *x) {
  const int b = x->next++;
  if (x->status != BP_OK) return;
  if (x->t_start == 0.0) x->t_start = bp_now_us();
  x->status = net->ctx->ops->exchange_start(net, x->offset[b], x->count[b], x->scale);
}

void bp_engine_grads_ready(bp_network *net, int layer) {
  struct bp_exchange *x = net->exchange;
  if (!x || !x->open) return;
  if (x->t_start != 0.0 && x->t_done == 0.0 && bp_comm_progress(net->comm))
    x->t_done = bp_now_us();
  if (x->next < x->n_buckets && x->low[x->next] == layer) {
    x->t_done = 0.0; /* a new bucket is in flight */
    start_bucket(net, x);
  }
}

bp_status bp_engine_exchange_close(bp_network *net) {
  struct bp_exchange *x = net->exchange;
  if (!x || !x->open) return BP_OK;
  while (x->next < x->n_buckets) start_bucket(net, x); /* no backward ran, or it skipped a hook */
  x->open = 0;
  return x->status;
}

/* The buckets cover every parameter once: a step moves all the gradients. */
static void count_step(bp_network *net) {
  net->stats.world_size = net->comm->size;
  net->stats.comm_bytes += (double)net->n_params * sizeof(float);
}

void bp_engine_exchange_replayed(bp_network *net) {
  struct bp_exchange *x = net->exchange;
  if (!x) return;
  x->open = 0;
  /* One launch ran the whole step on the device: the host saw no bucket
   * start or end, so there is no time to attribute (comm_us stays). */
  count_step(net);
}

bp_status bp_engine_exchange_gradients(bp_network *net, int accumulate) {
  struct bp_exchange *x = net->exchange;
  if (!x || !x->open) return BP_OK;
  bp_context *ctx = net->ctx;
  const double t_wait = bp_now_us();
  bp_status st = bp_engine_exchange_close(net);
  if (st == BP_OK) st = ctx->ops->exchange_finish(net, x->n_local, x->n_global, accumulate);
  const double t_end = bp_now_us();
  /* Buckets done during backward: their span, plus the finish (the cost's
   * reduction) which is always exposed. Otherwise: all of it until now. */
  count_step(net);
  if (x->t_done != 0.0)
    net->stats.comm_us += (x->t_done - x->t_start) + (t_end - t_wait);
  else
    net->stats.comm_us += t_end - x->t_start;
  net->stats.comm_wait_us += t_end - t_wait;
  if (st != BP_OK && st != BP_ERR_COMM) return st; /* the backend said why on ctx */
  if (st == BP_ERR_COMM) return bp_error(ctx, BP_ERR_COMM, "%s", net->comm->last_error);
  return BP_OK;
}

bp_status bp_engine_reduce_doubles(bp_network *net, double *v, int count, const char *what) {
  if (!net->exchange) return BP_OK;
  bp_status st = bp_comm_allreduce_doubles(net->comm, v, count, what);
  if (st != BP_OK) return bp_error(net->ctx, st, "%s", net->comm->last_error);
  return BP_OK;
}
