/* comm.c - bp_comm: creation from the launcher's environment (MPI, or
 * BP_RANK / BP_WORLD_SIZE / BP_RENDEZVOUS for BP_COMM_FILE), the getters,
 * the one-rank communicator, and the collectives' dispatch by bootstrap. The
 * MPI work is in comm_mpi.c, the rendezvous in comm_file.c (file:PATH) and
 * comm_tcp.c (tcp:HOST:PORT); without MPI
 * (BP_WITH_MPI undefined) the stubs at the end refuse it with
 * BP_ERR_UNSUPPORTED. */
#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "comm.h"

#define DEFAULT_TIMEOUT_S 300.0
#define DEFAULT_BUCKET_BYTES ((size_t)1 << 20)

/* The last failed bp_comm_create_from_env of this thread: there is no
 * communicator yet to hold the message. */
static _Thread_local char create_error[BP_ERROR_LEN];

void bp_comm_desc_init(bp_comm_desc *desc) {
  if (!desc) return;
  memset(desc, 0, sizeof *desc);
  desc->struct_size = (uint32_t)sizeof *desc;
  desc->version = BP_COMM_DESC_VERSION;
  desc->timeout_s = DEFAULT_TIMEOUT_S;
  desc->bucket_bytes = DEFAULT_BUCKET_BYTES;
  desc->transport = BP_COMM_TRANSPORT_AUTO;
}

int bp_has_mpi(void) {
#ifdef BP_WITH_MPI
  return 1;
#else
  return 0;
#endif
}

int bp_has_nccl(void) {
#ifdef BP_WITH_NCCL
  return 1;
#else
  return 0;
#endif
}

bp_status bp_comm_fail(bp_comm *comm, const char *fmt, ...) {
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(comm->last_error, sizeof comm->last_error, fmt, ap);
  va_end(ap);
  comm->failed = 1;
  return BP_ERR_COMM;
}

static const char *env(const char *name) {
  const char *v = getenv(name);
  return v && *v ? v : NULL;
}

/* 1 if this process was started by an MPI launcher. Open MPI's mpirun sets
 * OMPI_COMM_WORLD_SIZE; MPICH's Hydra and Slurm's PMI2 set PMI_SIZE; PMIx
 * launchers (srun --mpi=pmix, prterun) set PMIX_RANK; srun sets
 * SLURM_STEP_NUM_TASKS for the tasks of a step (not for a batch script). */
static int under_mpi_launcher(void) {
  return env("OMPI_COMM_WORLD_SIZE") || env("PMI_SIZE") || env("PMIX_RANK") ||
         (env("SLURM_PROCID") && env("SLURM_STEP_NUM_TASKS"));
}

/* A one-rank communicator with desc's options (NULL: defaults). */
static bp_status comm_new(const char *fn, const bp_comm_desc *desc, bp_comm **out) {
  create_error[0] = '\0';
  if (!out) {
    snprintf(create_error, sizeof create_error, "%s: out is NULL", fn);
    return BP_ERR_INVALID_ARGUMENT;
  }
  *out = NULL;
  bp_comm_desc d;
  bp_comm_desc_init(&d);
  if (desc) {
    if (desc->struct_size < sizeof d || desc->version != BP_COMM_DESC_VERSION) {
      snprintf(create_error, sizeof create_error,
               "%s: desc has struct_size %u and version %u; this library knows version %d "
               "(size %zu): initialize it with bp_comm_desc_init",
               fn, (unsigned)desc->struct_size, (unsigned)desc->version, BP_COMM_DESC_VERSION,
               sizeof d);
      return desc->version > BP_COMM_DESC_VERSION ? BP_ERR_UNSUPPORTED : BP_ERR_INVALID_ARGUMENT;
    }
    d = *desc;
  }
  if (!isfinite(d.timeout_s) || d.timeout_s <= 0.0) {
    snprintf(create_error, sizeof create_error, "%s: timeout_s = %g must be finite and > 0", fn,
             d.timeout_s);
    return BP_ERR_INVALID_ARGUMENT;
  }
  if (d.transport != BP_COMM_TRANSPORT_AUTO && d.transport != BP_COMM_TRANSPORT_MPI &&
      d.transport != BP_COMM_TRANSPORT_NCCL) {
    snprintf(create_error, sizeof create_error, "%s: unknown transport %d", fn, (int)d.transport);
    return BP_ERR_INVALID_ARGUMENT;
  }
  bp_comm *c = calloc(1, sizeof *c);
  if (!c) {
    snprintf(create_error, sizeof create_error, "%s: out of host memory", fn);
    return BP_ERR_OUT_OF_MEMORY;
  }
  c->size = 1;
  c->bootstrap = BP_COMM_SINGLE;
  c->transport = d.transport;
  c->timeout_s = d.timeout_s;
  c->bucket_bytes = d.bucket_bytes ? d.bucket_bytes : DEFAULT_BUCKET_BYTES;
  *out = c;
  return BP_OK;
}

