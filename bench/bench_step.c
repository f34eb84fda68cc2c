/*
 * bench_step.c - the training step through the public API, on either
 * backend, against its GEMMs timed alone with the same settings.
 *
 * For each configuration (layer sizes and batch B):
 *   - a data set of n = B * S random examples (inputs in [0,1), one-hot
 *     targets) is created in backend memory once; one warm-up epoch of S
 *     steps, then E timed epochs of bp_train_epoch(batch = B). Each epoch is
 *     timed on the wall clock (bp_train_epoch waits for the device before it
 *     returns). The host shuffle that bp_train_epoch runs before queueing any
 *     work (Fisher-Yates over n indices, src/engine/epoch.c) is timed separately
 *     with the same code and subtracted:  step = (epoch - shuffle) / S.
 *     Nothing is copied from the host per step.
 *   - the same GEMMs the step issues (the layout of src/internal.h: per layer Z = W A,
 *     dW^T = A Delta^T / B, and G = W^T Delta for every layer but the
 *     first), with the same shapes and transposes, timed alone, in the
 *     --math mode: on CUDA cublasSgemm on a handle in CUBLAS_PEDANTIC_MATH
 *     for fp32 (as the backend's default cuBLAS path), cublasGemmEx with
 *     CUBLAS_COMPUTE_32F_FAST_TF32 for tf32, cublasGemmEx on bfloat16
 *     copies of the operands (converted once on the host, outside the
 *     timing) for bf16; on the CPU the library's own bp_cpu_sgemm (oneDNN
 *     or the BLAS it links), in every mode (the emulation's rounding of the operands is
 *     not included; without a BLAS the GEMMs are not timed and the ratios
 *     are null). These are the ceilings, each product timed alone, outside
 *     a step. Each GEMM is run back to back on the same operands; the
 *     median per call is kept; their sum is gemm_sum.
 *   - the bytes the step's elementwise kernels must move at least (gather,
 *     bias+sigmoid, output error, cost, bias gradients, hidden errors, SGD)
 *     over the copy bandwidth measured in this run (cudaMemcpy D2D, or
 *     memcpy on the CPU), added to gemm_sum: floor = gemm_sum + bytes/copy.
 *   - launches per step, from the library (bp_network_last_epoch_stats:
 *     launches / steps of the last timed epoch): kernel launches, library
 *     products and graph launches the host issued, the epoch's own work
 *     (permutation, counters) spread over its steps; a replayed step counts
 *     1 graph launch plus the gather. 0 on the CPU.
 *   - host us: the host's time to queue one step, from the library
 *     (bp_network_last_epoch_stats: queue_us / steps), the median over the
 *     timed epochs; with --graphs, the cost of one graph replay.
 *   - TFLOP/s use the nominal 6 * B * sum(n_in * n_out) per step; the
 *     library skips the first layer's input gradient, so it executes
 *     2 * B * (3 sum - s0 s1) (reported as flops_executed).
 *
 * End to end (--e2e DIR): trains 784-100-10 on the IDX data set in DIR,
 * evaluating the test set after every epoch, until the test accuracy reaches
 * --target; reports the training time (evaluation excluded) and the wall time.
 *
 * Math mode (--math fp32|tf32|bf16, default fp32): the network's
 * bp_network_set_math_mode, and the precision of the GEMMs timed alone; the
 * JSON records it in the header and in every result. On the CPU, tf32 and
 * bf16 are the emulation (rounding, then float32 sgemm): slower, by design.
 *
 * Kernel path, graphs, products (--kernels reference|fused, --graphs,
 * --gemm cublas|lt, --nondeterministic): bp_network_set_kernel_path,
 * bp_network_set_cuda_graphs, bp_network_set_product_path and
 * bp_network_set_deterministic on every network made here; all recorded in
 * the JSON header. Only the public API (backprop.h) is used.
 *
 * Model (--model HIDDEN-OUTPUT-COST-OPTIMIZER, default
 * sigmoid-sigmoid-quadratic-sgd, the seed's): the hidden layers'
 * activation, the output's, the cost (quadratic|ce) and the optimizer
 * (sgd|adam|adamw|rprop, torch.optim's defaults), through
 * bp_network_create_ex; e.g. relu-softmax-ce-adamw. The step then includes
 * that model's passes and update; the GEMMs timed alone are the same.
 *
 * Run:  bench_step --backend cpu|cuda [--math M] [--kernels K] [--graphs] --config 784-100-10@256 ...
 *       bench_step --info
 * Exit: 0 ok; 1 a failure (status not BP_OK, non-finite cost); 2 usage; 77 backend absent.
 */
#define _POSIX_C_SOURCE 200809L

#include <math.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backprop.h"
#include "bench_common.h"
#define BENCH_PROGRAM "bench_step"
#include "bench_config.h"

#ifdef BENCH_WITH_CBLAS
#include "cpu/blas.h" /* the library's product: bp_cpu_sgemm, bp_cpu_blas_name */
#include "cpu/matmul.h" /* and its forward product: bp_cpu_matmul */
#define BENCH_CPU_BLAS bp_cpu_blas_name()
#else
#define BENCH_CPU_BLAS "builtin"
#endif

#ifdef BP_WITH_CUDA
#include <cublas_v2.h>
#include <cuda_runtime.h>

static void cublas_check(cublasStatus_t st, const char *file, int line) {
  if (st != CUBLAS_STATUS_SUCCESS) {
    fprintf(stderr, "[cuBLAS ERROR] at file %s:%d: status %d\n", file, line, (int)st);
    exit(EXIT_FAILURE);
  }
}
#define cublasCheck(st) (cublas_check((st), __FILE__, __LINE__))
#endif

#define MAX_CONFIGS 128

typedef struct options {
  bp_backend backend;
  bp_math_mode math;
  bp_kernel_path kernels;  /* --kernels: bp_network_set_kernel_path */
  int graphs;              /* --graphs: bp_network_set_cuda_graphs(net, 1) */
  bp_product_path products; /* --gemm cublas|lt: bp_network_set_product_path */
  int nondeterministic; /* --nondeterministic: bp_network_set_deterministic(net, 0) */
  /* --model: hidden and output activation, cost, optimizer */
  bp_activation hidden_act, output_act;
  bp_cost cost;
  bp_optimizer optimizer;
  const char *model;
  config configs[MAX_CONFIGS];
  int n_configs;
  int steps;          /* steps per epoch S (upper bound; the data cap may lower it) */
  int epochs;         /* timed epochs E (at least) */
  int min_steps;      /* timed steps at least (more epochs if S is small) */
  int gemm_repeats;
  double data_cap_mib; /* the data set's inputs at most this big (MiB) */
  double time_budget;  /* seconds: start no configuration after this (0: no limit) */
  float lr;
  uint64_t seed;
  int smoke;
  const char *json;
  /* end to end */
  const char *e2e_dir;
  float target;
  int e2e_batch;
  float e2e_lr;
  int e2e_max_epochs;
  double e2e_max_seconds;
} options;

/* ---- Model of a step --------------------------------------------------------- */

