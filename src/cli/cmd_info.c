/* cmd_info.c - `backprop info FILE`: what a model file holds. */
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "cli.h"
#include "commands.h"
#include "json_out.h"

#define CMD "info"

enum { OPT_HELP, OPT_JSON };

static const cli_option options[] = {
    {"help", 'h', 0, OPT_HELP}, {"json", 0, 0, OPT_JSON}, {NULL, 0, 0, 0}};

static void help(FILE *f) {
  fputs("Usage: backprop info [--json] FILE\n"
        "\n"
        "Prints what a model file holds without building a network: the layer\n"
        "widths, the number of weight layers and parameters, and the metadata\n"
        "(format, version, activation, cost and, for files saved by backprop train,\n"
        "the training hyperparameters, results, data and date).\n"
        "\n"
        "Options:\n"
        "  --json               print one JSON object: file, sizes, layers, parameters,\n"
        "                       metadata\n"
        "  -h, --help           this help\n"
        "\n"
        "Exit status: 0 done, 1 failure (unreadable or malformed file), 2 usage error.\n",
        f);
}

static void print_json(const char *path, const bp_model_info *info) {
  printf("{\"file\": ");
  cli_json_string(stdout, path);
  printf(", \"sizes\": [");
  for (int i = 0; i < info->n_sizes; ++i) printf("%s%d", i ? ", " : "", info->sizes[i]);
  printf("], \"layers\": %d, \"parameters\": %zu, \"metadata\": {", info->n_sizes - 1,
         info->n_params);
  for (int i = 0; i < info->n_meta; ++i) {
    if (i) printf(", ");
    cli_json_string(stdout, info->meta_keys[i]);
    printf(": ");
    cli_json_string(stdout, info->meta_values[i]);
  }
  printf("}}\n");
}

/* Metadata is whatever the file's author wrote: control characters (ESC
 * sequences that retitle the window or clear the screen, C1 controls such
 * as CSI, carriage returns that overwrite a line) are shown escaped, never
 * sent to the terminal. --json escapes them already. */
static void put_escaped(const char *s) {
  const unsigned char *p = (const unsigned char *)s;
  for (; *p; ++p) {
    if (*p < 0x20 || *p == 0x7f) {
      printf("\\x%02x", *p);
    } else if (*p == 0xc2 && p[1] >= 0x80 && p[1] <= 0x9f) {
      printf("\\u%04x", p[1]); /* U+0080..U+009F, the C1 controls */
      ++p;
    } else if (*p == '\\') {
      fputs("\\\\", stdout);
    } else {
      putchar(*p);
    }
  }
}

static void print_text(const char *path, const bp_model_info *info) {
  put_escaped(path);
  printf("\n  sizes       ");
  for (int i = 0; i < info->n_sizes; ++i) printf("%s%d", i ? "," : "", info->sizes[i]);
  printf("\n  layers      %d weight layer%s\n  parameters  %zu\n", info->n_sizes - 1,
         info->n_sizes == 2 ? "" : "s", info->n_params);
  if (info->n_meta > 0) printf("  metadata\n");
  size_t width = 0;
  for (int i = 0; i < info->n_meta; ++i)
    if (strlen(info->meta_keys[i]) > width) width = strlen(info->meta_keys[i]);
  for (int i = 0; i < info->n_meta; ++i) {
    printf("    ");
    put_escaped(info->meta_keys[i]);
    printf("%*s  ", (int)(width - strlen(info->meta_keys[i])), "");
    put_escaped(info->meta_values[i]);
    putchar('\n');
  }
}

int cli_cmd_info(int argc, char **argv) {
  const char *path = NULL;
  int json = 0;
  cli_args a;
  cli_args_init(&a, CMD, argc, argv);
  const char *v;
  int id;
  while ((id = cli_next_option(&a, options, &v)) != CLI_ARGS_END) {
    if (id == CLI_ARGS_ERROR) return CLI_EXIT_USAGE;
    if (id == OPT_HELP) {
      help(stdout);
      return fflush(stdout) == 0 ? 0 : CLI_EXIT_FAILURE;
    }
    if (id == OPT_JSON) json = 1;
    if (id == CLI_ARGS_POSITIONAL) {
      if (path) return cli_usage_error(CMD, "one model file at a time ('%s' and '%s')", path, v);
      path = v;
    }
  }
  if (!path) return cli_usage_error(CMD, "missing the model FILE");

  int code = 0;
  bp_context *ctx = cli_context_create(CMD, BP_BACKEND_CPU, 0, &code);
  if (!ctx) return code;
  bp_model_info *info = NULL;
  if (bp_model_info_read(ctx, path, &info) != BP_OK) {
    code = cli_fail(CMD, "%s", bp_context_last_error(ctx));
  } else {
    if (json)
      print_json(path, info);
    else
      print_text(path, info);
    if (fflush(stdout) != 0 || ferror(stdout))
      code = cli_fail(CMD, "cannot write to standard output");
  }
  bp_model_info_free(info);
  bp_context_destroy(ctx);
  return code;
}
