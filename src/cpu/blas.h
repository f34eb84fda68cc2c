/* blas.h - the one matrix product the CPU backend needs, column-major, with
 * cuBLAS's argument order so both backends issue the same three calls. */
#ifndef BP_CPU_BLAS_H
#define BP_CPU_BLAS_H

/* Products with fewer multiply-adds than this run on the calling thread: at
 * batch 32 (the main job, 100 x 32 x 784) waking the pool for each product
 * cost more than it saved, 2.5-2.8 s against 3.1-25 s for 5 epochs on the
 * shared 2-core machine (bench/NOTES.md section 11). The OpenMP BLAS and
 * oneDNN take their thread count from omp_get_max_threads() at each call.
 * matmul.c keeps the same rule. */
#define BP_SGEMM_PARALLEL_MIN 4194304.0 /* 2^22 */

/* C = alpha * op(A) op(B) + beta * C; op(X) = X^T when trans_x is nonzero.
 * op(A) is m x k, op(B) is k x n, C is m x n; all column-major. */
void bp_cpu_sgemm(int trans_a, int trans_b, int m, int n, int k, float alpha, const float *A,
                  int lda, const float *B, int ldb, float beta, float *C, int ldc);

/* Which implementation is linked: "onednn" (oneDNN's sgemm over a BLAS),
 * "cblas" (a real BLAS) or "builtin". */
const char *bp_cpu_blas_name(void);

#endif
