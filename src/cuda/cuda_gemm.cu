/* cuda_gemm.cu - every matrix product of the CUDA backend, in the network's
 * math mode (backprop.h "Execution options").
 *
 * Modes. All three read and write float32 C; they differ in what the
 * multiplier sees:
 *   FP32  exact float32 products (cuBLAS pedantic math: no TF32, no
 *         reduced-precision shortcuts), so the backend matches the CPU
 *         backend to float32 rounding.
 *   TF32  float32 in and out, TF32 tensor-core compute
 *         (CUBLAS_COMPUTE_32F_FAST_TF32): the hardware drops the inputs'
 *         mantissas to 10 bits and accumulates in float32.
 *   BF16  both operands converted to bfloat16 (round to nearest even,
 *         kernels/convert.cu) into two scratch buffers of this network,
 *         float32 accumulation (CUBLAS_COMPUTE_32F) and float32 output.
 *         Master weights, activations and errors stay float32.
 *
 * Two implementations, chosen per network by its product path
 * (bp_network_set_product_path), read at every product:
 *   cublas (default)  the cuBLAS handle of the context: cublasSgemm (FP32)
 *                     or cublasGemmEx (TF32, BF16). The reference path, and
 *                     the one verified on a GPU so far.
 *   lt                cuBLASLt with a plan cache: per distinct product (both
 *                     transposes, m, n, k, the three leading dimensions, the
 *                     math mode, the determinism switch and the operands'
 *                     alignments) one matmul descriptor, three matrix
 *                     layouts and the algorithm chosen once by
 *                     cublasLtMatmulAlgoGetHeuristic, plus one 32 MiB
 *                     workspace per network. A product whose heuristic finds
 *                     no algorithm takes the cuBLAS path (remembered too).
 * After the first product of a shape nothing is created, allocated or
 * waited for in cuda_gemm: it may run inside CUDA graph stream capture.
 *
 * Determinism (net->deterministic):
 *   - The cuBLAS path is deterministic in both settings: the handle is bound
 *     to the context's one stream, and the atomics mode is left at its
 *     default CUBLAS_ATOMICS_NOT_ALLOWED (this library never enables it), so
 *     cuBLAS's reproducibility rule holds (the same bits on every run on the
 *     same architecture, SM count and library version).
 *   - The Lt path: see lt_reduction_mask below.
 *
 * A mode or switch change takes effect at the next product: both are part
 * of the plan key, and the cuBLAS path reads them on every call.
 */
#include <cublasLt.h>

#include "cuda_internal.h"

/* The cuBLASLt workspace of a network: room for split-K partial sums and
 * the algorithms that want scratch. 32 MiB is what NVIDIA recommends for
 * Hopper (cuBLAS guide, cublasSetWorkspace). */
#define GEMM_LT_WORKSPACE_BYTES ((size_t)32 << 20)

/* Everything that decides a plan; compared with memcmp, so always
 * memset to zero before it is filled. */
typedef struct gemm_key {
  int ta, tb, m, n, k, lda, ldb, ldc;
  int math, deterministic;
  int align_a, align_b, align_c; /* bytes: the largest power of two <= 256 dividing the address */
} gemm_key;

typedef struct gemm_plan {
  gemm_key key;
  int use_lt; /* 0: no cuBLASLt algorithm for this product; the cuBLAS path */
  cublasLtMatmulDesc_t desc;
  cublasLtMatrixLayout_t a, b, c; /* D is C */
  cublasLtMatmulAlgo_t algo;
} gemm_plan;

typedef struct gemm_state {
  cublasLtHandle_t lt;    /* made by the first cuBLASLt product; NULL before */
  void *workspace;        /* with lt: GEMM_LT_WORKSPACE_BYTES */
  gemm_plan *plans;
  int n_plans, cap_plans;
  uint16_t *bf16[2];      /* BF16 operands A and B: bf16_count values each */
  size_t bf16_count;
} gemm_state;

static gemm_state *gemm_of(const bp_network *net) { return (gemm_state *)net_state(net)->gemm; }

/* ---- Life cycle ---------------------------------------------------------------- */

