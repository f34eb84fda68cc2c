/* blas.h - the one matrix product the CPU backend needs, column-major, with
 * cuBLAS's argument order so both backends issue the same three calls. */
#ifndef BP_CPU_BLAS_H
#define BP_CPU_BLAS_H

/* C = alpha * op(A) op(B) + beta * C; op(X) = X^T when trans_x is nonzero.
 * op(A) is m x k, op(B) is k x n, C is m x n; all column-major. */
void bp_cpu_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Which implementation is linked: "onednn" (oneDNN's sgemm over a BLAS),
 * "cblas" (a real BLAS) or "builtin". */
const char *bp_cpu_blas_name(void);

#endif
