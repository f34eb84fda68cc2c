/* data.c - reading data sets by format (see data.h). */
#define _POSIX_C_SOURCE 200809L

#include "data.h"

#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "cli.h"

const char *const cli_format_names[] = {"auto", "idx", "csv", "fann", NULL};
const char *const cli_delimiter_names[] = {"auto", ",", ";", "tab", NULL};
const int cli_delimiter_chars[] = {0, ',', ';', '\t'};

void cli_data_options_init(cli_data_options *opt) {
  opt->format = CLI_FORMAT_AUTO;
  opt->label_column = -1;
  opt->n_targets = 0;
  opt->n_classes = 0;
  opt->delimiter = 0;
  opt->class_names = NULL;
  opt->inputs_only = 0;
}

int cli_is_directory(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0 && S_ISDIR(sb.st_mode);
}

static int exists(const char *path) {
  struct stat sb;
  return stat(path, &sb) == 0;
}

static int ends_with(const char *s, const char *suffix) {
  size_t n = strlen(s), m = strlen(suffix);
  return n >= m && strcmp(s + n - m, suffix) == 0;
}

cli_format cli_data_format(const char *path, cli_format requested) {
  if (requested != CLI_FORMAT_AUTO) return requested;
  if (cli_is_directory(path)) return CLI_FORMAT_IDX;
  const char *base = strrchr(path, '/');
  base = base ? base + 1 : path;
  if (strstr(base, "-ubyte") || strstr(base, "idx3")) return CLI_FORMAT_IDX;
  if (ends_with(base, ".csv") || ends_with(base, ".CSV") || ends_with(base, ".tsv") ||
      ends_with(base, ".TSV"))
    return CLI_FORMAT_CSV;
  return CLI_FORMAT_FANN;
}

/* dir/base, or dir/base.gz when only that exists; NULL (after a message) if neither. */
static char *idx_file_in(const char *cmd, const char *dir, const char *base) {
  size_t n = strlen(dir) + strlen(base) + 5;
  char *p = malloc(n);
  if (!p) {
    cli_fail(cmd, "out of memory");
    return NULL;
  }
  snprintf(p, n, "%s/%s", dir, base);
  if (exists(p)) return p;
  snprintf(p, n, "%s/%s.gz", dir, base);
  if (exists(p)) return p;
  cli_fail(cmd, "%s: neither %s nor %s.gz exists", dir, base, base);
  free(p);
  return NULL;
}

/* The labels file that goes with an IDX images file; NULL after a message. */
static char *idx_labels_for(const char *cmd, const char *images) {
  const char *base = strrchr(images, '/');
  base = base ? base + 1 : images;
  const char *hit = NULL;
  for (const char *p = strstr(base, "images-idx3"); p; p = strstr(p + 1, "images-idx3")) hit = p;
  if (!hit) {
    cli_fail(cmd,
             "%s: cannot tell where its labels are (an IDX images file's name must contain "
             "\"images-idx3\", its labels file \"labels-idx1\" in the same place), or pass the "
             "directory holding all four files",
             images);
    return NULL;
  }
  size_t len = strlen(images);
  char *labels = malloc(len + 1);
  if (!labels) {
    cli_fail(cmd, "out of memory");
    return NULL;
  }
  memcpy(labels, images, len + 1);
  memcpy(labels + (hit - images), "labels-idx1", 11);
  return labels;
}

static void csv_options(const cli_data_options *opt, int n_classes_hint, bp_csv_options *csv) {
  bp_csv_options_init(csv);
  csv->label_column = opt->label_column;
  csv->n_targets = opt->n_targets;
  csv->n_classes = opt->n_classes ? opt->n_classes : n_classes_hint;
  csv->delimiter = opt->delimiter;
  csv->class_names = opt->class_names;
  csv->inputs_only = opt->inputs_only;
}

/* One file (not an IDX directory) in the given format. */
static int read_file(const char *cmd, bp_context *ctx, const char *path, cli_format fmt,
                     const cli_data_options *opt, int n_classes_hint, bp_data **out) {
  bp_status st;
  if (fmt == CLI_FORMAT_IDX) {
    char *labels = idx_labels_for(cmd, path);
    if (!labels) return CLI_EXIT_FAILURE;
    st = bp_data_read_idx(ctx, path, labels, out);
    free(labels);
  } else if (fmt == CLI_FORMAT_CSV) {
    bp_csv_options csv;
    csv_options(opt, n_classes_hint, &csv);
    st = bp_data_read_csv(ctx, path, &csv, out);
    if (st == BP_ERR_FORMAT && csv.n_classes > 0 && !opt->n_classes && !opt->n_targets) {
      /* A label past the model's outputs read as "a bad label" when the
       * real problem is the shape: read again without the hint and, if that
       * works, say that the data has more classes than the model outputs. */
      csv.n_classes = 0;
      bp_data *d = NULL;
      if (bp_data_read_csv(ctx, path, &csv, &d) == BP_OK && d->n_out > n_classes_hint) {
        int classes = d->n_out;
        bp_data_free(d);
        return cli_fail(cmd, "%s has labels of %d classes (0..%d) but the model has %d outputs",
                        path, classes, classes - 1, n_classes_hint);
      }
      bp_data_free(d);
      csv.n_classes = n_classes_hint;
      st = bp_data_read_csv(ctx, path, &csv, out); /* its own message again */
    }
  } else {
    st = bp_data_read_fann(ctx, path, out);
  }
  if (st != BP_OK) return cli_fail(cmd, "cannot read %s: %s", path, bp_context_last_error(ctx));
  return 0;
}

int cli_data_read_train(const char *cmd, bp_context *ctx, const char *path,
                        const cli_data_options *opt, bp_data **train, bp_data **test) {
  *train = NULL;
  if (test) *test = NULL;
  cli_format fmt = cli_data_format(path, opt->format);
  if (fmt == CLI_FORMAT_IDX && cli_is_directory(path)) {
    bp_data *te = NULL;
    if (bp_data_read_idx_dir(ctx, path, train, &te) != BP_OK)
      return cli_fail(cmd, "cannot read %s: %s", path, bp_context_last_error(ctx));
    if (test)
      *test = te;
    else
      bp_data_free(te);
    return 0;
  }
  if (cli_is_directory(path))
    return cli_fail(cmd, "%s is a directory; only --format idx reads directories", path);
  return read_file(cmd, ctx, path, fmt, opt, 0, train);
}

int cli_data_read_eval(const char *cmd, bp_context *ctx, const char *path,
                       const cli_data_options *opt, int n_classes_hint, bp_data **out) {
  *out = NULL;
  cli_format fmt = cli_data_format(path, opt->format);
  if (fmt == CLI_FORMAT_IDX && cli_is_directory(path)) {
    char *images = idx_file_in(cmd, path, "t10k-images-idx3-ubyte");
    char *labels = images ? idx_file_in(cmd, path, "t10k-labels-idx1-ubyte") : NULL;
    int code = CLI_EXIT_FAILURE;
    if (labels) {
      if (bp_data_read_idx(ctx, images, labels, out) == BP_OK)
        code = 0;
      else
        cli_fail(cmd, "cannot read %s: %s", path, bp_context_last_error(ctx));
    }
    free(images);
    free(labels);
    return code;
  }
  if (cli_is_directory(path))
    return cli_fail(cmd, "%s is a directory; only --format idx reads directories", path);
  return read_file(cmd, ctx, path, fmt, opt, n_classes_hint, out);
}
