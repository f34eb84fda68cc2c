/*
 * cli.h - what the parts of the `backprop` command share: exit codes, the
 * two kinds of error message, and small utilities.
 *
 * Conventions of the command:
 *   exit 0    success
 *   exit 1    failure (a file could not be read or written, training failed);
 *             the message carries the library's detail (bp_context_last_error)
 *   exit 2    usage error (unknown option, bad value, missing option); one line
 *             naming the problem and "see backprop CMD --help"
 *   exit 130  `backprop train` stopped by Ctrl-C (SIGINT) after a clean stop
 *             (and a clean save when --save was given)
 * Results go to stdout; progress, notes and errors go to stderr.
 * The command never calls setlocale, so every number it prints uses '.'.
 */
#ifndef BP_CLI_H
#define BP_CLI_H

#include <stdint.h>
#include <stdio.h>

#include "backprop.h"

enum {
  CLI_EXIT_OK = 0,
  CLI_EXIT_FAILURE = 1,
  CLI_EXIT_USAGE = 2,
  CLI_EXIT_INTERRUPTED = 130
};

#if defined(__GNUC__)
#define CLI_PRINTF(f, a) __attribute__((format(printf, f, a)))
#else
#define CLI_PRINTF(f, a)
#endif

/* "backprop CMD: MESSAGE; see backprop CMD --help" on stderr. Returns
 * CLI_EXIT_USAGE so callers can `return cli_usage_error(...)`. */
int cli_usage_error(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);
/* "backprop CMD: MESSAGE" on stderr. Returns CLI_EXIT_FAILURE. */
int cli_fail(const char *cmd, const char *fmt, ...) CLI_PRINTF(2, 3);

/* Seconds on a monotonic clock. */
double cli_now(void);
/* The current UTC time as "2024-05-01T12:34:56Z" into buf (>= 21 bytes). */
void cli_utc_date(char *buf, size_t size);
/* A copy of s (malloc'd; NULL when out of memory) with every byte that is not
 * part of valid UTF-8 replaced by '?': model metadata must be UTF-8. */
char *cli_utf8_sanitized(const char *s);
/* Creates a context, or prints why it could not (exit code returned through
 * *code) and returns NULL. */
bp_context *cli_context_create(const char *cmd, bp_backend backend, int device, int *code);
/* Index of the largest of v[0..n-1] (first on ties); n == 1: 1 if v[0] >= 0.5 else 0. */
int cli_argmax(const float *v, int n);

#endif /* BP_CLI_H */
