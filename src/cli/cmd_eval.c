/* cmd_eval.c - `backprop eval`: cost and accuracy of a saved model. */
#include <stdio.h>
#include <stdlib.h>

#include "args.h"
#include "cli.h"
#include "commands.h"
#include "json_out.h"
#include "model_data.h"
#include "train_recipe.h"

#define CMD "eval"

enum { OPT_HELP, OPT_JSON, OPT_CONFUSION };

static const cli_option options[] = {{"help", 'h', 0, OPT_HELP},
                                     {"json", 0, 0, OPT_JSON},
                                     {"confusion", 0, 0, OPT_CONFUSION},
                                     CLI_MODEL_DATA_OPTIONS,
                                     {NULL, 0, 0, 0}};

static void help(FILE *f) {
  fputs("Usage: backprop eval --model FILE --data PATH [options]\n"
        "\n"
        "Prints the mean cost and the accuracy of a saved model on a data set (an\n"
        "example counts as right when its largest output is at its target's largest\n"
        "entry; with one output, when both are on the same side of 0.5). When the\n"
        "targets are not all 0 or 1 (a regression), the mean squared error over every\n"
        "output replaces the accuracy.\n"
        "\n"
        "Options:\n" CLI_MODEL_DATA_HELP
        "  --json               print one JSON object: cost, accuracy, examples, model,\n"
        "                       data, backend (and mse, confusion)\n"
        "  --confusion          classifiers: also print the confusion matrix (rows: the\n"
        "                       true class, columns: the predicted class)\n"
        "  -h, --help           this help\n"
        "\n"
        "Exit status: 0 done, 1 failure (files, sizes), 2 usage error.\n",
        f);
}

/* Argument parsing: the shared model/data options plus --json and
 * --confusion. -1 to go on, else the exit code. */
static int parse(int argc, char **argv, cli_model_data *md, int *json, int *confusion) {
  cli_model_data_init(md);
  cli_args a;
  cli_args_init(&a, CMD, argc, argv);
  const char *v;
  int id;
  while ((id = cli_next_option(&a, options, &v)) != CLI_ARGS_END) {
    if (id == CLI_ARGS_ERROR) return CLI_EXIT_USAGE;
    if (id == CLI_ARGS_POSITIONAL) return cli_usage_error(CMD, "unexpected argument '%s'", v);
    if (id == OPT_HELP) {
      help(stdout);
      return fflush(stdout) == 0 ? 0 : CLI_EXIT_FAILURE;
    }
    if (id == OPT_JSON) *json = 1;
    else if (id == OPT_CONFUSION) *confusion = 1;
    else if (cli_model_data_option(&a, id, v, md) < 0) return CLI_EXIT_USAGE;
  }
  int code = cli_model_data_check(CMD, md);
  return code ? code : -1;
}

/* The outputs of every example, in chunks: mean squared error over every
 * output, and (when counts is not NULL) counts[true * k + predicted]. */
static int outputs_pass(bp_network *net, const bp_data *d, double *mse, long *counts) {
  enum { CHUNK = 4096 };
  int k = d->n_out, chunk = d->n < CHUNK ? d->n : CHUNK;
  float *out = malloc(sizeof(float) * (size_t)(chunk > 0 ? chunk : 1) * (size_t)k);
  if (!out) return -1;
  double sum = 0;
  for (int i = 0; i < d->n; i += chunk) {
    int m = d->n - i < chunk ? d->n - i : chunk;
    if (bp_forward(net, d->X + (size_t)i * (size_t)d->n_in, m, out) != BP_OK) {
      free(out);
      return -1;
    }
    for (int r = 0; r < m; ++r) {
      const float *o = out + (size_t)r * (size_t)k, *y = d->Y + (size_t)(i + r) * (size_t)k;
      for (int j = 0; j < k; ++j) sum += ((double)o[j] - y[j]) * ((double)o[j] - y[j]);
      if (counts) {
        int t = cli_argmax(y, k), p = cli_argmax(o, k);
        counts[(size_t)t * (size_t)(k > 1 ? k : 2) + (size_t)p]++;
      }
    }
  }
  *mse = d->n > 0 ? sum / ((double)d->n * k) : 0;
  free(out);
  return 0;
}

