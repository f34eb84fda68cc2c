/*
 * layers.h - the network's widths from --layers / --hidden and the data.
 *
 * --hidden LIST gives the hidden widths only. --layers LIST gives all widths
 * when it starts with the data's input width and ends with its output width
 * ("784,100,10"); otherwise its entries are the hidden widths ("100" or
 * "300,100"). The input and output widths always come from the data.
 */
#ifndef BP_CLI_LAYERS_H
#define BP_CLI_LAYERS_H

/* list/count: what was given (NULL/0: the default, one hidden layer of 100).
 * hidden_only: it came from --hidden. On success *sizes (malloc'd) holds
 * *n_sizes widths and 0 is returned; CLI_EXIT_FAILURE after a message. */
int cli_resolve_sizes(const char *cmd, const int *list, int count, int hidden_only, int n_in,
                      int n_out, int **sizes, int *n_sizes);

/* "784,100,10" into buf. */
void cli_format_sizes(const int *sizes, int n, char *buf, size_t size);

#define CLI_DEFAULT_HIDDEN 100
#define CLI_MAX_LAYERS 64

#endif /* BP_CLI_LAYERS_H */
