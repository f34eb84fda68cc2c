/* cpu_model.h - the CPU backend's fused passes for every model (the seed's
 * included): bias + activation, the output error of every (activation,
 * cost) pair with its bias gradient, the hidden error with its bias
 * gradient (cpu_activations.c), and the optimizers' guarded update
 * (cpu_optimizers.c). The formulas are those of kernels/elementwise.cuh.
 * Buffers are column-major width x n (internal.h). */
#ifndef BP_CPU_MODEL_H
#define BP_CPU_MODEL_H

#include <stddef.h>
#include <stdint.h>

#include "../internal.h"

#ifdef __cplusplus
extern "C" { /* tests/test_cpu_passes.cc */
#endif

/* Forward, one pass over the product P = W A (out x n) of layer with
 * activation act: a = f(P + b). With z == NULL the pass is in place
 * (P was written to a, and no z is kept: every derivative of the backward
 * pass comes from a); otherwise P is in z and z becomes P + b, for the
 * costs that read it. A softmax layer writes lse[k] = log sum_j e^(z_jk),
 * the log-sum-exp of its column, when lse is not NULL. Columns across the
 * threads. */
void bp_cpu_bias_activation(int act, float *z, float *a, const float *b, int out, int n,
                            float *lse);

/* The output layer of n examples for the pair (act, cost), one pass over
 * the columns: each example's cost into cost_acc[k] and the column scalar
 * its error needs into col[k] (sum(y) for softmax + cross-entropy,
 * sum_i d_i a_i for softmax + quadratic); when correct is not NULL, the
 * examples classified right (bp_example_correct) added to *correct; when
 * delta is not NULL, delta = dC0/dz and the bias gradient
 * db = (1/n) sum_k delta[., k], summed in double over blocks of
 * BP_CPU_SUM_BLOCK examples (cpu_passes.h). acc holds
 * bp_cpu_sum_blocks(n) * w doubles. z and lse are read by the
 * cross-entropy costs only. Returns the sum of the examples' costs in
 * example order. */
double bp_cpu_output_pass(int act, int cost, const float *z, const float *a, const float *lse,
                          const float *y, float *delta, int w, int n, double *cost_acc,
                          float *col, double *acc, float *db, int64_t *correct);

/* bp_example_correct(a, y, w, 1) of elementwise.cuh, the same answer for
 * any values (NaN and ties included), vectorized. */
int bp_cpu_example_correct(const float *a, const float *y, int w);

/* A hidden layer, in place over G = W^T delta (w x n): delta = g f'(a)
 * from the stored activation, and the bias gradient as above (acc as
 * above). */
void bp_cpu_hidden_pass(int act, float *g, const float *a, int w, int n, double *acc, float *db);

/* The optimizer state: count floats (slots x n_params) and the step count.
 * spare is as large: the update writes the new state there and the two
 * swap when every new value is finite. */
typedef struct bp_cpu_opt {
  float *state;
  float *spare;
  size_t count;
  int64_t step;
} bp_cpu_opt;

/* Replaces the state by count zeros and step 0; on failure the old stays. */
bp_status bp_cpu_opt_reset(bp_network *net, bp_cpu_opt *o, size_t count);
void bp_cpu_opt_free(bp_cpu_opt *o);
/* The configured optimizer's guarded update of *params from grads, in one
 * pass: the new parameters go to *next and the new state to o->spare while
 * checked; 1 when applied (*params and *next swapped, state and spare
 * swapped), 0 when refused because a parameter or state value would become
 * non-finite (then nothing the caller reads changed). */
int bp_cpu_opt_update(const bp_network *net, bp_cpu_opt *o, float **params, float **next,
                      const float *grads, float lr);

#ifdef __cplusplus
}
#endif

#endif /* BP_CPU_MODEL_H */
