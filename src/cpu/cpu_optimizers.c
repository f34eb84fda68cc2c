/* cpu_optimizers.c - the optimizers' guarded update on the CPU, in one
 * pass: bp_opt_update of elementwise.cuh (the CUDA kernels' formula) writes
 * each new parameter and state value into spare buffers while the pass ORs
 * their exponent-bit checks; when all are finite the buffers swap with the
 * live ones, otherwise the live ones were never touched. That keeps the
 * guarded rule (an update that would make any value non-finite changes
 * nothing) without the separate check pass, which computed every update
 * twice. The pass is threaded and vectorized; each element's arithmetic is
 * the formula's, in its order, so the results are bit for bit the scalar
 * loop's for any thread count. State slot s of parameter i is
 * state[s * n_params + i] (backprop.h "Optimizers"). */
#include <stdlib.h>
#include <string.h>

#include "cpu_model.h"
#include "cpu_passes.h"
#include "elementwise.cuh"

bp_status bp_cpu_opt_reset(bp_network *net, bp_cpu_opt *o, size_t count) {
  float *fresh = NULL, *spare = NULL;
  if (count > 0) {
    if (bp_debug_should_fail_alloc(net->ctx))
      return bp_error(net->ctx, BP_ERR_OUT_OF_MEMORY,
                      "allocating the optimizer state failed: out of memory (test hook)");
    fresh = calloc(count, sizeof(float));
    spare = fresh ? malloc(count * sizeof(float)) : NULL;
    if (!spare) {
      free(fresh);
      return bp_error(net->ctx, BP_ERR_OUT_OF_MEMORY,
                      "allocating the optimizer state (2 x %zu floats) failed: out of host memory",
                      count);
    }
  }
  free(o->state);
  free(o->spare);
  o->state = fresh;
  o->spare = spare;
  o->count = count;
  o->step = 0;
  return BP_OK;
}

void bp_cpu_opt_free(bp_cpu_opt *o) {
  free(o->state);
  free(o->spare);
  o->state = NULL;
  o->spare = NULL;
  o->count = 0;
}

/* The update of kind KIND, the formula's switch resolved at compile time so
 * the loop vectorizes; the hyperparameters are local copies, so the tests
 * on them are loop invariants the vectorizer if-converts (with
 * -fno-trapping-math and -fno-math-errno on this file, CMakeLists.txt:
 * neither changes a value, they only let the branches and sqrtf become
 * vector selects and vsqrtps). One function per slot count: parameters
 * only (SGD with weight decay), one state slot (SGD momentum), two (Adam,
 * AdamW, Rprop). Each returns the OR of the non-finite checks of
 * [i0, i1). */
#define BP_OPT_PASSES(NAME, KIND)                                                                 \
  BP_VECTOR_CLONES static uint32_t NAME##_0(const bp_opt_hyper *h0, const bp_opt_step *st0,    \
                                            const float *p, const float *g, float *q, size_t i0, \
                                            size_t i1) {                                          \
    bp_opt_hyper h = *h0;                                                                       \
    h.kind = KIND;                                                                              \
    const bp_opt_step st = *st0;                                                                \
    uint32_t bad = 0;                                                                           \
    BP_SIMD("omp simd reduction(| : bad)")                                                      \
    for (size_t i = i0; i < i1; ++i) {                                                          \
      float a = 0.0f, b = 0.0f;                                                                 \
      const float v = bp_opt_update(&h, &st, p[i], g[i], &a, &b);                                \
      q[i] = v;                                                                                 \
      bad |= bp_nonfinite_bits(v);                                                              \
    }                                                                                           \
    return bad;                                                                                 \
  }                                                                                             \
  BP_VECTOR_CLONES static uint32_t NAME##_1(const bp_opt_hyper *h0, const bp_opt_step *st0,    \
                                            const float *p, const float *g, float *q,           \
                                            const float *s0, float *t0, size_t i0, size_t i1) { \
    bp_opt_hyper h = *h0;                                                                       \
    h.kind = KIND;                                                                              \
    const bp_opt_step st = *st0;                                                                \
    uint32_t bad = 0;                                                                           \
    BP_SIMD("omp simd reduction(| : bad)")                                                      \
    for (size_t i = i0; i < i1; ++i) {                                                          \
      float a = s0[i], b = 0.0f;                                                                \
      const float v = bp_opt_update(&h, &st, p[i], g[i], &a, &b);                                \
      q[i] = v;                                                                                 \
      t0[i] = a;                                                                                \
      bad |= bp_nonfinite_bits(v) | bp_nonfinite_bits(a);                                       \
    }                                                                                           \
    return bad;                                                                                 \
  }                                                                                             \
  BP_VECTOR_CLONES static uint32_t NAME##_2(                                                   \
      const bp_opt_hyper *h0, const bp_opt_step *st0, const float *p, const float *g, float *q,  \
      const float *s0, const float *s1, float *t0, float *t1, size_t i0, size_t i1) {           \
    bp_opt_hyper h = *h0;                                                                       \
    h.kind = KIND;                                                                              \
    const bp_opt_step st = *st0;                                                                \
    uint32_t bad = 0;                                                                           \
    BP_SIMD("omp simd reduction(| : bad)")                                                      \
    for (size_t i = i0; i < i1; ++i) {                                                          \
      float a = s0[i], b = s1[i];                                                               \
      const float v = bp_opt_update(&h, &st, p[i], g[i], &a, &b);                                \
      q[i] = v;                                                                                 \
      t0[i] = a;                                                                                \
      t1[i] = b;                                                                                \
      bad |= bp_nonfinite_bits(v) | bp_nonfinite_bits(a) | bp_nonfinite_bits(b);               \
    }                                                                                           \
    return bad;                                                                                 \
  }

