/* matmul.c - oneDNN matmul primitives for the forward product and its
 * epilogue, made per shape and cached (matmul.h). */
#include "matmul.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "blas.h"
#include "elementwise.cuh"

int bp_cpu_matmul_epilogue(int act) {
  switch (act) {
    case BP_EW_SIGMOID: return BP_MM_BIAS_SIGMOID;
    case BP_EW_TANH: return BP_MM_BIAS_TANH;
    case BP_EW_IDENTITY: return BP_MM_BIAS;
    default: return -1;
  }
}

#ifdef BP_WITH_DNNL
#include <oneapi/dnnl/dnnl.h>
#ifdef BP_CPU_OPENMP
#include <omp.h>
#endif

enum { BP_CPU_MATMULS = 24 };

/* Everything a primitive is specialized on. The thread count is part of it:
 * oneDNN splits the work for the count it sees when the primitive is made. */
typedef struct mm_key {
  int epilogue, trans_a, trans_b, m, n, k, lda, ldb, ldc, threads;
} mm_key;

typedef struct mm_entry {
  mm_key key;
  int used;          /* 0: empty slot */
  dnnl_primitive_t prim; /* NULL: none could be made for this key */
  dnnl_memory_t src, wei, bia, dst;
  uint64_t stamp;    /* last use, for least-recently-used replacement */
} mm_entry;

struct bp_cpu_matmuls {
  dnnl_engine_t engine;
  dnnl_stream_t stream;
  mm_entry e[BP_CPU_MATMULS];
  uint64_t clock;
  long made;
};

bp_cpu_matmuls *bp_cpu_matmuls_create(void) {
  bp_cpu_matmuls *mm = calloc(1, sizeof *mm);
  if (!mm) return NULL;
  if (dnnl_engine_create(&mm->engine, dnnl_cpu, 0) != dnnl_success) {
    free(mm);
    return NULL;
  }
  if (dnnl_stream_create(&mm->stream, mm->engine, dnnl_stream_default_flags) != dnnl_success) {
    dnnl_engine_destroy(mm->engine);
    free(mm);
    return NULL;
  }
  return mm;
}

static void entry_clear(mm_entry *x) {
  if (x->prim) dnnl_primitive_destroy(x->prim);
  if (x->src) dnnl_memory_destroy(x->src);
  if (x->wei) dnnl_memory_destroy(x->wei);
  if (x->bia) dnnl_memory_destroy(x->bia);
  if (x->dst) dnnl_memory_destroy(x->dst);
  memset(x, 0, sizeof *x);
}

void bp_cpu_matmuls_destroy(bp_cpu_matmuls *mm) {
  if (!mm) return;
  for (int i = 0; i < BP_CPU_MATMULS; ++i) entry_clear(&mm->e[i]);
  dnnl_stream_destroy(mm->stream);
  dnnl_engine_destroy(mm->engine);
  free(mm);
}

long bp_cpu_matmuls_made(const bp_cpu_matmuls *mm) { return mm ? mm->made : 0; }

static long runs; /* bp_cpu_matmul_runs; networks may run in several threads */

long bp_cpu_matmul_runs(void) { return __atomic_load_n(&runs, __ATOMIC_RELAXED); }

/* The column-major C = op(A) op(B) is the row-major C^T = op(B)^T op(A)^T:
 * oneDNN's src is op(B)^T (n x k), its weights op(A)^T (k x m), its dst C^T
 * (n x m), each given by strides over the caller's buffers (no copies, any
 * transposition). The bias of C's row i is the bias of dst's column i. */
static void entry_make(bp_cpu_matmuls *mm, mm_entry *x, const mm_key *q) {
  dnnl_memory_desc_t smd, wmd, bmd, dmd;
  const dnnl_dims_t sd = {q->n, q->k}, wd = {q->k, q->m}, dd = {q->n, q->m}, bd = {1, q->m};
  const dnnl_dims_t ss = {q->trans_b ? 1 : q->ldb, q->trans_b ? q->ldb : 1};
  const dnnl_dims_t ws = {q->trans_a ? 1 : q->lda, q->trans_a ? q->lda : 1};
  const dnnl_dims_t ds = {q->ldc, 1}, bs = {q->m, 1};
  const int bias = q->epilogue != BP_MM_PLAIN;
  dnnl_primitive_attr_t attr = NULL;
  dnnl_post_ops_t po = NULL;
  dnnl_primitive_desc_t pd = NULL;
  dnnl_matmul_desc_t desc;
  int ok = dnnl_memory_desc_init_by_strides(&smd, 2, sd, dnnl_f32, ss) == dnnl_success &&
           dnnl_memory_desc_init_by_strides(&wmd, 2, wd, dnnl_f32, ws) == dnnl_success &&
           dnnl_memory_desc_init_by_strides(&dmd, 2, dd, dnnl_f32, ds) == dnnl_success &&
           (!bias || dnnl_memory_desc_init_by_strides(&bmd, 2, bd, dnnl_f32, bs) == dnnl_success);
  ok = ok && dnnl_matmul_desc_init(&desc, &smd, &wmd, bias ? &bmd : NULL, &dmd) == dnnl_success;
  ok = ok && dnnl_primitive_attr_create(&attr) == dnnl_success;
  if (ok && (q->epilogue == BP_MM_BIAS_SIGMOID || q->epilogue == BP_MM_BIAS_TANH)) {
    const dnnl_alg_kind_t alg =
        q->epilogue == BP_MM_BIAS_SIGMOID ? dnnl_eltwise_logistic : dnnl_eltwise_tanh;
    ok = dnnl_post_ops_create(&po) == dnnl_success &&
         dnnl_post_ops_append_eltwise(po, 1.0f, alg, 0.0f, 0.0f) == dnnl_success &&
         dnnl_primitive_attr_set_post_ops(attr, po) == dnnl_success;
  }
  ok = ok && dnnl_primitive_desc_create(&pd, &desc, attr, mm->engine, NULL) == dnnl_success;
  ok = ok && dnnl_primitive_create(&x->prim, pd) == dnnl_success;
  ok = ok && dnnl_memory_create(&x->src, &smd, mm->engine, DNNL_MEMORY_NONE) == dnnl_success;
  ok = ok && dnnl_memory_create(&x->wei, &wmd, mm->engine, DNNL_MEMORY_NONE) == dnnl_success;
  ok = ok && dnnl_memory_create(&x->dst, &dmd, mm->engine, DNNL_MEMORY_NONE) == dnnl_success;
  ok = ok && (!bias || dnnl_memory_create(&x->bia, &bmd, mm->engine, DNNL_MEMORY_NONE) ==
                           dnnl_success);
  if (pd) dnnl_primitive_desc_destroy(pd);
  if (po) dnnl_post_ops_destroy(po);
  if (attr) dnnl_primitive_attr_destroy(attr);
  if (!ok) entry_clear(x); /* remembered below as "none for this key" */
  x->key = *q;
  x->used = 1;
  if (ok) ++mm->made;
}

