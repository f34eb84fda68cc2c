/* libFuzzer harness: the IDX reader (plain and gzip) on arbitrary bytes. The
 * first two bytes say where the images end and the labels begin. */
#include <stddef.h>
#include <stdint.h>

#include "backprop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bp_context *ctx;
  if (!ctx && bp_context_create(BP_BACKEND_CPU, 0, &ctx) != BP_OK) return 0;
  if (size < 2) return 0;
  size_t split = ((size_t)data[0] << 8 | data[1]);
  data += 2;
  size -= 2;
  if (split > size) split = size;
  bp_data *out = NULL;
  (void)bp_data_parse_idx(ctx, data, split, data + split, size - split, "fuzz.idx", &out);
  bp_data_free(out);
  return 0;
}