bp_status cuda_gemm_init(bp_network *net) {
  bp_context *ctx = net->ctx;
  bp_status st = BP_OK;
  net_state(net)->gemm = NULL;
  gemm_state *gs = (gemm_state *)cuda_host_calloc(ctx, sizeof *gs, "the product state", &st);
  if (gs == NULL) return st;
  net_state(net)->gemm = gs; /* from here cuda_gemm_free releases whatever exists */
  return BP_OK;
}

/* The cuBLASLt handle and workspace, made when the product path first asks
 * for them: never inside a capture, since a graph key's first run (and an
 * options change makes a new key) runs uncaptured. */
static bp_status ensure_lt(bp_network *net, gemm_state *gs) {
  if (gs->lt != NULL) return BP_OK;
  bp_context *ctx = net->ctx;
  bp_status st =
      DEVICE_ALLOC(ctx, &gs->workspace, GEMM_LT_WORKSPACE_BYTES, "the cuBLASLt workspace");
  if (st != BP_OK) return st;
  cublasStatus_t cs = cublasLtCreate(&gs->lt);
  if (cs != CUBLAS_STATUS_SUCCESS) {
    gs->lt = NULL;
    cuda_device_free_quiet(gs->workspace);
    gs->workspace = NULL;
    return bp_cublas_fail(ctx, cs, "cublasLtCreate", __FILE__, __LINE__);
  }
  return BP_OK;
}

static void destroy_plan(gemm_plan *p) {
  if (p->desc != NULL) (void)cublasLtMatmulDescDestroy(p->desc);
  if (p->a != NULL) (void)cublasLtMatrixLayoutDestroy(p->a);
  if (p->b != NULL) (void)cublasLtMatrixLayoutDestroy(p->b);
  if (p->c != NULL) (void)cublasLtMatrixLayoutDestroy(p->c);
  memset(p, 0, sizeof *p);
}

/* The caller (cuda_network_free) has waited for the stream. */
void cuda_gemm_free(bp_network *net) {
  gemm_state *gs = gemm_of(net);
  if (gs == NULL) return;
  for (int i = 0; i < gs->n_plans; ++i) destroy_plan(&gs->plans[i]);
  free(gs->plans);
  cuda_device_free_quiet(gs->bf16[0]);
  cuda_device_free_quiet(gs->bf16[1]);
  cuda_device_free_quiet(gs->workspace);
  if (gs->lt != NULL) (void)cublasLtDestroy(gs->lt);
  free(gs);
  net_state(net)->gemm = NULL;
}

/* Grow-only, like the workspace. Reserved in every mode, so that switching
 * to BF16 later never allocates; the cost is one float32 buffer's worth of
 * the largest operand (two bfloat16 buffers). */
bp_status cuda_gemm_reserve(bp_network *net, int n) {
  bp_context *ctx = net->ctx;
  gemm_state *gs = gemm_of(net);
  const size_t need = bp_largest_operand(net, n);
  if (need <= gs->bf16_count) return BP_OK;
  uint16_t *fresh[2] = {NULL, NULL};
  bp_status st = DEVICE_ALLOC(ctx, &fresh[0], need * sizeof(uint16_t), "bfloat16 operand scratch");
  if (st == BP_OK)
    st = DEVICE_ALLOC(ctx, &fresh[1], need * sizeof(uint16_t), "bfloat16 operand scratch");
  if (st != BP_OK) {
    cuda_device_free_quiet(fresh[0]);
    return st; /* the old scratch stays, and with it the old capacity */
  }
  if (gs->bf16[0] != NULL) {
    /* Queued products may still read the old scratch. */
    cudaError_t err = cudaStreamSynchronize(ctx_state(ctx)->stream);
    if (err != cudaSuccess) {
      cuda_device_free_quiet(fresh[0]);
      cuda_device_free_quiet(fresh[1]);
      return bp_cuda_fail(ctx, err, "cudaStreamSynchronize", __FILE__, __LINE__);
    }
    cuda_device_free_quiet(gs->bf16[0]);
    cuda_device_free_quiet(gs->bf16[1]);
  }
  gs->bf16[0] = fresh[0];
  gs->bf16[1] = fresh[1];
  gs->bf16_count = need;
  ++net_state(net)->ws_serial; /* captured graphs hold the old scratch pointers */
  return BP_OK;
}

