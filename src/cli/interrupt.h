/*
 * interrupt.h - Ctrl-C during training.
 *
 * The first SIGINT (or SIGTERM) only sets a flag: training stops after the
 * current epoch, which bp_train_epoch cannot cut short, and the command
 * saves what it reached (with --save) and exits with 130. The handler resets
 * itself, so a second Ctrl-C ends the process at once, the usual way.
 */
#ifndef BP_CLI_INTERRUPT_H
#define BP_CLI_INTERRUPT_H

/* Installs the handlers (even where the shell started the command with
 * SIGINT ignored, as it does for background jobs, so that scripts and tests
 * can stop a run cleanly with kill -INT). */
void cli_interrupt_install(void);
/* Restores the default handlers. */
void cli_interrupt_uninstall(void);
/* Nonzero once a signal arrived. */
int cli_interrupted(void);

#endif /* BP_CLI_INTERRUPT_H */
