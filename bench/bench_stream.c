/*
 * bench_stream.c - training on data that stays in host memory (or already
 * sits on the GPU), against the baseline of a data set in backend memory,
 * both measured in the same run.
 *
 * For each configuration (layer sizes and batch B), on n = B * S random
 * examples (inputs in [0,1), one-hot targets):
 *   - epoch: bp_dataset_create once, then bp_train_epoch (the baseline: no
 *     host data moves per batch), against bp_train_epoch_host on the same
 *     host arrays (on CUDA: gathered into pinned memory and copied while the
 *     previous batch computes). One warm-up epoch each, then E timed epochs
 *     each on the wall clock (both calls return when the epoch is done); the
 *     medians and their ratio streamed / baseline are reported. Both networks
 *     start from the same seed and see the same shuffles, so their weights
 *     must agree bit for bit at the end: checked, a mismatch is a failure.
 *   - the copy the streamed epoch adds: n * (s0 + sL) * 4 bytes per epoch; on
 *     CUDA over the host-to-device bandwidth measured in this run (pinned
 *     cudaMemcpyAsync of 256 MiB) as copy_ms, and hidden = how much of
 *     copy_ms did not show up as epoch time beyond the larger of the two
 *     things the copy overlaps, the device's steps (the baseline epoch) and
 *     the host's gather (below):
 *        hidden = 1 - max(0, streamed - max(baseline, gather)) / copy_ms,
 *     clamped to [0, 1]. (The first batch's gather and copy, which nothing
 *     overlaps, count against it: about 1/S of an epoch.)
 *   - gather: the host's share of the streamed epoch alone, the same row
 *     copies (a random permutation, batch by batch into one buffer of
 *     B x (s0 + sL) floats), timed on the wall clock per epoch: on CUDA it
 *     runs while the device computes, so it hides only if it is shorter
 *     than the step.
 *   - step (CUDA only): bp_train_batch on host arrays (copies in, waits for
 *     the cost, every step) against bp_train_batch_device on device arrays
 *     queued on a stream of this program, S steps back to back with one
 *     synchronization at the end; per-step medians over E repeats and their
 *     ratio device / host.
 *
 * Run:  bench_stream --backend cpu|cuda [--smoke] [--config 784-1024-1024-10@4096 ...]
 * Exit: 0 ok; 1 a failure (status not BP_OK, weights differ); 2 usage; 77 backend absent.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backprop.h"
#include "bench_common.h"
#define BENCH_PROGRAM "bench_stream"
#include "bench_config.h"

#ifdef BP_WITH_CUDA
#include <cuda_runtime.h>

#endif

#define MAX_CONFIGS 64

typedef struct options {
  bp_backend backend;
  config configs[MAX_CONFIGS];
  int n_configs;
  int steps;           /* batches per epoch S (the data cap may lower it) */
  int epochs;          /* timed epochs E */
  double data_cap_mib; /* inputs at most this big */
  double time_budget;  /* seconds: start no configuration after this (0: no limit) */
  float lr;
  uint64_t seed;
  int device;
  const char *json;
  const char *md;
} options;

typedef struct result {
  config c;
  int skipped;
  char skip_reason[160];
  int n, steps, epochs;
  double base_ms, stream_ms, ratio; /* epoch medians */
  double bytes, copy_ms, hidden;    /* the streamed epoch's copy (CUDA) */
  double gather_ms;                 /* the host gather of one epoch, alone */
  int identical;
  double step_host_ms, step_dev_ms, step_ratio; /* CUDA only; NAN otherwise */
} result;

/* ---- Helpers ---------------------------------------------------------------------- */

static void add_config(options *o, const char *spec) {
  if (o->n_configs >= MAX_CONFIGS || !parse_config(spec, &o->configs[o->n_configs])) {
    fprintf(stderr, "bench_stream: bad or too many --config '%s' (e.g. 784-100-10@256)\n", spec);
    exit(2);
  }
  ++o->n_configs;
}