/* ---- Math-mode check (bp_backend_ops.check_math_mode) ----------------------------- */

bp_status cuda_check_math_mode(bp_network *net, bp_math_mode mode) {
  if (mode == BP_MATH_FP32) return BP_OK;
  bp_context *ctx = net->ctx;
  int major = 0, minor = 0;
  BP_CUDA_CHECK(ctx,
                cudaDeviceGetAttribute(&major, cudaDevAttrComputeCapabilityMajor, ctx->device));
  BP_CUDA_CHECK(ctx,
                cudaDeviceGetAttribute(&minor, cudaDevAttrComputeCapabilityMinor, ctx->device));
  if (major < 8)
    return bp_error(ctx, BP_ERR_UNSUPPORTED,
                    "bp_network_set_math_mode: %s needs the tensor cores of compute capability "
                    "8.0 or later (Ampere and newer); CUDA device %d has %d.%d, so the math mode "
                    "stays %s",
                    bp_math_mode_name(mode), ctx->device, major, minor,
                    bp_math_mode_name(net->math));
  return BP_OK;
}

/* ---- The cuBLAS path ------------------------------------------------------------- */

/* C = alpha op(A) op(B) + beta C on the context's cuBLAS handle. A and B are
 * float32, or bfloat16 in BF16 mode (already converted). The handle lives in
 * CUBLAS_PEDANTIC_MATH (cuda_context.cu); TF32 and BF16 switch it to
 * CUBLAS_DEFAULT_MATH around their cublasGemmEx call, so that the compute
 * type asked for is what runs whatever precedence cuBLAS gives the handle's
 * math mode, and put it back (the math mode is host state of the handle:
 * no device work, nothing for stream capture to see). */
static bp_status cublas_product(bp_network *net, cublasOperation_t ta, cublasOperation_t tb, int m,
                                int n, int k, float alpha, const void *A, int lda, const void *B,
                                int ldb, float beta, float *C, int ldc) {
  bp_context *ctx = net->ctx;
  cublasHandle_t h = ctx_state(ctx)->blas;
  if (net->math == BP_MATH_FP32) {
    BP_CUBLAS_CHECK(ctx, cublasSgemm(h, ta, tb, m, n, k, &alpha, (const float *)A, lda,
                                     (const float *)B, ldb, &beta, C, ldc));
    return BP_OK;
  }
  const int bf16 = net->math == BP_MATH_BF16;
  const cudaDataType_t in_type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const cublasComputeType_t compute = bf16 ? CUBLAS_COMPUTE_32F : CUBLAS_COMPUTE_32F_FAST_TF32;
  BP_CUBLAS_CHECK(ctx, cublasSetMathMode(h, CUBLAS_DEFAULT_MATH));
  cublasStatus_t s = cublasGemmEx(h, ta, tb, m, n, k, &alpha, A, in_type, lda, B, in_type, ldb,
                                  &beta, C, CUDA_R_32F, ldc, compute, CUBLAS_GEMM_DEFAULT);
  cublasStatus_t back = cublasSetMathMode(h, CUBLAS_PEDANTIC_MATH);
  if (s != CUBLAS_STATUS_SUCCESS) return bp_cublas_fail(ctx, s, "cublasGemmEx", __FILE__, __LINE__);
  if (back != CUBLAS_STATUS_SUCCESS)
    return bp_cublas_fail(ctx, back, "cublasSetMathMode", __FILE__, __LINE__);
  return BP_OK;
}

/* ---- The cuBLASLt path ----------------------------------------------------------- */

