/* train_snapshot.c - see train_snapshot.h. */
#include "train_snapshot.h"

#include <stdlib.h>
#include <string.h>

bp_status cli_snapshot_init(cli_snapshot *s, const bp_network *net, int with_optimizer) {
  memset(s, 0, sizeof *s);
  s->n_params = bp_network_parameter_count(net);
  s->params = malloc(sizeof(float) * (s->n_params ? s->n_params : 1));
  if (!s->params) return BP_ERR_OUT_OF_MEMORY;
  s->with_optimizer = with_optimizer;
  if (with_optimizer) {
    /* The optimizer is fixed for the run, so its slot count is too. */
    const int slots = bp_network_optimizer_state_slots(net);
    s->opt_count = (size_t)(slots > 0 ? slots : 0) * s->n_params;
    if (s->opt_count && !(s->opt = malloc(sizeof(float) * s->opt_count))) {
      cli_snapshot_free(s);
      return BP_ERR_OUT_OF_MEMORY;
    }
  }
  return BP_OK;
}

/* Every layer's W and b to (to_host) or from buf. */
static bp_status copy_layers(bp_network *net, float *buf, int to_host) {
  size_t off = 0;
  for (int i = 0; i < bp_network_n_layers(net); ++i) {
    const size_t w = (size_t)bp_network_size(net, i + 1) * (size_t)bp_network_size(net, i);
    const size_t b = (size_t)bp_network_size(net, i + 1);
    bp_status st = to_host ? bp_network_get_layer(net, i, buf + off, buf + off + w)
                           : bp_network_set_layer(net, i, buf + off, buf + off + w);
    if (st != BP_OK) return st;
    off += w + b;
  }
  return BP_OK;
}

bp_status cli_snapshot_take(cli_snapshot *s, const bp_network *net) {
  /* get_layer does not change the network; copy_layers takes it non-const
   * for the restore direction. */
  bp_status st = copy_layers((bp_network *)net, s->params, 1);
  if (st == BP_OK && s->with_optimizer)
    st = bp_network_get_optimizer_state(net, s->opt, s->opt_count, &s->opt_step);
  return st;
}

bp_status cli_snapshot_restore(const cli_snapshot *s, bp_network *net) {
  bp_status st = copy_layers(net, s->params, 0);
  if (st == BP_OK && s->with_optimizer)
    st = bp_network_set_optimizer_state(net, s->opt, s->opt_count, s->opt_step);
  return st;
}

void cli_snapshot_free(cli_snapshot *s) {
  free(s->params);
  free(s->opt);
  memset(s, 0, sizeof *s);
}
