/* gemm_libs.c - the CPU matrix libraries side by side on the products of a
 * training step (bench/NOTES.md section 12: which one the CPU backend uses).
 *
 *   build-cpu/bench/gemm_libs [THREADS]        # CBLAS linked (OpenBLAS) vs oneDNN
 *   build-cpu/bench/gemm_libs_blis [THREADS]   # the same program on BLIS's CBLAS
 *
 * Each shape is a product of the step as the CPU backend issues it
 * (column-major; forward W^T A, dW = A Delta^T, G = W Delta), timed as the
 * best of 5 rounds of many calls, both libraries in the same run; the result
 * of oneDNN is checked against the CBLAS one (max |difference|). The
 * workplace's OPENBLAS_CORETYPE, when set, holds OpenBLAS to those kernels:
 * run with `env -u OPENBLAS_CORETYPE -u OPENBLAS_L2_SIZE` to see its own. */
#include <cblas.h>
#include <math.h>
#include <omp.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#ifdef GEMM_LIBS_DNNL
#include <oneapi/dnnl/dnnl.h>
#endif

static double now_us(void) {
  struct timespec t;
  clock_gettime(CLOCK_MONOTONIC, &t);
  return (double)t.tv_sec * 1e6 + (double)t.tv_nsec / 1e3;
}

typedef struct shape {
  const char *what;
  int m, n, k, tb;
} shape;

static void cblas_product(const shape *s, const float *A, const float *B, float *C) {
  cblas_sgemm(CblasColMajor, CblasNoTrans, s->tb ? CblasTrans : CblasNoTrans, s->m, s->n, s->k,
              1.0f, A, s->m, B, s->tb ? s->n : s->k, 0.0f, C, s->m);
}

#ifdef GEMM_LIBS_DNNL
static void dnnl_product(const shape *s, const float *A, const float *B, float *C) {
  /* Row-major: C^T = op(B)^T A^T, as src/cpu/blas.c calls it. */
  if (dnnl_sgemm(s->tb ? 'T' : 'N', 'N', s->n, s->m, s->k, 1.0f, B, s->tb ? s->n : s->k, A, s->m,
                 0.0f, C, s->m) != dnnl_success) {
    fprintf(stderr, "gemm_libs: dnnl_sgemm failed\n");
    exit(1);
  }
}
#endif

typedef void (*product_fn)(const shape *, const float *, const float *, float *);

static double best_us(product_fn f, const shape *s, const float *A, const float *B, float *C) {
  const double macs = (double)s->m * s->n * s->k;
  const int calls = macs > 1e8 ? 5 : macs > 1e7 ? 40 : macs > 1e6 ? 400 : 4000;
  f(s, A, B, C); /* warm: JIT, pages, caches */
  double best = 1e300;
  for (int round = 0; round < 5; ++round) {
    const double t0 = now_us();
    for (int c = 0; c < calls; ++c) f(s, A, B, C);
    const double t = (now_us() - t0) / calls;
    if (t < best) best = t;
  }
  return best;
}

int main(int argc, char **argv) {
  const int threads = argc > 1 ? atoi(argv[1]) : 1;
  omp_set_num_threads(threads > 0 ? threads : 1);
  const shape shapes[] = {
      {"784-100-10@32 forward W1", 100, 32, 784, 0}, {"784-100-10@32 dW1", 784, 100, 32, 1},
      {"784-100-10@32 forward W2", 10, 32, 100, 0},  {"784-100-10@32 G = W2 D", 100, 32, 10, 0},
      {"784-100-10@256 forward W1", 100, 256, 784, 0}, {"256x4@256 forward", 256, 256, 256, 0},
      {"256x4@4096 forward", 256, 4096, 256, 0},     {"256x4@4096 dW", 256, 256, 4096, 1},
      {"1024x4@256 forward", 1024, 256, 1024, 0},
  };
  printf("threads %d; best of 5 rounds; microseconds per product\n", threads);
#ifdef GEMM_LIBS_DNNL
  printf("%-28s %16s %10s %10s %8s %10s\n", "product", "m x n x k", "cblas", "onednn", "ratio",
         "max|diff|");
#else
  printf("%-28s %16s %10s\n", "product", "m x n x k", "cblas");
#endif
  for (size_t i = 0; i < sizeof shapes / sizeof shapes[0]; ++i) {
    const shape *s = &shapes[i];
    float *A = malloc(sizeof(float) * (size_t)s->m * s->k);
    float *B = malloc(sizeof(float) * (size_t)s->k * s->n);
    float *C1 = malloc(sizeof(float) * (size_t)s->m * s->n);
    float *C2 = malloc(sizeof(float) * (size_t)s->m * s->n);
    if (!A || !B || !C1 || !C2) return 1;
    srand(1 + (unsigned)i);
    for (size_t j = 0; j < (size_t)s->m * s->k; ++j) A[j] = (float)rand() / RAND_MAX - 0.5f;
    for (size_t j = 0; j < (size_t)s->k * s->n; ++j) B[j] = (float)rand() / RAND_MAX - 0.5f;
    char dims[40];
    snprintf(dims, sizeof dims, "%dx%dx%d", s->m, s->n, s->k);
    const double tc = best_us(cblas_product, s, A, B, C1);
#ifdef GEMM_LIBS_DNNL
    const double td = best_us(dnnl_product, s, A, B, C2);
    double diff = 0;
    for (size_t j = 0; j < (size_t)s->m * s->n; ++j)
      diff = fmax(diff, fabs((double)C1[j] - (double)C2[j]));
    printf("%-28s %16s %10.2f %10.2f %8.2f %10.1e\n", s->what, dims, tc, td, td / tc, diff);
#else
    printf("%-28s %16s %10.2f\n", s->what, dims, tc);
#endif
    free(A);
    free(B);
    free(C1);
    free(C2);
  }
  return 0;
}