/* Which split-K reduction schemes the heuristic may choose from.
 *
 * What cublasLt.h (CUDA 13.0) says of each cublasLtReductionScheme_t:
 *   NONE          "dot-product shall be performed in one sequence";
 *   INPLACE       the partial sums are added into the output buffer, with
 *                 counters in the workspace "to guarantee the sequentiality";
 *   COMPUTE_TYPE  partial sums kept in the workspace in the compute type and
 *                 "reduced in a separate step";
 *   OUTPUT_TYPE   the same in the output type.
 * None of them is documented as unordered. But only NONE fixes the order of
 * every sum by construction (one sequence per output element); the other
 * three add partial sums of K slices whose count and combination the
 * library chooses, and whose order is guaranteed only by the
 * implementation's counters or reduction kernel. Deterministic mode is a
 * promise of bit-identical results from run to run, so it admits only NONE
 * (no split-K at all): a restriction that holds by the definition of the
 * scheme, not by how a given cuBLAS version implements the others. Off, any
 * scheme may be chosen (split-K pays for products with a long inner
 * dimension and few output tiles: the weight gradient at large batches).
 * Whether the chosen algorithms are in fact reproducible is checked by
 * tests/test_math_modes.cc on a GPU (two runs, bit-identical). */
static uint32_t lt_reduction_mask(int deterministic) {
  return deterministic ? (uint32_t)CUBLASLT_REDUCTION_SCHEME_NONE
                       : (uint32_t)CUBLASLT_REDUCTION_SCHEME_MASK;
}

static int address_alignment(const void *p) {
  uintptr_t u = (uintptr_t)p;
  int a = 256;
  while (a > 1 && u % (uintptr_t)a != 0) a >>= 1;
  return a;
}

/* Creates the descriptor, layouts and algorithm of a plan. A failure to
 * allocate is reported; anything else that keeps cuBLASLt from running the
 * product leaves use_lt = 0 (the cuBLAS path). */
/* In make_plan: a cuBLASLt call that refuses the request (NOT_SUPPORTED,
 * INVALID_VALUE) sends the product to the cuBLAS path (no_lt); any other
 * failure (an allocation) is reported (fail). */