static mm_entry *lookup(bp_cpu_matmuls *mm, const mm_key *q) {
  mm_entry *victim = &mm->e[0];
  for (int i = 0; i < BP_CPU_MATMULS; ++i) {
    mm_entry *x = &mm->e[i];
    if (x->used && memcmp(&x->key, q, sizeof *q) == 0) return x;
    if (!x->used || (victim->used && x->stamp < victim->stamp)) victim = x;
  }
  entry_clear(victim);
  entry_make(mm, victim, q);
  return victim;
}

int bp_cpu_matmul(bp_cpu_matmuls *mm, int epilogue, int trans_a, int trans_b, int m, int n, int k,
                  const float *A, int lda, const float *B, int ldb, const float *bias, float *C,
                  int ldc) {
  if (!mm || m <= 0 || n <= 0 || k <= 0) return 0;
  int threads = 1;
#ifdef BP_CPU_OPENMP
  const int saved = omp_get_max_threads();
  const int serial = saved > 1 && (double)m * (double)n * (double)k < BP_SGEMM_PARALLEL_MIN;
  if (serial) omp_set_num_threads(1);
  threads = omp_get_max_threads();
#endif
  /* All ints, no padding: memcmp compares the fields. */
  const mm_key q = {epilogue, !!trans_a, !!trans_b, m, n, k, lda, ldb, ldc, threads};
  mm_entry *x = lookup(mm, &q);
  x->stamp = ++mm->clock;
  int done = 0;
  if (x->prim) {
    /* The handles are only read by the primitive; oneDNN's setter takes
     * them non-const. */
    dnnl_memory_set_data_handle(x->src, (void *)(uintptr_t)B);
    dnnl_memory_set_data_handle(x->wei, (void *)(uintptr_t)A);
    dnnl_memory_set_data_handle(x->dst, C);
    dnnl_exec_arg_t args[4] = {{DNNL_ARG_SRC, x->src}, {DNNL_ARG_WEIGHTS, x->wei},
                               {DNNL_ARG_DST, x->dst}, {DNNL_ARG_BIAS, x->bia}};
    if (x->bia) dnnl_memory_set_data_handle(x->bia, (void *)(uintptr_t)bias);
    done = dnnl_primitive_execute(x->prim, mm->stream, x->bia ? 4 : 3, args) == dnnl_success &&
           dnnl_stream_wait(mm->stream) == dnnl_success;
    if (done) __atomic_fetch_add(&runs, 1, __ATOMIC_RELAXED);
  }
#ifdef BP_CPU_OPENMP
  if (serial) omp_set_num_threads(saved);
#endif
  return done;
}

#else /* no oneDNN: every caller keeps its product + pass */

bp_cpu_matmuls *bp_cpu_matmuls_create(void) { return NULL; }
void bp_cpu_matmuls_destroy(bp_cpu_matmuls *mm) { (void)mm; }
long bp_cpu_matmuls_made(const bp_cpu_matmuls *mm) {
  (void)mm;
  return 0;
}
long bp_cpu_matmul_runs(void) { return 0; }
int bp_cpu_matmul(bp_cpu_matmuls *mm, int epilogue, int trans_a, int trans_b, int m, int n, int k,
                  const float *A, int lda, const float *B, int ldb, const float *bias, float *C,
                  int ldc) {
  (void)mm, (void)epilogue, (void)trans_a, (void)trans_b, (void)m, (void)n, (void)k, (void)A;
  (void)lda, (void)B, (void)ldb, (void)bias, (void)C, (void)ldc;
  return 0;
}

#endif
