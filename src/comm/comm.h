/*
 * comm.h - the communicator behind bp_comm (backprop.h "Data-parallel
 * training") and the collectives the engine and the backends use. Not
 * installed.
 *
 * Files: comm.c (creation from the environment, getters, the one-rank
 * communicator, stubs for a build without MPI) and comm_mpi.c (MPI: the
 * bootstrap, the non-blocking host collectives polled against the deadline).
 * The NCCL communicator of the CUDA backend lives in src/cuda/cuda_comm.cu
 * and hangs off `nccl` below.
 *
 * Every collective here fails in the same way: comm->failed is set, the
 * reason goes to comm->last_error and BP_ERR_COMM is returned; from then on
 * every collective fails at once (the ranks no longer agree on what was
 * exchanged). The deadline of a wait is comm->timeout_s from the wait's
 * start: a rank that stops responding turns into BP_ERR_COMM on the others
 * within the timeout, never a silent hang.
 */
#ifndef BP_COMM_H
#define BP_COMM_H

#include "../internal.h"

#ifdef __cplusplus
extern "C" {
#endif

struct bp_comm {
  bp_comm_bootstrap bootstrap;
  bp_comm_transport transport; /* as asked in the desc */
  int size, rank, local_rank;
  double timeout_s;
  size_t bucket_bytes;
  int failed;                  /* a collective failed: every later one fails at once */
  char last_error[BP_ERROR_LEN];
  void *mpi;                   /* comm_mpi.c's state (NULL: one rank, no MPI) */
  void *nccl;                  /* the CUDA backend's NCCL state (cuda_comm.cu), made on first use */
  void (*nccl_free)(bp_comm *comm, int abort); /* releases `nccl`; set with it */
};

/* Records a formatted message on comm, marks it failed, returns BP_ERR_COMM. */
bp_status bp_comm_fail(bp_comm *comm, const char *fmt, ...)
#if defined(__GNUC__)
    __attribute__((format(printf, 2, 3)))
#endif
    ;

/* ---- Host-memory collectives (MPI; BP_ERR_UNSUPPORTED without it) ---- */
/* Starts the in-place all-reduce (sum) of count floats; returns without
 * waiting. The buffer must not be touched until bp_comm_wait returns. */
bp_status bp_comm_iallreduce_floats(bp_comm *comm, float *data, size_t count);
/* Lets started all-reduces progress (MPI progresses only inside MPI calls);
 * returns 1 when none is outstanding any more. */
int bp_comm_progress(bp_comm *comm);
/* Waits for every started all-reduce, polled against the deadline. `what`
 * names the exchange in the timeout message. */
bp_status bp_comm_wait(bp_comm *comm, const char *what);
/* Blocking (with the deadline) all-reduce (sum) of count doubles in place. */
bp_status bp_comm_allreduce_doubles(bp_comm *comm, double *v, int count, const char *what);
/* Rank 0's count floats to every rank, in place (with the deadline). */
bp_status bp_comm_bcast_floats(bp_comm *comm, float *v, size_t count, const char *what);

/* Rank 0's `bytes` bytes to every rank, in place (with the deadline): the
 * NCCL unique id. */
bp_status bp_comm_bcast_bytes(bp_comm *comm, void *v, int bytes, const char *what);

/* comm_mpi.c's parts of creation, destruction and abort. mpi_init makes
 * comm MPI_COMM_WORLD's when `launched` (an MPI launcher's variables are
 * set) or MPI is already initialized; otherwise comm stays one rank. */
bp_status bp_comm_mpi_init(bp_comm *comm, int launched, char *err, size_t err_len);
void bp_comm_mpi_free(bp_comm *comm);
void bp_comm_mpi_abort(bp_comm *comm, int code);

#ifdef __cplusplus
}
#endif
#endif /* BP_COMM_H */
