/* comm_mpi.c - the MPI side of bp_comm: the bootstrap from MPI_COMM_WORLD,
 * and the host-memory collectives as non-blocking MPI calls polled against
 * the communicator's deadline (MPI's blocking calls cannot be given one).
 *
 * The library works on its own duplicate of MPI_COMM_WORLD with
 * MPI_ERRORS_RETURN, so its traffic never mixes with the program's and an MPI
 * error comes back as a status instead of ending the job. Only the calling
 * thread uses MPI (MPI_THREAD_FUNNELED). */
#ifdef BP_WITH_MPI
#include <limits.h>
#include <mpi.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm.h"

/* MPI's counts are int: a larger buffer goes as several all-reduces. */
#define MAX_CHUNK ((size_t)1 << 30)

typedef struct mpi_state {
  MPI_Comm world;    /* our duplicate of MPI_COMM_WORLD */
  int initialized;   /* we called MPI_Init_thread (and so finalize) */
  MPI_Request *reqs; /* outstanding non-blocking all-reduces */
  int n_reqs, cap_reqs;
} mpi_state;

static mpi_state *state(bp_comm *comm) { return (mpi_state *)comm->mpi; }

static void mpi_message(int code, char *buf, size_t len) {
  char text[MPI_MAX_ERROR_STRING];
  int n = 0;
  if (MPI_Error_string(code, text, &n) != MPI_SUCCESS) snprintf(text, sizeof text, "code %d", code);
  snprintf(buf, len, "%s", text);
}

bp_status bp_comm_mpi_init(bp_comm *comm, int launched, char *err, size_t err_len) {
  int inited = 0, finalized = 0;
  MPI_Initialized(&inited);
  MPI_Finalized(&finalized);
  if (finalized) {
    snprintf(err, err_len, "bp_comm_create_from_env: MPI was already finalized in this process");
    return BP_ERR_COMM;
  }
  if (!inited && !launched) return BP_OK; /* no launcher: one rank, MPI untouched */
  mpi_state *m = calloc(1, sizeof *m);
  if (!m) {
    snprintf(err, err_len, "bp_comm_create_from_env: out of host memory");
    return BP_ERR_OUT_OF_MEMORY;
  }
  if (!inited) {
    int provided = 0;
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_FUNNELED, &provided);
    if (rc != MPI_SUCCESS) {
      char msg[256];
      mpi_message(rc, msg, sizeof msg);
      snprintf(err, err_len, "bp_comm_create_from_env: MPI_Init_thread failed: %s", msg);
      free(m);
      return BP_ERR_COMM;
    }
    m->initialized = 1;
  }
  int rc = MPI_Comm_dup(MPI_COMM_WORLD, &m->world);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_set_errhandler(m->world, MPI_ERRORS_RETURN);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_size(m->world, &comm->size);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(m->world, &comm->rank);
  MPI_Comm node = MPI_COMM_NULL;
  if (rc == MPI_SUCCESS)
    rc = MPI_Comm_split_type(m->world, MPI_COMM_TYPE_SHARED, comm->rank, MPI_INFO_NULL, &node);
  if (rc == MPI_SUCCESS) rc = MPI_Comm_rank(node, &comm->local_rank);
  if (node != MPI_COMM_NULL) MPI_Comm_free(&node);
  if (rc != MPI_SUCCESS) {
    char msg[256];
    mpi_message(rc, msg, sizeof msg);
    snprintf(err, err_len, "bp_comm_create_from_env: setting up MPI_COMM_WORLD failed: %s", msg);
    if (m->world != MPI_COMM_NULL && m->world != 0) MPI_Comm_free(&m->world);
    if (m->initialized) MPI_Finalize();
    free(m);
    return BP_ERR_COMM;
  }
  comm->mpi = m;
  comm->bootstrap = BP_COMM_MPI;
  return BP_OK;
}

void bp_comm_mpi_free(bp_comm *comm) {
  mpi_state *m = state(comm);
  if (!m) return;
  /* After a failed collective the other ranks are gone or stuck: freeing
   * the communicator or finalizing would wait for them forever. */
  if (!comm->failed) {
    MPI_Comm_free(&m->world);
    if (m->initialized) MPI_Finalize();
  }
  free(m->reqs);
  free(m);
  comm->mpi = NULL;
}

void bp_comm_mpi_abort(bp_comm *comm, int code) {
  if (!state(comm)) return;
  MPI_Abort(MPI_COMM_WORLD, code);
}

static double now_s(void) { return bp_now_us() * 1e-6; }

static void pause_briefly(void) {
  struct timespec ts = {0, 50 * 1000}; /* 50 us: a wait is long next to it, a CPU is not held */
  nanosleep(&ts, NULL);
}

static bp_status check_usable(bp_comm *comm) {
  if (comm->failed)
    return BP_ERR_COMM; /* the first failure's message stays in last_error */
  if (!state(comm)) {
    snprintf(comm->last_error, sizeof comm->last_error, "this communicator has no MPI");
    return BP_ERR_UNSUPPORTED;
  }
  return BP_OK;
}

static bp_status mpi_failed(bp_comm *comm, const char *call, int rc) {
  char msg[256];
  mpi_message(rc, msg, sizeof msg);
  return bp_comm_fail(comm, "rank %d: %s failed: %s", comm->rank, call, msg);
}

