/* libFuzzer harness: the FANN training-data reader on arbitrary text. */
#include <stddef.h>
#include <stdint.h>

#include "backprop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bp_context *ctx;
  if (!ctx && bp_context_create(BP_BACKEND_CPU, 0, &ctx) != BP_OK) return 0;
  bp_data *out = NULL;
  (void)bp_data_parse_fann(ctx, (const char *)data, size, "fuzz.data", &out);
  bp_data_free(out);
  return 0;
}
