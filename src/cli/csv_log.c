/* csv_log.c - the per-epoch CSV log (see csv_log.h). */
#include "csv_log.h"

#include <errno.h>
#include <math.h>
#include <string.h>

#include "cli.h"

int cli_csv_log_open(cli_csv_log *log, const char *cmd, const char *path) {
  log->path = path;
  log->f = fopen(path, "w");
  if (!log->f) return cli_fail(cmd, "cannot create log %s: %s", path, strerror(errno));
  if (fprintf(log->f, "epoch,train_cost,test_cost,test_accuracy,seconds,train_accuracy\n") < 0 ||
      fflush(log->f) != 0) {
    int err = errno;
    fclose(log->f);
    log->f = NULL;
    return cli_fail(cmd, "cannot write log %s: %s", path, strerror(err));
  }
  return 0;
}

/* A number for the log: empty when not finite (no test set). */
static int field(FILE *f, double v) { return isfinite(v) ? fprintf(f, "%.9g", v) : 0; }

int cli_csv_log_row(cli_csv_log *log, const char *cmd, const cli_epoch *e) {
  if (!log->f) return 0;
  FILE *f = log->f;
  if (fprintf(f, "%d,", e->epoch) < 0 || field(f, e->train_cost) < 0 || fputc(',', f) == EOF ||
      field(f, e->test_cost) < 0 || fputc(',', f) == EOF || field(f, e->test_accuracy) < 0 ||
      fprintf(f, ",%.3f,", e->seconds) < 0 || field(f, e->train_accuracy) < 0 ||
      fputc('\n', f) == EOF || fflush(f) != 0)
    return cli_fail(cmd, "cannot write log %s: %s", log->path, strerror(errno));
  return 0;
}

int cli_csv_log_close(cli_csv_log *log, const char *cmd) {
  if (!log->f) return 0;
  int bad = ferror(log->f);
  int err = errno;
  if (fclose(log->f) != 0) {
    bad = 1;
    err = errno;
  }
  log->f = NULL;
  if (bad) return cli_fail(cmd, "cannot write log %s: %s", log->path, strerror(err));
  return 0;
}
