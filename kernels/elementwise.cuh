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

/* ---- Activations and costs beyond the seed ------------------------------------
 * The values of bp_activation and bp_cost (backprop.h); this header does not
 * include the API header, so it names them again. */
#define BP_EW_SIGMOID 0
#define BP_EW_TANH 1
#define BP_EW_RELU 2
#define BP_EW_IDENTITY 3
#define BP_EW_SOFTMAX 4
#define BP_EW_QUADRATIC 0
#define BP_EW_CROSS_ENTROPY 1

/* a = f(z) for the elementwise activations (not softmax, which needs the
 * whole column: bp_softmax_column). ReLU passes NaN through, as PyTorch's
 * does. Sigmoid is bp_sigmoid itself, so the seed's networks are unchanged. */
BP_HD float bp_activate(int act, float z) {
  switch (act) {
    case BP_EW_TANH: return tanhf(z);
    case BP_EW_RELU: return z < 0.0f ? 0.0f : z;
    case BP_EW_IDENTITY: return z;
    default: return bp_sigmoid(z);
  }
}

/* f'(z) from a = f(z), exact for every elementwise activation: sigmoid
 * a (1 - a), tanh 1 - a^2, ReLU 1 where a > 0 (0 at z = 0, as PyTorch),
 * identity 1. */
BP_HD float bp_activation_prime_of_a(int act, float a) {
  switch (act) {
    case BP_EW_TANH: return 1.0f - a * a;
    case BP_EW_RELU: return a > 0.0f ? 1.0f : 0.0f;
    case BP_EW_IDENTITY: return 1.0f;
    default: return bp_sigmoid_prime_of_a(a);
  }
}

/* Hidden error of any elementwise activation: g * f'(z), from z and a. The
 * sigmoid takes the seed's z form (bp_hidden_error), the others the a form. */
BP_HD float bp_hidden_error_act(int act, float g, float z, float a) {
  return act == BP_EW_SIGMOID ? bp_hidden_error(g, z) : g * bp_activation_prime_of_a(act, a);
}

/* max_j z[j] and the sum of e^(z[j] - max), over one column of width w. */
BP_HD float bp_column_max(const float *z, int w) {
  float m = z[0];
  for (int j = 1; j < w; ++j)
    if (z[j] > m) m = z[j];
  return m;
}

/* Softmax of one column (one example's outputs), stable: the largest z
 * contributes e^0. a may not alias z. */
BP_HD void bp_softmax_column(const float *z, float *a, int w) {
  const float m = bp_column_max(z, w);
  float s = 0.0f;
  for (int j = 0; j < w; ++j) {
    a[j] = expf(z[j] - m);
    s += a[j];
  }
  for (int j = 0; j < w; ++j) a[j] = a[j] / s;
}

/* log(1 + e^z) without overflow: max(z, 0) + log1p(e^-|z|). */
BP_HD float bp_softplus(float z) { return fmaxf(z, 0.0f) + log1pf(expf(-fabsf(z))); }

/* The per-element pieces of bp_output_column, named so that the fused
 * kernels (fused.cu), which split a column over threads, compute each
 * element with this very text. */

/* Quadratic cost, elementwise f: 2 (a - y) f'(z), f' from a. The sigmoid's
 * is bp_output_error_of_a, bit for bit bp_output_error's z form. */
BP_HD float bp_quadratic_error_of_a(int act, float a, float y) {
  return act == BP_EW_SIGMOID ? bp_output_error_of_a(a, y)
                              : 2.0f * (a - y) * bp_activation_prime_of_a(act, a);
}
/* Cross-entropy with sigmoid outputs: the term softplus(z) - y z. */
BP_HD double bp_ce_sigmoid_term(float z, float y) {
  return (double)bp_softplus(z) - (double)y * (double)z;
}
/* Cross-entropy with softmax: the term y (lse - z) and delta = a sum(y) - y. */
BP_HD double bp_ce_softmax_term(float z, float y, float lse) { return (double)y * (double)(lse - z); }
BP_HD float bp_ce_softmax_error(float a, float y, float ysum) { return a * ysum - y; }
/* Quadratic cost with softmax: the column's dot = sum_i 2 (a_i - y_i) a_i,
 * then delta_j = a_j (2 (a_j - y_j) - dot). */
