/*
 * csv_log.h - the --log file of `backprop train`: one CSV row per epoch,
 *   epoch,train_cost,test_cost,test_accuracy,seconds
 * where seconds is the wall time of that epoch (training plus evaluation) and
 * the test fields are empty without a test set. The file is created before
 * training starts (so a bad path fails at once) and each row is flushed as
 * its epoch ends, so an interrupted run keeps the rows it finished.
 * Numbers use '.' whatever the environment (the command never sets a locale).
 */
#ifndef BP_CLI_CSV_LOG_H
#define BP_CLI_CSV_LOG_H

#include <stdio.h>

#include "run.h"

typedef struct cli_csv_log {
  FILE *f;
  const char *path;
} cli_csv_log;

/* Creates (truncates) path and writes the header. 0 on success; on failure a
 * message has been printed and CLI_EXIT_FAILURE is returned. */
int cli_csv_log_open(cli_csv_log *log, const char *cmd, const char *path);
/* Appends a row and flushes it. 0 or CLI_EXIT_FAILURE (after a message). */
int cli_csv_log_row(cli_csv_log *log, const char *cmd, const cli_epoch *e);
/* Closes the file (checked). NULL file: no-op returning 0. */
int cli_csv_log_close(cli_csv_log *log, const char *cmd);

#endif /* BP_CLI_CSV_LOG_H */
