/*
 * main.c - `backprop`: dispatches to the subcommands (train, eval, predict,
 * info) and answers --help and --version.
 */
#include <stdio.h>
#include <string.h>

#include "backprop.h"
#include "cli.h"
#include "commands.h"

static void usage(FILE *f) {
  fputs("Usage: backprop COMMAND [options]\n"
        "\n"
        "Trains fully-connected sigmoid networks by backpropagation, on CUDA or the CPU.\n"
        "\n"
        "Commands:\n"
        "  train     train a network and report cost and accuracy per epoch\n"
        "            (without --data: Fashion-MNIST on the best backend available)\n"
        "  eval      cost and accuracy of a saved model on a data set\n"
        "  predict   the outputs (or the class) of a saved model for each example\n"
        "  info      what a model file holds\n"
        "\n"
        "Options:\n"
        "  -h, --help      this help; `backprop COMMAND --help` for a command's options\n"
        "  -V, --version   versions of the command and the library, and the backends\n"
        "\n"
        "Exit status: 0 success, 1 failure, 2 usage error, 130 training interrupted.\n",
        f);
}

static int version(void) {
  printf("backprop %s (library %s)\n", BP_VERSION_STRING, bp_version_string());
  if (bp_has_cuda())
    printf("backends: cpu, cuda (%d usable device%s)\n", bp_cuda_device_count(),
           bp_cuda_device_count() == 1 ? "" : "s");
  else
    printf("backends: cpu (built without CUDA)\n");
  return fflush(stdout) == 0 ? 0 : CLI_EXIT_FAILURE;
}

typedef struct command {
  const char *name;
  int (*run)(int argc, char **argv);
} command;

static const command commands[] = {{"train", cli_cmd_train},
                                   {"eval", cli_cmd_eval},
                                   {"predict", cli_cmd_predict},
                                   {"info", cli_cmd_info}};

static const command *find(const char *name) {
  for (size_t i = 0; i < sizeof commands / sizeof *commands; ++i)
    if (strcmp(commands[i].name, name) == 0) return &commands[i];
  return NULL;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    usage(stderr);
    return CLI_EXIT_USAGE;
  }
  const char *arg = argv[1];
  if (strcmp(arg, "--help") == 0 || strcmp(arg, "-h") == 0) {
    usage(stdout);
    return fflush(stdout) == 0 ? 0 : CLI_EXIT_FAILURE;
  }
  if (strcmp(arg, "--version") == 0 || strcmp(arg, "-V") == 0) return version();
  if (strcmp(arg, "help") == 0) {
    if (argc < 3) {
      usage(stdout);
      return fflush(stdout) == 0 ? 0 : CLI_EXIT_FAILURE;
    }
    const command *c = find(argv[2]);
    if (!c) return cli_usage_error(NULL, "unknown command '%s'", argv[2]);
    static char help_opt[] = "--help";
    char *help_argv[] = {argv[2], help_opt, NULL};
    return c->run(2, help_argv);
  }
  const command *c = find(arg);
  if (!c) {
    if (arg[0] == '-') return cli_usage_error(NULL, "unknown option '%s'", arg);
    return cli_usage_error(NULL, "unknown command '%s'", arg);
  }
  return c->run(argc - 1, argv + 1);
}
