/*
 * math_accuracy.c - how far the TF32 and BF16 math modes move the gradients
 * from FP32, measured through the public API.
 *
 * For a network (default 784-100-10, seed 1) and the first B examples of a
 * data set (an IDX directory, e.g. Fashion-MNIST; synthetic data with
 * --smoke): the gradients of the batch's mean cost in FP32, TF32 and BF16
 * from the same weights, and for each reduced mode, per layer, the relative
 * error against FP32 in the Frobenius norm (dW and db together),
 * ||g_mode - g_fp32|| / ||g_fp32||, plus the relative change of the cost and
 * the largest change of an output. Measured twice: at initialization and
 * after --train-epochs FP32 epochs (batch 32, lr 0.5, the command's defaults),
 * where the gradients are smaller and cancel more.
 *
 * On the CPU backend TF32 and BF16 are the emulation (operands rounded to
 * nearest-even, float32 sgemm); on CUDA they are the tensor-core products.
 *
 * Run:  math_accuracy [--backend cpu|cuda] [--data DIR] [--sizes 784,100,10]
 *                     [--batch 32,1000] [--seed 1] [--train-epochs 1] [--json FILE] [--smoke]
 * Exit: 0 ok; 1 a failure; 2 usage; 77 the backend is absent.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "backprop.h"
#include "bench_common.h"
#define BENCH_PROGRAM "math_accuracy"
#include "bench_config.h"

#define MAX_BATCHES 8

static void *xmalloc(size_t bytes) {
  void *p = malloc(bytes ? bytes : 1);
  if (!p) {
    fprintf(stderr, "math_accuracy: out of host memory\n");
    exit(EXIT_FAILURE);
  }
  return p;
}

/* All gradients of net, layer after layer: dW_i then db_i. */
static float *gradients(bp_network *net, size_t count) {
  float *g = xmalloc(count * sizeof(float));
  size_t off = 0;
  for (int i = 0; i < bp_network_n_layers(net); ++i) {
    size_t w = (size_t)bp_network_size(net, i) * (size_t)bp_network_size(net, i + 1);
    BP_CHECK(bp_network_context(net), bp_network_get_gradient(net, i, g + off, g + off + w));
    off += w + (size_t)bp_network_size(net, i + 1);
  }
  return g;
}

/* ||a - b|| / ||b|| over [off, off + len). */
static double rel_err(const float *a, const float *b, size_t off, size_t len) {
  double num = 0, den = 0;
  for (size_t k = off; k < off + len; ++k) {
    double d = (double)a[k] - (double)b[k];
    num += d * d;
    den += (double)b[k] * (double)b[k];
  }
  return den > 0 ? sqrt(num / den) : NAN;
}

typedef struct options {
  bp_backend backend;
  const char *data, *json;
  int sizes[MAX_SIZES], n_sizes;
  int batches[MAX_BATCHES], n_batches;
  uint64_t seed;
  int train_epochs, smoke;
} options;

