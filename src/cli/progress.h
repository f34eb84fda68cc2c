/*
 * progress.h - what `backprop train` shows while it works (on stderr).
 *
 *   - always (unless --quiet) one line per epoch: costs, accuracy, time and
 *     examples per second;
 *   - on a terminal (isatty(stderr)) also a live bar under those lines,
 *     redrawn with '\r' about a hundred times per epoch from the library's
 *     progress callback (bp_train_epoch_ex): examples done in the epoch,
 *     examples/s, the running train cost, and the time left in the epoch and
 *     in the whole run. Off a terminal nothing is drawn inside an epoch, and
 *     training runs without the callback (no extra device waits).
 */
#ifndef BP_CLI_PROGRESS_H
#define BP_CLI_PROGRESS_H

#include "cli.h"
#include "run.h"

typedef struct cli_progress {
  int enabled;     /* not --quiet */
  int tty;         /* stderr is a terminal: draw the bar */
  int bar_visible; /* the bar is on the current line */
  int epochs;      /* requested */
  long examples;   /* per epoch */
  double train_seconds; /* sum over the epochs so far */
} cli_progress;

void cli_progress_init(cli_progress *p, int quiet, int epochs, int examples_per_epoch);
/* Draws the empty bar (terminals only) before the first epoch. */
void cli_progress_start(cli_progress *p);
/* On a terminal: redraws the bar for epoch `epoch` (1-based), of which
 * `done` of `total` examples have taken their step, `elapsed` seconds into
 * the epoch, with the running mean cost. */
void cli_progress_batch(cli_progress *p, int epoch, int done, int total, float running_cost,
                        double elapsed);
/* Reports a finished epoch. */
void cli_progress_epoch(cli_progress *p, const cli_epoch *e);
/* Prints a line of text above the bar (not shown with --quiet). */
void cli_progress_note(cli_progress *p, const char *fmt, ...) CLI_PRINTF(2, 3);
/* Removes the bar. */
void cli_progress_finish(cli_progress *p);

#endif /* BP_CLI_PROGRESS_H */
