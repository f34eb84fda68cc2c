/*
 * json_out.h - the --json output of the subcommands: one JSON object on
 * stdout. Numbers are printed with "%.9g" (enough to round-trip a float; '.'
 * whatever the environment); a number that is not finite is printed as null.
 */
#ifndef BP_CLI_JSON_OUT_H
#define BP_CLI_JSON_OUT_H

#include <stdio.h>

#include "run.h"

/* A JSON string literal (quotes, escapes; bytes that are not UTF-8 become '?'). */
void cli_json_string(FILE *f, const char *s);
/* A number, or null when not finite. */
void cli_json_number(FILE *f, double v);

/* The object `backprop train --json` prints:
 *   test_accuracy, test_cost, train_cost, train_accuracy, epochs, seconds,
 *   load_seconds, backend, device (null on the CPU), sizes, parameters, batch, lr, seed,
 *   epochs_requested, train_examples, test_examples, data, test, model
 *   (the saved file or null), interrupted, numeric_failure, history (one
 *   object per epoch: epoch, train_cost, test_cost, test_accuracy, seconds). */
void cli_json_train_result(FILE *f, const cli_run *run);

#endif /* BP_CLI_JSON_OUT_H */
