/* common.c - status strings, version, error recording and the seeded RNG. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

unsigned bp_version(void) { return BP_VERSION_NUMBER; }
const char *bp_version_string(void) { return BP_VERSION_STRING; }

const char *bp_status_string(bp_status status) {
  switch (status) {
    case BP_OK: return "BP_OK: success";
    case BP_ERR_INVALID_ARGUMENT: return "BP_ERR_INVALID_ARGUMENT: invalid argument";
    case BP_ERR_OUT_OF_MEMORY: return "BP_ERR_OUT_OF_MEMORY: out of memory";
    case BP_ERR_NO_DEVICE: return "BP_ERR_NO_DEVICE: no usable CUDA device";
    case BP_ERR_DEVICE: return "BP_ERR_DEVICE: CUDA or cuBLAS failure";
    case BP_ERR_IO: return "BP_ERR_IO: file could not be read or written";
    case BP_ERR_FORMAT: return "BP_ERR_FORMAT: malformed file or buffer";
    case BP_ERR_NUMERIC: return "BP_ERR_NUMERIC: NaN or Inf in inputs or cost";
    case BP_ERR_UNSUPPORTED: return "BP_ERR_UNSUPPORTED: not supported by this build";
    case BP_ERR_COMM: return "BP_ERR_COMM: a data-parallel collective failed or timed out";
  }
  return "unknown bp_status";
}

const char *bp_backend_name(bp_backend backend) {
  switch (backend) {
    case BP_BACKEND_AUTO: return "auto";
    case BP_BACKEND_CPU: return "cpu";
    case BP_BACKEND_CUDA: return "cuda";
  }
  return "unknown";
}

/* ---- Error records --------------------------------------------------------
 * The detail of a failure is kept per thread, so that two threads that share
 * a context (against the rule of backprop.h, or only to read files) never
 * write one buffer at once: each thread holds the messages of its
 * BP_ERROR_SLOTS contexts most recently failed, keyed by the context's id
 * (unique for the life of the process, so a new context at the address of a
 * destroyed one inherits nothing). A success clears the thread's record for
 * that context and frees its slot. ctx->last_error is not used. */
#define BP_ERROR_SLOTS 8
typedef struct bp_error_slot {
  uint64_t ctx_id; /* 0: free */
  char msg[BP_ERROR_LEN];
} bp_error_slot;
static _Thread_local bp_error_slot error_slots[BP_ERROR_SLOTS];
static _Thread_local unsigned error_next; /* round-robin victim when all slots are taken */

static bp_error_slot *error_slot_find(uint64_t id) {
  for (int i = 0; i < BP_ERROR_SLOTS; ++i)
    if (error_slots[i].ctx_id == id) return &error_slots[i];
  return NULL;
}

bp_status bp_error(bp_context *ctx, bp_status status, const char *fmt, ...) {
  if (ctx) {
    bp_error_slot *slot = error_slot_find(ctx->id);
    if (!slot) slot = error_slot_find(0);
    if (!slot) slot = &error_slots[error_next++ % BP_ERROR_SLOTS];
    slot->ctx_id = ctx->id;
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(slot->msg, sizeof slot->msg, fmt, ap);
    va_end(ap);
  }
  return status;
}

void bp_clear_error(bp_context *ctx) {
  bp_error_slot *slot = ctx ? error_slot_find(ctx->id) : NULL;
  if (slot) {
    slot->ctx_id = 0;
    slot->msg[0] = '\0';
  }
}

const char *bp_context_last_error(const bp_context *ctx) {
  if (!ctx) return "bp_context_last_error: ctx is NULL";
  const bp_error_slot *slot = error_slot_find(ctx->id);
  return slot ? slot->msg : "";
}

bp_status bp_check_context(bp_context *ctx) {
  if (ctx->failed)
    return bp_error(ctx, BP_ERR_DEVICE,
                    "the CUDA context hit a sticky device fault earlier and is unusable; "
                    "the process must restart to use the GPU again");
  bp_clear_error(ctx);
  return BP_OK;
}

int bp_all_finite(const float *x, size_t count) {
  /* Accumulating x*0 turns any NaN/Inf into NaN, without a branch per element. */
  float acc = 0.0f;
  for (size_t i = 0; i < count; ++i) acc += x[i] * 0.0f;
  return acc == 0.0f;
}

int bp_debug_should_fail_alloc(bp_context *ctx) {
  if (!ctx || ctx->fail_alloc_countdown <= 0) return 0;
  return --ctx->fail_alloc_countdown == 0;
}

bp_status bp_debug_fail_allocation(bp_context *ctx, long nth) {
  if (!ctx) return BP_ERR_INVALID_ARGUMENT;
  if (nth < 0) return bp_error(ctx, BP_ERR_INVALID_ARGUMENT, "bp_debug_fail_allocation: nth < 0");
  ctx->fail_alloc_countdown = nth;
  return BP_OK;
}

bp_status bp_debug_inject_device_fault(bp_context *ctx) {
  if (!ctx) return BP_ERR_INVALID_ARGUMENT;
#ifdef BP_WITH_CUDA
  if (ctx->backend == BP_BACKEND_CUDA) return bp_cuda_debug_fault(ctx);
#endif
  return bp_error(ctx, BP_ERR_UNSUPPORTED,
                  "bp_debug_inject_device_fault: only the CUDA backend has a device to fault");
}

/* ---- RNG: SplitMix64 seeds xoshiro256** (Blackman & Vigna). ---- */
static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

void bp_rng_seed(bp_rng *rng, uint64_t seed) {
  for (int i = 0; i < 4; ++i) rng->s[i] = splitmix64(&seed);
}

static uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

uint64_t bp_rng_next(bp_rng *rng) {
  uint64_t *s = rng->s;
  uint64_t result = rotl(s[1] * 5, 7) * 9;
  uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

double bp_rng_uniform(bp_rng *rng) { return (double)(bp_rng_next(rng) >> 11) * 0x1.0p-53; }

double bp_rng_normal(bp_rng *rng) {
  /* Box-Muller with u1 in (0, 1] so log never sees 0; one value per call keeps
   * the draw order trivially reproducible. */
  double u1 = 1.0 - bp_rng_uniform(rng);
  double u2 = bp_rng_uniform(rng);
  return sqrt(-2.0 * log(u1)) * cos(6.283185307179586476925 * u2);
}

uint64_t bp_rng_below(bp_rng *rng, uint64_t bound) {
  /* Rejection sampling removes the modulo bias. */
  uint64_t threshold = (0 - bound) % bound;
  for (;;) {
    uint64_t r = bp_rng_next(rng);
    if (r >= threshold) return r % bound;
  }
}
