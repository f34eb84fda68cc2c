/* cmd_predict.c - `backprop predict`: a saved model's outputs per example. */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "commands.h"
#include "model_data.h"

#define CMD "predict"
#define CHUNK 4096 /* examples per bp_forward call */

enum { OPT_HELP, OPT_CLASS };

static const cli_option options[] = {
    {"help", 'h', 0, OPT_HELP}, {"class", 0, 0, OPT_CLASS}, CLI_MODEL_DATA_OPTIONS, {NULL, 0, 0, 0}};

/* The c-th line of a '\n'-separated list of names, or NULL. */
static const char *class_name(const char *names, int c) {
  const char *p = names;
  while (p && c-- > 0) {
    const char *nl = strchr(p, '\n');
    p = nl ? nl + 1 : NULL;
  }
  return p;
}

static void help(FILE *f) {
  fputs("Usage: backprop predict --model FILE --data PATH [options]\n"
        "\n"
        "Prints one line per example, in the order of the data: the network's\n"
        "outputs separated by spaces, or with --class the predicted class (the index\n"
        "of the largest output; with one output, 1 if it is >= 0.5 else 0). The data\n"
        "is read like eval's; its targets are read and ignored. A CSV file may also\n"
        "hold the inputs alone (exactly the model's input width). With --class, a\n"
        "model trained on class names prints the name.\n"
        "\n"
        "Options:\n" CLI_MODEL_DATA_HELP
        "  --class              print the predicted class instead of the outputs\n"
        "  -h, --help           this help\n"
        "\n"
        "Exit status: 0 done, 1 failure (files, sizes), 2 usage error.\n",
        f);
}

int cli_cmd_predict(int argc, char **argv) {
  cli_model_data md;
  int want_class = 0;
  int code = cli_model_data_parse(CMD, argc, argv, options, OPT_HELP, help, OPT_CLASS, &want_class,
                                  &md);
  if (code >= 0) return code;

  bp_context *ctx;
  bp_network *net;
  bp_data *data;
  code = cli_model_data_load(CMD, &md, 0, &ctx, &net, &data);
  if (code) return code;
  int n_out = bp_network_size(net, bp_network_n_layers(net));
  int chunk = data->n < CHUNK ? data->n : CHUNK;
  float *out = malloc(sizeof(float) * (size_t)chunk * (size_t)n_out);
  if (!out) code = cli_fail(CMD, "out of memory");
  for (int i = 0; !code && i < data->n; i += chunk) {
    int m = data->n - i < chunk ? data->n - i : chunk;
    if (bp_forward(net, data->X + (size_t)i * (size_t)data->n_in, m, out) != BP_OK) {
      code = cli_fail(CMD, "%s: %s", md.data, bp_context_last_error(ctx));
      break;
    }
    for (int k = 0; k < m; ++k) {
      const float *o = out + (size_t)k * (size_t)n_out;
      if (want_class) {
        int c = cli_argmax(o, n_out);
        const char *name = class_name(md.class_names, c);
        if (name)
          printf("%.*s\n", (int)strcspn(name, "\n"), name);
        else
          printf("%d\n", c);
      } else {
        for (int j = 0; j < n_out; ++j) printf(j ? " %.6g" : "%.6g", (double)o[j]);
        putchar('\n');
      }
    }
    if (ferror(stdout)) break;
  }
  if (!code && (fflush(stdout) != 0 || ferror(stdout)))
    code = cli_fail(CMD, "cannot write to standard output");
  free(out);
  bp_data_free(data);
  bp_network_destroy(net);
  bp_context_destroy(ctx);
  free(md.class_names);
  return code;
}