/* A BP_COMM_FILE communicator; `where` is the path (file) or host (tcp). */
static bp_status create_rdv(const bp_comm_desc *desc, int rank, int size, int local_rank,
                            int tcp, const char *where, const char *port, bp_comm **out) {
  static const char fn[] = "bp_comm_create_from_env";
  if (size < 1 || rank < 0 || rank >= size || local_rank < 0 || !where || !*where) {
    snprintf(create_error, sizeof create_error,
             "%s: BP_RANK=%d, BP_WORLD_SIZE=%d, BP_LOCAL_RANK=%d and the rendezvous must "
             "satisfy 0 <= rank < world size, local rank >= 0, a rendezvous given",
             fn, rank, size, local_rank);
    if (out) *out = NULL;
    return BP_ERR_INVALID_ARGUMENT;
  }
  bp_comm *c = NULL;
  bp_status st = comm_new(fn, desc, &c);
  if (st != BP_OK) return st;
  c->rendezvous = malloc(strlen(where) + 1);
  if (!c->rendezvous) {
    free(c);
    snprintf(create_error, sizeof create_error, "%s: out of host memory", fn);
    return BP_ERR_OUT_OF_MEMORY;
  }
  strcpy(c->rendezvous, where);
  c->rdv_tcp = tcp;
  if (tcp) snprintf(c->rdv_port, sizeof c->rdv_port, "%s", port);
  c->bootstrap = BP_COMM_FILE;
  c->rank = rank;
  c->size = size;
  c->local_rank = local_rank;
  *out = c;
  return BP_OK;
}

bp_status bp_comm_create_file(const bp_comm_desc *desc, int rank, int size, int local_rank,
                              const char *path, bp_comm **out) {
  return create_rdv(desc, rank, size, local_rank, 0, path, NULL, out);
}

bp_status bp_comm_create_rendezvous(const bp_comm_desc *desc, int rank, int size, int local_rank,
                                    const char *spec, bp_comm **out) {
  static const char fn[] = "bp_comm_create_from_env";
  if (out) *out = NULL;
  if (spec && strncmp(spec, "file:", 5) == 0 && spec[5] != '\0')
    return create_rdv(desc, rank, size, local_rank, 0, spec + 5, NULL, out);
  if (spec && strncmp(spec, "tcp:", 4) == 0) {
    char host[256], port[8];
    const char *why = bp_comm_tcp_parse(spec + 4, host, sizeof host, port, sizeof port);
    if (why) {
      snprintf(create_error, sizeof create_error,
               "%s: BP_RENDEZVOUS=%s: %s; expected tcp:HOST:PORT (rank 0's address and a free "
               "port, e.g. tcp:10.0.0.1:29500 or tcp:[::1]:29500)",
               fn, spec, why);
      return BP_ERR_INVALID_ARGUMENT;
    }
    return create_rdv(desc, rank, size, local_rank, 1, host, port, out);
  }
  snprintf(create_error, sizeof create_error,
           "%s: BP_RENDEZVOUS=%s: expected file:PATH or tcp:HOST:PORT", fn, spec ? spec : "(null)");
  return BP_ERR_INVALID_ARGUMENT;
}

