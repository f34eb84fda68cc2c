/*
 * comm_setup.h - the train command under an MPI launcher (mpirun, srun):
 * the communicator, the device of each rank, which rank speaks and writes,
 * the agreement to stop, the communication statistics for --json, and
 * ending the job when a rank fails. With one process all of it is a no-op.
 */
#ifndef BP_CLI_COMM_SETUP_H
#define BP_CLI_COMM_SETUP_H

#include "backprop.h"
#include "args.h"
#include "cli.h"
#include "run.h"

typedef struct cli_comm {
  bp_comm *comm;        /* NULL until cli_comm_begin */
  int rank, size;
  double timeout_s;     /* --comm-timeout; 0: the library's default */
  int transport;        /* --comm-transport: bp_comm_transport */
  double comm_us, comm_wait_us, comm_bytes; /* summed over epochs */
  long long steps;
} cli_comm;

/* --comm-timeout SECONDS and --comm-transport auto|mpi|nccl: 0, or a usage
 * error's exit code. */
int cli_comm_parse_timeout(const cli_args *a, const char *v, cli_comm *c);
int cli_comm_parse_transport(const cli_args *a, const char *v, cli_comm *c);
/* The help text of the two options. */
#define CLI_COMM_HELP                                                                    \
  "  --comm-timeout SECONDS  under mpirun/srun: a rank waits at most this long for the\n" \
  "                       others in each exchange, then the job ends (default 300)\n"    \
  "  --comm-transport auto|mpi|nccl  how the CUDA backend exchanges gradients (mpi:\n"    \
  "                       staged through host memory, e.g. two ranks on one GPU)\n"

/* Creates the communicator from the launcher's environment (before the
 * context). With several ranks and no --device, *device becomes the local
 * rank; ranks other than 0 get *quiet, and lose --json, --save, --log and
 * --plot (rank 0 alone prints and writes). 0 or the exit code. */
int cli_comm_begin(const char *cmd, cli_comm *c, int device_given, int *device, int *quiet,
                   int *json, const char **save, const char **log, const char **plot);
/* bp_network_set_comm: 0 or the exit code. */
int cli_comm_attach(const char *cmd, cli_comm *c, bp_network *net);
/* 1 if any rank was interrupted (collective, at an epoch's start). */
int cli_comm_any_interrupted(cli_comm *c, int interrupted);
/* Adds the last epoch's exchange statistics. */
void cli_comm_epoch_done(cli_comm *c, const bp_network *net);
/* A note for the progress output ("4 ranks (mpi), ..."); "" with one rank. */
const char *cli_comm_note(const cli_comm *c);
/* world_size and the exchange's per-step time and hidden share for --json. */
void cli_comm_report(const cli_comm *c, cli_run *run);
/* After the network is destroyed: releases the communicator, or, when the
 * command fails (code != 0) with several ranks, ends the whole job
 * (bp_comm_abort): the others would otherwise wait for this rank until their
 * deadline. */
void cli_comm_end(cli_comm *c, int code);

#endif /* BP_CLI_COMM_SETUP_H */