#define LT_TRY(call)                                                        \
  do {                                                                      \
    cublasStatus_t lt_status_ = (call);                                     \
    if (lt_status_ == CUBLAS_STATUS_NOT_SUPPORTED ||                        \
        lt_status_ == CUBLAS_STATUS_INVALID_VALUE)                          \
      goto no_lt;                                                           \
    if (lt_status_ != CUBLAS_STATUS_SUCCESS) {                              \
      st = bp_cublas_fail(ctx, lt_status_, #call, __FILE__, __LINE__);     \
      goto fail;                                                            \
    }                                                                       \
  } while (0)

static bp_status make_plan(bp_network *net, gemm_state *gs, gemm_plan *p) {
  bp_context *ctx = net->ctx;
  const gemm_key *key = &p->key;
  const int bf16 = key->math == BP_MATH_BF16;
  const cublasComputeType_t compute = key->math == BP_MATH_FP32   ? CUBLAS_COMPUTE_32F_PEDANTIC
                                      : key->math == BP_MATH_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32
                                                                  : CUBLAS_COMPUTE_32F;
  const cudaDataType_t in_type = bf16 ? CUDA_R_16BF : CUDA_R_32F;
  const cublasOperation_t ta = (cublasOperation_t)key->ta, tb = (cublasOperation_t)key->tb;
  /* Stored shapes: op(A) is m x k, op(B) is k x n. */
  const uint64_t a_rows = (uint64_t)(ta == CUBLAS_OP_N ? key->m : key->k);
  const uint64_t a_cols = (uint64_t)(ta == CUBLAS_OP_N ? key->k : key->m);
  const uint64_t b_rows = (uint64_t)(tb == CUBLAS_OP_N ? key->k : key->n);
  const uint64_t b_cols = (uint64_t)(tb == CUBLAS_OP_N ? key->n : key->k);
  cublasLtMatmulPreference_t pref = NULL;
  bp_status st = BP_OK;
  const int32_t ta32 = (int32_t)ta, tb32 = (int32_t)tb;
  const uint64_t ws_bytes = GEMM_LT_WORKSPACE_BYTES;
  const uint32_t mask = lt_reduction_mask(key->deterministic);
  const uint32_t al_a = (uint32_t)key->align_a, al_b = (uint32_t)key->align_b,
                 al_c = (uint32_t)key->align_c;
  cublasLtMatmulHeuristicResult_t result;
  int found = 0;
  cublasStatus_t hs;

  LT_TRY(cublasLtMatmulDescCreate(&p->desc, compute, CUDA_R_32F));
  LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSA, &ta32,
                                                      sizeof ta32));
  LT_TRY(cublasLtMatmulDescSetAttribute(p->desc, CUBLASLT_MATMUL_DESC_TRANSB, &tb32,
                                                      sizeof tb32));
  LT_TRY(cublasLtMatrixLayoutCreate(&p->a, in_type, a_rows, a_cols, key->lda));
  LT_TRY(cublasLtMatrixLayoutCreate(&p->b, in_type, b_rows, b_cols, key->ldb));
  LT_TRY(cublasLtMatrixLayoutCreate(&p->c, CUDA_R_32F, (uint64_t)key->m,
                                                  (uint64_t)key->n, key->ldc));
  LT_TRY(cublasLtMatmulPreferenceCreate(&pref));
  LT_TRY(cublasLtMatmulPreferenceSetAttribute(
                           pref, CUBLASLT_MATMUL_PREF_MAX_WORKSPACE_BYTES, &ws_bytes, sizeof ws_bytes));
  LT_TRY(cublasLtMatmulPreferenceSetAttribute(
                           pref, CUBLASLT_MATMUL_PREF_REDUCTION_SCHEME_MASK, &mask, sizeof mask));
  /* The operands' actual alignments (the default assumes 256 bytes; a
   * layer's weights inside the parameter buffer are often less aligned). */
  LT_TRY(cublasLtMatmulPreferenceSetAttribute(
                           pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_A_BYTES, &al_a, sizeof al_a));
  LT_TRY(cublasLtMatmulPreferenceSetAttribute(
                           pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_B_BYTES, &al_b, sizeof al_b));
  LT_TRY(cublasLtMatmulPreferenceSetAttribute(
                           pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_C_BYTES, &al_c, sizeof al_c));
  LT_TRY(cublasLtMatmulPreferenceSetAttribute(
                           pref, CUBLASLT_MATMUL_PREF_MIN_ALIGNMENT_D_BYTES, &al_c, sizeof al_c));
  memset(&result, 0, sizeof result);
  hs = cublasLtMatmulAlgoGetHeuristic(gs->lt, p->desc, p->a, p->b, p->c, p->c, pref, 1, &result,
                                      &found);
  if (hs == CUBLAS_STATUS_ALLOC_FAILED) {
    st = bp_cublas_fail(ctx, hs, "cublasLtMatmulAlgoGetHeuristic", __FILE__, __LINE__);
    goto fail;
  }
  if (hs == CUBLAS_STATUS_SUCCESS && found > 0 && result.state == CUBLAS_STATUS_SUCCESS &&
      result.workspaceSize <= GEMM_LT_WORKSPACE_BYTES) {
    p->algo = result.algo;
    p->use_lt = 1;
  } else {
    /* No algorithm: this product takes the cuBLAS path from now on. */
    p->use_lt = 0;
  }
  (void)cublasLtMatmulPreferenceDestroy(pref);
  return BP_OK;
no_lt:
  /* cuBLASLt does not take this product as described (a compute type or an
   * attribute it refuses, e.g. pedantic FP32 in some version): not an error
   * of the product, which takes the cuBLAS path from now on. */
  st = BP_OK;
fail:
  if (pref != NULL) (void)cublasLtMatmulPreferenceDestroy(pref);
  {
    gemm_key keep = p->key;
    destroy_plan(p);
    p->key = keep;
  }
  return st; /* BP_OK from no_lt: use_lt is 0 */
}

