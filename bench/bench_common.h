/*
 * bench_common.h - small helpers shared by the benchmark programs (C11 and
 * C++17/CUDA): wall clock, medians, a counter-based random generator, list
 * parsing, cudaCheck and a few JSON writing helpers. Header-only, everything static.
 *
 * Benchmarks are programs, not the library: on a CUDA error they print the
 * file and line and exit (cudaCheck, in the manner of llm.c).
 */
#ifndef BP_BENCH_COMMON_H
#define BP_BENCH_COMMON_H

#include <math.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#ifdef __cplusplus
#define BENCH_UNUSED [[maybe_unused]]
#else
#define BENCH_UNUSED __attribute__((unused))
#endif
/* The generator below is usable in device code too (bench_kernels fills its
 * buffers on the GPU with the same numbers the host would draw). */
#ifdef __CUDACC__
#define BENCH_HD __host__ __device__
#else
#define BENCH_HD
#endif

#if defined(__CUDACC__) || defined(BP_WITH_CUDA)
#include <cuda_runtime.h>

/* A CUDA call of the benchmark itself that fails ends the program, naming
 * the file and line (llm.c's cudaCheck). */
BENCH_UNUSED static void cuda_check(cudaError_t err, const char *file, int line) {
  if (err != cudaSuccess) {
    fprintf(stderr, "[CUDA ERROR] at file %s:%d:\n%s\n", file, line, cudaGetErrorString(err));
    exit(EXIT_FAILURE);
  }
}
#define cudaCheck(err) (cuda_check((err), __FILE__, __LINE__))
#endif

/* Exit status meaning "nothing to measure here" (ctest SKIP_RETURN_CODE). */
#define BENCH_EXIT_SKIP 77

#define BENCH_CEIL_DIV(a, b) (((a) + (b)-1) / (b))

BENCH_UNUSED static double bench_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e3 + (double)ts.tv_nsec * 1e-6;
}

static int bench_cmp_double(const void *a, const void *b) {
  double x = *(const double *)a, y = *(const double *)b;
  return (x > y) - (x < y);
}

/* Median of n values (sorts v in place). n == 0 gives NAN. */
BENCH_UNUSED static double bench_median(double *v, int n) {
  if (n <= 0) return NAN;
  qsort(v, (size_t)n, sizeof *v, bench_cmp_double);
  return n % 2 ? v[n / 2] : 0.5 * (v[n / 2 - 1] + v[n / 2]);
}

/* Smallest of n values (n >= 1). */
BENCH_UNUSED static double bench_min(const double *v, int n) {
  double m = v[0];
  for (int i = 1; i < n; ++i)
    if (v[i] < m) m = v[i];
  return m;
}

/* SplitMix64 finalizer: a counter-based generator (value i of stream seed
 * is bench_mix64(seed ^ bench_mix64(i))), so host and device draw the same
 * numbers without state. */
BENCH_UNUSED BENCH_HD static inline uint64_t bench_mix64(uint64_t z) {
  z += 0x9E3779B97F4A7C15ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}

/* Uniform float in [lo, hi) from 24 random bits. */
BENCH_UNUSED BENCH_HD static inline float bench_uniform(uint64_t seed, uint64_t i, float lo, float hi) {
  uint64_t r = bench_mix64(seed ^ bench_mix64(i));
  float u = (float)(r >> 40) * (1.0f / 16777216.0f);
  return lo + (hi - lo) * u;
}

/* Fills n floats with uniform values in [lo, hi). */
BENCH_UNUSED static void bench_fill_uniform(float *p, size_t n, uint64_t seed, float lo, float hi) {
  for (size_t i = 0; i < n; ++i) p[i] = bench_uniform(seed, i, lo, hi);
}

/* A random permutation of 0..n-1 (Fisher-Yates). */
BENCH_UNUSED static void bench_permutation(int32_t *p, int n, uint64_t seed) {
  for (int i = 0; i < n; ++i) p[i] = i;
  for (int i = n - 1; i > 0; --i) {
    int j = (int)(bench_mix64(seed ^ bench_mix64((uint64_t)i)) % (uint64_t)(i + 1));
    int32_t t = p[i];
    p[i] = p[j];
    p[j] = t;
  }
}

/* Parses "a,b,c" (or "a-b-c" when sep is '-') into at most max ints; returns
 * the count, or -1 on a malformed list. */
BENCH_UNUSED static int bench_parse_ints(const char *s, char sep, long *out, int max) {
  int n = 0;
  const char *p = s;
  while (*p) {
    char *end = NULL;
    long v = strtol(p, &end, 10);
    if (end == p || n >= max) return -1;
    out[n++] = v;
    if (*end == sep) {
      p = end + 1;
      if (*p == '\0') return -1;
    } else if (*end == '\0') {
      p = end;
    } else {
      return -1;
    }
  }
  return n;
}

/* Writes s as a JSON string literal (quotes included). */
BENCH_UNUSED static void bench_json_string(FILE *f, const char *s) {
  fputc('"', f);
  for (const unsigned char *p = (const unsigned char *)s; *p; ++p) {
    if (*p == '"' || *p == '\\')
      fprintf(f, "\\%c", *p);
    else if (*p < 0x20)
      fprintf(f, "\\u%04x", *p);
    else
      fputc(*p, f);
  }
  fputc('"', f);
}

/* Writes a double as JSON: non-finite values become null. */
BENCH_UNUSED static void bench_json_number(FILE *f, double v) {
  if (isfinite(v))
    fprintf(f, "%.9g", v);
  else
    fputs("null", f);
}

/* Host name and an ISO time stamp for the outputs. */
BENCH_UNUSED static void bench_timestamp(char *buf, size_t len) {
  time_t t = time(NULL);
  struct tm tmv;
  gmtime_r(&t, &tmv);
  strftime(buf, len, "%Y-%m-%dT%H:%M:%SZ", &tmv);
}

#endif /* BP_BENCH_COMMON_H */
