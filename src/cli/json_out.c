/* json_out.c - JSON output (see json_out.h). */
#include "json_out.h"

#include <math.h>
#include <stdlib.h>

#include "cli.h"

void cli_json_string(FILE *f, const char *s) {
  char *clean = cli_utf8_sanitized(s ? s : "");
  const char *p = clean ? clean : "?";
  fputc('"', f);
  for (; *p; ++p) {
    unsigned char c = (unsigned char)*p;
    if (c == '"' || c == '\\')
      fprintf(f, "\\%c", c);
    else if (c == '\n')
      fputs("\\n", f);
    else if (c == '\t')
      fputs("\\t", f);
    else if (c < 0x20)
      fprintf(f, "\\u%04x", c);
    else
      fputc(c, f);
  }
  fputc('"', f);
  free(clean);
}

void cli_json_number(FILE *f, double v) {
  if (isfinite(v))
    fprintf(f, "%.9g", v);
  else
    fputs("null", f);
}

static void key(FILE *f, const char *name, int *first) {
  fprintf(f, "%s\"%s\": ", *first ? "" : ", ", name);
  *first = 0;
}

void cli_json_train_result(FILE *f, const cli_run *run) {
  int first = 1;
  fputc('{', f);
  key(f, "test_accuracy", &first);
  cli_json_number(f, run->test_accuracy);
  key(f, "test_cost", &first);
  cli_json_number(f, run->test_cost);
  key(f, "train_cost", &first);
  cli_json_number(f, run->train_cost);
  key(f, "train_accuracy", &first);
  cli_json_number(f, run->train_accuracy);
  key(f, "task", &first);
  cli_json_string(f, run->regression ? "regression" : "classification");
  key(f, "test_mse", &first);
  cli_json_number(f, run->test_mse);
  key(f, "validation_cost", &first);
  cli_json_number(f, run->val_cost);
  key(f, "validation_accuracy", &first);
  cli_json_number(f, run->val_accuracy);
  key(f, "best_epoch", &first);
  fprintf(f, "%d", run->best_epoch);
  key(f, "stopped_early", &first);
  fputs(run->stopped_early ? "true" : "false", f);
  key(f, "epochs", &first);
  fprintf(f, "%d", run->epochs_done);
  key(f, "seconds", &first);
  fprintf(f, "%.3f", run->seconds);
  key(f, "load_seconds", &first);
  fprintf(f, "%.3f", run->load_seconds);
  key(f, "backend", &first);
  cli_json_string(f, run->backend);
  key(f, "math", &first);
  cli_json_string(f, run->math ? run->math : "fp32");
  key(f, "deterministic", &first);
  fputs(run->deterministic ? "true" : "false", f);
  key(f, "cuda_graphs", &first);
  fputs(run->cuda_graphs ? "true" : "false", f);
  key(f, "threads", &first);
  fprintf(f, "%d", run->threads);
  key(f, "kernels", &first);
  cli_json_string(f, run->kernels ? run->kernels : "reference");
  key(f, "products", &first);
  cli_json_string(f, run->products ? run->products : "cublas");
  key(f, "world_size", &first);
  fprintf(f, "%d", run->world_size);
  key(f, "comm_ms_per_step", &first);
  fprintf(f, "%.6g", run->comm_ms_per_step);
  key(f, "comm_hidden_share", &first);
  fprintf(f, "%.4g", run->comm_hidden_share);
  key(f, "device", &first);
  if (run->device >= 0)
    fprintf(f, "%d", run->device);
  else
    fputs("null", f); /* the CPU backend */
  key(f, "sizes", &first);
  fputc('[', f);
  for (int i = 0; i < run->n_sizes; ++i) fprintf(f, "%s%d", i ? ", " : "", run->sizes[i]);
  fputc(']', f);
  key(f, "parameters", &first);
  fprintf(f, "%zu", run->n_params);
  key(f, "batch", &first);
  fprintf(f, "%d", run->batch);
  key(f, "lr", &first);
  cli_json_number(f, run->lr);
  key(f, "seed", &first);
  fprintf(f, "%llu", (unsigned long long)run->seed);
  key(f, "epochs_requested", &first);
  fprintf(f, "%d", run->epochs_requested);
  key(f, "train_examples", &first);
  fprintf(f, "%d", run->n_train);
  key(f, "test_examples", &first);
  fprintf(f, "%d", run->n_test);
  key(f, "data", &first);
  cli_json_string(f, run->data_path);
  key(f, "test", &first);
  if (run->test_path)
    cli_json_string(f, run->test_path);
  else
    fputs("null", f);
  key(f, "model", &first);
  if (run->saved_to)
    cli_json_string(f, run->saved_to);
  else
    fputs("null", f);
  key(f, "interrupted", &first);
  fputs(run->interrupted ? "true" : "false", f);
  key(f, "numeric_failure", &first);
  fputs(run->numeric_failure ? "true" : "false", f);
  key(f, "not_learning", &first);
  fputs(run->warning ? "true" : "false", f);
  key(f, "warning", &first);
  if (run->warning) cli_json_string(f, run->warning);
  else fputs("null", f);
  key(f, "history", &first);
  fputc('[', f);
  for (int i = 0; i < run->n_history; ++i) {
    const cli_epoch *e = &run->history[i];
    fprintf(f, "%s{\"epoch\": %d, \"train_cost\": ", i ? ", " : "", e->epoch);
    cli_json_number(f, e->train_cost);
    fputs(", \"train_accuracy\": ", f);
    cli_json_number(f, e->train_accuracy);
    fputs(", \"test_cost\": ", f);
    cli_json_number(f, e->test_cost);
    fputs(", \"test_accuracy\": ", f);
    cli_json_number(f, e->test_accuracy);
    fputs(", \"test_mse\": ", f);
    cli_json_number(f, e->test_mse);
    fputs(", \"validation_cost\": ", f);
    cli_json_number(f, e->val_cost);
    fputs(", \"validation_accuracy\": ", f);
    cli_json_number(f, e->val_accuracy);
    fputs(", \"lr\": ", f);
    cli_json_number(f, e->lr);
    fprintf(f, ", \"seconds\": %.3f}", e->seconds);
  }
  fputs("]}\n", f);
}
