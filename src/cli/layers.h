/*
 * layers.h - the network's widths from --layers / --hidden and the data.
 *
 * --hidden LIST gives the hidden widths only ("100" or "300,100").
 * --layers LIST gives all widths, input and output included ("784,100,10"):
 * its first and last entries must equal the data's input and output widths.
 * A list that disagrees is a usage error naming both numbers, never a guess
 * (issue 13: --layers 5,8,3 on 4-input data used to train 4,5,8,3,3).
 */
#ifndef BP_CLI_LAYERS_H
#define BP_CLI_LAYERS_H

/* list/count: what was given (NULL/0: the default, one hidden layer of 100).
 * hidden_only: it came from --hidden. On success *sizes (malloc'd) holds
 * *n_sizes widths and 0 is returned; CLI_EXIT_USAGE after a message when
 * --layers disagrees with the data, CLI_EXIT_FAILURE on other failures. */
int cli_resolve_sizes(const char *cmd, const int *list, int count, int hidden_only, int n_in,
                      int n_out, int **sizes, int *n_sizes);

/* "784,100,10" into buf. */
void cli_format_sizes(const int *sizes, int n, char *buf, size_t size);

#define CLI_DEFAULT_HIDDEN 100
#define CLI_MAX_LAYERS 64

#endif /* BP_CLI_LAYERS_H */