BP_HD float bp_softmax_dot_term(float a, float y) { return 2.0f * (a - y) * a; }
BP_HD float bp_softmax_quadratic_error(float a, float y, float dot) {
  return a * (2.0f * (a - y) - dot);
}

/* The output layer of one example, for every valid (activation, cost)
 * pair: writes delta = dC0/dz (w entries) and returns C0, summed in double.
 * z, a, y, delta are the example's column (w contiguous floats).
 *   quadratic, elementwise f   delta = 2 (a - y) f'(z)   (the sigmoid: bp_output_error)
 *   quadratic, softmax         delta_j = a_j (d_j - sum_i d_i a_i), d = 2 (a - y)
 *   cross-entropy, softmax     C0 = sum_j y_j (lse - z_j), lse = logsumexp(z);
 *                              delta_j = a_j sum(y) - y_j  (= a - y when sum(y) = 1)
 *   cross-entropy, sigmoid     C0 = sum_j softplus(z_j) - y_j z_j;  delta = a - y
 * No logarithm of a rounded probability is taken. */
BP_HD double bp_output_column(int act, int cost, const float *z, const float *a, const float *y,
                              float *delta, int w) {
  double c = 0.0;
  if (cost == BP_EW_CROSS_ENTROPY && act == BP_EW_SOFTMAX) {
    const float m = bp_column_max(z, w);
    float s = 0.0f, ysum = 0.0f;
    for (int j = 0; j < w; ++j) {
      s += expf(z[j] - m);
      ysum += y[j];
    }
    const float lse = m + logf(s);
    for (int j = 0; j < w; ++j) {
      c += bp_ce_softmax_term(z[j], y[j], lse);
      delta[j] = bp_ce_softmax_error(a[j], y[j], ysum);
    }
  } else if (cost == BP_EW_CROSS_ENTROPY) { /* sigmoid output */
    for (int j = 0; j < w; ++j) {
      c += bp_ce_sigmoid_term(z[j], y[j]);
      delta[j] = a[j] - y[j];
    }
  } else if (act == BP_EW_SOFTMAX) { /* quadratic */
    float dot = 0.0f;
    for (int j = 0; j < w; ++j) {
      c += (double)bp_cost_term(a[j], y[j]);
      dot += bp_softmax_dot_term(a[j], y[j]);
    }
    for (int j = 0; j < w; ++j) delta[j] = bp_softmax_quadratic_error(a[j], y[j], dot);
  } else { /* quadratic, elementwise */
    for (int j = 0; j < w; ++j) {
      c += (double)bp_cost_term(a[j], y[j]);
      delta[j] = act == BP_EW_SIGMOID ? bp_output_error(a[j], y[j], z[j])
                                      : bp_quadratic_error_of_a(act, a[j], y[j]);
    }
  }
  return c;
}

/* ---- Optimizers (bp_optimizer; backprop.h "Optimizers" has the formulas) --------
 * One parameter's update, the same text on the host and the device. Two
 * state values per parameter at most (s0, s1): SGD's momentum buffer in s0;
 * Adam's exp_avg, exp_avg_sq; Rprop's prev, step_size. Scalars are floats
 * where PyTorch applies them to float tensors, and the bias corrections are
 * double, as PyTorch computes them in Python. */
#define BP_EW_SGD 0
#define BP_EW_ADAM 1
#define BP_EW_ADAMW 2
#define BP_EW_RPROP 3

