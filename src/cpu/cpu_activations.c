/* cpu_activations.c - the CPU loops of the activations other than the
 * sigmoid and of the output error of every (activation, cost) pair; each
 * element is a formula of elementwise.cuh, the CUDA kernels' very text. */
#include "cpu_model.h"
#include "elementwise.cuh"

void bp_cpu_bias_activation(int act, float *z, float *a, const float *b, int out, int n) {
  for (int k = 0; k < n; ++k) {
    float *zk = z + (size_t)k * out, *ak = a + (size_t)k * out;
    for (int j = 0; j < out; ++j) zk[j] += b[j];
    if (act == BP_EW_SOFTMAX)
      bp_softmax_column(zk, ak, out);
    else
      for (int j = 0; j < out; ++j) ak[j] = bp_activate(act, zk[j]);
  }
}

double bp_cpu_output_error(int act, int cost, const float *z, const float *a, const float *y,
                           float *delta, int out, int n) {
  double sum = 0.0;
  for (int k = 0; k < n; ++k) {
    const size_t o = (size_t)k * (size_t)out;
    sum += bp_output_column(act, cost, z + o, a + o, y + o, delta + o, out);
  }
  return sum;
}

void bp_cpu_hidden_error(int act, float *g, const float *z, const float *a, size_t count) {
  for (size_t e = 0; e < count; ++e) g[e] = bp_hidden_error_act(act, g[e], z[e], a[e]);
}
