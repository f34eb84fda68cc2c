/* comm_setup.c - the train command's side of data-parallel training
 * (comm_setup.h). The library does the exchange; this file decides what the
 * command does with several ranks: one device per local rank, one rank
 * speaking and writing, a stop that every rank agrees on, and the whole job
 * ended when one rank fails. */
#include <math.h>
#include <stdio.h>
#include <string.h>

#include "args.h"
#include "comm_setup.h"

int cli_comm_parse_timeout(const cli_args *a, const char *v, cli_comm *c) {
  float t = 0.0f;
  if (cli_parse_float(a, v, 0, 1e9, 1, &t)) return CLI_EXIT_USAGE;
  c->timeout_s = t;
  return 0;
}

int cli_comm_parse_transport(const cli_args *a, const char *v, cli_comm *c) {
  static const char *const names[] = {"auto", "mpi", "nccl", NULL};
  int choice = 0;
  if (cli_parse_choice(a, v, names, &choice)) return CLI_EXIT_USAGE;
  c->transport = choice == 1 ? BP_COMM_TRANSPORT_MPI
                 : choice == 2 ? BP_COMM_TRANSPORT_NCCL
                               : BP_COMM_TRANSPORT_AUTO;
  return 0;
}

int cli_comm_begin(const char *cmd, cli_comm *c, int device_given, int *device, int *quiet,
                   int *json, const char **save, const char **log, const char **plot) {
  bp_comm_desc desc;
  bp_comm_desc_init(&desc);
  if (c->timeout_s > 0) desc.timeout_s = c->timeout_s;
  desc.transport = (bp_comm_transport)c->transport;
  bp_status st = bp_comm_create_from_env(&desc, &c->comm);
  if (st != BP_OK) return cli_fail(cmd, "%s", bp_comm_last_error(NULL));
  c->rank = bp_comm_rank(c->comm);
  c->size = bp_comm_size(c->comm);
  if (c->size > 1) {
    if (!device_given) *device = bp_comm_local_rank(c->comm);
    if (c->rank != 0) {
      *quiet = 1;
      *json = 0;
      *save = *log = *plot = NULL;
    }
  }
  return 0;
}

int cli_comm_attach(const char *cmd, cli_comm *c, bp_network *net) {
  if (!c->comm || c->size == 1) return 0;
  if (bp_network_set_comm(net, c->comm) != BP_OK)
    return cli_fail(cmd, "rank %d: cannot train data-parallel: %s", c->rank,
                    bp_context_last_error(bp_network_context(net)));
  return 0;
}

int cli_comm_any_interrupted(cli_comm *c, int interrupted) {
  if (!c->comm || c->size == 1) return interrupted;
  double v = interrupted ? 1.0 : 0.0;
  /* A failure here surfaces in the epoch that follows. */
  if (bp_comm_allreduce_sum(c->comm, &v, 1) != BP_OK) return 1;
  return v != 0.0;
}

void cli_comm_epoch_done(cli_comm *c, const bp_network *net) {
  bp_epoch_stats st;
  if (c->size <= 1 || bp_network_last_epoch_stats(net, &st, sizeof st) != BP_OK) return;
  c->comm_us += st.comm_us;
  c->comm_wait_us += st.comm_wait_us;
  c->comm_bytes += st.comm_bytes;
  c->steps += st.steps;
}

const char *cli_comm_note(const cli_comm *c) {
  static char note[128];
  if (c->size <= 1) return "";
  snprintf(note, sizeof note, ", %d ranks (%s), data-parallel", c->size,
           bp_comm_bootstrap_name(bp_comm_get_bootstrap(c->comm)));
  return note;
}

void cli_comm_end(cli_comm *c, int code) {
  if (!c->comm) return;
  if (code != 0 && c->size > 1) {
    fprintf(stderr, "backprop: rank %d failed; ending all %d ranks\n", c->rank, c->size);
    fflush(stderr);
    bp_comm_abort(c->comm, code);
  }
  bp_comm_destroy(c->comm);
  c->comm = NULL;
}

void cli_comm_report(const cli_comm *c, cli_run *run) {
  run->world_size = c->size > 0 ? c->size : 1;
  run->comm_ms_per_step = c->steps > 0 ? c->comm_us / 1e3 / (double)c->steps : 0.0;
  run->comm_hidden_share = c->comm_us > 0 ? 1.0 - c->comm_wait_us / c->comm_us : 0.0;
}
