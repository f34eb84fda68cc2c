/*
 * model_data.h - what `backprop eval` and `backprop predict` share: the
 * options that name a model, a data set and a backend, and loading them.
 */
#ifndef BP_CLI_MODEL_DATA_H
#define BP_CLI_MODEL_DATA_H

#include <stdio.h>

#include "args.h"
#include "backprop.h"
#include "data.h"

/* Option ids handled by cli_model_data_option (commands use ids below 100). */
enum {
  MD_OPT_MODEL = 100,
  MD_OPT_DATA,
  MD_OPT_FORMAT,
  MD_OPT_LABEL_COLUMN,
  MD_OPT_TARGETS,
  MD_OPT_CLASSES,
  MD_OPT_BACKEND,
  MD_OPT_DEVICE,
  MD_OPT_DELIMITER
};

#define CLI_MODEL_DATA_OPTIONS                                                              \
  {"model", 0, 1, MD_OPT_MODEL}, {"data", 0, 1, MD_OPT_DATA}, {"format", 0, 1, MD_OPT_FORMAT}, \
      {"label-column", 0, 1, MD_OPT_LABEL_COLUMN}, {"targets", 0, 1, MD_OPT_TARGETS},         \
      {"classes", 0, 1, MD_OPT_CLASSES}, {"backend", 0, 1, MD_OPT_BACKEND},                   \
      {"device", 0, 1, MD_OPT_DEVICE}, {"delimiter", 0, 1, MD_OPT_DELIMITER}

#define CLI_MODEL_DATA_HELP                                                                \
  "  --model FILE         the model (a file saved by backprop train --save)\n"              \
  "  --data PATH          the data: an IDX directory (its t10k test files), an IDX\n"      \
  "                       images file, a CSV file or a FANN file\n"                         \
  "  --format F           idx|csv|fann (default: chosen from the path, as for train)\n"   \
  "  --label-column N     CSV: column of the integer class label (default -1: last)\n"    \
  "  --targets K          CSV: the last K columns are real-valued targets\n"              \
  "  --classes K          CSV: number of classes (default: the model's output width)\n"   \
  "  --delimiter D        CSV: , or ; or tab (default: detected from the first line)\n"   \
  "  --backend B          auto|cpu|cuda (default auto)\n"                                   \
  "  --device N           CUDA device (default 0)\n"

typedef struct cli_model_data {
  const char *model, *data;
  bp_backend backend;
  int device;
  cli_data_options data_opt;
  int label_column_given;
  char *class_names; /* the model's "classes" metadata (class names), or NULL; owned */
} cli_model_data;

void cli_model_data_init(cli_model_data *md);
/* Handles one of the MD_OPT_* options: 0 done, -1 bad value (usage error
 * printed), 1 not one of them. */
int cli_model_data_option(cli_args *a, int id, const char *value, cli_model_data *md);
/* The whole command line of eval and predict: the MD_OPT_* options, help_id
 * (prints help to stdout) and one flag of the command's own (flag_id sets
 * *flag to 1); then the check below. Returns -1 to go on, or the exit code
 * to return (0 after --help, CLI_EXIT_USAGE after a usage error). */
int cli_model_data_parse(const char *cmd, int argc, char **argv, const cli_option *options,
                         int help_id, void (*help)(FILE *), int flag_id, int *flag,
                         cli_model_data *md);
/* After parsing: --model and --data are required. 0 or CLI_EXIT_USAGE. */
int cli_model_data_check(const char *cmd, const cli_model_data *md);
/* Creates the context, loads the model and reads the data (CSV labels
 * one-hot over the model's output width unless --classes says otherwise;
 * class names mapped to ids by the model's "classes" metadata, kept in
 * md->class_names; without check_outputs, a CSV file of inputs alone is
 * accepted) and
 * checks that the input widths (and, with check_outputs, the output widths)
 * agree. 0, or an exit code after a message; on failure nothing is left to
 * free. */
int cli_model_data_load(const char *cmd, cli_model_data *md, int check_outputs,
                        bp_context **ctx, bp_network **net, bp_data **data);

#endif /* BP_CLI_MODEL_DATA_H */
