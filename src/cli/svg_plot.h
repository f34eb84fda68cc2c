/*
 * svg_plot.h - the --plot file of `backprop train`: the training curves as one
 * self-contained SVG (no scripts, fonts, styles or images from elsewhere).
 * Top panel: train cost and test cost per epoch; bottom panel: test accuracy
 * per epoch (a note instead when there is no test set). The title names the
 * network and hyperparameters. The file is written to a temporary name in the
 * same directory and renamed over path, so a failed write leaves no half file.
 */
#ifndef BP_CLI_SVG_PLOT_H
#define BP_CLI_SVG_PLOT_H

#include "run.h"

/* 0 on success; CLI_EXIT_FAILURE after printing a message. */
int cli_svg_plot_write(const char *cmd, const char *path, const cli_run *run);

#endif /* BP_CLI_SVG_PLOT_H */
