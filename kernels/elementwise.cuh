/*
 * elementwise.cuh - the per-element formulas of backpropagation, written once.
 *
 * Both backends include this header: the CUDA kernels compile these functions
 * for the device, the CPU backend (plain C) compiles the very same text for
 * the host. So the CPU tests exercise exactly the formulas the GPU runs.
 * Plain C11 when not compiled by nvcc; no CUDA headers are needed.
 */
#ifndef BP_ELEMENTWISE_CUH
#define BP_ELEMENTWISE_CUH

#include <math.h>

#ifdef __CUDACC__
#define BP_HD static __host__ __device__ __forceinline__
#else
#define BP_HD static inline
#endif

/* sigma(z) = 1 / (1 + e^-z). For z very negative expf overflows to +inf and
 * the result is an exact 0, never NaN. */
BP_HD float bp_sigmoid(float z) { return 1.0f / (1.0f + expf(-z)); }

/* sigma'(z) = sigma(z) (1 - sigma(z)). */
BP_HD float bp_sigmoid_prime(float z) {
  float s = bp_sigmoid(z);
  return s * (1.0f - s);
}

/* Output error of the quadratic cost C0 = sum_j (a_j - y_j)^2:
 * dC0/dz = 2 (a - y) sigma'(z). (No factor 1/2 in the cost, hence the 2.) */
BP_HD float bp_output_error(float a, float y, float z) {
  return 2.0f * (a - y) * bp_sigmoid_prime(z);
}

/* Hidden error: (W^T delta)_k * sigma'(z_k), where g = (W^T delta)_k. */
BP_HD float bp_hidden_error(float g, float z) { return g * bp_sigmoid_prime(z); }

/* The same three from the activation a = sigma(z) instead of z, for the
 * fused kernels, which keep no z: sigma'(z) = a (1 - a). Since a is the very
 * float bp_sigmoid(z) returns, each gives bit for bit what its z form gives
 * (the same operations on the same values, none an FMA candidate). */
BP_HD float bp_sigmoid_prime_of_a(float a) { return a * (1.0f - a); }
BP_HD float bp_output_error_of_a(float a, float y) {
  return 2.0f * (a - y) * bp_sigmoid_prime_of_a(a);
}
BP_HD float bp_hidden_error_of_a(float g, float a) { return g * bp_sigmoid_prime_of_a(a); }

/* One term of the per-example cost. */
BP_HD float bp_cost_term(float a, float y) {
  float d = a - y;
  return d * d;
}

/* SGD update of one parameter. */
BP_HD float bp_sgd_update(float p, float g, float lr) { return p - lr * g; }

#endif /* BP_ELEMENTWISE_CUH */