static void print_confusion(const long *counts, int k, int json) {
  if (json) {
    printf(", \"confusion\": [");
    for (int t = 0; t < k; ++t) {
      printf(t ? ", [" : "[");
      for (int p = 0; p < k; ++p) printf(p ? ", %ld" : "%ld", counts[(size_t)t * k + p]);
      printf("]");
    }
    printf("]");
    return;
  }
  printf("confusion matrix (rows: true class, columns: predicted class)\n%8s", "");
  for (int p = 0; p < k; ++p) printf(" %7d", p);
  printf("\n");
  for (int t = 0; t < k; ++t) {
    printf("%8d", t);
    for (int p = 0; p < k; ++p) printf(" %7ld", counts[(size_t)t * k + p]);
    printf("\n");
  }
}

int cli_cmd_eval(int argc, char **argv) {
  cli_model_data md;
  int json = 0, confusion = 0;
  int code = parse(argc, argv, &md, &json, &confusion);
  if (code >= 0) return code;

  bp_context *ctx;
  bp_network *net;
  bp_data *data;
  code = cli_model_data_load(CMD, &md, 1, &ctx, &net, &data);
  if (code) return code;
  bp_dataset *ds = NULL;
  float cost = 0, acc = 0;
  double mse = 0;
  const int regression = !cli_targets_are_classes(data);
  const int k = data->n_out > 1 ? data->n_out : 2; /* one output: classes 0 and 1 */
  long *counts = NULL;
  if (confusion && regression) {
    code = cli_usage_error(CMD, "--confusion is for classifiers; %s has real-valued targets",
                           md.data);
  } else if (confusion && !(counts = calloc((size_t)k * (size_t)k, sizeof *counts))) {
    code = cli_fail(CMD, "out of memory");
  } else if (bp_dataset_create(ctx, data->n, data->n_in, data->n_out, data->X, data->Y, &ds) !=
                 BP_OK ||
             bp_evaluate(net, ds, &cost, &acc) != BP_OK ||
             ((regression || confusion) && outputs_pass(net, data, &mse, counts) != 0)) {
    code = cli_fail(CMD, "%s: %s", md.data, bp_context_last_error(ctx));
  } else if (json) {
    printf("{\"cost\": ");
    cli_json_number(stdout, cost);
    printf(", \"accuracy\": ");
    if (regression) printf("null, \"mse\": ");
    cli_json_number(stdout, regression ? mse : acc);
    if (counts) print_confusion(counts, k, 1);
    printf(", \"examples\": %d, \"model\": ", data->n);
    cli_json_string(stdout, md.model);
    printf(", \"data\": ");
    cli_json_string(stdout, md.data);
    printf(", \"backend\": ");
    cli_json_string(stdout, bp_backend_name(bp_context_backend(ctx)));
    printf("}\n");
  } else {
    if (regression)
      printf("mse %.6g  cost %.4f  (%d examples, %s)\n", mse, cost, data->n,
             bp_backend_name(bp_context_backend(ctx)));
    else
      printf("accuracy %.4f  cost %.4f  (%d examples, %s)\n", acc, cost, data->n,
             bp_backend_name(bp_context_backend(ctx)));
    if (counts) print_confusion(counts, k, 0);
  }
  free(counts);
  if (!code && (fflush(stdout) != 0 || ferror(stdout)))
    code = cli_fail(CMD, "cannot write to standard output");
  bp_dataset_destroy(ds);
  bp_data_free(data);
  bp_network_destroy(net);
  bp_context_destroy(ctx);
  free(md.class_names);
  return code;
}
