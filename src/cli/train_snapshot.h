/* train_snapshot.h - a copy of a network's parameters, and with
 * --save-optimizer its optimizer state and step count, kept on the host
 * while `train` runs: the last good epoch's (restored after a numeric
 * failure) and the best validation epoch's (--early-stop). A model file
 * saved from a restored snapshot holds the weights and the optimizer state
 * of the same epoch, so `--init` resumes from that epoch exactly. */
#ifndef BP_CLI_TRAIN_SNAPSHOT_H
#define BP_CLI_TRAIN_SNAPSHOT_H

#include <stddef.h>
#include <stdint.h>

#include "backprop.h"

typedef struct cli_snapshot {
  float *params;     /* every layer's W then b, layer after layer */
  size_t n_params;
  float *opt;        /* the optimizer state (with_optimizer), opt_count floats */
  size_t opt_count;
  int64_t opt_step;
  int with_optimizer;
} cli_snapshot;

/* Allocates room for net's parameters (and state when with_optimizer);
 * BP_ERR_OUT_OF_MEMORY leaves *s empty. */
bp_status cli_snapshot_init(cli_snapshot *s, const bp_network *net, int with_optimizer);
/* Copies the network's current values into s. */
bp_status cli_snapshot_take(cli_snapshot *s, const bp_network *net);
/* Puts s's values back into the network. */
bp_status cli_snapshot_restore(const cli_snapshot *s, bp_network *net);
/* Frees what init allocated; a zeroed or freed snapshot is a no-op. */
void cli_snapshot_free(cli_snapshot *s);

#endif /* BP_CLI_TRAIN_SNAPSHOT_H */
