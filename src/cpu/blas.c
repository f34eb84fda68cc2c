/* blas.c - sgemm through oneDNN's sgemm when the build found it (the BLAS as
 * its fallback), else through CBLAS (OpenBLAS) when the build found one, else
 * a plain loop fallback so the library still builds and is correct anywhere. */
#include "blas.h"

#include <stddef.h>

#ifdef BP_WITH_CBLAS
#include <cblas.h>
#ifdef BP_CPU_OPENMP
#include <omp.h>
#endif
#ifdef BP_WITH_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif


void bp_cpu_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc) {
#ifdef BP_CPU_OPENMP
  const int saved = omp_get_max_threads();
  const int serial = saved > 1 && (double)m * (double)n * (double)k < BP_SGEMM_PARALLEL_MIN;
  if (serial) omp_set_num_threads(1);
#endif
#ifdef BP_WITH_DNNL
  /* oneDNN's sgemm is row-major: the column-major C = op(A) op(B) is the
   * row-major C^T = op(B)^T op(A)^T, the same buffers with the operands
   * swapped. It reads the OpenMP thread count at each call, like the BLAS. */
  const dnnl_status_t ok = dnnl_sgemm(trans_b ? 'T' : 'N', trans_a ? 'T' : 'N', n, m, k, alpha,
                                      B, ldb, A, lda, beta, C, ldc);
  /* A refused product (its scratch could not be allocated) is computed by
   * the BLAS: the same result to rounding, never a lost step. C is only
   * written by a product that ran. */
  if (ok != dnnl_success)
#endif
    cblas_sgemm(CblasColMajor, trans_a ? CblasTrans : CblasNoTrans,
                trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
#ifdef BP_CPU_OPENMP
  if (serial) omp_set_num_threads(saved);
#endif
}

#ifdef BP_WITH_DNNL
const char *bp_cpu_blas_name(void) { return "onednn"; }
#else
const char *bp_cpu_blas_name(void) { return "cblas"; }
#endif

#else

/* Element (r, c) of op(X) for column-major X with leading dimension ld. */
static inline float at(const float *X, int ld, int trans, int r, int c) {
  return trans ? X[(size_t)r * ld + c] : X[(size_t)c * ld + r];
}

void bp_cpu_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc) {
  for (int j = 0; j < n; ++j) {
    for (int i = 0; i < m; ++i) {
      float acc = 0.0f;
      for (int p = 0; p < k; ++p) acc += at(A, lda, trans_a, i, p) * at(B, ldb, trans_b, p, j);
      float *c = &C[(size_t)j * ldc + i];
      *c = alpha * acc + (beta == 0.0f ? 0.0f : beta * *c);
    }
  }
}

const char *bp_cpu_blas_name(void) { return "builtin"; }

#endif
