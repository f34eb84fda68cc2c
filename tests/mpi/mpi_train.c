/* mpi_train.c - data-parallel training against a single-process run, under
 * mpirun (tests/CMakeLists.txt runs it with -np 1, 2 and 3).
 *
 * Every rank trains a CPU network data-parallel (bp_network_set_comm) for 50
 * steps: 5 epochs of 310 examples in global batches of 32, so the batches
 * split unevenly over 3 ranks (32 = 11+11+10) and the last batch of each
 * epoch (22) is smaller. Each rank also trains the same network alone, in
 * this process, on the same global batches: the single-process reference.
 * Checked:
 *   - the data-parallel weights equal the reference's within 1e-5 relative
 *     (max |a - b| over max |b|), and so do the epoch costs and bp_evaluate;
 *   - every rank's weights are bit-identical to rank 0's (MPI_Bcast of rank
 *     0's, compared with memcmp).
 * Exit 0 on success; a message and 1 on failure.
 *
 * With --fault-test PIDDIR it instead trains "forever" (until killed), writes
 * PIDDIR/rank<r>.pid after the first epoch, and on BP_ERR_COMM prints the
 * error and calls bp_comm_abort, as the command does: the fault tests
 * (fault_test.sh) stop or kill one rank and time the others' end.
 * --comm-timeout S sets the communicator's deadline. --backend cuda and
 * --transport auto|mpi|nccl run the same check on the CUDA backend
 * (scripts/gpu-check: the MPI-staged path with two ranks on one GPU, NCCL);
 * --cuda-graphs turns CUDA graphs on for both networks (with NCCL and 2 or
 * more ranks the data-parallel step is then replayed as one graph, which is
 * checked: graph_replays > 0). */
#include <math.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backprop.h"

#define N_EX 310
#define BATCH 32
#define EPOCHS 5

static int rank_ = 0;

static void die(const char *what, bp_status st, const char *detail) {
  fprintf(stderr, "mpi_train rank %d: %s: %s (%s)\n", rank_, what, bp_status_string(st), detail);
  exit(1);
}