bp_status bp_comm_mpi_iallreduce_floats(bp_comm *comm, float *data, size_t count) {
  bp_status st = check_usable(comm);
  if (st != BP_OK) return st;
  mpi_state *m = state(comm);
  for (size_t done = 0; done < count; done += MAX_CHUNK) {
    const size_t n = count - done < MAX_CHUNK ? count - done : MAX_CHUNK;
    if (m->n_reqs == m->cap_reqs) {
      int cap = m->cap_reqs ? 2 * m->cap_reqs : 16;
      MPI_Request *r = realloc(m->reqs, sizeof *r * (size_t)cap);
      if (!r) return bp_comm_fail(comm, "rank %d: out of host memory for MPI requests", comm->rank);
      m->reqs = r;
      m->cap_reqs = cap;
    }
    int rc = MPI_Iallreduce(MPI_IN_PLACE, data + done, (int)n, MPI_FLOAT, MPI_SUM, m->world,
                            &m->reqs[m->n_reqs]);
    if (rc != MPI_SUCCESS) return mpi_failed(comm, "MPI_Iallreduce", rc);
    ++m->n_reqs;
  }
  return BP_OK;
}

int bp_comm_mpi_progress(bp_comm *comm) {
  mpi_state *m = state(comm);
  if (!m || comm->failed || m->n_reqs == 0) return 1;
  int done = 0;
  if (MPI_Testall(m->n_reqs, m->reqs, &done, MPI_STATUSES_IGNORE) != MPI_SUCCESS) return 0;
  if (done) m->n_reqs = 0;
  return done;
}

/* Polls the outstanding requests until done or past the deadline. */
static bp_status wait_all(bp_comm *comm, const char *what) {
  mpi_state *m = state(comm);
  const double deadline = now_s() + comm->timeout_s;
  for (long spins = 0;; ++spins) {
    int done = 0;
    int rc = MPI_Testall(m->n_reqs, m->reqs, &done, MPI_STATUSES_IGNORE);
    if (rc != MPI_SUCCESS) {
      m->n_reqs = 0;
      return mpi_failed(comm, what, rc);
    }
    if (done) {
      m->n_reqs = 0;
      return BP_OK;
    }
    if (now_s() > deadline) {
      /* The requests stay pending: only MPI_Abort (bp_comm_abort) ends them. */
      return bp_comm_fail(comm,
                          "rank %d of %d: the %s did not complete within the communication "
                          "timeout of %g s (--comm-timeout, bp_comm_set_timeout): another rank "
                          "stopped responding or died",
                          comm->rank, comm->size, what, comm->timeout_s);
    }
    if (spins > 1000) pause_briefly();
  }
}

bp_status bp_comm_mpi_wait(bp_comm *comm, const char *what) {
  bp_status st = check_usable(comm);
  if (st != BP_OK) return st;
  if (state(comm)->n_reqs == 0) return BP_OK;
  return wait_all(comm, what);
}

bp_status bp_comm_mpi_allreduce_doubles(bp_comm *comm, double *v, int count, const char *what) {
  if (comm->size == 1 && !comm->failed) return BP_OK;
  bp_status st = check_usable(comm);
  if (st != BP_OK) return st;
  mpi_state *m = state(comm);
  if (m->n_reqs != 0) {
    st = wait_all(comm, what);
    if (st != BP_OK) return st;
  }
  m->n_reqs = 0;
  if (m->cap_reqs == 0) {
    m->reqs = malloc(sizeof *m->reqs * 16);
    if (!m->reqs) return bp_comm_fail(comm, "rank %d: out of host memory", comm->rank);
    m->cap_reqs = 16;
  }
  int rc = MPI_Iallreduce(MPI_IN_PLACE, v, count, MPI_DOUBLE, MPI_SUM, m->world, &m->reqs[0]);
  if (rc != MPI_SUCCESS) return mpi_failed(comm, "MPI_Iallreduce", rc);
  m->n_reqs = 1;
  return wait_all(comm, what);
}

bp_status bp_comm_mpi_bcast_bytes(bp_comm *comm, void *v, int bytes, const char *what) {
  if (comm->size == 1 && !comm->failed) return BP_OK;
  bp_status st = check_usable(comm);
  if (st == BP_OK) st = bp_comm_mpi_wait(comm, what);
  if (st != BP_OK) return st;
  mpi_state *m = state(comm);
  if (m->cap_reqs < 1) {
    m->reqs = malloc(sizeof *m->reqs * 16);
    if (!m->reqs) return bp_comm_fail(comm, "rank %d: out of host memory", comm->rank);
    m->cap_reqs = 16;
  }
  int rc = MPI_Ibcast(v, bytes, MPI_BYTE, 0, m->world, &m->reqs[0]);
  if (rc != MPI_SUCCESS) return mpi_failed(comm, "MPI_Ibcast", rc);
  m->n_reqs = 1;
  return wait_all(comm, what);
}

bp_status bp_comm_mpi_bcast_floats(bp_comm *comm, float *v, size_t count, const char *what) {
  if (comm->size == 1 && !comm->failed) return BP_OK;
  bp_status st = check_usable(comm);
  if (st != BP_OK) return st;
  st = bp_comm_mpi_wait(comm, what);
  if (st != BP_OK) return st;
  mpi_state *m = state(comm);
  if (m->cap_reqs < 1) {
    m->reqs = malloc(sizeof *m->reqs * 16);
    if (!m->reqs) return bp_comm_fail(comm, "rank %d: out of host memory", comm->rank);
    m->cap_reqs = 16;
  }
  for (size_t done = 0; done < count; done += MAX_CHUNK) {
    const size_t n = count - done < MAX_CHUNK ? count - done : MAX_CHUNK;
    int rc = MPI_Ibcast(v + done, (int)n, MPI_FLOAT, 0, m->world, &m->reqs[0]);
    if (rc != MPI_SUCCESS) return mpi_failed(comm, "MPI_Ibcast", rc);
    m->n_reqs = 1;
    st = wait_all(comm, what);
    if (st != BP_OK) return st;
  }
  return BP_OK;
}
#endif /* BP_WITH_MPI */