static int same_params(const bp_network *a, const bp_network *b) {
  int same = 1;
  for (int i = 0; i < bp_network_n_layers(a) && same; ++i) {
    size_t nw = (size_t)bp_network_size(a, i) * (size_t)bp_network_size(a, i + 1);
    size_t nb = (size_t)bp_network_size(a, i + 1);
    float *wa = malloc((nw + nb) * sizeof(float)), *wb = malloc((nw + nb) * sizeof(float));
    if (!wa || !wb) {
      fprintf(stderr, "bench_stream: out of host memory\n");
      exit(EXIT_FAILURE);
    }
    BP_CHECK(bp_network_context(a), bp_network_get_layer(a, i, wa, wa + nw));
    BP_CHECK(bp_network_context(b), bp_network_get_layer(b, i, wb, wb + nw));
    same = memcmp(wa, wb, (nw + nb) * sizeof(float)) == 0;
    free(wa);
    free(wb);
  }
  return same;
}

/* The host gather of bp_train_epoch_host alone: rows perm[...] of X and Y
 * into a batch buffer, batch by batch; median of 3 epochs, in ms. */
static double gather_epoch_ms(const float *X, const float *Y, int n, int B, int s0, int sL,
                              uint64_t seed) {
  int32_t *perm = malloc(sizeof(int32_t) * (size_t)n);
  float *buf = malloc(sizeof(float) * (size_t)B * (size_t)(s0 + sL));
  if (!perm || !buf) {
    fprintf(stderr, "bench_stream: out of host memory\n");
    exit(EXIT_FAILURE);
  }
  double t[3];
  volatile float sink = 0;
  for (int r = 0; r < 3; ++r) {
    bench_permutation(perm, n, seed + (uint64_t)r);
    double t0 = bench_now_ms();
    for (int start = 0; start < n; start += B) {
      const int bn = n - start < B ? n - start : B;
      float *hy = buf + (size_t)B * s0;
      for (int k = 0; k < bn; ++k) {
        const size_t row = (size_t)perm[start + k];
        memcpy(buf + (size_t)k * s0, X + row * s0, sizeof(float) * (size_t)s0);
        memcpy(hy + (size_t)k * sL, Y + row * sL, sizeof(float) * (size_t)sL);
      }
      sink = sink + buf[0];
    }
    t[r] = bench_now_ms() - t0;
  }
  (void)sink;
  free(perm);
  free(buf);
  return bench_median(t, 3);
}

#ifdef BP_WITH_CUDA
/* Host-to-device bandwidth from pinned memory, 256 MiB, median of 5. */
static double h2d_gbps(int device) {
  size_t bytes = (size_t)256 << 20;
  cudaCheck(cudaSetDevice(device));
  char *h, *d;
  cudaCheck(cudaMallocHost((void **)&h, bytes));
  cudaCheck(cudaMalloc((void **)&d, bytes));
  memset(h, 1, bytes);
  cudaStream_t st;
  cudaCheck(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cudaEvent_t e0, e1;
  cudaCheck(cudaEventCreate(&e0));
  cudaCheck(cudaEventCreate(&e1));
  double t[5];
  cudaCheck(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, st)); /* warm-up */
  for (int r = 0; r < 5; ++r) {
    cudaCheck(cudaEventRecord(e0, st));
    cudaCheck(cudaMemcpyAsync(d, h, bytes, cudaMemcpyHostToDevice, st));
    cudaCheck(cudaEventRecord(e1, st));
    cudaCheck(cudaEventSynchronize(e1));
    float ms = 0;
    cudaCheck(cudaEventElapsedTime(&ms, e0, e1));
    t[r] = ms;
  }
  cudaCheck(cudaEventDestroy(e0));
  cudaCheck(cudaEventDestroy(e1));
  cudaCheck(cudaStreamDestroy(st));
  cudaCheck(cudaFree(d));
  cudaCheck(cudaFreeHost(h));
  return (double)bytes / (bench_median(t, 5) * 1e-3) / 1e9;
}

/* Per step: bp_train_batch on host arrays vs bp_train_batch_device on a copy
 * of the same batches in device memory, S steps per sample. */