/* A non-negative int from the environment variable name: 1 and *v, 0 if
 * unset, -1 if malformed. */
static int env_int(const char *name, int *v) {
  const char *s = env(name);
  if (!s) return 0;
  char *end = NULL;
  long x = strtol(s, &end, 10);
  if (*end != '\0' || x < 0 || x > 1000000) return -1;
  *v = (int)x;
  return 1;
}

/* BP_COMM_FILE from BP_RANK, BP_WORLD_SIZE, BP_LOCAL_RANK, BP_RENDEZVOUS. */
static bp_status create_from_rendezvous_env(const bp_comm_desc *desc, const char *rdv,
                                            bp_comm **out) {
  static const char fn[] = "bp_comm_create_from_env";
  int rank = -1, size = -1, local = -1;
  const int has_rank = env_int("BP_RANK", &rank), has_size = env_int("BP_WORLD_SIZE", &size);
  const int has_local = env_int("BP_LOCAL_RANK", &local);
  if (has_rank != 1 || has_size != 1 || has_local < 0 || size < 1 || rank >= size) {
    snprintf(create_error, sizeof create_error,
             "%s: BP_RENDEZVOUS is set, so BP_RANK (0 .. BP_WORLD_SIZE-1) and BP_WORLD_SIZE "
             "(>= 1) must be too, as non-negative integers (BP_RANK=%s, BP_WORLD_SIZE=%s, "
             "BP_LOCAL_RANK=%s)",
             fn, env("BP_RANK") ? env("BP_RANK") : "(unset)",
             env("BP_WORLD_SIZE") ? env("BP_WORLD_SIZE") : "(unset)",
             env("BP_LOCAL_RANK") ? env("BP_LOCAL_RANK") : "(unset)");
    return BP_ERR_INVALID_ARGUMENT;
  }
  if (!has_local) local = rank;
  return bp_comm_create_rendezvous(desc, rank, size, local, rdv, out);
}

bp_status bp_comm_create_from_env(const bp_comm_desc *desc, bp_comm **out) {
  static const char fn[] = "bp_comm_create_from_env";
  const int launched = under_mpi_launcher();
  const char *rdv = env("BP_RENDEZVOUS");
  create_error[0] = '\0';
  if (!out) {
    snprintf(create_error, sizeof create_error, "%s: out is NULL", fn);
    return BP_ERR_INVALID_ARGUMENT;
  }
  *out = NULL;
  if (rdv && !launched) return create_from_rendezvous_env(desc, rdv, out);
  bp_comm *c = NULL;
  bp_status st0 = comm_new(fn, desc, &c);
  if (st0 != BP_OK) return st0;
  if (launched || bp_has_mpi()) {
    /* With MPI built in, comm_mpi.c also notices a program that already
     * initialized MPI itself; it stays one rank when neither holds. */
    bp_status st = bp_comm_mpi_init(c, launched, create_error, sizeof create_error);
    if (st != BP_OK) {
      free(c);
      return st;
    }
  }
  *out = c;
  return BP_OK;
}

void bp_comm_destroy(bp_comm *comm) {
  if (!comm) return;
  if (comm->nccl && comm->nccl_free) comm->nccl_free(comm, comm->failed);
  bp_comm_mpi_free(comm);
  if (comm->bootstrap == BP_COMM_FILE && !comm->rdv_tcp) bp_comm_file_cleanup(comm);
  free(comm->rendezvous);
  free(comm);
}

