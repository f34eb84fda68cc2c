/*
 * reduce_layout.cuh - the tiling of the bias-gradient reduction, shared by
 * reduce.cu (the reference kernels) and fused.cu (the fused ones), so both
 * add the same numbers in the same order and give bit-identical sums.
 *
 * delta is width x n column-major: row j (one neuron) is strided by width,
 * column k (one example) is contiguous. A block is BIAS_BX x BIAS_BY threads:
 * threadIdx.x picks the row, so a warp reads 32 consecutive floats of one
 * column (coalesced); threadIdx.y interleaves over the columns of the block's
 * chunk. blockIdx.x tiles the rows, blockIdx.y the chunks of columns.
 */
#ifndef BP_REDUCE_LAYOUT_CUH
#define BP_REDUCE_LAYOUT_CUH

#include <stddef.h>

#define BIAS_BX 32
#define BIAS_BY 8
#define BIAS_CHUNK 128        /* columns per block while that fits in gridDim.y */
#define BIAS_MAX_CHUNKS 65535 /* gridDim.y limit */

/* Columns per chunk for n: BIAS_CHUNK, or more (a multiple of BIAS_BY) when n
 * is so large that the chunks would not fit in gridDim.y. */
static inline size_t bias_chunk_cols(int n) {
  size_t cols = BIAS_CHUNK;
  if (((size_t)n + cols - 1) / cols > BIAS_MAX_CHUNKS) {
    cols = ((size_t)n + BIAS_MAX_CHUNKS - 1) / BIAS_MAX_CHUNKS;
    cols = (cols + BIAS_BY - 1) / BIAS_BY * BIAS_BY;
  }
  return cols;
}

/* Number of column chunks for n (>= 1) examples. */
static inline unsigned bias_chunks(int n) {
  size_t cols = bias_chunk_cols(n);
  return (unsigned)(((size_t)n + cols - 1) / cols);
}

#endif /* BP_REDUCE_LAYOUT_CUH */