static double sum_products(const config *c) {
  double s = 0;
  for (int i = 0; i + 1 < c->n_sizes; ++i) s += (double)c->sizes[i] * c->sizes[i + 1];
  return s;
}

static double flops_nominal(const config *c) { return 6.0 * c->batch * sum_products(c); }

static double flops_executed(const config *c) {
  return 2.0 * c->batch * (3.0 * sum_products(c) - (double)c->sizes[0] * c->sizes[1]);
}

static double n_params(const config *c) {
  double p = 0;
  for (int i = 0; i + 1 < c->n_sizes; ++i) p += (double)c->sizes[i + 1] * (c->sizes[i] + 1);
  return p;
}

/* The fewest bytes the step's elementwise kernels move (as in
 * bench_kernels): gather 8 B per gathered element (+4 per index), bias and
 * sigmoid 12 B per element of every layer, output error 16 and cost 8 per
 * output element, bias gradient 4 per error element of every layer, hidden
 * error 12 per element of every layer but the last, SGD 12 per parameter.
 * This is the reference kernels' traffic; the floor uses it for both paths,
 * so that the fused path's saving shows as a lower step/floor. */
static double elementwise_bytes(const config *c) {
  const double B = c->batch;
  const int L = c->n_sizes - 1;
  const double s0 = c->sizes[0], sL = c->sizes[L];
  double b = 8.0 * B * (s0 + sL) + 4.0 * B; /* gather */
  for (int i = 1; i <= L; ++i) b += 12.0 * B * c->sizes[i] + 4.0 * B * c->sizes[i]; /* fwd, db */
  b += 16.0 * B * sL + 8.0 * B * sL;                          /* output error, cost */
  for (int i = 1; i < L; ++i) b += 12.0 * B * c->sizes[i];     /* hidden errors */
  b += 12.0 * n_params(c);                                     /* SGD */
  return b;
}

/* ---- Host timing of bp_train_epoch's shuffle ----------------------------------- */

/* The same work as bp_train_epoch does on the host before it queues
 * anything: allocate, fill and Fisher-Yates n indices (with the bench's
 * generator, one 64-bit draw per index as the library's). */
static double shuffle_ms(int n, uint64_t seed) {
  double t[5];
  volatile int32_t sink = 0;
  for (int r = 0; r < 5; ++r) {
    double t0 = bench_now_ms();
    int32_t *perm = malloc(sizeof(int32_t) * (size_t)n);
    if (!perm) {
      fprintf(stderr, "bench_step: out of host memory\n");
      exit(EXIT_FAILURE);
    }
    bench_permutation(perm, n, seed + (uint64_t)r);
    sink = sink + perm[n / 2];
    free(perm);
    t[r] = bench_now_ms() - t0;
  }
  (void)sink;
  return bench_median(t, 5);
}

/* ---- GEMMs alone --------------------------------------------------------------- */

typedef struct gemm {
  int ta, tb, m, n, k, lda, ldb, ldc;
  float alpha;
  const char *what; /* "fwd", "dW", "G" */
  int layer;
} gemm;

/* The GEMMs of one step, in the order the backend issues them. */
static int step_gemms(const config *c, gemm *g) {
  const int L = c->n_sizes - 1, B = c->batch;
  int n = 0;
  for (int i = 0; i < L; ++i) {
    int fan_in = c->sizes[i], w = c->sizes[i + 1];
    g[n++] = (gemm){1, 0, w, B, fan_in, fan_in, fan_in, w, 1.0f, "fwd", i};
  }
  for (int i = L - 1; i >= 0; --i) {
    int fan_in = c->sizes[i], w = c->sizes[i + 1];
    g[n++] = (gemm){0, 1, fan_in, w, B, fan_in, w, fan_in, 1.0f / (float)B, "dW", i};
    if (i > 0) g[n++] = (gemm){0, 0, fan_in, B, w, fan_in, w, fan_in, 1.0f, "G", i};
  }
  return n;
}

/* Elements each operand of g needs (column-major, op applied). */
static size_t a_elems(const gemm *g) { return (size_t)g->lda * (size_t)(g->ta ? g->m : g->k); }
static size_t b_elems(const gemm *g) { return (size_t)g->ldb * (size_t)(g->tb ? g->k : g->n); }
static size_t c_elems(const gemm *g) { return (size_t)g->ldc * (size_t)g->n; }

typedef struct gemm_result {
  double sum_ms; /* sum over the step's GEMMs of the median time per call */
  double seq_ms; /* the whole sequence back to back, median */
} gemm_result;

#ifdef BP_WITH_CUDA
/* A 4 Mi-float block of random values, copied over the device operands. */
static float *random_block(size_t *len) {
  *len = (size_t)1 << 22;
  float *h = malloc(*len * sizeof(float));
  if (!h) {
    fprintf(stderr, "bench_step: out of host memory\n");
    exit(EXIT_FAILURE);
  }
  bench_fill_uniform(h, *len, 0xb10c, -1.0f, 1.0f);
  return h;
}
#endif

#ifdef BENCH_WITH_CBLAS
/* One GEMM of the step, column-major as the CPU backend calls it. */
static void cpu_gemm(const gemm *q, const float *A, const float *Bm, float *C) {
  /* The library's own products, so that "gemm" is the step's own GEMMs:
   * the forward one through oneDNN's matmul primitive as the backend runs
   * it (src/cpu/matmul.c) but without its bias and activation, the others
   * through bp_cpu_sgemm (src/cpu/blas.c: oneDNN or the BLAS), each with
   * the library's rule for which products run on one thread. */
  static bp_cpu_matmuls *mm;
  static int tried;
  if (!tried) {
    mm = bp_cpu_matmuls_create(); /* kept to the end of the run */
    tried = 1;
  }
  if (q->what[0] == 'f' && q->alpha == 1.0f &&
      bp_cpu_matmul(mm, BP_MM_PLAIN, q->ta, q->tb, q->m, q->n, q->k, A, q->lda, Bm, q->ldb, NULL,
                    C, q->ldc))
    return;
  bp_cpu_sgemm(q->ta, q->tb, q->m, q->n, q->k, q->alpha, A, q->lda, Bm, q->ldb, 0.0f, C, q->ldc);
}

