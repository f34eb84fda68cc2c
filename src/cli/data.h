/*
 * data.h - reading data sets for the command, by format.
 *
 * Formats (--format, or chosen from the path):
 *   idx   a directory holding the four MNIST-style files (train-images-idx3-ubyte,
 *         train-labels-idx1-ubyte, t10k-images-idx3-ubyte, t10k-labels-idx1-ubyte,
 *         each optionally .gz), or one images file whose labels file is found by
 *         replacing "images-idx3" with "labels-idx1" in its name
 *   csv   numeric columns; --label-column and --targets choose the targets
 *   fann  FANN training data
 * Chosen from the path: a directory, or a name containing "-ubyte" or "idx3",
 * is idx; a name ending in ".csv" or ".tsv" is csv; anything else is fann.
 * The readers themselves are the library's (bp_data_read_*).
 */
#ifndef BP_CLI_DATA_H
#define BP_CLI_DATA_H

#include "backprop.h"

typedef enum cli_format {
  CLI_FORMAT_AUTO = 0,
  CLI_FORMAT_IDX = 1,
  CLI_FORMAT_CSV = 2,
  CLI_FORMAT_FANN = 3
} cli_format;

/* "auto", "idx", "csv", "fann", NULL: for cli_parse_choice. */
extern const char *const cli_format_names[];

typedef struct cli_data_options {
  cli_format format;
  int label_column; /* CSV: column of the class label; negative counts from the end */
  int n_targets;    /* CSV: > 0: the last n_targets columns are real-valued targets */
  int n_classes;    /* CSV labels: number of classes; 0: max label + 1 */
  int delimiter;    /* CSV: 0 detect, or ',', ';', '\t' (--delimiter) */
  const char *class_names; /* CSV: a model's class names, '\n'-separated (ids in order), or NULL */
  int inputs_only;  /* CSV: every column is an input (predict on a file without labels) */
} cli_data_options;

/* "auto", ",", ";", "tab", NULL for --delimiter, and the characters they mean. */
extern const char *const cli_delimiter_names[];
extern const int cli_delimiter_chars[];

void cli_data_options_init(cli_data_options *opt);

/* The format path is read as: requested, or chosen from the path. */
cli_format cli_data_format(const char *path, cli_format requested);
/* 1 if path is an existing directory. */
int cli_is_directory(const char *path);

/* Reads a training set. An IDX directory also gives its test files in *test
 * (when test is not NULL); other paths set *test to NULL. Prints the failure
 * (with the library's message) and returns CLI_EXIT_FAILURE, else 0. */
int cli_data_read_train(const char *cmd, bp_context *ctx, const char *path,
                        const cli_data_options *opt, bp_data **train, bp_data **test);
/* Reads a set to evaluate or predict on: an IDX directory gives its test
 * (t10k) files. n_classes_hint (0: none) is the number of classes to one-hot
 * CSV labels over when opt->n_classes is 0, so that a file lacking the
 * highest class still matches a network's output width. */
int cli_data_read_eval(const char *cmd, bp_context *ctx, const char *path,
                       const cli_data_options *opt, int n_classes_hint, bp_data **out);

#endif /* BP_CLI_DATA_H */