static void time_steps(bp_context *ctx, const config *c, const options *o, const float *X,
                       const float *Y, int S, result *r) {
  const int L = c->n_sizes - 1, B = c->batch, s0 = c->sizes[0], sL = c->sizes[L];
  const size_t nx = (size_t)B * S * s0, ny = (size_t)B * S * sL;
  bp_network *hnet = NULL, *dnet = NULL;
  BP_CHECK(ctx, bp_network_create(ctx, c->n_sizes, c->sizes, o->seed, &hnet));
  BP_CHECK(ctx, bp_network_create(ctx, c->n_sizes, c->sizes, o->seed, &dnet));
  float *dX, *dY, *dCost;
  cudaCheck(cudaMalloc((void **)&dX, nx * sizeof(float)));
  cudaCheck(cudaMalloc((void **)&dY, ny * sizeof(float)));
  cudaCheck(cudaMalloc((void **)&dCost, sizeof(float)));
  cudaCheck(cudaMemcpy(dX, X, nx * sizeof(float), cudaMemcpyHostToDevice));
  cudaCheck(cudaMemcpy(dY, Y, ny * sizeof(float), cudaMemcpyHostToDevice));
  cudaCheck(cudaDeviceSynchronize());
  cudaStream_t st;
  cudaCheck(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  double *th = malloc(sizeof(double) * (size_t)o->epochs);
  double *td = malloc(sizeof(double) * (size_t)o->epochs);
  if (!th || !td) {
    fprintf(stderr, "bench_stream: out of host memory\n");
    exit(EXIT_FAILURE);
  }
  for (int rep = -1; rep < o->epochs; ++rep) { /* rep -1: warm-up */
    double t0 = bench_now_ms();
    for (int k = 0; k < S; ++k) {
      float cost = 0;
      bp_status s = bp_train_batch(hnet, X + (size_t)k * B * s0, Y + (size_t)k * B * sL, B, o->lr,
                                   &cost);
      if (s != BP_OK && s != BP_ERR_NUMERIC) BP_CHECK(ctx, s);
    }
    double t1 = bench_now_ms();
    for (int k = 0; k < S; ++k)
      BP_CHECK(ctx, bp_train_batch_device(dnet, dX + (size_t)k * B * s0, dY + (size_t)k * B * sL,
                                          B, o->lr, dCost, (bp_cuda_stream)st));
    cudaCheck(cudaStreamSynchronize(st));
    double t2 = bench_now_ms();
    if (rep >= 0) {
      th[rep] = (t1 - t0) / S;
      td[rep] = (t2 - t1) / S;
    }
  }
  r->step_host_ms = bench_median(th, o->epochs);
  r->step_dev_ms = bench_median(td, o->epochs);
  r->step_ratio = r->step_dev_ms / r->step_host_ms;
  /* Same seed, same batches, same order: the two networks must agree. */
  if (!same_params(hnet, dnet)) r->identical = 0;
  free(th);
  free(td);
  cudaCheck(cudaStreamDestroy(st));
  cudaCheck(cudaFree(dX));
  cudaCheck(cudaFree(dY));
  cudaCheck(cudaFree(dCost));
  bp_network_destroy(hnet);
  bp_network_destroy(dnet);
}
#endif

/* ---- One configuration --------------------------------------------------------------- */

static result run_config(bp_context *ctx, const config *c, const options *o, double h2d,
                         int *failed) {
  result r;
  memset(&r, 0, sizeof r);
  r.c = *c;
  r.gather_ms = r.copy_ms = r.hidden = r.step_host_ms = r.step_dev_ms = r.step_ratio = NAN;
  const int L = c->n_sizes - 1, B = c->batch, s0 = c->sizes[0], sL = c->sizes[L];
  int S = o->steps;
  while (S > 2 && (double)S * B * s0 * 4.0 > o->data_cap_mib * 1048576.0) --S;
  const int n = B * S;
  r.n = n;
  r.steps = S;
  r.epochs = o->epochs;
  /* Two copies of the data (host arrays and the data set), in host memory
   * on the CPU backend. */
  const double data_bytes = (double)n * (s0 + sL) * 4.0;
  if (data_bytes * 3.0 > host_memory_bytes() * 0.5) {
    r.skipped = 1;
    snprintf(r.skip_reason, sizeof r.skip_reason, "needs about %.1f GiB of host memory",
             data_bytes * 3.0 / 1073741824.0);
    return r;
  }
  float *X, *Y;
  if (!make_data(n, s0, sL, o->seed ^ (uint64_t)B, &X, &Y)) {
    r.skipped = 1;
    snprintf(r.skip_reason, sizeof r.skip_reason, "out of host memory for the data");
    return r;
  }
  bp_network *base = NULL, *streamed = NULL;
  bp_dataset *data = NULL;
  BP_CHECK(ctx, bp_network_create(ctx, c->n_sizes, c->sizes, o->seed, &base));
  BP_CHECK(ctx, bp_network_create(ctx, c->n_sizes, c->sizes, o->seed, &streamed));
  BP_CHECK(ctx, bp_dataset_create(ctx, n, s0, sL, X, Y, &data));

  double *tb = malloc(sizeof(double) * (size_t)o->epochs);
  double *ts = malloc(sizeof(double) * (size_t)o->epochs);
  if (!tb || !ts) {
    fprintf(stderr, "bench_stream: out of host memory\n");
    exit(EXIT_FAILURE);
  }
  /* Alternate the two calls epoch by epoch, so a machine that slows down
   * for a while slows both. Epoch -1 is the warm-up. */
  for (int e = -1; e < o->epochs; ++e) {
    const uint64_t shuffle = o->seed + 7 + (uint64_t)(e + 1);
    float cb = NAN, cs = NAN;
    double t0 = bench_now_ms();
    bp_status sb = bp_train_epoch(base, data, B, o->lr, shuffle, &cb);
    double t1 = bench_now_ms();
    bp_status ss = bp_train_epoch_host(streamed, X, Y, n, B, o->lr, shuffle, &cs);
    double t2 = bench_now_ms();
    if (sb != BP_OK || ss != BP_OK || !isfinite(cb) || memcmp(&cb, &cs, sizeof cb) != 0) {
      fprintf(stderr, "bench_stream: epoch %d: %s / %s, cost %g / %g (%s)\n", e,
              bp_status_string(sb), bp_status_string(ss), (double)cb, (double)cs,
              bp_context_last_error(ctx));
      *failed = 1;
    }
    if (e >= 0) {
      tb[e] = t1 - t0;
      ts[e] = t2 - t1;
    }
  }
  r.base_ms = bench_median(tb, o->epochs);
  r.stream_ms = bench_median(ts, o->epochs);
  r.ratio = r.stream_ms / r.base_ms;
  r.bytes = data_bytes;
  r.identical = same_params(base, streamed);
  if (!r.identical) {
    fprintf(stderr, "bench_stream: the streamed epoch's weights differ from bp_train_epoch's\n");
    *failed = 1;
  }
  r.gather_ms = gather_epoch_ms(X, Y, n, B, s0, sL, o->seed);
  if (h2d > 0) {
    r.copy_ms = data_bytes / (h2d * 1e9) * 1e3;
    double extra = r.stream_ms - (r.base_ms > r.gather_ms ? r.base_ms : r.gather_ms);
    double h = 1.0 - (extra > 0 ? extra : 0) / r.copy_ms;
    r.hidden = h < 0 ? 0 : h > 1 ? 1 : h;
  }
  free(tb);
  free(ts);
  bp_dataset_destroy(data);
  bp_network_destroy(base);
  bp_network_destroy(streamed);
#ifdef BP_WITH_CUDA
  if (o->backend == BP_BACKEND_CUDA) {
    time_steps(ctx, c, o, X, Y, S, &r);
    if (!r.identical) {
      fprintf(stderr, "bench_stream: bp_train_batch_device's weights differ from "
                      "bp_train_batch's\n");
      *failed = 1;
    }
  }
#endif
  free(X);
  free(Y);
  return r;
}

/* ---- Output ---------------------------------------------------------------------------- */

static void json_result(FILE *f, const result *r, int last) {
  char name[200];
  config_name(&r->c, name, sizeof name);
  fprintf(f, "    {\"name\": \"%s\", \"sizes\": [", name);
  for (int j = 0; j < r->c.n_sizes; ++j) fprintf(f, "%s%d", j ? ", " : "", r->c.sizes[j]);
  fprintf(f, "], \"batch\": %d", r->c.batch);
  if (r->skipped) {
    fprintf(f, ", \"skipped\": ");
    bench_json_string(f, r->skip_reason);
  } else {
    fprintf(f, ", \"examples\": %d, \"steps_per_epoch\": %d, \"epochs\": %d", r->n, r->steps,
            r->epochs);
    fprintf(f, ", \"dataset_epoch_ms\": ");
    bench_json_number(f, r->base_ms);
    fprintf(f, ", \"host_epoch_ms\": ");
    bench_json_number(f, r->stream_ms);
    fprintf(f, ", \"host_over_dataset\": ");
    bench_json_number(f, r->ratio);
    fprintf(f, ", \"copy_bytes_per_epoch\": ");
    bench_json_number(f, r->bytes);
    fprintf(f, ", \"copy_ms_at_h2d\": ");
    bench_json_number(f, r->copy_ms);
    fprintf(f, ", \"gather_ms_per_epoch\": ");
    bench_json_number(f, r->gather_ms);
    fprintf(f, ", \"copy_hidden\": ");
    bench_json_number(f, r->hidden);
    fprintf(f, ", \"step_host_ms\": ");
    bench_json_number(f, r->step_host_ms);
    fprintf(f, ", \"step_device_ms\": ");
    bench_json_number(f, r->step_dev_ms);
    fprintf(f, ", \"device_over_host_step\": ");
    bench_json_number(f, r->step_ratio);
    fprintf(f, ", \"identical\": %s", r->identical ? "true" : "false");
  }
  fprintf(f, "}%s\n", last ? "" : ",");
}

static void fmt_ms(char *buf, size_t len, double v, const char *spec) {
  if (isfinite(v))
    snprintf(buf, len, spec, v);
  else
    snprintf(buf, len, "-");
}

static void md_result(FILE *f, const result *r) {
  char name[200], a[32], b[32], c[32], d[32], e[32], g[32], h[32], q[32];
  config_name(&r->c, name, sizeof name);
  if (r->skipped) {
    fprintf(f, "| %s | skipped: %s | | | | | | | |\n", name, r->skip_reason);
    return;
  }
  fmt_ms(a, sizeof a, r->base_ms, "%.4g");
  fmt_ms(b, sizeof b, r->stream_ms, "%.4g");
  fmt_ms(c, sizeof c, r->ratio, "%.2f");
  fmt_ms(d, sizeof d, r->hidden * 100.0, "%.0f%%");
  fmt_ms(q, sizeof q, r->gather_ms, "%.4g");
  fmt_ms(e, sizeof e, r->step_host_ms, "%.4g");
  fmt_ms(g, sizeof g, r->step_dev_ms, "%.4g");
  fmt_ms(h, sizeof h, r->step_ratio, "%.2f");
  fprintf(f, "| %s | %s | %s | %s | %s | %s | %s | %s | %s |\n", name, a, b, c, q, d, e, g, h);
}

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_stream --backend cpu|cuda [options]\n"
          "  --config SIZES@B   a configuration, e.g. 784-1024-1024-10@4096 (repeatable;\n"
          "                     replaces the defaults)\n"
          "  --steps S          batches per epoch (default 16; fewer above --data-cap-mib)\n"
          "  --epochs E         timed epochs (default 5)\n"
          "  --data-cap-mib M   inputs at most M MiB (default 1024)\n"
          "  --time-budget T    start no configuration after T seconds\n"
          "  --lr LR            learning rate (default 0.05)\n"
          "  --smoke            tiny and fast: small shapes, 3 batches, 1 epoch\n"
          "  --json FILE        results as JSON\n"
          "  --md FILE          results as a Markdown table\n"
          "  --device D, --seed S\n"
          "Exit status: 0 ok, 1 a failure, 2 usage, 77 the backend is absent.\n");
}

