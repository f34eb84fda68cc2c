/* comm_mpi.c - the MPI side of bp_comm: the bootstrap from MPI_COMM_WORLD,
 * and the host-memory collectives as non-blocking MPI calls polled against
 * the communicator's deadline (MPI's blocking calls cannot be given one).
 *
 * The library works on its own duplicate of MPI_COMM_WORLD with
 * MPI_ERRORS_RETURN, so its traffic never mixes with the program's and an MPI
 * error comes back as a status instead of ending the job.
 *
 * The progress thread. Open MPI moves a non-blocking collective only inside
 * MPI calls, so an all-reduce started while backward runs a product waits
 * for the next call. When MPI grants MPI_THREAD_SERIALIZED or more, each
 * communicator gets a thread (started by its first all-reduce, joined in
 * bp_comm_destroy) that owns MPI while gradient buckets are in flight: it
 * starts the queued buckets' all-reduces in the order they were queued (the
 * same on every rank) and polls them with MPI_Testall and short sleeps until
 * none is left. Meanwhile the calling thread makes no MPI call: it queues
 * buckets, asks whether they are done, and its waits (bp_comm_wait and the
 * start of every other collective) block on the thread's completion against
 * the deadline; past the deadline the thread is told to stop calling MPI
 * and the caller fails with BP_ERR_COMM, as before. The calls of the two
 * threads never overlap (a mutex hands MPI over), which is what
 * MPI_THREAD_SERIALIZED asks. With less (a program that initialized MPI
 * with MPI_THREAD_FUNNELED), or BP_COMM_PROGRESS=poll in the environment of
 * bp_comm_create_from_env, the calling thread polls at each layer boundary
 * as before. */
#ifdef BP_WITH_MPI
#include <limits.h>
#include <mpi.h>
#include <pthread.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "comm.h"

/* MPI's counts are int: a larger buffer goes as several all-reduces. */
#define MAX_CHUNK ((size_t)1 << 30)
/* The progress thread's longest pause between polls, microseconds. */
#define PAUSE_MAX_US 20

