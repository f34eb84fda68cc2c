/* cuda_dataset.cu - a data set's device copy: X and Y as the column-major
 * matrices of the workspace layout (internal.h), and room for one epoch's
 * permutation. */
#include "cuda_internal.h"

bp_status cuda_dataset_init(bp_dataset *data, const float *X, const float *Y) {
  bp_context *ctx = data->ctx;
  cudaStream_t stream = ctx_state(ctx)->stream;
  bp_status st = cuda_enter(ctx);
  if (st != BP_OK) return st;
  data->impl = NULL;
  cuda_dataset *cd = (cuda_dataset *)cuda_host_calloc(ctx, sizeof *cd, "the data set state", &st);
  if (cd == NULL) return st;
  data->impl = cd;

  /* n, n_in, n_out <= BP_MAX_DIM (2^28): the byte sizes fit in size_t. */
  const size_t n = (size_t)data->n;
  const size_t x_count = (size_t)data->n_in * n, y_count = (size_t)data->n_out * n;
  st = DEVICE_ALLOC(ctx, &cd->X, x_count * sizeof(float), "the data set's inputs");
  if (st == BP_OK)
    st = DEVICE_ALLOC(ctx, &cd->Y, y_count * sizeof(float), "the data set's targets");
  if (st == BP_OK) st = DEVICE_ALLOC(ctx, &cd->perm, n * sizeof(int32_t), "the epoch permutation");
  if (st != BP_OK) goto fail;

  /* Row-major n x n_in on the host is column-major n_in x n: plain copies. */
  BP_CUDA_CHECK_GOTO(
      ctx, cudaMemcpyAsync(cd->X, X, x_count * sizeof(float), cudaMemcpyHostToDevice, stream), st,
      fail);
  BP_CUDA_CHECK_GOTO(
      ctx, cudaMemcpyAsync(cd->Y, Y, y_count * sizeof(float), cudaMemcpyHostToDevice, stream), st,
      fail);
  BP_CUDA_CHECK_GOTO(ctx, cudaStreamSynchronize(stream), st, fail);
  return BP_OK;
fail:
  cuda_dataset_free(data);
  return st;
}

void cuda_dataset_free(bp_dataset *data) {
  cuda_dataset *cd = data_state(data);
  if (cd == NULL) return;
  bp_context *ctx = data->ctx;
  (void)cudaSetDevice(ctx->device);
  if (ctx_state(ctx) != NULL) (void)cudaStreamSynchronize(ctx_state(ctx)->stream);
  cuda_device_free_quiet(cd->X);
  cuda_device_free_quiet(cd->Y);
  cuda_device_free_quiet(cd->perm);
  (void)cudaGetLastError();
  free(cd);
  data->impl = NULL;
}
