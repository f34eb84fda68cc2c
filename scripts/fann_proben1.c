/* fann_proben1.c - FANN's own RPROP on a PROBEN1 set, as the baseline the
 * README's recipes are compared with (not built by CMake; needs libfann-dev).
 *
 *   cc -O2 scripts/fann_proben1.c -o fann_proben1 -lfann -lm
 *   ./fann_proben1 /usr/share/doc/libfann-dev/examples/datasets/thyroid 16 500
 *
 * FANN's defaults (FANN_TRAIN_RPROP, full batch, sigmoid-stepwise hidden and
 * output units, weights in -0.1..0.1 from a fixed srand), one hidden layer
 * of HIDDEN units, EPOCHS epochs; prints the test accuracy (argmax of the
 * outputs against argmax of the targets; one output: both >= 0.5 or not) and
 * the mean squared error over every output (for the regression sets). */
#include <fann.h>
#include <stdio.h>
#include <stdlib.h>

static int argmax(const fann_type *v, unsigned n) {
  if (n == 1) return v[0] >= 0.5f;
  unsigned b = 0;
  for (unsigned i = 1; i < n; ++i)
    if (v[i] > v[b]) b = i;
  return (int)b;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: %s DATASET_PREFIX HIDDEN EPOCHS\n", argv[0]);
    return 2;
  }
  char tr[4096], te[4096];
  snprintf(tr, sizeof tr, "%s.train", argv[1]);
  snprintf(te, sizeof te, "%s.test", argv[1]);
  struct fann_train_data *train = fann_read_train_from_file(tr);
  struct fann_train_data *test = fann_read_train_from_file(te);
  if (!train || !test) return 1;
  srand(1);
  struct fann *ann = fann_create_standard(3, fann_num_input_train_data(train), atoi(argv[2]),
                                          fann_num_output_train_data(train));
  fann_train_on_data(ann, train, (unsigned)atoi(argv[3]), 0, 0.0f);
  unsigned right = 0, n = fann_length_train_data(test), k = fann_num_output_train_data(test);
  double se = 0;
  for (unsigned i = 0; i < n; ++i) {
    fann_type *o = fann_run(ann, test->input[i]);
    for (unsigned j = 0; j < k; ++j) se += (o[j] - test->output[i][j]) * (o[j] - test->output[i][j]);
    right += argmax(o, k) == argmax(test->output[i], k);
  }
  printf("%s: FANN RPROP, hidden %s, %s epochs: test accuracy %.4f (%u/%u), mse %.6g\n", argv[1],
         argv[2], argv[3], (double)right / n, right, n, se / ((double)n * k));
  fann_destroy(ann);
  return 0;
}
