/* cmd_eval.c - `backprop eval`: cost and accuracy of a saved model. */
#include <stdio.h>
#include <stdlib.h>

#include "args.h"
#include "cli.h"
#include "commands.h"
#include "json_out.h"
#include "model_data.h"

#define CMD "eval"

enum { OPT_HELP, OPT_JSON };

static const cli_option options[] = {
    {"help", 'h', 0, OPT_HELP}, {"json", 0, 0, OPT_JSON}, CLI_MODEL_DATA_OPTIONS, {NULL, 0, 0, 0}};

static void help(FILE *f) {
  fputs("Usage: backprop eval --model FILE --data PATH [options]\n"
        "\n"
        "Prints the mean cost and the accuracy of a saved model on a data set (an\n"
        "example counts as right when its largest output is at its target's largest\n"
        "entry; with one output, when both are on the same side of 0.5).\n"
        "\n"
        "Options:\n" CLI_MODEL_DATA_HELP
        "  --json               print one JSON object: cost, accuracy, examples, model,\n"
        "                       data, backend\n"
        "  -h, --help           this help\n"
        "\n"
        "Exit status: 0 done, 1 failure (files, sizes), 2 usage error.\n",
        f);
}

int cli_cmd_eval(int argc, char **argv) {
  cli_model_data md;
  int json = 0;
  int code = cli_model_data_parse(CMD, argc, argv, options, OPT_HELP, help, OPT_JSON, &json, &md);
  if (code >= 0) return code;

  bp_context *ctx;
  bp_network *net;
  bp_data *data;
  code = cli_model_data_load(CMD, &md, 1, &ctx, &net, &data);
  if (code) return code;
  bp_dataset *ds = NULL;
  float cost = 0, acc = 0;
  if (bp_dataset_create(ctx, data->n, data->n_in, data->n_out, data->X, data->Y, &ds) != BP_OK ||
      bp_evaluate(net, ds, &cost, &acc) != BP_OK) {
    code = cli_fail(CMD, "%s: %s", md.data, bp_context_last_error(ctx));
  } else if (json) {
    printf("{\"cost\": ");
    cli_json_number(stdout, cost);
    printf(", \"accuracy\": ");
    cli_json_number(stdout, acc);
    printf(", \"examples\": %d, \"model\": ", data->n);
    cli_json_string(stdout, md.model);
    printf(", \"data\": ");
    cli_json_string(stdout, md.data);
    printf(", \"backend\": ");
    cli_json_string(stdout, bp_backend_name(bp_context_backend(ctx)));
    printf("}\n");
  } else {
    printf("accuracy %.4f  cost %.4f  (%d examples, %s)\n", acc, cost, data->n,
           bp_backend_name(bp_context_backend(ctx)));
  }
  if (!code && (fflush(stdout) != 0 || ferror(stdout)))
    code = cli_fail(CMD, "cannot write to standard output");
  bp_dataset_destroy(ds);
  bp_data_free(data);
  bp_network_destroy(net);
  bp_context_destroy(ctx);
  free(md.class_names);
  return code;
}