int main(int argc, char **argv) {
  options o;
  memset(&o, 0, sizeof o);
  o.backend = BP_BACKEND_CPU;
  o.steps = 16;
  o.epochs = 5;
  o.data_cap_mib = 1024;
  o.lr = 0.05f;
  o.seed = 42;
  int have_backend = 0, smoke = 0;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
#define NEED()                                                         \
  (i + 1 < argc ? argv[++i]                                            \
                : (fprintf(stderr, "bench_stream: %s needs a value\n", a), exit(2), (char *)NULL))
    if (!strcmp(a, "--backend")) {
      const char *b = NEED();
      have_backend = 1;
      if (!strcmp(b, "cpu")) {
        o.backend = BP_BACKEND_CPU;
      } else if (!strcmp(b, "cuda")) {
        o.backend = BP_BACKEND_CUDA;
      } else {
        fprintf(stderr, "bench_stream: --backend cpu or cuda\n");
        return 2;
      }
    } else if (!strcmp(a, "--config")) {
      add_config(&o, NEED());
    } else if (!strcmp(a, "--steps")) {
      o.steps = atoi(NEED());
    } else if (!strcmp(a, "--epochs")) {
      o.epochs = atoi(NEED());
    } else if (!strcmp(a, "--data-cap-mib")) {
      o.data_cap_mib = atof(NEED());
    } else if (!strcmp(a, "--time-budget")) {
      o.time_budget = atof(NEED());
    } else if (!strcmp(a, "--lr")) {
      o.lr = (float)atof(NEED());
    } else if (!strcmp(a, "--smoke")) {
      smoke = 1;
    } else if (!strcmp(a, "--json")) {
      o.json = NEED();
    } else if (!strcmp(a, "--md")) {
      o.md = NEED();
    } else if (!strcmp(a, "--device")) {
      o.device = atoi(NEED());
    } else if (!strcmp(a, "--seed")) {
      o.seed = strtoull(NEED(), NULL, 0);
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "bench_stream: unknown option %s\n", a);
      usage(stderr);
      return 2;
    }