int bp_comm_size(const bp_comm *comm) { return comm ? comm->size : 0; }
int bp_comm_rank(const bp_comm *comm) { return comm ? comm->rank : -1; }
int bp_comm_local_rank(const bp_comm *comm) { return comm ? comm->local_rank : -1; }
bp_comm_bootstrap bp_comm_get_bootstrap(const bp_comm *comm) {
  return comm ? comm->bootstrap : BP_COMM_SINGLE;
}

const char *bp_comm_bootstrap_name(bp_comm_bootstrap bootstrap) {
  switch (bootstrap) {
    case BP_COMM_SINGLE: return "single";
    case BP_COMM_MPI: return "mpi";
    case BP_COMM_FILE: return "file";
  }
  return "unknown";
}

bp_status bp_comm_set_timeout(bp_comm *comm, double seconds) {
  if (!comm) return BP_ERR_INVALID_ARGUMENT;
  if (!isfinite(seconds) || seconds <= 0.0) {
    snprintf(comm->last_error, sizeof comm->last_error,
             "bp_comm_set_timeout: %g seconds must be finite and > 0", seconds);
    return BP_ERR_INVALID_ARGUMENT;
  }
  comm->timeout_s = seconds;
  return BP_OK;
}

double bp_comm_get_timeout(const bp_comm *comm) { return comm ? comm->timeout_s : 0.0; }

const char *bp_comm_last_error(const bp_comm *comm) {
  return comm ? comm->last_error : create_error;
}

bp_status bp_comm_allreduce_sum(bp_comm *comm, double *values, int count) {
  if (!comm || (!values && count > 0) || count < 0) return BP_ERR_INVALID_ARGUMENT;
  if (comm->size == 1 || count == 0) return BP_OK;
  return bp_comm_allreduce_doubles(comm, values, count, "program's all-reduce");
}

void bp_comm_abort(bp_comm *comm, int code) {
  if (!comm) return;
  if (comm->nccl && comm->nccl_free) {
    comm->nccl_free(comm, 1);
    comm->nccl = NULL;
  }
  if (comm->bootstrap == BP_COMM_FILE) {
    /* No launcher to end the others: they fail at their deadline. */
    fflush(NULL);
    _Exit(code);
  }
  bp_comm_mpi_abort(comm, code);
}

/* ---- The collectives by bootstrap ---- */

/* BP_COMM_FILE without a NCCL communicator (yet): no way to move host data. */
static bp_status no_host_collective(bp_comm *comm, const char *what) {
  if (comm->failed) return BP_ERR_COMM;
  snprintf(comm->last_error, sizeof comm->last_error,
           "the %s needs a host collective, and this communicator (BP_COMM_FILE: "
           "BP_RENDEZVOUS, no MPI) has none: it serves the NCCL transport of the CUDA backend "
           "only (bp_network_set_comm on a CUDA network); the CPU backend and the MPI transport "
           "need an MPI launcher",
           what);
  return BP_ERR_UNSUPPORTED;
}

bp_status bp_comm_iallreduce_floats(bp_comm *comm, float *data, size_t count) {
  if (comm->bootstrap == BP_COMM_FILE) return no_host_collective(comm, "gradient all-reduce");
  return bp_comm_mpi_iallreduce_floats(comm, data, count);
}

int bp_comm_progress(bp_comm *comm) {
  if (comm->bootstrap == BP_COMM_FILE) return 1;
  return bp_comm_mpi_progress(comm);
}

bp_status bp_comm_wait(bp_comm *comm, const char *what) {
  if (comm->bootstrap == BP_COMM_FILE) return comm->failed ? BP_ERR_COMM : BP_OK;
  return bp_comm_mpi_wait(comm, what);
}

bp_status bp_comm_allreduce_doubles(bp_comm *comm, double *v, int count, const char *what) {
  if (comm->bootstrap != BP_COMM_FILE) return bp_comm_mpi_allreduce_doubles(comm, v, count, what);
  if (comm->failed) return BP_ERR_COMM;
  if (comm->size == 1 || count == 0) return BP_OK;
  if (!comm->dev_allreduce_doubles) return no_host_collective(comm, what);
  return comm->dev_allreduce_doubles(comm, v, count, what);
}

