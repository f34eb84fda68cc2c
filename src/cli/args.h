/*
 * args.h - command-line option parsing for the subcommands.
 *
 * Options are long ("--epochs 5" or "--epochs=5"); a few have a one-letter
 * alias ("-h"). "--" ends the options. Every parse failure prints one line
 * ("backprop CMD: ...; see backprop CMD --help") and reports CLI_EXIT_USAGE.
 */
#ifndef BP_CLI_ARGS_H
#define BP_CLI_ARGS_H

#include <stdint.h>

typedef struct cli_option {
  const char *name;  /* without the leading "--" */
  char short_name;   /* 0 for none */
  int takes_value;   /* 1: the option needs a value */
  int id;            /* returned by cli_next_option; >= 0 */
} cli_option;

enum {
  CLI_ARGS_END = -1,        /* no more arguments */
  CLI_ARGS_POSITIONAL = -2, /* *value is a non-option argument */
  CLI_ARGS_ERROR = -3       /* usage error, already printed */
};

typedef struct cli_args {
  const char *cmd; /* subcommand name, for messages */
  int argc;
  char **argv;
  int next;        /* index of the next argument to read */
  int options_done;
  const char *current; /* the option being handled, as written, for messages */
} cli_args;

/* argv[0] is the subcommand itself; parsing starts at argv[1]. */
void cli_args_init(cli_args *a, const char *cmd, int argc, char **argv);
/* Next option: its id (value in *value, or NULL), or one of the CLI_ARGS_* codes.
 * opts ends with an entry whose name is NULL. */
int cli_next_option(cli_args *a, const cli_option *opts, const char **value);

/* Value parsers: 0 on success; on failure they print a usage error naming
 * a->current and return -1. */
int cli_parse_int(const cli_args *a, const char *s, long min, long max, int *out);
int cli_parse_u64(const cli_args *a, const char *s, uint64_t *out);
/* A finite float in (min, max] when exclusive_min, else [min, max]. */
int cli_parse_float(const cli_args *a, const char *s, double min, double max, int exclusive_min,
                    float *out);
/* A comma-separated list of 1..max_count integers, each in [min, max].
 * *out is malloc'd; the caller frees it. */
int cli_parse_int_list(const cli_args *a, const char *s, long min, long max, int max_count,
                       int **out, int *count);
/* One of the names in choices (NULL-terminated): its index. */
int cli_parse_choice(const cli_args *a, const char *s, const char *const *choices, int *out);

#endif /* BP_CLI_ARGS_H */