BP_OPT_PASSES(sgd, BP_EW_SGD)
BP_OPT_PASSES(adam, BP_EW_ADAM)
BP_OPT_PASSES(adamw, BP_EW_ADAMW)
BP_OPT_PASSES(rprop, BP_EW_RPROP)

/* Elements [i0, i1) with the kind's pass for the given slots. */
static uint32_t update_range(const bp_opt_hyper *h, const bp_opt_step *st, int slots,
                             const float *p, const float *g, float *q, const float *s0,
                             const float *s1, float *t0, float *t1, size_t i0, size_t i1) {
#define BP_OPT_CALL(NAME)                                                                       \
  return slots == 0   ? NAME##_0(h, st, p, g, q, i0, i1)                                       \
         : slots == 1 ? NAME##_1(h, st, p, g, q, s0, t0, i0, i1)                               \
                      : NAME##_2(h, st, p, g, q, s0, s1, t0, t1, i0, i1)
  switch (h->kind) {
    case BP_EW_ADAM: BP_OPT_CALL(adam);
    case BP_EW_ADAMW: BP_OPT_CALL(adamw);
    case BP_EW_RPROP: BP_OPT_CALL(rprop);
    default: BP_OPT_CALL(sgd);
  }
#undef BP_OPT_CALL
}

int bp_cpu_opt_update(const bp_network *net, bp_cpu_opt *o, float **params, float **next,
                      const float *grads, float lr) {
  bp_opt_hyper h;
  bp_optimizer_hyper(&net->opt, &h);
  const bp_opt_step st = bp_opt_step_of(&h, lr, (long long)o->step);
  const size_t n = net->n_params;
  const int slots = (int)(o->count / (n > 0 ? n : 1));
  const float *p = *params, *s0 = slots > 0 ? o->state : NULL;
  const float *s1 = slots > 1 ? o->state + n : NULL;
  float *q = *next, *t0 = slots > 0 ? o->spare : NULL, *t1 = slots > 1 ? o->spare + n : NULL;
  /* Memory-bound on a few streams, like the SGD update: one thread below
   * PAR_MIN_COPY (bench/NOTES.md section 12). Static contiguous ranges: each
   * element's result does not depend on the split. */
  const int par = n >= PAR_MIN_COPY;
  (void)par;
  uint32_t bad = 0;
  BP_OMP("omp parallel reduction(| : bad) if(par)")
  {
    const size_t t = (size_t)bp_cpu_thread_index(), parts = (size_t)bp_cpu_team_size();
    const size_t i0 = n * t / parts, i1 = n * (t + 1) / parts;
    bad |= update_range(&h, &st, slots, p, grads, q, s0, s1, t0, t1, i0, i1);
  }
  if (bad) return 0;
  *next = *params;
  *params = q;
  if (slots > 0) {
    float *live = o->state;
    o->state = o->spare;
    o->spare = live;
  }
  ++o->step;
  return 1;
}
