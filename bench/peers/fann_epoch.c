/*
 * fann_epoch.c - the FANN peer: time fann_train_epoch with FANN_TRAIN_BATCH
 * (one weight update per epoch from the gradient averaged over all examples,
 * i.e. full-batch gradient descent) on the same network and data as
 * bench_step: sigmoid on every layer (FANN_SIGMOID with the default
 * steepness 0.5 is 1 / (1 + e^-x)), the linear error function (plain squared
 * error), float32 (floatfann). Inputs uniform in [0,1), one-hot targets,
 * drawn with bench_step's generator.
 *
 * The matching run of ours is one epoch of bench_step with batch = n
 * (bench_step --backend cpu --config SIZES@n --steps 1): also one update per
 * epoch over all n examples.
 *
 * Run:  fann_epoch --sizes 784,100,10 --n 2000 --epochs 3 [--json FILE]
 */
#define _POSIX_C_SOURCE 200809L

#include <floatfann.h>
#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../bench_common.h"

#define MAX_LAYERS 16

static void usage(FILE *f) {
  fprintf(f, "usage: fann_epoch --sizes 784,100,10 [--n N] [--epochs E] [--lr LR] [--seed S] "
             "[--json FILE]\n");
}

int main(int argc, char **argv) {
  long sizes[MAX_LAYERS];
  int n_sizes = 0, n = 2000, epochs = 3;
  double lr = 0.5;
  uint64_t seed = 42;
  const char *json = NULL;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
    if (i + 1 >= argc && strcmp(a, "-h") && strcmp(a, "--help")) {
      fprintf(stderr, "fann_epoch: %s needs a value\n", a);
      return 2;
    }
    if (!strcmp(a, "--sizes")) {
      n_sizes = bench_parse_ints(argv[++i], ',', sizes, MAX_LAYERS);
    } else if (!strcmp(a, "--n")) {
      n = atoi(argv[++i]);
    } else if (!strcmp(a, "--epochs")) {
      epochs = atoi(argv[++i]);
    } else if (!strcmp(a, "--lr")) {
      lr = atof(argv[++i]);
    } else if (!strcmp(a, "--seed")) {
      seed = strtoull(argv[++i], NULL, 0);
    } else if (!strcmp(a, "--json")) {
      json = argv[++i];
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else {
      usage(stderr);
      return 2;
    }
  }
  if (n_sizes < 2 || n < 1 || epochs < 1) {
    usage(stderr);
    return 2;
  }
  unsigned layers[MAX_LAYERS];
  for (int i = 0; i < n_sizes; ++i) {
    if (sizes[i] < 1) {
      usage(stderr);
      return 2;
    }
    layers[i] = (unsigned)sizes[i];
  }
  const unsigned n_in = layers[0], n_out = layers[n_sizes - 1];

  struct fann *ann = fann_create_standard_array((unsigned)n_sizes, layers);
  struct fann_train_data *data = fann_create_train((unsigned)n, n_in, n_out);
  if (!ann || !data) {
    fprintf(stderr, "fann_epoch: creating the network or the data failed\n");
    return 1;
  }
  fann_set_activation_function_hidden(ann, FANN_SIGMOID);
  fann_set_activation_function_output(ann, FANN_SIGMOID);
  fann_set_training_algorithm(ann, FANN_TRAIN_BATCH);
  fann_set_train_error_function(ann, FANN_ERRORFUNC_LINEAR);
  fann_set_learning_rate(ann, (float)lr);
  fann_randomize_weights(ann, -0.1f, 0.1f);

  /* The data of bench_step's make_data: X uniform in [0,1), one-hot Y. */
  uint64_t dseed = seed ^ (uint64_t)n;
  for (int k = 0; k < n; ++k) {
    for (unsigned j = 0; j < n_in; ++j)
      data->input[k][j] = bench_uniform(dseed, (uint64_t)k * n_in + j, 0.0f, 1.0f);
    uint64_t r = bench_mix64(dseed ^ bench_mix64(~(uint64_t)k));
    for (unsigned j = 0; j < n_out; ++j) data->output[k][j] = 0.0f;
    if (n_out == 1)
      data->output[k][0] = (float)(r & 1);
    else
      data->output[k][r % n_out] = 1.0f;
  }

  float mse_first = fann_train_epoch(ann, data); /* warm-up */
  double *t = malloc(sizeof(double) * (size_t)epochs);
  float mse = mse_first;
  for (int e = 0; e < epochs; ++e) {
    double t0 = bench_now_ms();
    mse = fann_train_epoch(ann, data);
    t[e] = bench_now_ms() - t0;
  }
  double tmin = bench_min(t, epochs), tmed = bench_median(t, epochs);
  int ok = isfinite(mse) && fann_get_errno((struct fann_error *)ann) == 0;
  printf("fann_epoch: %d", layers[0]);
  for (int i = 1; i < n_sizes; ++i) printf("-%u", layers[i]);
  printf(", %d examples, FANN_TRAIN_BATCH: %.3f ms per epoch (min %.3f), %.4g examples/s, MSE "
         "%.5f -> %.5f\n",
         n, tmed, tmin, n / (tmed * 1e-3), (double)mse_first, (double)mse);
  if (json) {
    FILE *f = fopen(json, "w");
    if (!f) {
      fprintf(stderr, "fann_epoch: cannot write %s\n", json);
      return 1;
    }
    fprintf(f, "{\"peer\": \"fann\", \"algorithm\": \"FANN_TRAIN_BATCH\", \"sizes\": [");
    for (int i = 0; i < n_sizes; ++i) fprintf(f, "%s%u", i ? ", " : "", layers[i]);
    fprintf(f, "], \"examples\": %d, \"epochs\": %d, \"epoch_ms\": %.6g, \"epoch_min_ms\": %.6g, "
               "\"mse_first\": ",
            n, epochs, tmed, tmin);
    bench_json_number(f, mse_first);
    fprintf(f, ", \"mse_last\": ");
    bench_json_number(f, mse);
    fprintf(f, ", \"ok\": %s}\n", ok ? "true" : "false");
    if (fclose(f) != 0) return 1;
  }
  free(t);
  fann_destroy_train(data);
  fann_destroy(ann);
  return ok ? 0 : 1;
}