typedef struct bp_opt_hyper {
  int kind, nesterov;
  float momentum, weight_decay;
  float one_minus_beta1, beta2, one_minus_beta2, eps;
  float eta_minus, eta_plus, step_min, step_max;
  double beta1_d, beta2_d, weight_decay_d;
} bp_opt_hyper;

/* What a step adds to the hyperparameters: the learning rate, and Adam's
 * lr / (1 - beta1^t), sqrt(1 - beta2^t) and AdamW's 1 - lr wd, with t the
 * number of this update (applied updates before it + 1). */
typedef struct bp_opt_step {
  float lr, step_size, bc2_sqrt, decay_scale;
  int first; /* no update applied before: Rprop's step sizes start at lr */
} bp_opt_step;

BP_HD bp_opt_step bp_opt_step_of(const bp_opt_hyper *h, float lr, long long applied) {
  bp_opt_step s;
  const double t = (double)(applied + 1);
  s.lr = lr;
  s.step_size = (float)((double)lr / (1.0 - pow(h->beta1_d, t)));
  s.bc2_sqrt = (float)sqrt(1.0 - pow(h->beta2_d, t));
  s.decay_scale = (float)(1.0 - (double)lr * h->weight_decay_d);
  s.first = applied == 0;
  return s;
}

/* Returns the new p; *s0, *s1 receive the new state (read first). */
BP_HD float bp_opt_update(const bp_opt_hyper *h, const bp_opt_step *st, float p, float g,
                          float *s0, float *s1) {
  switch (h->kind) {
    case BP_EW_ADAM:
    case BP_EW_ADAMW: {
      if (h->kind == BP_EW_ADAMW)
        p = p * st->decay_scale;
      else if (h->weight_decay != 0.0f)
        g = g + h->weight_decay * p;
      const float m = *s0 + h->one_minus_beta1 * (g - *s0); /* torch lerp, weight < 0.5 */
      const float v = *s1 * h->beta2 + h->one_minus_beta2 * g * g; /* addcmul */
      const float denom = sqrtf(v) / st->bc2_sqrt + h->eps;
      *s0 = m;
      *s1 = v;
      return p + -st->step_size * m / denom; /* addcdiv: p + (value t1) / t2 */
    }
    case BP_EW_RPROP: {
      const float prev = *s0;
      float step = st->first ? st->lr : *s1;
      const float gp = g * prev;
      step = step * (gp > 0.0f ? h->eta_plus : gp < 0.0f ? h->eta_minus : 1.0f);
      if (step < h->step_min) step = h->step_min;
      if (step > h->step_max) step = h->step_max;
      if (gp < 0.0f) g = 0.0f;
      const float sign = g > 0.0f ? 1.0f : g < 0.0f ? -1.0f : 0.0f;
      *s0 = g;
      *s1 = step;
      return p - sign * step;
    }
    default: { /* SGD */
      if (h->weight_decay != 0.0f) g = g + h->weight_decay * p;
      if (h->momentum != 0.0f) {
        const float buf = h->momentum * *s0 + g;
        *s0 = buf;
        g = h->nesterov ? g + h->momentum * buf : buf;
      }
      return bp_sgd_update(p, g, st->lr);
    }
  }
}

/* 1 if an update leaves the parameter and its state finite. */
BP_HD int bp_opt_finite(float p, float s0, float s1) {
  return isfinite(p) && isfinite(s0) && isfinite(s1);
}

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
  /* The best values ride along in registers: comparing against a reload of
   * out[ia] put a load on the chain of compares (6% of a CPU step at 256
   * outputs). The same comparisons, so the same indices. */
  int ia = 0, iy = 0;
  float ba = out[0], by = y[0];
  for (int j = 1; j < width; ++j) {
    const float oa = out[(size_t)j * stride], oy = y[(size_t)j * stride];
    if (oa > ba) {
      ba = oa;
      ia = j;
    }
    if (oy > by) {
      by = oy;
      iy = j;
    }
  }
  return ia == iy;
}

#endif /* BP_ELEMENTWISE_CUH */
