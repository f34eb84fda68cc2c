/* blas.c - sgemm through CBLAS (OpenBLAS) when the build found one, else a
 * plain loop fallback so the library still builds and is correct anywhere. */
#include "blas.h"

#include <stddef.h>

#ifdef BP_WITH_CBLAS
#include <cblas.h>

void bp_cpu_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc) {
  cblas_sgemm(CblasColMajor, trans_a ? CblasTrans : CblasNoTrans,
              trans_b ? CblasTrans : CblasNoTrans, m, n, k, alpha, A, lda, B, ldb, beta, C, ldc);
}

const char *bp_cpu_blas_name(void) { return "cblas"; }

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
