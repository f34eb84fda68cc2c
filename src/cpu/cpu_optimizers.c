/* cpu_optimizers.c - the optimizers' guarded update on the CPU: one pass
 * that checks every new value, then one that writes, both with
 * bp_opt_update of elementwise.cuh (the CUDA kernels' formula). State slot s
 * of parameter i is state[s * n_params + i] (backprop.h "Optimizers"). */
#include <stdlib.h>
#include <string.h>

#include "cpu_model.h"
#include "elementwise.cuh"

bp_status bp_cpu_opt_reset(bp_network *net, bp_cpu_opt *o, size_t count) {
  float *fresh = NULL;
  if (count > 0) {
    if (bp_debug_should_fail_alloc(net->ctx))
      return bp_error(net->ctx, BP_ERR_OUT_OF_MEMORY,
                      "allocating the optimizer state failed: out of memory (test hook)");
    fresh = calloc(count, sizeof(float));
    if (!fresh)
      return bp_error(net->ctx, BP_ERR_OUT_OF_MEMORY,
                      "allocating the optimizer state (%zu floats) failed: out of host memory",
                      count);
  }
  free(o->state);
  o->state = fresh;
  o->count = count;
  o->step = 0;
  return BP_OK;
}

void bp_cpu_opt_free(bp_cpu_opt *o) {
  free(o->state);
  o->state = NULL;
  o->count = 0;
}

int bp_cpu_opt_update(const bp_network *net, bp_cpu_opt *o, float *params, const float *grads,
                      float lr) {
  bp_opt_hyper h;
  bp_optimizer_hyper(&net->opt, &h);
  const bp_opt_step st = bp_opt_step_of(&h, lr, (long long)o->step);
  const size_t n = net->n_params;
  const int slots = (int)(o->count / (n > 0 ? n : 1));
  float *s0 = slots > 0 ? o->state : NULL, *s1 = slots > 1 ? o->state + n : NULL;
  for (size_t i = 0; i < n; ++i) {
    float a = s0 ? s0[i] : 0.0f, b = s1 ? s1[i] : 0.0f;
    if (!bp_opt_finite(bp_opt_update(&h, &st, params[i], grads[i], &a, &b), a, b)) return 0;
  }
  for (size_t i = 0; i < n; ++i) {
    float a = s0 ? s0[i] : 0.0f, b = s1 ? s1[i] : 0.0f;
    params[i] = bp_opt_update(&h, &st, params[i], grads[i], &a, &b);
    if (s0) s0[i] = a;
    if (s1) s1[i] = b;
  }
  ++o->step;
  return 1;
}
