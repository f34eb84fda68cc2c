/* cpu_threads.c - the thread count of a CPU context (cpu_threads.h), and
 * the public bp_context_set_threads / bp_context_get_threads. */
#include "cpu_threads.h"

#include <stdlib.h>

/* A CPU context's impl: NULL until bp_context_set_threads first runs. */
typedef struct cpu_context {
  int threads; /* 0: OpenMP's default */
} cpu_context;

int bp_cpu_context_threads(const bp_context *ctx) {
  const cpu_context *c = ctx->impl;
  return c ? c->threads : 0;
}

int bp_cpu_threads_enter(const bp_context *ctx) {
#ifdef BP_CPU_OPENMP
  const int want = bp_cpu_context_threads(ctx);
  if (want <= 0) return 0;
  const int saved = omp_get_max_threads();
  if (saved == want) return 0;
  omp_set_num_threads(want);
  return saved;
#else
  (void)ctx;
  return 0;
#endif
}

void bp_cpu_threads_leave(int saved) {
#ifdef BP_CPU_OPENMP
  if (saved > 0) omp_set_num_threads(saved);
#else
  (void)saved;
#endif
}

int bp_cpu_max_threads(void) {
#ifdef BP_CPU_OPENMP
  return omp_get_max_threads();
#else
  return 1;
#endif
}

void bp_cpu_context_free(bp_context *ctx) {
  free(ctx->impl);
  ctx->impl = NULL;
}

bp_status bp_context_set_threads(bp_context *ctx, int n) {
  if (!ctx || n < 0) return BP_ERR_INVALID_ARGUMENT;
  bp_status st = bp_check_context(ctx);
  if (st != BP_OK) return st;
  if (ctx->backend != BP_BACKEND_CPU) return BP_OK; /* documented: no effect */
  cpu_context *c = ctx->impl;
  if (!c) {
    if (n == 0) return BP_OK;
    if (!(c = calloc(1, sizeof *c)))
      return bp_error(ctx, BP_ERR_OUT_OF_MEMORY, "bp_context_set_threads: out of host memory");
    ctx->impl = c;
  }
  c->threads = n;
  return BP_OK;
}

int bp_context_get_threads(const bp_context *ctx) {
  if (!ctx || ctx->backend != BP_BACKEND_CPU) return 0;
  const int n = bp_cpu_context_threads(ctx);
  return n > 0 ? n : bp_cpu_max_threads();
}
