/* A host program as a user writes it: link the installed library, train XOR. */
#include <backprop.h>
#include <stdio.h>

int main(void) {
  if (bp_version() != BP_VERSION_NUMBER) {
    fprintf(stderr, "header %d != library %u\n", BP_VERSION_NUMBER, bp_version());
    return 1;
  }
  bp_context *ctx = NULL;
  bp_network *net = NULL;
  const int sizes[] = {2, 3, 1};
  const float X[] = {0, 0, 0, 1, 1, 0, 1, 1}, Y[] = {0, 1, 1, 0};
  if (bp_context_create(BP_BACKEND_CPU, 0, &ctx) != BP_OK) return 1;
  if (bp_network_create(ctx, 3, sizes, 7, &net) != BP_OK) return 1;
  float cost = 0;
  for (int i = 0; i < 5000; ++i)
    if (bp_train_batch(net, X, Y, 4, 3.0f, &cost) != BP_OK) return 1;
  printf("consumer: XOR cost %.5f (library %s)\n", cost, bp_version_string());
  bp_network_destroy(net);
  bp_context_destroy(ctx);
  return cost < 0.05f ? 0 : 1;
}