/* One measurement: the gradients in every mode on the first B examples. */
static void measure(bp_network *net, const float *X, const float *Y, int B, const char *state,
                    FILE *json, int *first_row) {
  bp_context *ctx = bp_network_context(net);
  const int L = bp_network_n_layers(net);
  const size_t count = bp_network_parameter_count(net);
  const int n_out = bp_network_size(net, L);
  const bp_math_mode modes[3] = {BP_MATH_FP32, BP_MATH_TF32, BP_MATH_BF16};
  float *g[3], cost[3], *out[3];
  for (int m = 0; m < 3; ++m) {
    BP_CHECK(ctx, bp_network_set_math_mode(net, modes[m]));
    BP_CHECK(ctx, bp_backward(net, X, Y, B, &cost[m]));
    g[m] = gradients(net, count);
    out[m] = xmalloc((size_t)B * (size_t)n_out * sizeof(float));
    BP_CHECK(ctx, bp_forward(net, X, B, out[m]));
  }
  BP_CHECK(ctx, bp_network_set_math_mode(net, BP_MATH_FP32));
  for (int m = 1; m < 3; ++m) {
    double out_diff = 0;
    for (size_t k = 0; k < (size_t)B * (size_t)n_out; ++k)
      out_diff = fmax(out_diff, fabs((double)out[m][k] - (double)out[0][k]));
    const double cost_rel = fabs((double)cost[m] - (double)cost[0]) / fabs((double)cost[0]);
    printf("%-8s %6d %-5s", state, B, bp_math_mode_name(modes[m]));
    fprintf(json, "%s    {\"state\": \"%s\", \"batch\": %d, \"math\": \"%s\", \"layers\": [",
            *first_row ? "" : ",\n", state, B, bp_math_mode_name(modes[m]));
    *first_row = 0;
    size_t off = 0;
    for (int i = 0; i < L; ++i) {
      size_t len = (size_t)bp_network_size(net, i) * (size_t)bp_network_size(net, i + 1) +
                   (size_t)bp_network_size(net, i + 1);
      double e = rel_err(g[m], g[0], off, len);
      printf("  layer %d %.3e", i, e);
      fprintf(json, "%s%.6g", i ? ", " : "", e);
      off += len;
    }
    double all = rel_err(g[m], g[0], 0, count);
    printf("  all %.3e  cost %.2e  outputs %.2e\n", all, cost_rel, out_diff);
    fprintf(json, "], \"all\": %.6g, \"cost_rel\": %.6g, \"output_max_abs\": %.6g}", all,
            cost_rel, out_diff);
  }
  for (int m = 0; m < 3; ++m) {
    free(g[m]);
    free(out[m]);
  }
}

static int parse_list(const char *s, int *out, int max, long lo, long hi) {
  long v[MAX_SIZES];
  int n = bench_parse_ints(s, ',', v, max < MAX_SIZES ? max : MAX_SIZES);
  for (int i = 0; i < n; ++i) {
    if (v[i] < lo || v[i] > hi) return 0;
    out[i] = (int)v[i];
  }
  return n;
}