#define CHECK(call, ctx)                                              \
  do {                                                                \
    bp_status st_ = (call);                                           \
    if (st_ != BP_OK) die(#call, st_, bp_context_last_error(ctx));    \
  } while (0)

static double rel_diff(const float *a, const float *b, size_t n) {
  double num = 0.0, den = 0.0;
  for (size_t i = 0; i < n; ++i) {
    double d = fabs((double)a[i] - (double)b[i]);
    if (d > num) num = d;
    if (fabs((double)b[i]) > den) den = fabs((double)b[i]);
  }
  return num / (den > 0 ? den : 1.0);
}

static void params_of(bp_network *net, float *out) {
  int L = bp_network_n_layers(net);
  size_t off = 0;
  for (int i = 0; i < L; ++i) {
    size_t w = (size_t)bp_network_size(net, i) * bp_network_size(net, i + 1);
    CHECK(bp_network_get_layer(net, i, out + off, out + off + w), bp_network_context(net));
    off += w + (size_t)bp_network_size(net, i + 1);
  }
}

/* --bench WIDTH LAYERS BATCH STEPS: a WIDTH x LAYERS network (input and
 * output WIDTH too), global batch BATCH, STEPS steps after one warm-up
 * epoch; rank 0 prints per step the bytes exchanged, the exchange's time,
 * the share of it hidden behind backward, and the step's time. */
static int bench(bp_comm *comm, bp_context *ctx, int width, int layers, int batch, int steps) {
  int sizes[64];
  for (int i = 0; i <= layers && i < 64; ++i) sizes[i] = width;
  const int n = batch * steps;
  float *X = malloc(sizeof(float) * (size_t)n * width), *Y = malloc(sizeof(float) * (size_t)n * width);
  unsigned s = 1u;
  for (size_t k = 0; k < (size_t)n * width; ++k) {
    s = s * 1664525u + 1013904223u;
    X[k] = (float)((s >> 8) / 16777216.0);
    Y[k] = X[k] > 0.5f ? 1.0f : 0.0f;
  }
  bp_dataset *data = NULL;
  bp_network *net = NULL;
  CHECK(bp_dataset_create(ctx, n, width, width, X, Y, &data), ctx);
  CHECK(bp_network_create(ctx, layers + 1, sizes, 3, &net), ctx);
  CHECK(bp_network_set_comm(net, comm), ctx);
  float cost;
  bp_status st = bp_train_epoch(net, data, batch, 0.1f, 1, &cost); /* warm-up */
  if (st != BP_OK && st != BP_ERR_NUMERIC) die("warm-up", st, bp_context_last_error(ctx));
  st = bp_train_epoch(net, data, batch, 0.1f, 2, &cost);
  if (st != BP_OK && st != BP_ERR_NUMERIC) die("epoch", st, bp_context_last_error(ctx));
  bp_epoch_stats es;
  CHECK(bp_network_last_epoch_stats(net, &es, sizeof es), ctx);
  if (bp_comm_rank(comm) == 0)
    printf("ranks %d  %dx%d layers  global batch %d: %.0f bytes/step, exchange %.3f ms/step, "
           "%.0f%% hidden behind backward (exposed %.3f ms/step), step %.3f ms\n",
           bp_comm_size(comm), width, layers, batch, es.comm_bytes / es.steps,
           es.comm_us / 1e3 / es.steps,
           es.comm_us > 0 ? 100.0 * (1.0 - es.comm_wait_us / es.comm_us) : 0.0,
           es.comm_wait_us / 1e3 / es.steps, es.wall_us / 1e3 / es.steps);
  CHECK(bp_network_set_comm(net, NULL), ctx);
  bp_network_destroy(net);
  bp_dataset_destroy(data);
  bp_context_destroy(ctx);
  free(X);
  free(Y);
  bp_comm_destroy(comm);
  return 0;
}

int main(int argc, char **argv) {
  const char *fault_dir = NULL;
  double timeout = 0.0;
  int bench_width = 0, bench_layers = 0, bench_batch = 0, bench_steps = 0;
  size_t bucket = 256; /* several buckets even on this small network */
  bp_backend backend = BP_BACKEND_CPU;
  bp_comm_transport transport = BP_COMM_TRANSPORT_AUTO;
  int graphs = 0;
  for (int i = 1; i < argc; ++i) {
    if (!strcmp(argv[i], "--fault-test") && i + 1 < argc) fault_dir = argv[++i];
    else if (!strcmp(argv[i], "--cuda-graphs")) graphs = 1;
    else if (!strcmp(argv[i], "--backend") && i + 1 < argc)
      backend = !strcmp(argv[++i], "cuda") ? BP_BACKEND_CUDA : BP_BACKEND_CPU;
    else if (!strcmp(argv[i], "--transport") && i + 1 < argc) {
      ++i;
      transport = !strcmp(argv[i], "nccl") ? BP_COMM_TRANSPORT_NCCL
                  : !strcmp(argv[i], "mpi") ? BP_COMM_TRANSPORT_MPI
                                            : BP_COMM_TRANSPORT_AUTO;
    }
    else if (!strcmp(argv[i], "--bench") && i + 4 < argc) {
      bench_width = atoi(argv[++i]);
      bench_layers = atoi(argv[++i]);
      bench_batch = atoi(argv[++i]);
      bench_steps = atoi(argv[++i]);
    } else if (!strcmp(argv[i], "--bucket-bytes") && i + 1 < argc)
      bucket = (size_t)atof(argv[++i]);
    else if (!strcmp(argv[i], "--comm-timeout") && i + 1 < argc) timeout = atof(argv[++i]);
  }
  bp_comm_desc desc;
  bp_comm_desc_init(&desc);
  desc.bucket_bytes = bucket;
  desc.transport = transport;
  if (timeout > 0) desc.timeout_s = timeout;
  bp_comm *comm = NULL;
  bp_status st = bp_comm_create_from_env(&desc, &comm);
  if (st != BP_OK) die("bp_comm_create_from_env", st, bp_comm_last_error(NULL));
  rank_ = bp_comm_rank(comm);
  const int world = bp_comm_size(comm);

  bp_context *ctx = NULL;
  /* --backend cuda (scripts/gpu-check): the local rank's device, wrapped
   * round the devices there are (two ranks may share one GPU). */
  const int n_dev = bp_cuda_device_count();
  const int device = backend == BP_BACKEND_CUDA && n_dev > 0 ? bp_comm_local_rank(comm) % n_dev : 0;
  st = bp_context_create(backend, device, &ctx);
  if (st != BP_OK) die("bp_context_create", st, bp_context_last_error(NULL));
  if (bench_width > 0) return bench(comm, ctx, bench_width, bench_layers, bench_batch, bench_steps);
  const int sizes[] = {8, 24, 16, 12, 4};
  const int n_sizes = 5;
  /* The same data on every rank (a fixed generator), one-hot targets. */
  float *X = malloc(sizeof(float) * N_EX * 8), *Y = calloc(N_EX * 4, sizeof(float));
  unsigned s = 12345u;
  for (int k = 0; k < N_EX; ++k) {
    double sum = 0;
    for (int j = 0; j < 8; ++j) {
      s = s * 1664525u + 1013904223u;
      X[k * 8 + j] = (float)((s >> 8) / 16777216.0) * 2.0f - 1.0f;
      sum += X[k * 8 + j] * (j + 1);
    }
    int cls = sum > 2 ? 0 : sum > 0 ? 1 : sum > -2 ? 2 : 3;
    Y[k * 4 + cls] = 1.0f;
  }
  bp_dataset *data = NULL;
  CHECK(bp_dataset_create(ctx, N_EX, 8, 4, X, Y, &data), ctx);
  bp_network *dp = NULL, *ref = NULL;
  CHECK(bp_network_create(ctx, n_sizes, sizes, 7, &dp), ctx);
  CHECK(bp_network_create(ctx, n_sizes, sizes, 7, &ref), ctx);
  if (graphs) {
    CHECK(bp_network_set_cuda_graphs(dp, 1), ctx);
    CHECK(bp_network_set_cuda_graphs(ref, 1), ctx);
  }
  CHECK(bp_network_set_comm(dp, comm), ctx);
  const float lr = 1.0f;

  if (fault_dir) {
    for (int e = 0;; ++e) {
      float cost = 0;
      st = bp_train_epoch(dp, data, BATCH, lr, 99 + (uint64_t)e, &cost);
      if (st != BP_OK && st != BP_ERR_NUMERIC) {
        fprintf(stderr, "mpi_train rank %d: epoch %d: %s\n", rank_, e, bp_context_last_error(ctx));
        bp_comm_abort(comm, 3);
        return 3;
      }
      if (e == 0) {
        char path[4096];
        snprintf(path, sizeof path, "%s/rank%d.pid", fault_dir, rank_);
        FILE *f = fopen(path, "w");
        if (f) {
          fprintf(f, "%d\n", (int)getpid());
          fclose(f);
        }
      }
    }
  }

  int steps = 0, replays = 0;
  for (int e = 0; e < EPOCHS; ++e) {
    float c_dp = 0, c_ref = 0;
    CHECK(bp_train_epoch(dp, data, BATCH, lr, 99 + (uint64_t)e, &c_dp), ctx);
    CHECK(bp_train_epoch(ref, data, BATCH, lr, 99 + (uint64_t)e, &c_ref), ctx);
    bp_epoch_stats stats, ref_stats;
    CHECK(bp_network_last_epoch_stats(dp, &stats, sizeof stats), ctx);
    CHECK(bp_network_last_epoch_stats(ref, &ref_stats, sizeof ref_stats), ctx);
    /* The running accuracy is summed over the ranks' slices: the whole
     * epoch's, as one process counts it (the weights agree to rounding, so
     * an example on an argmax tie may flip: allow 1%). */
    if (stats.examples != ref_stats.examples ||
        llabs(stats.correct - ref_stats.correct) > ref_stats.examples / 100 ||
        ref_stats.correct <= 0) {
      fprintf(stderr, "rank %d epoch %d: %lld of %lld right, single-process %lld of %lld\n",
              rank_, e, stats.correct, stats.examples, ref_stats.correct, ref_stats.examples);
      return 1;
    }
    steps += stats.steps;
    replays += stats.graph_replays;
    if (fabs(c_dp - c_ref) > 1e-5 * fabs(c_ref)) {
      fprintf(stderr, "rank %d epoch %d: cost %.9g, single-process %.9g\n", rank_, e, c_dp, c_ref);
      return 1;
    }
    /* A replayed step has no host timings (the host sees no bucket). */
    if (world > 1 && (stats.world_size != world || stats.comm_bytes <= 0 ||
                      (stats.comm_us <= 0 && stats.graph_replays < stats.steps))) {
      fprintf(stderr, "rank %d: stats world_size %d bytes %g us %g\n", rank_, stats.world_size,
              stats.comm_bytes, stats.comm_us);
      return 1;
    }
    if (rank_ == 0 && e == EPOCHS - 1)
      printf("epoch %d: cost %.7f (single process %.7f), exchange %.0f bytes/step, "
             "%.1f us/step, %.0f%% hidden behind backward\n",
             e, c_dp, c_ref, stats.comm_bytes / stats.steps, stats.comm_us / stats.steps,
             stats.comm_us > 0 ? 100.0 * (1.0 - stats.comm_wait_us / stats.comm_us) : 0.0);
  }
  if (steps != 50) {
    fprintf(stderr, "rank %d: %d steps, expected 50\n", rank_, steps);
    return 1;
  }
  if (graphs && backend == BP_BACKEND_CUDA && replays == 0) {
    fprintf(stderr, "rank %d: CUDA graphs on, but no step was replayed\n", rank_);
    return 1;
  }
  if (rank_ == 0 && graphs) printf("%d of 50 steps replayed from CUDA graphs\n", replays);
  const size_t n = bp_network_parameter_count(dp);
  float *a = malloc(sizeof(float) * n), *b = malloc(sizeof(float) * n), *r0 = malloc(sizeof(float) * n);
  params_of(dp, a);
  params_of(ref, b);
  double rel = rel_diff(a, b, n);
  float ec_dp, acc_dp, ec_ref, acc_ref;
  CHECK(bp_evaluate(dp, data, &ec_dp, &acc_dp), ctx);
  CHECK(bp_evaluate(ref, data, &ec_ref, &acc_ref), ctx);
  int bad = 0;
  if (!(rel <= 1e-5)) {
    fprintf(stderr, "rank %d: weights differ from the single-process run by %.3g relative\n",
            rank_, rel);
    bad = 1;
  }
  if (fabs(ec_dp - ec_ref) > 1e-5 * fabs(ec_ref) || acc_dp != acc_ref) {
    fprintf(stderr, "rank %d: evaluation %.9g/%.6f, single-process %.9g/%.6f\n", rank_, ec_dp,
            acc_dp, ec_ref, acc_ref);
    bad = 1;
  }
  memcpy(r0, a, sizeof(float) * n);
  MPI_Bcast(r0, (int)n, MPI_FLOAT, 0, MPI_COMM_WORLD);
  if (memcmp(r0, a, sizeof(float) * n) != 0) {
    fprintf(stderr, "rank %d: weights are not bit-identical to rank 0's\n", rank_);
    bad = 1;
  }
  int any = 0;
  MPI_Allreduce(&bad, &any, 1, MPI_INT, MPI_MAX, MPI_COMM_WORLD);
  if (rank_ == 0)
    printf("%d rank(s): 50 steps, weights within %.3g relative of the single-process run, "
           "evaluation cost %.7f, accuracy %.4f; ranks bit-identical: %s\n",
           world, rel, ec_dp, acc_dp, any ? "see errors" : "yes");
  CHECK(bp_network_set_comm(dp, NULL), ctx);
  bp_network_destroy(dp);
  bp_network_destroy(ref);
  bp_dataset_destroy(data);
  bp_context_destroy(ctx);
  free(a);
  free(b);
  free(r0);
  free(X);
  free(Y);
  bp_comm_destroy(comm);
  return any;
}
