/*
 * bench_config.h - what bench_step and bench_stream share: a configuration
 * (layer sizes and batch, written "784-100-10@256"), its random data set,
 * the host's memory size, and the check that ends the program on a failed
 * library call. C only; header-only, everything static.
 */
#ifndef BP_BENCH_CONFIG_H
#define BP_BENCH_CONFIG_H

#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "backprop.h"
#include "bench_common.h"

/* Library calls that must succeed: a failure is a benchmark failure. The
 * including program defines BENCH_PROGRAM, its name for the message. */
BENCH_UNUSED static void bp_check(bp_status st, bp_context *ctx, const char *what,
                                  const char *file, int line) {
  if (st != BP_OK) {
    fprintf(stderr, BENCH_PROGRAM ": %s failed at %s:%d: %s: %s\n", what, file, line,
            bp_status_string(st), bp_context_last_error(ctx));
    exit(EXIT_FAILURE);
  }
}
#define BP_CHECK(ctx, call) bp_check((call), (ctx), #call, __FILE__, __LINE__)

/* A context on backend, or NULL with *exit_code set: BENCH_EXIT_SKIP (the
 * backend is absent; a "skipped" JSON is written to json when not NULL) or
 * 1 (another failure). */
BENCH_UNUSED static bp_context *bench_context(bp_backend backend, int device, const char *json,
                                              int *exit_code) {
  bp_context *ctx = NULL;
  bp_status st = bp_context_create(backend, device, &ctx);
  if (st == BP_OK) return ctx;
  if (st != BP_ERR_NO_DEVICE) {
    fprintf(stderr, BENCH_PROGRAM ": bp_context_create: %s\n", bp_status_string(st));
    *exit_code = 1;
    return NULL;
  }
  printf(BENCH_PROGRAM ": backend %s not available; skipping\n", bp_backend_name(backend));
  FILE *f = json ? fopen(json, "w") : NULL;
  if (f) {
    fprintf(f, "{\"bench\": \"" BENCH_PROGRAM "\", \"backend\": \"%s\", \"skipped\": \"no device\"}\n",
            bp_backend_name(backend));
    fclose(f);
  }
  *exit_code = BENCH_EXIT_SKIP;
  return NULL;
}

#define MAX_SIZES 16

typedef struct config {
  int n_sizes;
  int sizes[MAX_SIZES];
  int batch;
} config;

/* n random examples: inputs uniform in [0, 1), one-hot targets (a 0/1
 * target when n_out is 1), drawn from seed. The caller frees X and Y.
 * Returns 0 when out of memory. */
BENCH_UNUSED static int make_data(int n, int n_in, int n_out, uint64_t seed, float **X, float **Y) {
  *X = malloc((size_t)n * n_in * sizeof(float));
  *Y = calloc((size_t)n * n_out, sizeof(float));
  if (!*X || !*Y) {
    free(*X);
    free(*Y);
    return 0;
  }
  bench_fill_uniform(*X, (size_t)n * n_in, seed, 0.0f, 1.0f);
  for (int k = 0; k < n; ++k) {
    uint64_t r = bench_mix64(seed ^ bench_mix64(~(uint64_t)k));
    if (n_out == 1)
      (*Y)[k] = (float)(r & 1);
    else
      (*Y)[(size_t)k * n_out + (size_t)(r % (uint64_t)n_out)] = 1.0f;
  }
  return 1;
}

/* "784-100-10@256". */
BENCH_UNUSED static void config_name(const config *c, char *buf, size_t len) {
  size_t o = 0;
  for (int i = 0; i < c->n_sizes && o < len; ++i)
    o += (size_t)snprintf(buf + o, len - o, "%s%d", i ? "-" : "", c->sizes[i]);
  if (o < len) snprintf(buf + o, len - o, "@%d", c->batch);
}

/* Parses "784-100-10@256" into c; 0 if malformed. */
BENCH_UNUSED static int parse_config(const char *s, config *c) {
  const char *at = strchr(s, '@');
  if (!at) return 0;
  char buf[256];
  size_t len = (size_t)(at - s);
  if (len >= sizeof buf) return 0;
  memcpy(buf, s, len);
  buf[len] = '\0';
  long v[MAX_SIZES];
  int n = bench_parse_ints(buf, '-', v, MAX_SIZES);
  if (n < 2) return 0;
  for (int i = 0; i < n; ++i) {
    if (v[i] < 1 || v[i] > (1 << 20)) return 0;
    c->sizes[i] = (int)v[i];
  }
  c->n_sizes = n;
  char *end;
  long b = strtol(at + 1, &end, 10);
  if (*end != '\0' || b < 1 || b > (1 << 24)) return 0;
  c->batch = (int)b;
  return 1;
}

BENCH_UNUSED static size_t host_memory_bytes(void) {
  long pages = sysconf(_SC_PHYS_PAGES), page = sysconf(_SC_PAGE_SIZE);
  return pages > 0 && page > 0 ? (size_t)pages * (size_t)page : (size_t)8 << 30;
}

#endif /* BP_BENCH_CONFIG_H */
