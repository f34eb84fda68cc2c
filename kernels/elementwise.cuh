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
#include <stdint.h>
#include <string.h>

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

/* ---- Reduced-precision inputs of the products (bp_math_mode) ----------------
 * The float32 bit pattern: sign (1), exponent (8), mantissa (23). bfloat16
 * and TF32 keep the sign and the 8-bit exponent and shorten the mantissa to
 * 7 and 10 bits, so rounding to them is rounding the bit pattern: add half a
 * unit of the last kept bit (minus one when the kept part is even, which
 * makes ties go to even) and clear the dropped bits. A carry out of the
 * mantissa steps the exponent up, which is the right answer, and the largest
 * finite values round to infinity as IEEE rounding does. Infinity stays
 * infinity (its mantissa is 0, so the addition never carries); NaN is made
 * quiet before the bits are cleared so it stays NaN, sign kept. Subnormals
 * need no special case: the same rule rounds them to the nearest subnormal
 * of the shorter format. */

BP_HD uint32_t bp_float_bits(float x) {
#ifdef __CUDA_ARCH__
  return __float_as_uint(x);
#else
  uint32_t u;
  memcpy(&u, &x, sizeof u);
  return u;
#endif
}

BP_HD float bp_bits_float(uint32_t u) {
#ifdef __CUDA_ARCH__
  return __uint_as_float(u);
#else
  float x;
  memcpy(&x, &u, sizeof x);
  return x;
#endif
}

/* Rounds the float32 bit pattern u to nearest-even keeping the top 32 - drop
 * bits (1 <= drop <= 22). */
BP_HD uint32_t bp_round_bits_rne(uint32_t u, int drop) {
  const uint32_t keep_mask = ~((1u << drop) - 1u);
  if ((u & 0x7f800000u) == 0x7f800000u && (u & 0x007fffffu) != 0u)
    return (u | 0x00400000u) & keep_mask; /* NaN: quiet, and still NaN */
  const uint32_t half_minus_one = (1u << (drop - 1)) - 1u;
  const uint32_t lsb = (u >> drop) & 1u;
  return (u + half_minus_one + lsb) & keep_mask;
}

/* x rounded to nearest-even bfloat16 (8 significant bits), as a float32
 * whose low 16 bits are zero. The bfloat16 bit pattern is the high half of
 * the result's bits. */
BP_HD float bp_round_bf16(float x) { return bp_bits_float(bp_round_bits_rne(bp_float_bits(x), 16)); }

/* The bfloat16 bit pattern of bp_round_bf16(x). */
BP_HD uint16_t bp_bf16_bits(float x) {
  return (uint16_t)(bp_round_bits_rne(bp_float_bits(x), 16) >> 16);
}

/* x rounded to nearest-even TF32 (11 significant bits), as a float32 whose
 * low 13 bits are zero. */
BP_HD float bp_round_tf32(float x) { return bp_bits_float(bp_round_bits_rne(bp_float_bits(x), 13)); }

/* Evaluate's accuracy rule for one example: out and y have `width`
 * entries, `stride` apart. The largest output at the index of the largest
 * target (first index on ties); with one output, both on the same side of
 * 0.5. The CPU backend and the accuracy kernel's checks use it. */
BP_HD int bp_example_correct(const float *out, const float *y, int width, size_t stride) {
  if (width == 1) return (out[0] >= 0.5f) == (y[0] >= 0.5f);
  int ia = 0, iy = 0;
  for (int j = 1; j < width; ++j) {
    if (out[(size_t)j * stride] > out[(size_t)ia * stride]) ia = j;
    if (y[(size_t)j * stride] > y[(size_t)iy * stride]) iy = j;
  }
  return ia == iy;
}

#endif /* BP_ELEMENTWISE_CUH */
