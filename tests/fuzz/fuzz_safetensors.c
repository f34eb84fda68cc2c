/* libFuzzer harness: the safetensors model parser on arbitrary bytes. */
#include <stddef.h>
#include <stdint.h>

#include "backprop.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  static bp_context *ctx;
  if (!ctx && bp_context_create(BP_BACKEND_CPU, 0, &ctx) != BP_OK) return 0;
  bp_network *net = NULL;
  if (bp_network_load_buffer(ctx, data, size, "fuzz.safetensors", &net) == BP_OK) {
    /* A model that loads must be usable: run it once. */
    int n_in = bp_network_size(net, 0), n_out = bp_network_size(net, bp_network_n_layers(net));
    if (n_in > 0 && n_in <= 4096 && n_out > 0 && n_out <= 4096) {
      static float x[4096], out[4096];
      for (int i = 0; i < n_in; ++i) x[i] = (float)(i % 7) / 7.0f;
      (void)bp_forward(net, x, 1, out);
    }
  }
  bp_network_destroy(net);
  return 0;
}
