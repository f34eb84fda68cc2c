/* stats.c - the clock behind bp_epoch_stats, and its getter. */
#define _POSIX_C_SOURCE 200809L
#include <string.h>
#include <time.h>

#include "internal.h"

double bp_now_us(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec * 1e6 + (double)ts.tv_nsec * 1e-3;
}

bp_status bp_network_last_epoch_stats(const bp_network *net, bp_epoch_stats *stats,
                                      size_t stats_size) {
  if (!net) return BP_ERR_INVALID_ARGUMENT;
  if (!stats)
    return bp_error(net->ctx, BP_ERR_INVALID_ARGUMENT, "bp_network_last_epoch_stats: stats is NULL");
  if (stats_size == 0)
    return bp_error(net->ctx, BP_ERR_INVALID_ARGUMENT,
                    "bp_network_last_epoch_stats: stats_size is 0; pass sizeof(bp_epoch_stats)");
  /* An older caller's struct is a prefix of this one (fields are only
   * appended); a newer caller's tail is left as it was. */
  memcpy(stats, &net->stats, stats_size < sizeof net->stats ? stats_size : sizeof net->stats);
  return BP_OK;
}
