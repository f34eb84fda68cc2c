/* errors.c - failure details per thread and context, the entry check of
 * every call, and the input checks shared by the API. */
#include <stdarg.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>

#include "internal.h"

/* ---- Error records --------------------------------------------------------
 * The detail of a failure is kept per thread, so that two threads that share
 * a context (against the rule of backprop.h, or only to read files) never
 * write one buffer at once: each thread holds the messages of its
 * BP_ERROR_SLOTS contexts most recently failed, keyed by the context's id
 * (unique for the life of the process, so a new context at the address of a
 * destroyed one inherits nothing). A success clears the thread's record for
 * that context and frees its slot. */
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
  uint32_t bad = 0;
  for (size_t i = 0; i < count; ++i) bad |= bp_nonfinite_bits(x[i]);
  return bad == 0;
}
