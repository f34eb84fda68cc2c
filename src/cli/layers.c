/* layers.c - network widths from the options and the data (see layers.h). */
#include <stddef.h>
#include <stdlib.h>
#include <string.h>

#include "cli.h"
#include "layers.h"

int cli_resolve_sizes(const char *cmd, const int *list, int count, int hidden_only, int n_in,
                      int n_out, int **sizes, int *n_sizes) {
  static const int default_hidden[1] = {CLI_DEFAULT_HIDDEN};
  if (!list || count == 0) {
    list = default_hidden;
    count = 1;
    hidden_only = 1;
  }
  int full = !hidden_only;
  if (full && count < 2)
    return cli_usage_error(cmd,
                           "--layers %d: give all widths, input and output included (e.g. "
                           "--layers %d,%d,%d), or the hidden ones with --hidden %d",
                           list[0], n_in, list[0], n_out, list[0]);
  if (full && list[0] != n_in)
    return cli_usage_error(cmd,
                           "--layers starts with %d but the data has %d inputs per example "
                           "(--layers gives all widths; --hidden the hidden ones)",
                           list[0], n_in);
  if (full && list[count - 1] != n_out)
    return cli_usage_error(cmd,
                           "--layers ends with %d but the data has %d outputs per example "
                           "(--layers gives all widths; --hidden the hidden ones)",
                           list[count - 1], n_out);
  int n = full ? count : count + 2;
  if (n > CLI_MAX_LAYERS + 1) return cli_fail(cmd, "too many layers (at most %d)", CLI_MAX_LAYERS);
  int *s = malloc(sizeof(int) * (size_t)n);
  if (!s) return cli_fail(cmd, "out of memory");
  if (full) {
    memcpy(s, list, sizeof(int) * (size_t)count);
  } else {
    s[0] = n_in;
    memcpy(s + 1, list, sizeof(int) * (size_t)count);
    s[n - 1] = n_out;
  }
  *sizes = s;
  *n_sizes = n;
  return 0;
}

void cli_format_sizes(const int *sizes, int n, char *buf, size_t size) {
  size_t used = 0;
  if (size == 0) return;
  buf[0] = '\0';
  for (int i = 0; i < n && used < size; ++i) {
    int w = snprintf(buf + used, size - used, "%s%d", i ? "," : "", sizes[i]);
    if (w < 0) break;
    used += (size_t)w;
  }
}