#undef NEED
  }
  if (!have_backend) {
    fprintf(stderr, "bench_stream: --backend cpu|cuda is required\n");
    usage(stderr);
    return 2;
  }
  if (smoke) {
    o.steps = 3; /* two staging sets and a reuse of the first */
    o.epochs = 1;
    if (o.n_configs == 0) {
      add_config(&o, "64-64-64-64@64");
      add_config(&o, "784-100-10@128");
    }
  }
  if (o.steps < 1 || o.epochs < 1 || o.data_cap_mib <= 0 || !isfinite(o.lr)) {
    fprintf(stderr, "bench_stream: steps and epochs must be >= 1, the cap positive\n");
    return 2;
  }
  if (o.n_configs == 0) {
    add_config(&o, "784-100-10@256");
    add_config(&o, "784-1024-1024-10@4096");
    if (o.backend == BP_BACKEND_CUDA) {
      add_config(&o, "1024-1024-1024-1024@4096");
      add_config(&o, "784-1024-1024-10@65536");
    }
  }

  int exit_code = 0;
  bp_context *ctx = bench_context(o.backend, o.device, o.json, &exit_code);
  if (!ctx) return exit_code;
  double h2d = 0;
#ifdef BP_WITH_CUDA
  if (o.backend == BP_BACKEND_CUDA) h2d = h2d_gbps(o.device);
