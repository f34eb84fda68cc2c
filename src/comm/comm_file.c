/* comm_file.c - the shared-file rendezvous of a BP_COMM_FILE communicator
 * (BP_RENDEZVOUS=file:PATH): how rank 0's NCCL unique id reaches the other
 * ranks without MPI, as torchrun's FileStore and llm.c's file init do.
 *
 * Rank 0 writes a temporary file next to PATH (magic, world size, length,
 * the bytes), fsyncs it and renames it over PATH, so a reader sees either
 * no file or all of it. The others poll PATH every 10 ms until it is there
 * or the communicator's deadline has passed (BP_ERR_COMM naming the file).
 * A second broadcast through the same communicator would go to PATH.1, and
 * so on (the unique id is the only one today). Rank 0 removes what it wrote
 * in bp_comm_destroy: by then every rank has read it, since NCCL's
 * communicator creation, which follows, waits for every rank. */
#include <errno.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "comm.h"

static const char MAGIC[8] = {'B', 'P', 'R', 'D', 'V', '0', '0', '1'};

static void path_of(const bp_comm *comm, int seq, char *buf, size_t len) {
  if (seq == 0)
    snprintf(buf, len, "%s", comm->rendezvous);
  else
    snprintf(buf, len, "%s.%d", comm->rendezvous, seq);
}

static bp_status write_file(bp_comm *comm, const char *path, const void *v, int bytes) {
  char tmp[4200];
  snprintf(tmp, sizeof tmp, "%s.tmp.%ld", path, (long)getpid());
  FILE *f = fopen(tmp, "wb");
  if (!f)
    return bp_comm_fail(comm, "rank 0: cannot write the rendezvous file %s: %s", tmp,
                        strerror(errno));
  const uint32_t head[2] = {(uint32_t)comm->size, (uint32_t)bytes};
  int ok = fwrite(MAGIC, 1, sizeof MAGIC, f) == sizeof MAGIC &&
           fwrite(head, sizeof head, 1, f) == 1 &&
           fwrite(v, 1, (size_t)bytes, f) == (size_t)bytes && fflush(f) == 0 &&
           fsync(fileno(f)) == 0;
  const int err = errno;
  if (fclose(f) != 0) ok = 0;
  if (!ok || rename(tmp, path) != 0) {
    const int e = ok ? errno : err;
    remove(tmp);
    return bp_comm_fail(comm, "rank 0: cannot write the rendezvous file %s: %s", path,
                        strerror(e));
  }
  return BP_OK;
}

/* 1: read; 0: not there yet; -1: there but not ours (message on comm). */
static int read_file(bp_comm *comm, const char *path, void *v, int bytes) {
  FILE *f = fopen(path, "rb");
  if (!f) return 0;
  char magic[sizeof MAGIC];
  uint32_t head[2];
  int ok = fread(magic, 1, sizeof magic, f) == sizeof magic && fread(head, sizeof head, 1, f) == 1;
  if (ok && (memcmp(magic, MAGIC, sizeof MAGIC) != 0 || head[0] != (uint32_t)comm->size ||
             head[1] != (uint32_t)bytes)) {
    fclose(f);
    bp_comm_fail(comm,
                 "rank %d: the rendezvous file %s is not this job's (it is not backprop's, or "
                 "was written for %u ranks and %u bytes, this job has %d ranks): give each job "
                 "a new BP_RENDEZVOUS path",
                 comm->rank, path, ok ? (unsigned)head[0] : 0u, ok ? (unsigned)head[1] : 0u,
                 comm->size);
    return -1;
  }
  ok = ok && fread(v, 1, (size_t)bytes, f) == (size_t)bytes;
  fclose(f);
  return ok ? 1 : 0; /* short: not ours to judge yet (rename makes it whole) */
}

bp_status bp_comm_file_bcast_bytes(bp_comm *comm, void *v, int bytes, const char *what) {
  if (comm->failed) return BP_ERR_COMM;
  if (comm->size == 1) return BP_OK;
  char path[4096];
  path_of(comm, comm->rdv_seq++, path, sizeof path);
  if (comm->rank == 0) return write_file(comm, path, v, bytes);
  const double deadline = bp_now_us() + comm->timeout_s * 1e6;
  for (;;) {
    const int r = read_file(comm, path, v, bytes);
    if (r > 0) return BP_OK;
    if (r < 0) return BP_ERR_COMM;
    if (bp_now_us() > deadline)
      return bp_comm_fail(comm,
                          "rank %d of %d: the %s did not arrive through the rendezvous file %s "
                          "within the communication timeout of %g s (--comm-timeout, "
                          "bp_comm_set_timeout): rank 0 did not start, or cannot reach the file",
                          comm->rank, comm->size, what, path, comm->timeout_s);
    struct timespec ts = {0, 10 * 1000 * 1000};
    nanosleep(&ts, NULL);
  }
}

void bp_comm_file_cleanup(bp_comm *comm) {
  if (comm->rank != 0 || !comm->rendezvous) return;
  char path[4096];
  for (int k = 0; k < comm->rdv_seq; ++k) {
    path_of(comm, k, path, sizeof path);
    remove(path);
  }
}
