/* cuda_gemm.cu - the matrix products of the CUDA backend.
 *
 * FP32 only for now: cublasSgemm with the handle's pedantic math. */
#include "cuda_internal.h"

bp_status cuda_gemm_init(bp_network *net) {
  net_state(net)->gemm = NULL;
  return BP_OK;
}

void cuda_gemm_free(bp_network *net) { (void)net; }

bp_status cuda_gemm_reserve(bp_network *net, int n) {
  (void)net;
  (void)n;
  return BP_OK;
}

bp_status cuda_gemm(bp_network *net, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                    int k, float alpha, const float *A, int lda, const float *B, int ldb,
                    float beta, float *C, int ldc) {
  bp_context *ctx = net->ctx;
  BP_CUBLAS_CHECK(ctx, cublasSgemm(ctx_state(ctx)->blas, ta, tb, m, n, k, &alpha, A, lda, B, ldb,
                                   &beta, C, ldc));
  return BP_OK;
}
