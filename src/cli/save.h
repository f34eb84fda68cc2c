/*
 * save.h - saving a trained model with its training metadata.
 *
 * bp_network_save_ex (atomic) with these metadata strings besides the
 * library's own: epochs, batch, lr, seed, train_cost, train_accuracy,
 * test_cost, test_accuracy (only with a test set), data, test, backend,
 * date (UTC, ISO 8601), interrupted ("true" when Ctrl-C stopped the run),
 * classes (CSV class names, '\n'-separated, in id order: eval and predict
 * map names with it).
 * Numbers are written with "%.9g" ('.' whatever the environment).
 */
#ifndef BP_CLI_SAVE_H
#define BP_CLI_SAVE_H

#include "backprop.h"
#include "run.h"

/* 0 on success; CLI_EXIT_FAILURE after a message. */
int cli_save_model(const char *cmd, const bp_network *net, const char *path, const cli_run *run);

#endif /* BP_CLI_SAVE_H */
