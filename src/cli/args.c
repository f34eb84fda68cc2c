/* args.c - command-line option parsing (see args.h). */
#include "args.h"

#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"

void cli_args_init(cli_args *a, const char *cmd, int argc, char **argv) {
  a->cmd = cmd;
  a->argc = argc;
  a->argv = argv;
  a->next = 1;
  a->options_done = 0;
  a->current = "";
}

int cli_next_option(cli_args *a, const cli_option *opts, const char **value) {
  *value = NULL;
  if (a->next >= a->argc) return CLI_ARGS_END;
  const char *arg = a->argv[a->next++];
  a->current = arg;
  if (a->options_done || arg[0] != '-' || arg[1] == '\0') {
    *value = arg;
    return CLI_ARGS_POSITIONAL;
  }
  if (strcmp(arg, "--") == 0) {
    a->options_done = 1;
    return cli_next_option(a, opts, value);
  }
  const cli_option *found = NULL;
  const char *inline_value = NULL;
  if (arg[1] == '-') {
    const char *name = arg + 2;
    const char *eq = strchr(name, '=');
    size_t len = eq ? (size_t)(eq - name) : strlen(name);
    for (const cli_option *o = opts; o->name; ++o) {
      if (strlen(o->name) == len && strncmp(o->name, name, len) == 0) {
        found = o;
        break;
      }
    }
    if (found && eq) inline_value = eq + 1;
  } else if (arg[2] == '\0') {
    for (const cli_option *o = opts; o->name; ++o) {
      if (o->short_name && o->short_name == arg[1]) {
        found = o;
        break;
      }
    }
  }
  if (!found) {
    cli_usage_error(a->cmd, "unknown option '%s'", arg);
    return CLI_ARGS_ERROR;
  }
  if (!found->takes_value) {
    if (inline_value) {
      cli_usage_error(a->cmd, "option '--%s' takes no value", found->name);
      return CLI_ARGS_ERROR;
    }
    return found->id;
  }
  if (!inline_value) {
    if (a->next >= a->argc) {
      cli_usage_error(a->cmd, "option '%s' needs a value", arg);
      return CLI_ARGS_ERROR;
    }
    inline_value = a->argv[a->next++];
  }
  *value = inline_value;
  return found->id;
}

static int bad_value(const cli_args *a, const char *s, const char *what) {
  cli_usage_error(a->cmd, "invalid value '%s' for %s: %s", s, a->current, what);
  return -1;
}

int cli_parse_int(const cli_args *a, const char *s, long min, long max, int *out) {
  char *end = NULL;
  errno = 0;
  long v = strtol(s, &end, 10);
  char what[96];
  snprintf(what, sizeof what, "expected an integer from %ld to %ld", min, max);
  if (end == s || *end != '\0' || errno == ERANGE || v < min || v > max || v < INT_MIN ||
      v > INT_MAX)
    return bad_value(a, s, what);
  *out = (int)v;
  return 0;
}

int cli_parse_u64(const cli_args *a, const char *s, uint64_t *out) {
  char *end = NULL;
  errno = 0;
  const char *p = s;
  while (*p == ' ') ++p;
  if (*p < '0' || *p > '9') return bad_value(a, s, "expected a non-negative integer");
  unsigned long long v = strtoull(p, &end, 10);
  if (*end != '\0' || errno == ERANGE)
    return bad_value(a, s, "expected a non-negative integer below 2^64");
  *out = (uint64_t)v;
  return 0;
}

int cli_parse_float(const cli_args *a, const char *s, double min, double max, int exclusive_min,
                    float *out) {
  char *end = NULL;
  errno = 0;
  double v = strtod(s, &end); /* the command never calls setlocale: '.' */
  char what[96];
  snprintf(what, sizeof what, "expected a number %s %g and <= %g", exclusive_min ? ">" : ">=",
           min, max);
  if (end == s || *end != '\0' || !isfinite(v) || v > max || (exclusive_min ? v <= min : v < min))
    return bad_value(a, s, what);
  *out = (float)v;
  if (!isfinite(*out) || (exclusive_min && *out <= (float)min)) return bad_value(a, s, what);
  return 0;
}

int cli_parse_int_list(const cli_args *a, const char *s, long min, long max, int max_count,
                       int **out, int *count) {
  *out = NULL;
  *count = 0;
  int *v = malloc(sizeof(int) * (size_t)max_count);
  if (!v) {
    cli_fail(a->cmd, "out of memory");
    return -1;
  }
  char what[128];
  snprintf(what, sizeof what,
           "expected 1 to %d comma-separated integers, each from %ld to %ld", max_count, min, max);
  const char *p = s;
  int n = 0;
  for (;;) {
    char *end = NULL;
    errno = 0;
    long x = strtol(p, &end, 10);
    if (end == p || errno == ERANGE || x < min || x > max || n == max_count ||
        (*end != ',' && *end != '\0')) {
      free(v);
      return bad_value(a, s, what);
    }
    v[n++] = (int)x;
    if (*end == '\0') break;
    p = end + 1;
  }
  *out = v;
  *count = n;
  return 0;
}

int cli_parse_choice(const cli_args *a, const char *s, const char *const *choices, int *out) {
  for (int i = 0; choices[i]; ++i) {
    if (strcmp(s, choices[i]) == 0) {
      *out = i;
      return 0;
    }
  }
  char what[160] = "expected one of ";
  for (int i = 0; choices[i]; ++i) {
    if (i) strncat(what, "|", sizeof what - strlen(what) - 1);
    strncat(what, choices[i], sizeof what - strlen(what) - 1);
  }
  return bad_value(a, s, what);
}
