/*
 * comm.h - the communicator behind bp_comm (backprop.h "Data-parallel
 * training") and the collectives the engine and the backends use. Not
 * installed.
 *
 * Files: comm.c (creation from the environment, getters, the one-rank
 * communicator, the dispatch of the collectives by bootstrap, stubs for a
 * build without MPI), comm_file.c and comm_tcp.c (BP_COMM_FILE: the
 * rendezvous, a shared file or rank 0's TCP socket, that hands NCCL's unique
 * id from rank 0 to the others) and comm_mpi.c
 * (MPI: the bootstrap, the non-blocking host collectives polled against the
 * deadline). The NCCL communicator of the CUDA backend lives in
 * src/cuda/cuda_comm.cu and hangs off `nccl` below; with BP_COMM_FILE it
 * also carries the host collectives (dev_* below: there is no MPI).
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
  /* BP_COMM_FILE: the rendezvous. file:PATH (rdv_tcp 0): rendezvous is
   * PATH (rank 0 writes, the others poll); tcp:HOST:PORT (rdv_tcp 1):
   * rendezvous is HOST, rdv_port PORT (rank 0 listens, the others connect).
   * rdv_seq counts the broadcasts that went through it (the file: the k-th
   * after the first uses PATH.k; TCP: carried in each message). */
  char *rendezvous;
  int rdv_tcp;
  char rdv_port[8];
  int rdv_seq;
  /* BP_COMM_FILE: the host collectives through the NCCL communicator; set
   * with `nccl` (cuda_comm.cu), NULL before and after. */
  bp_status (*dev_allreduce_doubles)(bp_comm *comm, double *v, int count, const char *what);
  bp_status (*dev_bcast_floats)(bp_comm *comm, float *v, size_t count, const char *what);
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

/* ---- BP_COMM_FILE ----
 * A communicator of rank `rank` of `size` whose broadcast of bytes goes
 * through the rendezvous file at `path`: what bp_comm_create_from_env makes
 * from BP_RANK, BP_WORLD_SIZE, BP_LOCAL_RANK and BP_RENDEZVOUS=file:PATH,
 * and the tests' way to make the ranks of one process's threads (the
 * environment is per process). desc as bp_comm_create_from_env's (NULL:
 * defaults). On failure *out is NULL, the reason in bp_comm_last_error(NULL). */
bp_status bp_comm_create_file(const bp_comm_desc *desc, int rank, int size, int local_rank,
                              const char *path, bp_comm **out);
/* The same from a BP_RENDEZVOUS value, "file:PATH" or "tcp:HOST:PORT"
 * (HOST a name, an IPv4 address or a bracketed IPv6 one, PORT 1 .. 65535):
 * what bp_comm_create_from_env makes of it. A malformed value is
 * BP_ERR_INVALID_ARGUMENT, the reason in bp_comm_last_error(NULL). */
bp_status bp_comm_create_rendezvous(const bp_comm_desc *desc, int rank, int size, int local_rank,
                                    const char *spec, bp_comm **out);
/* comm_file.c: rank 0's `bytes` bytes to every rank through the file,
 * polled against the deadline; removes the files rank 0 wrote. */
bp_status bp_comm_file_bcast_bytes(bp_comm *comm, void *v, int bytes, const char *what);
void bp_comm_file_cleanup(bp_comm *comm);
/* comm_tcp.c: rank 0's `bytes` bytes to every rank through rank 0's socket,
 * every wait against the deadline. */
bp_status bp_comm_tcp_bcast_bytes(bp_comm *comm, void *v, int bytes, const char *what);
/* Splits "HOST:PORT" or "[HOST]:PORT" (the part after "tcp:"): NULL, or
 * why it is malformed. */
const char *bp_comm_tcp_parse(const char *spec, char *host, size_t host_len, char *port,
                              size_t port_len);

/* The CUDA backend (cuda_comm.cu): makes comm's NCCL communicator on net's
 * device now (collective), so that the host collectives of a BP_COMM_FILE
 * communicator have a way to go. BP_ERR_UNSUPPORTED without NCCL or with
 * the MPI transport asked for. */
bp_status bp_cuda_comm_attach(bp_network *net, bp_comm *comm);

/* ---- Two ranks on one GPU (NCCL refuses that) ----
 * A device's key for comparing devices across ranks: a hash of its UUID
 * (len bytes) as an exact double in [1, 2^52]; never 0. */
double bp_comm_device_key(const void *uuid, size_t len);
/* 1 if two of the n keys are equal (two ranks on one device), else 0. */
int bp_comm_keys_repeat(const double *keys, int n);

/* ---- comm_mpi.c (stubs in comm.c without MPI) ----
 * The MPI implementations of the collectives above, for BP_COMM_SINGLE and
 * BP_COMM_MPI communicators. */
bp_status bp_comm_mpi_iallreduce_floats(bp_comm *comm, float *data, size_t count);
int bp_comm_mpi_progress(bp_comm *comm);
bp_status bp_comm_mpi_wait(bp_comm *comm, const char *what);
bp_status bp_comm_mpi_allreduce_doubles(bp_comm *comm, double *v, int count, const char *what);
bp_status bp_comm_mpi_bcast_floats(bp_comm *comm, float *v, size_t count, const char *what);
bp_status bp_comm_mpi_bcast_bytes(bp_comm *comm, void *v, int bytes, const char *what);

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