/* The plan for key: found, or made and appended. */
static bp_status find_plan(bp_network *net, gemm_state *gs, const gemm_key *key, gemm_plan **out) {
  for (int i = 0; i < gs->n_plans; ++i)
    if (memcmp(&gs->plans[i].key, key, sizeof *key) == 0) {
      *out = &gs->plans[i];
      return BP_OK;
    }
  if (gs->n_plans == gs->cap_plans) {
    int cap = gs->cap_plans ? 2 * gs->cap_plans : 16;
    gemm_plan *grown = (gemm_plan *)realloc(gs->plans, sizeof *grown * (size_t)cap);
    if (grown == NULL)
      return bp_error(net->ctx, BP_ERR_OUT_OF_MEMORY,
                      "allocating the cuBLASLt plan cache (%d plans) failed: out of host memory",
                      cap);
    gs->plans = grown;
    gs->cap_plans = cap;
  }
  gemm_plan *p = &gs->plans[gs->n_plans];
  memset(p, 0, sizeof *p);
  p->key = *key;
  bp_status st = make_plan(net, gs, p);
  if (st != BP_OK) return st; /* not appended; the next call tries again */
  ++gs->n_plans;
  *out = p;
  return BP_OK;
}

/* ---- The product ----------------------------------------------------------------- */

/* Elements a column-major rows x cols matrix with leading dimension ld
 * spans in memory. */
static size_t span(int rows, int cols, int ld) {
  if (rows <= 0 || cols <= 0) return 0;
  return (size_t)(cols - 1) * (size_t)ld + (size_t)rows;
}

bp_status cuda_gemm(bp_network *net, cublasOperation_t ta, cublasOperation_t tb, int m, int n,
                    int k, float alpha, const float *A, int lda, const float *B, int ldb,
                    float beta, float *C, int ldc) {
  bp_context *ctx = net->ctx;
  gemm_state *gs = gemm_of(net);
  const void *a = A, *b = B;
  if (net->math == BP_MATH_BF16) {
    const size_t ca = span(ta == CUBLAS_OP_N ? m : k, ta == CUBLAS_OP_N ? k : m, lda);
    const size_t cb = span(tb == CUBLAS_OP_N ? k : n, tb == CUBLAS_OP_N ? n : k, ldb);
    if (ca > gs->bf16_count || cb > gs->bf16_count)
      return bp_error(ctx, BP_ERR_INVALID_ARGUMENT,
                      "internal error: a BF16 product over %zu and %zu elements, but the "
                      "bfloat16 scratch holds %zu (cuda_gemm_reserve was not called for this "
                      "batch)",
                      ca, cb, gs->bf16_count);
    cudaStream_t stream = ctx_state(ctx)->stream;
    NET_LAUNCH(net, bp_launch_float_to_bf16(A, gs->bf16[0], ca, stream));
    NET_LAUNCH(net, bp_launch_float_to_bf16(B, gs->bf16[1], cb, stream));
    a = gs->bf16[0];
    b = gs->bf16[1];
  }
  ++net->launches; /* one product, however many kernels the library runs for it */
  if (net->products == BP_PRODUCTS_CUBLASLT) {
    bp_status st = ensure_lt(net, gs);
    if (st != BP_OK) return st;
    gemm_key key;
    memset(&key, 0, sizeof key);
    key.ta = (int)ta;
    key.tb = (int)tb;
    key.m = m;
    key.n = n;
    key.k = k;
    key.lda = lda;
    key.ldb = ldb;
    key.ldc = ldc;
    key.math = (int)net->math;
    key.deterministic = net->deterministic;
    key.align_a = address_alignment(a);
    key.align_b = address_alignment(b);
    key.align_c = address_alignment(C);
    gemm_plan *p = NULL;
    st = find_plan(net, gs, &key, &p);
    if (st != BP_OK) return st;
    if (p->use_lt) {
      BP_CUBLAS_CHECK(ctx, cublasLtMatmul(gs->lt, p->desc, &alpha, a, p->a, b, p->b, &beta, C,
                                          p->c, C, p->c, &p->algo, gs->workspace,
                                          GEMM_LT_WORKSPACE_BYTES, ctx_state(ctx)->stream));
      return BP_OK;
    }
  }
  return cublas_product(net, ta, tb, m, n, k, alpha, a, lda, b, ldb, beta, C, ldc);
}

extern "C" int bp_cuda_debug_lt_plans(const bp_network *net) {
  const gemm_state *gs = gemm_of(net);
  int count = 0;
  if (gs != NULL)
    for (int i = 0; i < gs->n_plans; ++i) count += gs->plans[i].use_lt;
  return count;
}