typedef struct mpi_state {
  MPI_Comm world;    /* our duplicate of MPI_COMM_WORLD */
  int initialized;   /* we called MPI_Init_thread (and so finalize) */
  MPI_Request *reqs; /* outstanding non-blocking all-reduces (the calling thread's) */
  int n_reqs, cap_reqs;
  /* The progress thread (see the top). Everything below is under mu. */
  int use_thread;     /* MPI grants it and it was not turned off */
  int started;        /* the thread runs */
  pthread_t thread;
  pthread_mutex_t mu;
  pthread_cond_t wake, idle; /* wake: work or stop for the thread; idle: it went idle */
  struct chunk { float *data; int count; } *queue; /* buckets queued, not started yet */
  int q_len, q_cap;
  int busy;           /* the thread owns MPI: chunks queued or all-reduces in flight */
  int in_mpi;         /* the thread is inside an MPI call */
  int stop;           /* bp_comm_destroy: end the thread */
  int abandon;        /* a deadline passed: make no MPI call any more */
  int err_rc;         /* an MPI call of the thread failed (MPI_SUCCESS: none) */
  const char *err_call;
  MPI_Request *t_reqs; /* the thread's outstanding all-reduces */
  int t_n, t_cap;
  int fresh;           /* a chunk was queued since the last poll */
  int pause_us;        /* the thread's pause between polls */
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
  int provided = MPI_THREAD_SINGLE;
  if (!inited) {
    int rc = MPI_Init_thread(NULL, NULL, MPI_THREAD_SERIALIZED, &provided);
    if (rc != MPI_SUCCESS) {
      char msg[256];
      mpi_message(rc, msg, sizeof msg);
      snprintf(err, err_len, "bp_comm_create_from_env: MPI_Init_thread failed: %s", msg);
      free(m);
      return BP_ERR_COMM;
    }
    m->initialized = 1;
  } else {
    MPI_Query_thread(&provided);
  }
  {
    const char *mode = getenv("BP_COMM_PROGRESS"); /* "poll": no thread (comparisons) */
    m->use_thread = provided >= MPI_THREAD_SERIALIZED && !(mode && !strcmp(mode, "poll"));
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

static void thread_quiesce(mpi_state *m);

void bp_comm_mpi_free(bp_comm *comm) {
  mpi_state *m = state(comm);
  if (!m) return;
  if (m->started) {
    /* The thread makes no MPI call once told to stop; it is never blocked
     * inside MPI (it only polls), so the join returns also after a failure. */
    pthread_mutex_lock(&m->mu);
    m->stop = 1;
    pthread_cond_broadcast(&m->wake);
    pthread_mutex_unlock(&m->mu);
    pthread_join(m->thread, NULL);
    pthread_mutex_destroy(&m->mu);
    pthread_cond_destroy(&m->wake);
    pthread_cond_destroy(&m->idle);
    m->started = 0;
  }
  /* After a failed collective the other ranks are gone or stuck: freeing
   * the communicator or finalizing would wait for them forever. */
  if (!comm->failed) {
    MPI_Comm_free(&m->world);
    if (m->initialized) MPI_Finalize();
  }
  free(m->reqs);
  free(m->queue);
  free(m->t_reqs);
  free(m);
  comm->mpi = NULL;
}

void bp_comm_mpi_abort(bp_comm *comm, int code) {
  mpi_state *m = state(comm);
  if (!m) return;
  thread_quiesce(m); /* MPI_Abort must not overlap the thread's MPI call */
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

/* ---- The progress thread ---- */

static void thread_pause(int us) {
  struct timespec ts = {0, (long)us * 1000};
  nanosleep(&ts, NULL);
}

/* The thread: while busy, starts the queued chunks' all-reduces in queue
 * order and polls them; idle (signalling `idle`) once none is left. */
static void *progress_main(void *arg) {
  mpi_state *m = arg;
#ifdef __linux__
  /* Sleeps of a few microseconds, not Linux's default 50 us of slack. */
  prctl(PR_SET_TIMERSLACK, 1000UL, 0UL, 0UL, 0UL);
#endif
  pthread_mutex_lock(&m->mu);
  for (;;) {
    if (m->stop) break;
    if (!m->busy || m->abandon) {
      pthread_cond_wait(&m->wake, &m->mu);
      continue;
    }
    int rc = MPI_SUCCESS;
    const char *call = "MPI_Iallreduce";
    /* Start what is queued (the queue only grows while busy). */
    for (int q = 0; q < m->q_len && rc == MPI_SUCCESS && !m->abandon; ++q) {
      if (m->t_n == m->t_cap) {
        int cap = m->t_cap ? 2 * m->t_cap : 16;
        MPI_Request *r = realloc(m->t_reqs, sizeof *r * (size_t)cap);
        if (!r) {
          rc = MPI_ERR_NO_MEM;
          break;
        }
        m->t_reqs = r;
        m->t_cap = cap;
      }
      struct chunk c = m->queue[q];
      m->in_mpi = 1;
      pthread_mutex_unlock(&m->mu);
      rc = MPI_Iallreduce(MPI_IN_PLACE, c.data, c.count, MPI_FLOAT, MPI_SUM, m->world,
                          &m->t_reqs[m->t_n]);
      pthread_mutex_lock(&m->mu);
      m->in_mpi = 0;
      if (m->abandon) pthread_cond_broadcast(&m->idle); /* out of MPI: a quiesce may go on */
      if (rc == MPI_SUCCESS) ++m->t_n;
    }
    m->q_len = 0;
    int done = 0;
    if (rc == MPI_SUCCESS && !m->abandon) {
      call = "MPI_Testall";
      m->in_mpi = 1;
      pthread_mutex_unlock(&m->mu);
      rc = MPI_Testall(m->t_n, m->t_reqs, &done, MPI_STATUSES_IGNORE);
      pthread_mutex_lock(&m->mu);
      m->in_mpi = 0;
      if (m->abandon) pthread_cond_broadcast(&m->idle);
    }
    if (rc != MPI_SUCCESS) {
      m->err_rc = rc;
      m->err_call = call;
      done = 1;
    }
    if (done) {
      m->t_n = 0;
      if (m->q_len == 0) {
        m->busy = 0;
        pthread_cond_broadcast(&m->idle);
      }
      continue;
    }
    if (m->abandon) continue;
    /* The pause doubles from 1 us to PAUSE_MAX_US while nothing new is
     * queued: a small bucket is seen done soon, a large one's polls do not
     * take the cores from backward's products (yielding or 5 us polls
     * slowed 512x4's steps; 50 us ones hid less of 256x3's; bench/NOTES.md). */
    m->pause_us = m->fresh ? 1 : m->pause_us * 2 > PAUSE_MAX_US ? PAUSE_MAX_US : m->pause_us * 2;
    m->fresh = 0;
    const int pause = m->pause_us;
    pthread_mutex_unlock(&m->mu);
    thread_pause(pause);
    pthread_mutex_lock(&m->mu);
  }
  pthread_mutex_unlock(&m->mu);
  return NULL;
}

static int thread_start(mpi_state *m) {
  if (pthread_mutex_init(&m->mu, NULL) != 0) return 0;
  if (pthread_cond_init(&m->wake, NULL) != 0) {
    pthread_mutex_destroy(&m->mu);
    return 0;
  }
  if (pthread_cond_init(&m->idle, NULL) != 0) {
    pthread_cond_destroy(&m->wake);
    pthread_mutex_destroy(&m->mu);
    return 0;
  }
  if (pthread_create(&m->thread, NULL, progress_main, m) != 0) {
    pthread_cond_destroy(&m->idle);
    pthread_cond_destroy(&m->wake);
    pthread_mutex_destroy(&m->mu);
    return 0;
  }
  m->started = 1;
  return 1;
}

/* Tells the thread to make no more MPI calls and waits until it is out of
 * the one it may be in (a poll: it returns). */
static void thread_quiesce(mpi_state *m) {
  if (!m->started) return;
  pthread_mutex_lock(&m->mu);
  m->abandon = 1;
  while (m->in_mpi) pthread_cond_wait(&m->idle, &m->mu);
  pthread_mutex_unlock(&m->mu);
}

/* Waits until the thread is idle (MPI is the caller's again), against the
 * deadline. */
static bp_status thread_drain(bp_comm *comm, const char *what) {
  mpi_state *m = state(comm);
  if (!m->started) return BP_OK;
  pthread_mutex_lock(&m->mu);
  if (m->busy) {
    const double deadline = now_s() + comm->timeout_s;
    while (m->busy) {
      if (now_s() > deadline) {
        m->abandon = 1; /* the requests stay pending: only MPI_Abort ends them */
        while (m->in_mpi) pthread_cond_wait(&m->idle, &m->mu);
        pthread_mutex_unlock(&m->mu);
        return bp_comm_fail(comm,
                            "rank %d of %d: the %s did not complete within the communication "
                            "timeout of %g s (--comm-timeout, bp_comm_set_timeout): another "
                            "rank stopped responding or died",
                            comm->rank, comm->size, what, comm->timeout_s);
      }
      struct timespec ts;
      clock_gettime(CLOCK_REALTIME, &ts);
      ts.tv_nsec += 10 * 1000 * 1000; /* look at the deadline every 10 ms */
      if (ts.tv_nsec >= 1000000000L) {
        ts.tv_nsec -= 1000000000L;
        ++ts.tv_sec;
      }
      pthread_cond_timedwait(&m->idle, &m->mu, &ts);
    }
  }
  const int rc = m->err_rc;
  const char *call = m->err_call;
  m->err_rc = MPI_SUCCESS;
  pthread_mutex_unlock(&m->mu);
  if (rc != MPI_SUCCESS) return mpi_failed(comm, call, rc);
  return BP_OK;
}

static bp_status thread_enqueue(bp_comm *comm, float *data, size_t count) {
  mpi_state *m = state(comm);
  if (!m->started && !thread_start(m)) {
    m->use_thread = 0; /* no thread: poll as without one */
    return BP_ERR_UNSUPPORTED;
  }
  pthread_mutex_lock(&m->mu);
  for (size_t done = 0; done < count; done += MAX_CHUNK) {
    const size_t n = count - done < MAX_CHUNK ? count - done : MAX_CHUNK;
    if (m->q_len == m->q_cap) {
      int cap = m->q_cap ? 2 * m->q_cap : 16;
      struct chunk *q = realloc(m->queue, sizeof *q * (size_t)cap);
      if (!q) {
        pthread_mutex_unlock(&m->mu);
        return bp_comm_fail(comm, "rank %d: out of host memory for MPI requests", comm->rank);
      }
      m->queue = q;
      m->q_cap = cap;
    }
    m->queue[m->q_len].data = data + done;
    m->queue[m->q_len].count = (int)n;
    ++m->q_len;
  }
  m->busy = 1;
  m->fresh = 1;
  pthread_cond_signal(&m->wake);
  pthread_mutex_unlock(&m->mu);
  return BP_OK;
}

bp_status bp_comm_mpi_iallreduce_floats(bp_comm *comm, float *data, size_t count) {
  bp_status st = check_usable(comm);
  if (st != BP_OK) return st;
  mpi_state *m = state(comm);
  if (m->use_thread && m->n_reqs == 0) {
    st = thread_enqueue(comm, data, count);
    if (st != BP_ERR_UNSUPPORTED) return st;
  }
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
  if (!m || comm->failed) return 1;
  if (m->started) {
    pthread_mutex_lock(&m->mu);
    const int busy = m->busy;
    pthread_mutex_unlock(&m->mu);
    if (busy) return 0;
  }
  if (m->n_reqs == 0) return 1;
  int done = 0;
  if (MPI_Testall(m->n_reqs, m->reqs, &done, MPI_STATUSES_IGNORE) != MPI_SUCCESS) return 0;
  if (done) m->n_reqs = 0;
  return done;
}

/* Polls the outstanding requests until done or past the deadline. */
static bp_status wait_all(bp_comm *comm, const char *what) {
  mpi_state *m = state(comm);
  bp_status st = thread_drain(comm, what);
  if (st != BP_OK) return st;
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
  st = thread_drain(comm, what);
  if (st != BP_OK || state(comm)->n_reqs == 0) return st;
  return wait_all(comm, what);
}

bp_status bp_comm_mpi_allreduce_doubles(bp_comm *comm, double *v, int count, const char *what) {
  if (comm->size == 1 && !comm->failed) return BP_OK;
  bp_status st = check_usable(comm);
  if (st != BP_OK) return st;
  mpi_state *m = state(comm);
  st = bp_comm_mpi_wait(comm, what);
  if (st != BP_OK) return st;
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