#endif

  printf("bench_stream: backend %s%s; epoch = median of %d, after a warm-up\n",
         bp_backend_name(o.backend), o.backend == BP_BACKEND_CUDA ? "" : " (no copies)", o.epochs);
  if (h2d > 0) printf("host-to-device bandwidth (pinned) %.1f GB/s\n", h2d);
  printf("%-28s %12s %12s %7s %10s %7s %11s %11s %7s\n", "config", "dataset ms", "host ms",
         "ratio", "gather ms", "hidden", "step host", "step dev", "ratio");
  result *res = calloc((size_t)o.n_configs, sizeof *res);
  if (!res) {
    fprintf(stderr, "bench_stream: out of host memory\n");
    return 1;
  }
  int failed = 0;
  const double t_start = bench_now_ms();
  for (int i = 0; i < o.n_configs; ++i) {
    if (o.time_budget > 0 && (bench_now_ms() - t_start) / 1e3 > o.time_budget) {
      res[i].c = o.configs[i];
      res[i].skipped = 1;
      snprintf(res[i].skip_reason, sizeof res[i].skip_reason, "time budget of %g s spent",
               o.time_budget);
    } else {
      res[i] = run_config(ctx, &o.configs[i], &o, h2d, &failed);
    }
    char name[200];
    config_name(&res[i].c, name, sizeof name);
    if (res[i].skipped) {
      printf("%-28s skipped: %s\n", name, res[i].skip_reason);
    } else {
      char hid[32], sh[32], sd[32], sr[32];
      fmt_ms(hid, sizeof hid, res[i].hidden * 100.0, "%.0f%%");
      fmt_ms(sh, sizeof sh, res[i].step_host_ms, "%.4g");
      fmt_ms(sd, sizeof sd, res[i].step_dev_ms, "%.4g");
      fmt_ms(sr, sizeof sr, res[i].step_ratio, "%.2f");
      printf("%-28s %12.4g %12.4g %7.2f %10.4g %7s %11s %11s %7s\n", name, res[i].base_ms,
             res[i].stream_ms, res[i].ratio, res[i].gather_ms, hid, sh, sd, sr);
    }
    fflush(stdout);
  }

  if (o.json) {
    FILE *f = fopen(o.json, "w");
    if (!f) {
      fprintf(stderr, "bench_stream: cannot write %s\n", o.json);
      failed = 1;
    } else {
      char stamp[64];
      bench_timestamp(stamp, sizeof stamp);
      fprintf(f, "{\n  \"bench\": \"bench_stream\",\n  \"date\": \"%s\",\n  \"backend\": \"%s\",\n",
              stamp, bp_backend_name(o.backend));
      fprintf(f, "  \"library_version\": \"%s\",\n  \"epochs\": %d,\n  \"h2d_gbps\": ",
              bp_version_string(), o.epochs);
      bench_json_number(f, h2d > 0 ? h2d : NAN);
      fprintf(f, ",\n  \"results\": [\n");
      for (int i = 0; i < o.n_configs; ++i) json_result(f, &res[i], i + 1 == o.n_configs);
      fprintf(f, "  ],\n  \"failed\": %s\n}\n", failed ? "true" : "false");
      if (fclose(f) != 0) failed = 1;
    }
  }
  if (o.md) {
    FILE *f = fopen(o.md, "w");
    if (!f) {
      fprintf(stderr, "bench_stream: cannot write %s\n", o.md);
      failed = 1;
    } else {
      fprintf(f, "Backend %s. Epoch times: median of %d on the wall clock; ratio = "
                 "bp_train_epoch_host / bp_train_epoch on a data set (same run). gather = the "
                 "epoch's host row copies alone. hidden = the share of the epoch's copy time at "
                 "the measured host-to-device bandwidth (%s) that did not add to the epoch "
                 "beyond max(data set epoch, gather). Step: bp_train_batch (host arrays) "
                 "against bp_train_batch_device (device arrays), ratio device / host.\n\n",
              bp_backend_name(o.backend), o.epochs, h2d > 0 ? "measured" : "not measured: no GPU");
      fprintf(f, "| config | dataset epoch ms | host epoch ms | ratio | gather ms | copy hidden | "
                 "step host ms | step device ms | ratio |\n");
      fprintf(f, "|---|---|---|---|---|---|---|---|---|\n");
      for (int i = 0; i < o.n_configs; ++i) md_result(f, &res[i]);
      if (fclose(f) != 0) failed = 1;
    }
  }
  free(res);
  bp_context_destroy(ctx);
  if (failed) fprintf(stderr, "bench_stream: FAILED\n");
  return failed ? 1 : 0;
}
