/* cpu_model.h - the CPU backend's loops for the model beyond the seed:
 * activations other than the sigmoid, the output error of every (activation,
 * cost) pair (cpu_activations.c) and the optimizers (cpu_optimizers.c). The
 * formulas are those of kernels/elementwise.cuh; cpu_backend.c calls these
 * where a network is not the seed's. Buffers are column-major width x n
 * (internal.h). */
#ifndef BP_CPU_MODEL_H
#define BP_CPU_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "../internal.h"

/* z (out x n) holds W A: z += b per row, a = f(z) (softmax per column). */
void bp_cpu_bias_activation(int act, float *z, float *a, const float *b, int out, int n);
/* Output layer of n examples: delta = dC0/dz for the pair (act, cost);
 * returns the sum of the examples' costs, in double, example by example. */
double bp_cpu_output_error(int act, int cost, const float *z, const float *a, const float *y,
                           float *delta, int out, int n);
/* Hidden error in place: g[e] = g[e] f'(z[e]) over count elements. */
void bp_cpu_hidden_error(int act, float *g, const float *z, const float *a, size_t count);

/* The optimizer state: count floats (slots x n_params) and the step count. */
typedef struct bp_cpu_opt {
  float *state;
  size_t count;
  int64_t step;
} bp_cpu_opt;

/* Replaces the state by count zeros and step 0; on failure the old stays. */
bp_status bp_cpu_opt_reset(bp_network *net, bp_cpu_opt *o, size_t count);
void bp_cpu_opt_free(bp_cpu_opt *o);
/* The configured optimizer's guarded update of params from grads: 1 when
 * applied, 0 when refused because a parameter or state value would become
 * non-finite (then nothing changed). */
int bp_cpu_opt_update(const bp_network *net, bp_cpu_opt *o, float *params, const float *grads,
                      float lr);

#endif /* BP_CPU_MODEL_H */