bp_status bp_comm_bcast_floats(bp_comm *comm, float *v, size_t count, const char *what) {
  if (comm->bootstrap != BP_COMM_FILE) return bp_comm_mpi_bcast_floats(comm, v, count, what);
  if (comm->failed) return BP_ERR_COMM;
  if (comm->size == 1 || count == 0) return BP_OK;
  if (!comm->dev_bcast_floats) return no_host_collective(comm, what);
  return comm->dev_bcast_floats(comm, v, count, what);
}

bp_status bp_comm_bcast_bytes(bp_comm *comm, void *v, int bytes, const char *what) {
  if (comm->bootstrap == BP_COMM_FILE)
    return comm->rdv_tcp ? bp_comm_tcp_bcast_bytes(comm, v, bytes, what)
                         : bp_comm_file_bcast_bytes(comm, v, bytes, what);
  return bp_comm_mpi_bcast_bytes(comm, v, bytes, what);
}

/* ---- Devices across ranks ---- */

double bp_comm_device_key(const void *uuid, size_t len) {
  const unsigned char *p = (const unsigned char *)uuid;
  uint64_t h = 1469598103934665603ull; /* FNV-1a */
  for (size_t i = 0; i < len; ++i) {
    h ^= p[i];
    h *= 1099511628211ull;
  }
  return (double)(h >> 12) + 1.0; /* 52 bits + 1: exact in a double, never 0 */
}

int bp_comm_keys_repeat(const double *keys, int n) {
  for (int i = 0; i < n; ++i)
    for (int j = i + 1; j < n; ++j)
      if (keys[i] == keys[j]) return 1;
  return 0;
}

#ifndef BP_WITH_MPI
/* ---- A build without MPI: one rank, and a clear refusal under a launcher ---- */

bp_status bp_comm_mpi_init(bp_comm *comm, int launched, char *err, size_t err_len) {
  (void)comm;
  if (!launched) return BP_OK;
  snprintf(err, err_len,
           "bp_comm_create_from_env: this process runs under an MPI launcher, but this build "
           "of backprop has no MPI (rebuild with Open MPI or MPICH installed, -DBP_MPI=ON)");
  return BP_ERR_UNSUPPORTED;
}
void bp_comm_mpi_free(bp_comm *comm) { (void)comm; }
void bp_comm_mpi_abort(bp_comm *comm, int code) {
  (void)comm;
  (void)code;
}
static bp_status no_mpi(bp_comm *comm) {
  snprintf(comm->last_error, sizeof comm->last_error, "this build of backprop has no MPI");
  return BP_ERR_UNSUPPORTED;
}
bp_status bp_comm_mpi_iallreduce_floats(bp_comm *comm, float *data, size_t count) {
  (void)data;
  (void)count;
  return no_mpi(comm);
}
int bp_comm_mpi_progress(bp_comm *comm) {
  (void)comm;
  return 1;
}
bp_status bp_comm_mpi_wait(bp_comm *comm, const char *what) {
  (void)comm;
  (void)what;
  return BP_OK;
}
bp_status bp_comm_mpi_allreduce_doubles(bp_comm *comm, double *v, int count, const char *what) {
  (void)v;
  (void)count;
  (void)what;
  return comm->size == 1 ? BP_OK : no_mpi(comm);
}
bp_status bp_comm_mpi_bcast_floats(bp_comm *comm, float *v, size_t count, const char *what) {
  (void)v;
  (void)count;
  (void)what;
  return comm->size == 1 ? BP_OK : no_mpi(comm);
}
bp_status bp_comm_mpi_bcast_bytes(bp_comm *comm, void *v, int bytes, const char *what) {
  (void)v;
  (void)bytes;
  (void)what;
  return comm->size == 1 ? BP_OK : no_mpi(comm);
}
#endif