int main(int argc, char **argv) {
  options o;
  memset(&o, 0, sizeof o);
  o.backend = BP_BACKEND_CPU;
  o.sizes[0] = 784, o.sizes[1] = 100, o.sizes[2] = 10, o.n_sizes = 3;
  o.batches[0] = 32, o.batches[1] = 1000, o.n_batches = 2;
  o.seed = 1;
  o.train_epochs = 1;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
    const char *v = i + 1 < argc ? argv[i + 1] : NULL;
    int takes = 1, ok = 1;
    if (!strcmp(a, "--backend") && v) {
      o.backend = !strcmp(v, "cuda") ? BP_BACKEND_CUDA : BP_BACKEND_CPU;
      ok = !strcmp(v, "cuda") || !strcmp(v, "cpu");
    } else if (!strcmp(a, "--data") && v) {
      o.data = v;
    } else if (!strcmp(a, "--json") && v) {
      o.json = v;
    } else if (!strcmp(a, "--sizes") && v) {
      ok = (o.n_sizes = parse_list(v, o.sizes, MAX_SIZES, 1, 1 << 16)) >= 2;
    } else if (!strcmp(a, "--batch") && v) {
      ok = (o.n_batches = parse_list(v, o.batches, MAX_BATCHES, 1, 1 << 20)) >= 1;
    } else if (!strcmp(a, "--seed") && v) {
      o.seed = strtoull(v, NULL, 0);
    } else if (!strcmp(a, "--train-epochs") && v) {
      o.train_epochs = atoi(v);
      ok = o.train_epochs >= 0;
    } else if (!strcmp(a, "--smoke")) {
      o.smoke = 1;
      takes = 0;
    } else {
      ok = 0;
    }
    if (!ok) {
      fprintf(stderr,
              "usage: math_accuracy [--backend cpu|cuda] [--data IDX_DIR] [--sizes 784,100,10] "
              "[--batch 32,1000] [--seed S] [--train-epochs E] [--json FILE] [--smoke]\n");
      return 2;
    }
    i += takes;
  }
  if (o.smoke) {
    o.data = NULL;
    o.sizes[0] = 64, o.sizes[1] = 32, o.sizes[2] = 10, o.n_sizes = 3;
    o.batches[0] = 16, o.batches[1] = 100, o.n_batches = 2;
  }

  int exit_code = 0;
  bp_context *ctx = bench_context(o.backend, 0, o.json, &exit_code);
  if (!ctx) return exit_code;

  /* The data: the IDX training set, or synthetic inputs in [0,1) with
   * one-hot targets of a random class. */
  bp_data *train = NULL, *test = NULL;
  float *X, *Y;
  int n, n_in, n_out;
  if (o.data) {
    BP_CHECK(ctx, bp_data_read_idx_dir(ctx, o.data, &train, &test));
    n = train->n, n_in = train->n_in, n_out = train->n_out;
    X = train->X, Y = train->Y;
    o.sizes[0] = n_in;
    o.sizes[o.n_sizes - 1] = n_out;
  } else {
    n = 2000, n_in = o.sizes[0], n_out = o.sizes[o.n_sizes - 1];
    if (!make_data(n, n_in, n_out, o.seed, &X, &Y)) return 1;
  }
  for (int b = 0; b < o.n_batches; ++b)
    if (o.batches[b] > n) o.batches[b] = n;

  FILE *json = fopen(o.json ? o.json : "/dev/null", "w");
  if (!json) {
    fprintf(stderr, "math_accuracy: cannot write %s\n", o.json);
    return 1;
  }
  fprintf(json, "{\n  \"bench\": \"math_accuracy\",\n  \"backend\": \"%s\",\n  \"data\": ",
          bp_backend_name(bp_context_backend(ctx)));
  bench_json_string(json, o.data ? o.data : "synthetic");
  fprintf(json, ",\n  \"sizes\": [");
  for (int i = 0; i < o.n_sizes; ++i) fprintf(json, "%s%d", i ? ", " : "", o.sizes[i]);
  fprintf(json, "],\n  \"seed\": %llu,\n  \"train_epochs\": %d,\n  \"results\": [\n",
          (unsigned long long)o.seed, o.train_epochs);

  bp_network *net = NULL;
  BP_CHECK(ctx, bp_network_create(ctx, o.n_sizes, o.sizes, o.seed, &net));
  printf("math_accuracy: %s backend%s, %s, network", bp_backend_name(bp_context_backend(ctx)),
         bp_context_backend(ctx) == BP_BACKEND_CPU ? " (tf32/bf16 emulated)" : "",
         o.data ? o.data : "synthetic data");
  for (int i = 0; i < o.n_sizes; ++i) printf("%c%d", i ? '-' : ' ', o.sizes[i]);
  printf(", seed %llu\nrelative error against FP32, Frobenius norm (dW and db of a layer together)\n",
         (unsigned long long)o.seed);
  int first_row = 1;
  for (int b = 0; b < o.n_batches; ++b) measure(net, X, Y, o.batches[b], "init", json, &first_row);
  if (o.train_epochs > 0) {
    bp_dataset *data = NULL;
    BP_CHECK(ctx, bp_dataset_create(ctx, n, n_in, n_out, X, Y, &data));
    for (int e = 1; e <= o.train_epochs; ++e) {
      float c = 0;
      BP_CHECK(ctx, bp_train_epoch(net, data, 32, 0.5f, o.seed + (uint64_t)e, &c));
    }
    bp_dataset_destroy(data);
    char state[32];
    snprintf(state, sizeof state, "epoch %d", o.train_epochs);
    for (int b = 0; b < o.n_batches; ++b) measure(net, X, Y, o.batches[b], state, json, &first_row);
  }
  fprintf(json, "\n  ]\n}\n");
  int failed = fclose(json) != 0;
  bp_network_destroy(net);
  if (train) {
    bp_data_free(train);
    bp_data_free(test);
  } else {
    free(X);
    free(Y);
  }
  bp_context_destroy(ctx);
  return failed;
}
