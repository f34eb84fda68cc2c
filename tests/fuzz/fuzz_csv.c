/* libFuzzer harness: the CSV reader on arbitrary text; the first byte picks
 * the options (label column or regression targets). */
#include <stddef.h>
#include <stdint.h>

#include "backprop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bp_context *ctx;
  if (!ctx && bp_context_create(BP_BACKEND_CPU, 0, &ctx) != BP_OK) return 0;
  if (size < 1) return 0;
  bp_csv_options opt;
  bp_csv_options_init(&opt);
  if (data[0] & 1) opt.n_targets = 1 + (data[0] >> 1) % 3;
  else opt.label_column = (int)(data[0] >> 1) % 4 - 1; /* -1 (the last) .. 2 */
  bp_data *out = NULL;
  (void)bp_data_parse_csv(ctx, (const char *)data + 1, size - 1, "fuzz.csv", &opt, &out);
  bp_data_free(out);
  return 0;
}