static gemm_result time_gemms_cpu(const config *c, int repeats) {
  gemm g[3 * MAX_SIZES];
  int ng = step_gemms(c, g);
  size_t na = 0, nb = 0, nc = 0;
  for (int i = 0; i < ng; ++i) {
    if (a_elems(&g[i]) > na) na = a_elems(&g[i]);
    if (b_elems(&g[i]) > nb) nb = b_elems(&g[i]);
    if (c_elems(&g[i]) > nc) nc = c_elems(&g[i]);
  }
  float *A = malloc(na * sizeof(float)), *Bm = malloc(nb * sizeof(float)),
        *C = malloc(nc * sizeof(float));
  if (!A || !Bm || !C) {
    fprintf(stderr, "bench_step: out of host memory for the GEMM operands\n");
    exit(EXIT_FAILURE);
  }
  bench_fill_uniform(A, na, 1, -1.0f, 1.0f);
  bench_fill_uniform(Bm, nb, 2, -1.0f, 1.0f);
  bench_fill_uniform(C, nc, 3, -1.0f, 1.0f);
  gemm_result r = {0, 0};
  double *t = malloc(sizeof(double) * (size_t)repeats);
  for (int i = 0; i < ng; ++i) {
    cpu_gemm(&g[i], A, Bm, C); /* warm-up */
    for (int rep = 0; rep < repeats; ++rep) {
      double t0 = bench_now_ms();
      cpu_gemm(&g[i], A, Bm, C);
      t[rep] = bench_now_ms() - t0;
    }
    r.sum_ms += bench_median(t, repeats);
  }
  for (int rep = 0; rep < repeats; ++rep) {
    double t0 = bench_now_ms();
    for (int i = 0; i < ng; ++i) cpu_gemm(&g[i], A, Bm, C);
    t[rep] = bench_now_ms() - t0;
  }
  r.seq_ms = bench_median(t, repeats);
  free(t);
  free(A);
  free(Bm);
  free(C);
  return r;
}
#else
/* No BLAS linked (the library runs its builtin sgemm): no ceiling to time. */
static gemm_result time_gemms_cpu(const config *c, int repeats) {
  (void)c;
  (void)repeats;
  return (gemm_result){NAN, NAN};
}
#endif

/* memcpy bandwidth (read + write bytes) over 2 x 64 MiB. */
static double cpu_copy_gbps(void) {
  size_t bytes = (size_t)64 << 20;
  char *a = malloc(bytes), *b = malloc(bytes);
  if (!a || !b) {
    free(a);
    free(b);
    return NAN;
  }
  memset(a, 1, bytes);
  memset(b, 2, bytes);
  double t[5];
  memcpy(b, a, bytes); /* warm-up */
  for (int r = 0; r < 5; ++r) {
    double t0 = bench_now_ms();
    memcpy(r % 2 ? a : b, r % 2 ? b : a, bytes);
    t[r] = bench_now_ms() - t0;
  }
  double ms = bench_median(t, 5);
  free(a);
  free(b);
  return 2.0 * (double)bytes / (ms * 1e-3) / 1e9;
}

#ifdef BP_WITH_CUDA
/* Copies a random block over a device buffer of n floats (never zeros). */
static void device_random(float *d, size_t n, const float *block, size_t block_len) {
  for (size_t off = 0; off < n; off += block_len) {
    size_t len = n - off < block_len ? n - off : block_len;
    cudaCheck(cudaMemcpy(d + off, block, len * sizeof(float), cudaMemcpyHostToDevice));
  }
}

/* The same for bfloat16 operands: the block rounded to nearest-even on the
 * host (the values are finite), then copied. */
static void device_random_bf16(uint16_t *d, size_t n, const float *block, size_t block_len) {
  uint16_t *h = malloc(block_len * sizeof(uint16_t));
  if (!h) {
    fprintf(stderr, "bench_step: out of host memory\n");
    exit(EXIT_FAILURE);
  }
  for (size_t i = 0; i < block_len; ++i) {
    uint32_t u;
    memcpy(&u, &block[i], sizeof u);
    h[i] = (uint16_t)((u + 0x7FFFu + ((u >> 16) & 1u)) >> 16);
  }
  for (size_t off = 0; off < n; off += block_len) {
    size_t len = n - off < block_len ? n - off : block_len;
    cudaCheck(cudaMemcpy(d + off, h, len * sizeof(uint16_t), cudaMemcpyHostToDevice));
  }
  free(h);
}

/* Per call: run `calls` back to back between two events, repeats times. */
static gemm_result time_gemms_cuda(const config *c, int repeats, int device, bp_math_mode math) {
  gemm g[3 * MAX_SIZES];
  int ng = step_gemms(c, g);
  size_t na = 0, nb = 0, nc = 0;
  for (int i = 0; i < ng; ++i) {
    if (a_elems(&g[i]) > na) na = a_elems(&g[i]);
    if (b_elems(&g[i]) > nb) nb = b_elems(&g[i]);
    if (c_elems(&g[i]) > nc) nc = c_elems(&g[i]);
  }
  cudaCheck(cudaSetDevice(device));
  cudaStream_t st;
  cudaCheck(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cublasHandle_t h;
  cublasCheck(cublasCreate(&h));
  cublasCheck(cublasSetStream(h, st));
  /* As the backend's cuBLAS path (src/cuda/cuda_gemm.cu): pedantic float32
   * for fp32; the default math mode around cublasGemmEx otherwise. */
  cublasCheck(cublasSetMathMode(h, math == BP_MATH_FP32 ? CUBLAS_PEDANTIC_MATH : CUBLAS_DEFAULT_MATH));
  float *A, *Bm, *C;
  cudaCheck(cudaMalloc((void **)&A, na * sizeof(float)));
  cudaCheck(cudaMalloc((void **)&Bm, nb * sizeof(float)));
  cudaCheck(cudaMalloc((void **)&C, nc * sizeof(float)));
  size_t blen;
  float *block = random_block(&blen);
  device_random(A, na, block, blen);
  device_random(Bm, nb, block, blen);
  device_random(C, nc, block, blen);
  /* bf16: the operands converted once, on the host (the step converts them
   * per product; those conversions are elementwise work, not GEMM time). */
  uint16_t *A16 = NULL, *B16 = NULL;
  if (math == BP_MATH_BF16) {
    cudaCheck(cudaMalloc((void **)&A16, na * sizeof(uint16_t)));
    cudaCheck(cudaMalloc((void **)&B16, nb * sizeof(uint16_t)));
    device_random_bf16(A16, na, block, blen);
    device_random_bf16(B16, nb, block, blen);
  }
  free(block);
  /* Pageable cudaMemcpy may return before its DMA lands, and the legacy
   * stream it used does not order the non-blocking stream st: wait. */
  cudaCheck(cudaDeviceSynchronize());
  const cudaDataType_t in_type = math == BP_MATH_BF16 ? CUDA_R_16BF : CUDA_R_32F;
  const cublasComputeType_t compute =
      math == BP_MATH_TF32 ? CUBLAS_COMPUTE_32F_FAST_TF32 : CUBLAS_COMPUTE_32F;
  const void *Aop = math == BP_MATH_BF16 ? (const void *)A16 : (const void *)A;
  const void *Bop = math == BP_MATH_BF16 ? (const void *)B16 : (const void *)Bm;
  const float zero = 0.0f;
  cudaEvent_t e0, e1;
  cudaCheck(cudaEventCreate(&e0));
  cudaCheck(cudaEventCreate(&e1));
  double *t = malloc(sizeof(double) * (size_t)repeats);
  gemm_result r = {0, 0};
#define RUN_GEMM(q)                                                                            \
  do {                                                                                         \
    if (math == BP_MATH_FP32)                                                                  \
      cublasCheck(cublasSgemm(h, (q)->ta ? CUBLAS_OP_T : CUBLAS_OP_N,                          \
                              (q)->tb ? CUBLAS_OP_T : CUBLAS_OP_N, (q)->m, (q)->n, (q)->k,     \
                              &(q)->alpha, A, (q)->lda, Bm, (q)->ldb, &zero, C, (q)->ldc));    \
    else                                                                                       \
      cublasCheck(cublasGemmEx(h, (q)->ta ? CUBLAS_OP_T : CUBLAS_OP_N,                         \
                               (q)->tb ? CUBLAS_OP_T : CUBLAS_OP_N, (q)->m, (q)->n, (q)->k,    \
                               &(q)->alpha, Aop, in_type, (q)->lda, Bop, in_type, (q)->ldb,    \
                               &zero, C, CUDA_R_32F, (q)->ldc, compute, CUBLAS_GEMM_DEFAULT)); \
  } while (0)
  for (int i = 0; i < ng; ++i) {
    const gemm *q = &g[i];
    /* Warm up (heuristics, workspace), then size the samples to >= ~0.2 ms. */
    RUN_GEMM(q);
    cudaCheck(cudaEventRecord(e0, st));
    RUN_GEMM(q);
    cudaCheck(cudaEventRecord(e1, st));
    cudaCheck(cudaEventSynchronize(e1));
    float ms1 = 0;
    cudaCheck(cudaEventElapsedTime(&ms1, e0, e1));
    int calls = ms1 > 0 ? (int)(0.2 / ms1) : 100;
    if (calls < 1) calls = 1;
    if (calls > 100) calls = 100;
    for (int rep = 0; rep < repeats; ++rep) {
      cudaCheck(cudaEventRecord(e0, st));
      for (int k = 0; k < calls; ++k) RUN_GEMM(q);
      cudaCheck(cudaEventRecord(e1, st));
      cudaCheck(cudaEventSynchronize(e1));
      float ms = 0;
      cudaCheck(cudaEventElapsedTime(&ms, e0, e1));
      t[rep] = (double)ms / calls;
    }
    r.sum_ms += bench_median(t, repeats);
  }
  for (int rep = 0; rep < repeats; ++rep) {
    cudaCheck(cudaEventRecord(e0, st));
    for (int i = 0; i < ng; ++i) RUN_GEMM(&g[i]);
    cudaCheck(cudaEventRecord(e1, st));
    cudaCheck(cudaEventSynchronize(e1));
    float ms = 0;
    cudaCheck(cudaEventElapsedTime(&ms, e0, e1));
    t[rep] = ms;
  }
#undef RUN_GEMM
  r.seq_ms = bench_median(t, repeats);
  free(t);
  cudaCheck(cudaEventDestroy(e0));
  cudaCheck(cudaEventDestroy(e1));
  cudaCheck(cudaFree(A));
  cudaCheck(cudaFree(Bm));
  cudaCheck(cudaFree(C));
  if (A16) cudaCheck(cudaFree(A16));
  if (B16) cudaCheck(cudaFree(B16));
  cublasCheck(cublasDestroy(h));
  cudaCheck(cudaStreamDestroy(st));
  return r;
}

/* cudaMemcpyAsync D2D of 256 MiB, read + write bytes counted. */
static double cuda_copy_gbps(int device) {
  size_t bytes = (size_t)256 << 20;
  cudaCheck(cudaSetDevice(device));
  char *a, *b;
  cudaCheck(cudaMalloc((void **)&a, bytes));
  cudaCheck(cudaMalloc((void **)&b, bytes));
  cudaCheck(cudaMemset(a, 1, bytes));
  cudaCheck(cudaMemset(b, 2, bytes));
  cudaCheck(cudaDeviceSynchronize()); /* the memsets ran on the legacy stream */
  cudaStream_t st;
  cudaCheck(cudaStreamCreateWithFlags(&st, cudaStreamNonBlocking));
  cudaEvent_t e0, e1;
  cudaCheck(cudaEventCreate(&e0));
  cudaCheck(cudaEventCreate(&e1));
  double t[10];
  cudaCheck(cudaMemcpyAsync(b, a, bytes, cudaMemcpyDeviceToDevice, st));
  for (int r = 0; r < 10; ++r) {
    cudaCheck(cudaEventRecord(e0, st));
    cudaCheck(cudaMemcpyAsync(r % 2 ? a : b, r % 2 ? b : a, bytes, cudaMemcpyDeviceToDevice, st));
    cudaCheck(cudaEventRecord(e1, st));
    cudaCheck(cudaEventSynchronize(e1));
    float ms = 0;
    cudaCheck(cudaEventElapsedTime(&ms, e0, e1));
    t[r] = ms;
  }
  cudaCheck(cudaEventDestroy(e0));
  cudaCheck(cudaEventDestroy(e1));
  cudaCheck(cudaStreamDestroy(st));
  cudaCheck(cudaFree(a));
  cudaCheck(cudaFree(b));
  return 2.0 * (double)bytes / (bench_median(t, 10) * 1e-3) / 1e9;
}
#endif

/* ---- One configuration --------------------------------------------------------- */

typedef struct step_result {
  config c;
  int skipped;
  char skip_reason[160];
  int steps, epochs, n;
  double epoch_ms, epoch_min_ms, shuffle_ms, step_ms;
  double cost_first, cost_last;
  gemm_result gm;
  double ew_bytes, floor_ms;
  double queue_us_per_step; /* median over the timed epochs of bp_epoch_stats.queue_us / steps */
  int graph_replays;        /* steps of the timed epochs replayed from a graph */
  long long launches;       /* bp_epoch_stats.launches of the last timed epoch */
  int launch_steps;         /* and its steps */
} step_result;

/* The run's execution options on a network, through the API's setters. */
static void set_options(bp_context *ctx, bp_network *net, const options *o) {
  BP_CHECK(ctx, bp_network_set_math_mode(net, o->math));
  BP_CHECK(ctx, bp_network_set_kernel_path(net, o->kernels));
  BP_CHECK(ctx, bp_network_set_product_path(net, o->products));
  BP_CHECK(ctx, bp_network_set_cuda_graphs(net, o->graphs));
  BP_CHECK(ctx, bp_network_set_deterministic(net, !o->nondeterministic));
}

static step_result run_config(bp_context *ctx, const config *c, const options *o, int device,
                              int *failed) {
  step_result r;
  memset(&r, 0, sizeof r);
  r.c = *c;
  const int L = c->n_sizes - 1, B = c->batch;
  const int s0 = c->sizes[0], sL = c->sizes[L];
  /* Steps per epoch: S, fewer if the data set would pass the cap (>= 1). */
  double batch_bytes = (double)B * s0 * 4.0;
  int S = o->steps;
  while (S > 1 && S * batch_bytes > o->data_cap_mib * 1048576.0) --S;
  int E = o->epochs;
  while (E * S < o->min_steps) ++E;
  int n = B * S;
  r.steps = S;
  r.epochs = E;
  r.n = n;

  /* Memory: the data set, the workspace, the GEMM operands, with headroom. */
  double widest = 0, acts = 0;
  for (int i = 0; i <= L; ++i) {
    if (c->sizes[i] > widest) widest = c->sizes[i];
    if (i > 0) acts += 2.0 * c->sizes[i];
  }
  double need = 4.0 * ((double)n * (s0 + sL) + (double)B * (s0 + sL + acts + 2 * widest) +
                       2 * n_params(c) + 3.0 * B * widest + widest * widest);
  double have = host_memory_bytes() * 0.6;
#ifdef BP_WITH_CUDA
  if (o->backend == BP_BACKEND_CUDA) {
    size_t fr = 0, tot = 0;
    cudaCheck(cudaSetDevice(device));
    cudaCheck(cudaMemGetInfo(&fr, &tot));
    have = fr * 0.8;
  }
#endif
  if (need > have || (double)n * (s0 + sL) * 4.0 > host_memory_bytes() * 0.4) {
    r.skipped = 1;
    snprintf(r.skip_reason, sizeof r.skip_reason, "needs about %.1f GiB, %.1f GiB available",
             need / 1073741824.0, have / 1073741824.0);
    return r;
  }

  float *X, *Y;
  if (!make_data(n, s0, sL, o->seed ^ (uint64_t)B, &X, &Y)) {
    r.skipped = 1;
    snprintf(r.skip_reason, sizeof r.skip_reason, "out of host memory for the data");
    return r;
  }
  bp_network *net = NULL;
  bp_dataset *data = NULL;
  bp_activation layer_acts[MAX_SIZES];
  for (int i = 0; i < L; ++i) layer_acts[i] = i + 1 == L ? o->output_act : o->hidden_act;
  bp_network_desc desc;
  bp_network_desc_init(&desc, c->n_sizes, c->sizes, o->seed);
  desc.activations = layer_acts;
  desc.cost = o->cost;
  desc.optimizer = o->optimizer;
  BP_CHECK(ctx, bp_network_create_ex(ctx, &desc, &net));
  set_options(ctx, net, o);
  BP_CHECK(ctx, bp_dataset_create(ctx, n, s0, sL, X, Y, &data));
  free(X);
  free(Y);

  /* Warm-up epoch: allocates the workspace, initializes cuBLAS. */
  float cost = NAN;
  bp_status st = bp_train_epoch(net, data, B, o->lr, o->seed, &cost);
  if (st != BP_OK || !isfinite(cost)) {
    fprintf(stderr, "bench_step: warm-up epoch failed: %s %s (cost %g)\n", bp_status_string(st),
            bp_context_last_error(ctx), (double)cost);
    *failed = 1;
  }
  r.cost_first = cost;
  double *t = malloc(sizeof(double) * (size_t)E);
  double *q = malloc(sizeof(double) * (size_t)E);
  r.graph_replays = 0;
  for (int e = 0; e < E; ++e) {
    double t0 = bench_now_ms();
    st = bp_train_epoch(net, data, B, o->lr, o->seed + 1 + (uint64_t)e, &cost);
    t[e] = bench_now_ms() - t0;
    /* The host's share of the epoch, from the library (its stream is
     * private): time to queue the steps, per step. */
    bp_epoch_stats es;
    BP_CHECK(ctx, bp_network_last_epoch_stats(net, &es, sizeof es));
    q[e] = es.steps > 0 ? es.queue_us / es.steps : NAN;
    r.graph_replays += es.graph_replays;
    r.launches = es.launches;
    r.launch_steps = es.steps;
    if (st != BP_OK || !isfinite(cost)) {
      fprintf(stderr, "bench_step: epoch failed: %s %s (cost %g)\n", bp_status_string(st),
              bp_context_last_error(ctx), (double)cost);
      *failed = 1;
    }
  }
  r.cost_last = cost;
  r.epoch_min_ms = bench_min(t, E);
  r.epoch_ms = bench_median(t, E);
  r.queue_us_per_step = bench_median(q, E);
  free(t);
  free(q);
  bp_dataset_destroy(data);
  bp_network_destroy(net);

  r.shuffle_ms = shuffle_ms(n, o->seed);
  r.step_ms = (r.epoch_ms - r.shuffle_ms) / S;
  if (r.step_ms <= 0) r.step_ms = r.epoch_ms / S; /* noise: keep it positive */

#ifdef BP_WITH_CUDA
  if (o->backend == BP_BACKEND_CUDA)
    r.gm = time_gemms_cuda(c, o->gemm_repeats, device, o->math);
  else
#endif
    r.gm = time_gemms_cpu(c, o->gemm_repeats);
  (void)device;
  r.ew_bytes = elementwise_bytes(c);
  return r;
}

/* ---- Configurations ---------------------------------------------------------- */

/* The grids are bench/run's (step_configs); this program runs the
 * configurations it is given, or the two of --smoke. */
static void add_config(options *o, const char *spec) {
  if (o->n_configs >= MAX_CONFIGS || !parse_config(spec, &o->configs[o->n_configs])) {
    fprintf(stderr, "bench_step: bad or too many --config '%s' (e.g. 784-100-10@256)\n", spec);
    exit(2);
  }
  ++o->n_configs;
}

/* ---- End to end ---------------------------------------------------------------- */

static int run_e2e(bp_context *ctx, const options *o, FILE *json) {
  double t_load = bench_now_ms();
  bp_data *train = NULL, *test = NULL;
  bp_status st = bp_data_read_idx_dir(ctx, o->e2e_dir, &train, &test);
  if (st != BP_OK) {
    fprintf(stderr, "bench_step: reading %s failed: %s: %s\n", o->e2e_dir, bp_status_string(st),
            bp_context_last_error(ctx));
    return 1;
  }
  bp_dataset *dtrain = NULL, *dtest = NULL;
  BP_CHECK(ctx, bp_dataset_create(ctx, train->n, train->n_in, train->n_out, train->X, train->Y,
                                  &dtrain));
  BP_CHECK(ctx, bp_dataset_create(ctx, test->n, test->n_in, test->n_out, test->X, test->Y, &dtest));
  double load_s = (bench_now_ms() - t_load) / 1e3;
  int sizes[3] = {train->n_in, 100, train->n_out};
  bp_network *net = NULL;
  BP_CHECK(ctx, bp_network_create(ctx, 3, sizes, o->seed, &net));
  set_options(ctx, net, o);
  printf("end to end: %d-100-%d on %s (%d train, %d test), batch %d, lr %g, target %.3f, %s math\n",
         sizes[0], sizes[2], o->e2e_dir, train->n, test->n, o->e2e_batch, (double)o->e2e_lr,
         (double)o->target, bp_math_mode_name(o->math));
  double train_ms = 0, t_wall = bench_now_ms();
  float acc = 0, cost = NAN;
  int epoch = 0, reached = 0, failed = 0;
  fprintf(json, "  \"epochs_log\": [");
  while (epoch < o->e2e_max_epochs && (bench_now_ms() - t_wall) / 1e3 < o->e2e_max_seconds) {
    double t0 = bench_now_ms();
    st = bp_train_epoch(net, dtrain, o->e2e_batch, o->e2e_lr, o->seed + (uint64_t)epoch, &cost);
    train_ms += bench_now_ms() - t0;
    ++epoch;
    if (st != BP_OK) {
      fprintf(stderr, "bench_step: epoch %d: %s: %s\n", epoch, bp_status_string(st),
              bp_context_last_error(ctx));
      failed = 1;
      break;
    }
    BP_CHECK(ctx, bp_evaluate(net, dtest, NULL, &acc));
    printf("  epoch %3d  train %8.3f s  cost %.5f  test accuracy %.4f\n", epoch, train_ms / 1e3,
           (double)cost, (double)acc);
    fprintf(json, "%s{\"epoch\": %d, \"train_s\": %.6g, \"cost\": %.6g, \"test_accuracy\": %.6g}",
            epoch > 1 ? ", " : "", epoch, train_ms / 1e3, (double)cost, (double)acc);
    if (acc >= o->target) {
      reached = 1;
      break;
    }
  }
  double wall_s = (bench_now_ms() - t_wall) / 1e3;
  fprintf(json, "],\n  \"e2e\": {\"sizes\": [%d, 100, %d], \"batch\": %d, \"lr\": %g, \"target\": %g, "
          "\"reached\": %s, \"epochs\": %d, \"train_s\": %.6g, \"wall_s\": %.6g, \"load_s\": %.6g, "
          "\"test_accuracy\": %.6g, \"n_train\": %d, \"n_test\": %d}",
          sizes[0], sizes[2], o->e2e_batch, (double)o->e2e_lr, (double)o->target,
          reached ? "true" : "false", epoch, train_ms / 1e3, wall_s, load_s, (double)acc, train->n,
          test->n);
  printf("%s %.4f after %d epochs: %.3f s training, %.3f s with evaluation (load %.3f s)\n",
         reached ? "reached" : "did NOT reach", (double)acc, epoch, train_ms / 1e3, wall_s, load_s);
  bp_network_destroy(net);
  bp_dataset_destroy(dtrain);
  bp_dataset_destroy(dtest);
  bp_data_free(train);
  bp_data_free(test);
  return failed;
}

/* ---- Main ---------------------------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: bench_step --backend cpu|cuda [options]\n"
          "  --kernels reference|fused  the CUDA kernel path (bp_network_set_kernel_path;\n"
          "                           default reference)\n"
          "  --graphs                 CUDA graphs on (bp_network_set_cuda_graphs)\n"
          "  --gemm cublas|lt         the CUDA products' path (bp_network_set_product_path:\n"
          "                           cuBLAS or cuBLASLt; default cublas)\n"
          "  --nondeterministic       bp_network_set_deterministic(net, 0)\n"
          "  --model H-O-C-OPT        hidden and output activation (sigmoid|tanh|relu|identity,\n"
          "                           output also softmax), cost (quadratic|ce), optimizer\n"
          "                           (sgd|adam|adamw|rprop); default sigmoid-sigmoid-quadratic-sgd\n"
          "  --math fp32|tf32|bf16    precision of the products (default fp32; on the CPU\n"
          "                           tf32/bf16 are the emulation, slower by design)\n"
          "  --config SIZES@B         one configuration, e.g. 784-100-10@256 (repeatable;\n"
          "                           bench/run holds the grids)\n"
          "  --steps S                steps per epoch at most (default 8; fewer when the\n"
          "                           data set would pass --data-cap-mib)\n"
          "  --epochs E               timed epochs at least (default 3)\n"
          "  --min-steps N            timed steps at least (default 8)\n"
          "  --gemm-repeats R         samples per GEMM timed alone (default 10)\n"
          "  --data-cap-mib M         data set inputs at most M MiB (default 512)\n"
          "  --time-budget T          start no configuration after T seconds (rest: skipped)\n"
          "  --lr LR                  learning rate (default 0.05)\n"
          "  --smoke                  tiny and fast: 2 small configurations (unless\n"
          "                           --config), 2 steps, 1 epoch\n"
          "  --json FILE              write the results as JSON\n"
          "  --device D               CUDA device (default 0)\n"
          "  --seed S\n"
          "  --e2e DIR                end to end: 784-100-10 on the IDX files in DIR\n"
          "  --target A               test accuracy to reach (default 0.875)\n"
          "  --e2e-batch B, --e2e-lr LR, --e2e-max-epochs N, --e2e-max-seconds T\n"
          "  --info                   print the build's capabilities as JSON and exit\n"
          "Exit status: 0 ok, 1 a failure, 2 usage, 77 the backend is absent.\n");
}

static void write_header(FILE *f, const options *o, bp_context *ctx, int device) {
  char stamp[64], host[128] = "unknown";
  bench_timestamp(stamp, sizeof stamp);
  gethostname(host, sizeof host - 1);
  fprintf(f, "{\n  \"bench\": \"bench_step\",\n  \"date\": \"%s\",\n  \"host\": ", stamp);
  bench_json_string(f, host);
  fprintf(f, ",\n  \"backend\": \"%s\",\n  \"library_version\": \"%s\",\n  \"cpu_blas\": \"%s\",\n",
          bp_backend_name(bp_context_backend(ctx)), bp_version_string(), BENCH_CPU_BLAS);
  fprintf(f, "  \"cpus\": %ld,\n", sysconf(_SC_NPROCESSORS_ONLN));
  fprintf(f, "  \"math\": \"%s\",\n", bp_math_mode_name(o->math));
  fprintf(f, "  \"kernels\": \"%s\",\n  \"graphs\": %s,\n", o->kernels == BP_KERNELS_FUSED ? "fused" : "reference",
          o->graphs ? "true" : "false");
  fprintf(f, "  \"gemm\": \"%s\",\n  \"deterministic\": %s,\n", o->products == BP_PRODUCTS_CUBLASLT ? "lt" : "cublas",
          o->nondeterministic ? "false" : "true");
#ifdef BP_WITH_CUDA
  if (o->backend == BP_BACKEND_CUDA) {
    struct cudaDeviceProp prop;
    int drv = 0, rt = 0, cmaj = 0, cmin = 0, cpat = 0;
    cudaCheck(cudaGetDeviceProperties(&prop, device));
    cudaCheck(cudaDriverGetVersion(&drv));
    cudaCheck(cudaRuntimeGetVersion(&rt));
    cublasCheck(cublasGetProperty(MAJOR_VERSION, &cmaj));
    cublasCheck(cublasGetProperty(MINOR_VERSION, &cmin));
    cublasCheck(cublasGetProperty(PATCH_LEVEL, &cpat));
    fprintf(f, "  \"device\": {\"name\": ");
    bench_json_string(f, prop.name);
    fprintf(f, ", \"sm\": \"%d%d\", \"driver\": %d, \"runtime\": %d, \"cublas\": \"%d.%d.%d\"},\n",
            prop.major, prop.minor, drv, rt, cmaj, cmin, cpat);
    fprintf(f, "  \"launch_count_method\": \"bp_epoch_stats.launches / steps of the last "
               "timed epoch (kernel launches, library products, graph launches)\",\n");
  }
#endif
  (void)device;
  fprintf(f, "  \"model\": \"%s\",\n", o->model ? o->model : "sigmoid-sigmoid-quadratic-sgd");
  fprintf(f, "  \"steps_max\": %d,\n  \"epochs_min\": %d,\n  \"gemm_repeats\": %d,\n", o->steps,
          o->epochs, o->gemm_repeats);
}

/* "relu-softmax-ce-adamw" into o's model fields; 0 when a word is unknown. */
static int parse_model(const char *spec, options *o) {
  static const char *acts[] = {"sigmoid", "tanh", "relu", "identity", "softmax"};
  static const char *costs[] = {"quadratic", "ce"};
  static const char *opts[] = {"sgd", "adam", "adamw", "rprop"};
  char words[4][16];
  if (sscanf(spec, "%15[a-z]-%15[a-z]-%15[a-z]-%15[a-z]", words[0], words[1], words[2], words[3]) !=
      4)
    return 0;
  int v[4] = {-1, -1, -1, -1};
  for (int i = 0; i < 4; ++i) {  /* softmax: output only */
    if (!strcmp(words[0], acts[i])) v[0] = i;
  }
  for (int i = 0; i < 5; ++i)
    if (!strcmp(words[1], acts[i])) v[1] = i;
  for (int i = 0; i < 2; ++i)
    if (!strcmp(words[2], costs[i])) v[2] = i;
  for (int i = 0; i < 4; ++i)
    if (!strcmp(words[3], opts[i])) v[3] = i;
  if (v[0] < 0 || v[1] < 0 || v[2] < 0 || v[3] < 0) return 0;
  o->hidden_act = (bp_activation)v[0];
  o->output_act = (bp_activation)v[1];
  o->cost = (bp_cost)v[2];
  o->optimizer = (bp_optimizer)v[3];
  return 1;
}

int main(int argc, char **argv) {
  options o;
  memset(&o, 0, sizeof o);
  o.backend = BP_BACKEND_CPU;
  o.steps = 8;
  o.epochs = 3;
  o.min_steps = 8;
  o.gemm_repeats = 10;
  o.data_cap_mib = 512;
  o.lr = 0.05f;
  o.seed = 42;
  o.target = 0.875f;
  o.e2e_batch = 32;
  o.e2e_lr = 1.0f;
  o.e2e_max_epochs = 100;
  o.e2e_max_seconds = 1800;
  int device = 0, info = 0, have_backend = 0;
  for (int i = 1; i < argc; ++i) {
    const char *a = argv[i];
#define NEED()                                                       \
  (i + 1 < argc ? argv[++i]                                          \
                : (fprintf(stderr, "bench_step: %s needs a value\n", a), exit(2), (char *)NULL))
    if (!strcmp(a, "--backend")) {
      const char *b = NEED();
      have_backend = 1;
      if (!strcmp(b, "cpu"))
        o.backend = BP_BACKEND_CPU;
      else if (!strcmp(b, "cuda"))
        o.backend = BP_BACKEND_CUDA;
      else {
        fprintf(stderr, "bench_step: --backend cpu or cuda\n");
        return 2;
      }
    } else if (!strcmp(a, "--kernels")) {
      const char *k = NEED();
      if (strcmp(k, "fused") && strcmp(k, "reference")) {
        fprintf(stderr, "bench_step: --kernels fused or reference, not '%s'\n", k);
        return 2;
      }
      o.kernels = strcmp(k, "fused") ? BP_KERNELS_REFERENCE : BP_KERNELS_FUSED;
    } else if (!strcmp(a, "--graphs")) {
      o.graphs = 1;
    } else if (!strcmp(a, "--gemm")) {
      const char *g = NEED();
      if (strcmp(g, "lt") && strcmp(g, "cublas")) {
        fprintf(stderr, "bench_step: --gemm cublas or lt, not '%s'\n", g);
        return 2;
      }
      o.products = strcmp(g, "lt") ? BP_PRODUCTS_CUBLAS : BP_PRODUCTS_CUBLASLT;
    } else if (!strcmp(a, "--nondeterministic")) {
      o.nondeterministic = 1;
    } else if (!strcmp(a, "--model")) {
      o.model = NEED();
      if (!parse_model(o.model, &o)) {
        fprintf(stderr, "bench_step: --model HIDDEN-OUTPUT-COST-OPTIMIZER, e.g. "
                        "relu-softmax-ce-adamw, not '%s'\n", o.model);
        return 2;
      }
    } else if (!strcmp(a, "--math")) {
      const char *m = NEED();
      if (bp_math_mode_parse(m, &o.math) != BP_OK) {
        fprintf(stderr, "bench_step: --math fp32, tf32 or bf16, not '%s'\n", m);
        return 2;
      }
    } else if (!strcmp(a, "--config")) {
      add_config(&o, NEED());
    } else if (!strcmp(a, "--steps")) {
      o.steps = atoi(NEED());
    } else if (!strcmp(a, "--epochs")) {
      o.epochs = atoi(NEED());
    } else if (!strcmp(a, "--min-steps")) {
      o.min_steps = atoi(NEED());
    } else if (!strcmp(a, "--gemm-repeats")) {
      o.gemm_repeats = atoi(NEED());
    } else if (!strcmp(a, "--data-cap-mib")) {
      o.data_cap_mib = atof(NEED());
    } else if (!strcmp(a, "--time-budget")) {
      o.time_budget = atof(NEED());
    } else if (!strcmp(a, "--lr")) {
      o.lr = (float)atof(NEED());
    } else if (!strcmp(a, "--smoke")) {
      o.smoke = 1;
    } else if (!strcmp(a, "--json")) {
      o.json = NEED();
    } else if (!strcmp(a, "--device")) {
      device = atoi(NEED());
    } else if (!strcmp(a, "--seed")) {
      o.seed = strtoull(NEED(), NULL, 0);
    } else if (!strcmp(a, "--e2e")) {
      o.e2e_dir = NEED();
    } else if (!strcmp(a, "--target")) {
      o.target = (float)atof(NEED());
    } else if (!strcmp(a, "--e2e-batch")) {
      o.e2e_batch = atoi(NEED());
    } else if (!strcmp(a, "--e2e-lr")) {
      o.e2e_lr = (float)atof(NEED());
    } else if (!strcmp(a, "--e2e-max-epochs")) {
      o.e2e_max_epochs = atoi(NEED());
    } else if (!strcmp(a, "--e2e-max-seconds")) {
      o.e2e_max_seconds = atof(NEED());
    } else if (!strcmp(a, "--info")) {
      info = 1;
    } else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
      usage(stdout);
      return 0;
    } else {
      fprintf(stderr, "bench_step: unknown option %s\n", a);
      usage(stderr);
      return 2;
    }
#undef NEED
  }
  if (info) {
    printf("{\"version\": \"%s\", \"has_cuda\": %d, \"cuda_devices\": %d, \"cpu_blas\": \"%s\", "
           "\"cpus\": %ld}\n",
           bp_version_string(), bp_has_cuda(), bp_cuda_device_count(), BENCH_CPU_BLAS,
           sysconf(_SC_NPROCESSORS_ONLN));
    return 0;
  }
  if (!have_backend) {
    fprintf(stderr, "bench_step: --backend cpu|cuda is required\n");
    usage(stderr);
    return 2;
  }
  if (o.smoke) {
    if (o.n_configs == 0) {
      add_config(&o, "64-64-64-64@64");
      add_config(&o, "784-100-10@128");
    }
    o.steps = 2;
    o.epochs = 1;
    o.min_steps = 2;
    o.gemm_repeats = 2;
  }
  if (o.steps < 1 || o.epochs < 1 || o.gemm_repeats < 1 || o.data_cap_mib <= 0 ||
      o.e2e_batch < 1 || !isfinite(o.lr)) {
    fprintf(stderr, "bench_step: steps, epochs, repeats, batch must be >= 1\n");
    return 2;
  }
  if (o.n_configs == 0 && !o.e2e_dir) {
    fprintf(stderr, "bench_step: nothing to run: --config, --smoke or --e2e\n");
    return 2;
  }

  int exit_code = 0;
  bp_context *ctx = bench_context(o.backend, device, o.json, &exit_code);
  if (!ctx) return exit_code;

  FILE *json = NULL;
  if (o.json) {
    json = fopen(o.json, "w");
    if (!json) {
      fprintf(stderr, "bench_step: cannot write %s\n", o.json);
      return 1;
    }
  } else {
    json = fopen("/dev/null", "w");
  }
  write_header(json, &o, ctx, device);

  int failed = 0;
  if (o.e2e_dir) {
    failed = run_e2e(ctx, &o, json);
    fprintf(json, "\n}\n");
  } else {
    double copy_gbps;
#ifdef BP_WITH_CUDA
    if (o.backend == BP_BACKEND_CUDA)
      copy_gbps = cuda_copy_gbps(device);
    else
#endif
      copy_gbps = cpu_copy_gbps();
    fprintf(json, "  \"copy_gbps\": ");
    bench_json_number(json, copy_gbps);
    fprintf(json, ",\n  \"results\": [\n");
    printf("bench_step: model %s\n", o.model ? o.model : "sigmoid-sigmoid-quadratic-sgd");
    printf("bench_step: backend %s, math %s%s, kernels %s, graphs %s, gemm %s%s, BLAS %s, copy "
           "%.1f GB/s (read+write)\n",
           bp_backend_name(o.backend), bp_math_mode_name(o.math),
           o.backend == BP_BACKEND_CPU && o.math != BP_MATH_FP32 ? " (emulated)" : "",
           o.kernels == BP_KERNELS_FUSED ? "fused" : "reference", o.graphs ? "on" : "off",
           o.products == BP_PRODUCTS_CUBLASLT ? "lt" : "cublas",
           o.nondeterministic ? " nondeterministic" : "", BENCH_CPU_BLAS, copy_gbps);
    printf("step = (epoch - host shuffle) / steps; gemm = its GEMMs timed alone; floor = gemm + "
           "elementwise bytes at copy bandwidth\n");
    printf("%-26s %5s %10s %12s %9s %10s %8s %8s %8s %8s\n", "config", "steps", "step ms",
           "examples/s", "TFLOP/s", "gemm ms", "/gemm", "/floor", "launches", "host us");
    const double t_start = bench_now_ms();
    for (int i = 0; i < o.n_configs; ++i) {
      const config *c = &o.configs[i];
      char name[160];
      config_name(c, name, sizeof name);
      step_result r;
      if (o.time_budget > 0 && (bench_now_ms() - t_start) / 1e3 > o.time_budget) {
        memset(&r, 0, sizeof r);
        r.skipped = 1;
        snprintf(r.skip_reason, sizeof r.skip_reason, "time budget of %g s spent", o.time_budget);
      } else {
        r = run_config(ctx, c, &o, device, &failed);
      }
      fprintf(json, "    {\"name\": \"%s\", \"math\": \"%s\", \"sizes\": [", name,
              bp_math_mode_name(o.math));
      for (int j = 0; j < c->n_sizes; ++j) fprintf(json, "%s%d", j ? ", " : "", c->sizes[j]);
      fprintf(json, "], \"batch\": %d, \"flops_nominal\": %.10g, \"flops_executed\": %.10g, "
                    "\"elementwise_bytes\": %.10g",
              c->batch, flops_nominal(c), flops_executed(c), elementwise_bytes(c));
      if (r.skipped) {
        printf("%-26s skipped: %s\n", name, r.skip_reason);
        fprintf(json, ", \"skipped\": ");
        bench_json_string(json, r.skip_reason);
      } else {
        double floor_ms = r.gm.sum_ms + r.ew_bytes / (copy_gbps * 1e9) * 1e3;
        double tflops = flops_nominal(c) / (r.step_ms * 1e-3) / 1e12;
        const double launches_per_step =
            r.launch_steps > 0 ? (double)r.launches / r.launch_steps : NAN;
        char launches[32] = "-";
        if (o.backend == BP_BACKEND_CUDA) snprintf(launches, sizeof launches, "%.2f", launches_per_step);
        printf("%-26s %5d %10.4f %12.4g %9.4f %10.4f %8.3f %8.3f %8s %8.2f\n", name, r.steps,
               r.step_ms, c->batch / (r.step_ms * 1e-3), tflops, r.gm.sum_ms,
               r.step_ms / r.gm.sum_ms, r.step_ms / floor_ms, launches, r.queue_us_per_step);
        fflush(stdout);
        fprintf(json, ", \"steps_per_epoch\": %d, \"epochs\": %d, \"examples\": %d", r.steps,
                r.epochs, r.n);
        fprintf(json, ", \"step_ms\": %.6g, \"epoch_ms\": %.6g, \"epoch_min_ms\": %.6g, "
                      "\"shuffle_ms\": %.6g, \"examples_per_s\": %.6g, \"tflops\": %.6g",
                r.step_ms, r.epoch_ms, r.epoch_min_ms, r.shuffle_ms,
                c->batch / (r.step_ms * 1e-3), tflops);
        /* null, not nan, where no BLAS timed the GEMMs */
        const char *keys[] = {"gemm_sum_ms", "gemm_seq_ms", "step_over_gemm", "floor_ms",
                              "step_over_floor"};
        const double vals[] = {r.gm.sum_ms, r.gm.seq_ms, r.step_ms / r.gm.sum_ms, floor_ms,
                               r.step_ms / floor_ms};
        for (int k = 0; k < 5; ++k) {
          fprintf(json, ", \"%s\": ", keys[k]);
          bench_json_number(json, vals[k]);
        }
        fprintf(json, ", \"cost_first\": ");
        bench_json_number(json, r.cost_first);
        fprintf(json, ", \"cost_last\": ");
        bench_json_number(json, r.cost_last);
        fprintf(json, ", \"launches_per_epoch\": %lld, \"launches_per_step\": ", r.launches);
        bench_json_number(json, launches_per_step);
        fprintf(json, ", \"queue_us_per_step\": ");
        bench_json_number(json, r.queue_us_per_step);
        fprintf(json, ", \"graph_replays\": %d", r.graph_replays);
      }
      fprintf(json, "}%s\n", i + 1 < o.n_configs ? "," : "");
    }
    fprintf(json, "  ],\n  \"failed\": %s\n}\n", failed ? "true" : "false");
  }
  if (fclose(json) != 0) {
    fprintf(stderr, "bench_step: writing the JSON failed\n");
    failed = 1;
  }
  bp_context_destroy(ctx);
  if (failed) fprintf(stderr, "bench_step: FAILED\n");
  return failed ? 1 : 0;
}
