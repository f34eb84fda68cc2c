/* comm_tcp.c - the TCP rendezvous of a BP_COMM_FILE communicator
 * (BP_RENDEZVOUS=tcp:HOST:PORT): how rank 0's NCCL unique id reaches the
 * other ranks without MPI and without a shared file system, as torchrun's
 * TCPStore and llm.c's socket init do.
 *
 * Rank 0 listens on HOST:PORT (the first address getaddrinfo gives that it
 * can bind, IPv4 or IPv6, SO_REUSEADDR so that a job restarted at once on
 * the same port does not wait out TIME_WAIT). Every other rank connects,
 * retrying every 50 ms while nobody listens, and says hello; rank 0 answers
 * once all size-1 ranks have said hello, with the bytes; then it shuts its
 * side and waits for each rank to close, so that when rank 0 returns every
 * rank has the bytes. Every message is one header,
 *
 *   magic "BPTCP001", world size, rank, broadcast number, length  (u32, big-endian)
 *
 * followed by `length` bytes (the hello carries none). A connection whose
 * first bytes are not the magic (a port scanner, a health check, another
 * program on the port) is closed and the job goes on; it is named in the
 * message if the deadline then passes. A backprop rank of another shape
 * (world size, rank out of range or twice, length, broadcast number) is a
 * job started wrongly: BP_ERR_COMM on rank 0 naming the peer's address, and
 * on that rank, which reads rank 0's header, naming rank 0's.
 *
 * Every wait is poll() against the communicator's deadline (timeout_s from
 * the broadcast's start): a rank that never shows up is BP_ERR_COMM on the
 * others, never a hang. The sockets are non-blocking throughout. */
#define _GNU_SOURCE /* getaddrinfo, struct addrinfo under -std=c11 */
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "comm.h"

static const char MAGIC[8] = {'B', 'P', 'T', 'C', 'P', '0', '0', '1'};
enum { HEAD = 8 + 4 * 4 };
/* The rank field of rank 0's answer to a hello it refuses. */
#define REFUSED 0xffffffffu
/* How long one connect attempt may take before the next try; between tries
 * a rank sleeps RETRY_MS (rank 0 may not listen yet). */
enum { CONNECT_TRY_MS = 1000, RETRY_MS = 50 };

typedef struct head {
  uint32_t size, rank, seq, length;
} head;

static void put32(unsigned char *p, uint32_t v) {
  p[0] = (unsigned char)(v >> 24);
  p[1] = (unsigned char)(v >> 16);
  p[2] = (unsigned char)(v >> 8);
  p[3] = (unsigned char)v;
}

static uint32_t get32(const unsigned char *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void encode(unsigned char *buf, head h) {
  memcpy(buf, MAGIC, sizeof MAGIC);
  put32(buf + 8, h.size);
  put32(buf + 12, h.rank);
  put32(buf + 16, h.seq);
  put32(buf + 20, h.length);
}

/* 0 if buf (HEAD bytes) does not start with the magic. */
static int decode(const unsigned char *buf, head *h) {
  if (memcmp(buf, MAGIC, sizeof MAGIC) != 0) return 0;
  h->size = get32(buf + 8);
  h->rank = get32(buf + 12);
  h->seq = get32(buf + 16);
  h->length = get32(buf + 20);
  return 1;
}

/* Milliseconds left until deadline (microseconds, bp_now_us's clock), >= 0,
 * at most cap (cap < 0: an hour, so that a huge timeout cannot overflow an
 * int; the callers loop). */
static int ms_left(double deadline, int cap) {
  const double left = (deadline - bp_now_us()) / 1000.0;
  if (cap < 0) cap = 3600 * 1000;
  if (left <= 0) return 0;
  if (left > cap) return cap;
  return (int)left + 1;
}

static void sleep_ms(int ms) {
  struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000L};
  nanosleep(&ts, NULL);
}

static int set_nonblocking(int fd) {
  const int fl = fcntl(fd, F_GETFL, 0);
  return fl < 0 ? -1 : fcntl(fd, F_SETFL, fl | O_NONBLOCK);
}

/* "HOST:PORT" of a socket address, numeric. */
static void addr_name(const struct sockaddr *sa, socklen_t len, char *buf, size_t n) {
  char host[NI_MAXHOST], port[NI_MAXSERV];
  if (getnameinfo(sa, len, host, sizeof host, port, sizeof port,
                  NI_NUMERICHOST | NI_NUMERICSERV) != 0) {
    snprintf(buf, n, "(unknown address)");
    return;
  }
  snprintf(buf, n, sa->sa_family == AF_INET6 ? "[%s]:%s" : "%s:%s", host, port);
}

/* The rendezvous address as the user wrote it, for messages. */
static void rdv_name(const bp_comm *comm, char *buf, size_t n) {
  snprintf(buf, n, strchr(comm->rendezvous, ':') ? "tcp:[%s]:%s" : "tcp:%s:%s", comm->rendezvous,
           comm->rdv_port);
}

/* Writes all n bytes to a non-blocking fd by the deadline. 0, or errno
 * (ETIMEDOUT at the deadline). */
static int send_all(int fd, const void *buf, size_t n, double deadline) {
  const unsigned char *p = (const unsigned char *)buf;
  while (n > 0) {
    const ssize_t k = send(fd, p, n, MSG_NOSIGNAL);
    if (k > 0) {
      p += k;
      n -= (size_t)k;
      continue;
    }
    if (k < 0 && errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return errno;
    struct pollfd pfd = {fd, POLLOUT, 0};
    const int ms = ms_left(deadline, -1);
    if (ms == 0) return ETIMEDOUT;
    if (poll(&pfd, 1, ms) < 0 && errno != EINTR) return errno;
  }
  return 0;
}

/* Reads exactly n bytes from a non-blocking fd by the deadline. 0, or
 * errno (ETIMEDOUT at the deadline, ECONNRESET for an early end of stream,
 * reported as EPIPE so the caller can tell "closed" from "reset"). */
static int recv_all(int fd, void *buf, size_t n, double deadline) {
  unsigned char *p = (unsigned char *)buf;
  while (n > 0) {
    const ssize_t k = recv(fd, p, n, 0);
    if (k > 0) {
      p += k;
      n -= (size_t)k;
      continue;
    }
    if (k == 0) return EPIPE;
    if (errno != EAGAIN && errno != EWOULDBLOCK && errno != EINTR) return errno;
    struct pollfd pfd = {fd, POLLIN, 0};
    const int ms = ms_left(deadline, -1);
    if (ms == 0) return ETIMEDOUT;
    if (poll(&pfd, 1, ms) < 0 && errno != EINTR) return errno;
  }
  return 0;
}

static int resolve(const bp_comm *comm, int passive, struct addrinfo **res) {
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (passive ? AI_PASSIVE : 0);
  return getaddrinfo(comm->rendezvous, comm->rdv_port, &hints, res);
}

/* ---- Rank 0 ---- */

/* A connection that has not finished its hello yet. */
typedef struct pending {
  int fd;
  size_t got;
  unsigned char buf[HEAD];
  char name[NI_MAXHOST + NI_MAXSERV + 4];
} pending;

static int listen_on(bp_comm *comm, const char *rdv, int *out) {
  struct addrinfo *res = NULL;
  const int g = resolve(comm, 1, &res);
  if (g != 0)
    return bp_comm_fail(comm, "rank 0: cannot resolve the rendezvous address %s: %s", rdv,
                        gai_strerror(g));
  int err = 0, fd = -1;
  for (struct addrinfo *a = res; a && fd < 0; a = a->ai_next) {
    fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      err = errno;
      continue;
    }
    const int one = 1;
    if (setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one) != 0 ||
        bind(fd, a->ai_addr, a->ai_addrlen) != 0 || listen(fd, comm->size) != 0 ||
        set_nonblocking(fd) != 0) {
      err = errno;
      close(fd);
      fd = -1;
    }
  }
  freeaddrinfo(res);
  if (fd < 0)
    return bp_comm_fail(comm, "rank 0: cannot listen on the rendezvous address %s: %s", rdv,
                        strerror(err));
  *out = fd;
  return BP_OK;
}

/* Checks a finished hello of p; on a backprop rank of this job records its
 * rank in ranks[] (fd owned there from now on) and returns 1; a stray (no
 * magic) returns 0; a backprop rank of another shape fails comm and -1. */
static int judge_hello(bp_comm *comm, pending *p, int seq, int bytes, int *ranks, const char *rdv) {
  head h;
  if (!decode(p->buf, &h)) return 0;
  const char *why = NULL;
  if (h.size != (uint32_t)comm->size)
    why = "world size";
  else if (h.rank == 0 || h.rank >= (uint32_t)comm->size)
    why = "rank";
  else if (ranks[h.rank] >= 0)
    why = "rank (a second rank of that number)";
  else if (h.seq != (uint32_t)seq || h.length != (uint32_t)bytes)
    why = "broadcast";
  if (why) {
    /* The refusal, with this job's shape: that rank can say why, too. */
    unsigned char reply[HEAD];
    encode(reply, (head){(uint32_t)comm->size, REFUSED, (uint32_t)seq, (uint32_t)bytes});
    (void)send(p->fd, reply, sizeof reply, MSG_NOSIGNAL);
    bp_comm_fail(comm,
                 "rank 0: the rendezvous at %s was joined from %s by a backprop rank of another "
                 "job or a wrongly started one (its %s does not fit: it says rank %u of %u, "
                 "broadcast %u of %u bytes; this job has %d ranks, broadcast %d of %d bytes): "
                 "check BP_WORLD_SIZE and BP_RANK of every rank, and give each job its own port",
                 rdv, p->name, why, (unsigned)h.rank, (unsigned)h.size, (unsigned)h.seq,
                 (unsigned)h.length, comm->size, seq, bytes);
    return -1;
  }
  ranks[h.rank] = p->fd;
  return 1;
}

/* Accepts every other rank's hello by the deadline; their sockets in
 * ranks[1 .. size-1]. */
static bp_status gather_ranks(bp_comm *comm, int lfd, int seq, int bytes, int *ranks,
                              double deadline, const char *rdv, const char *what) {
  const int want = comm->size - 1;
  int have = 0, n_pending = 0, n_strays = 0;
  char stray[NI_MAXHOST + NI_MAXSERV + 4] = "";
  pending *pend = calloc((size_t)comm->size + 1, sizeof *pend);
  struct pollfd *pfd = calloc((size_t)comm->size + 2, sizeof *pfd);
  if (!pend || !pfd) {
    free(pend);
    free(pfd);
    return bp_comm_fail(comm, "rank 0: the %s: out of host memory", what);
  }
  bp_status st = BP_OK;
  while (have < want && st == BP_OK) {
    const int ms = ms_left(deadline, -1);
    if (ms == 0) {
      char missing[256] = "";
      size_t len = 0;
      for (int r = 1; r < comm->size && len + 16 < sizeof missing; ++r)
        if (ranks[r] < 0) len += (size_t)snprintf(missing + len, sizeof missing - len, "%s%d",
                                                  len ? ", " : "", r);
      char strays[NI_MAXHOST + NI_MAXSERV + 128] = "";
      if (n_strays)
        snprintf(strays, sizeof strays,
                 "; %d connection(s) that were not backprop ranks were closed, the last from %s",
                 n_strays, stray);
      st = bp_comm_fail(comm,
                        "rank 0 of %d: the %s through the rendezvous %s: %d of %d ranks joined "
                        "within the communication timeout of %g s (--comm-timeout, "
                        "bp_comm_set_timeout); missing rank(s) %s: they did not start, or cannot "
                        "reach this address%s",
                        comm->size, what, rdv, have, want, comm->timeout_s, missing, strays);
      break;
    }
    /* The listener takes at most size pending connections at a time: a
     * flood of strays waits in the backlog rather than growing the list. */
    int n = 0;
    if (n_pending < comm->size) pfd[n++] = (struct pollfd){lfd, POLLIN, 0};
    for (int i = 0; i < n_pending; ++i) pfd[n++] = (struct pollfd){pend[i].fd, POLLIN, 0};
    if (poll(pfd, (nfds_t)n, ms) < 0 && errno != EINTR) {
      st = bp_comm_fail(comm, "rank 0: the %s: poll failed: %s", what, strerror(errno));
      break;
    }
    if (n_pending < comm->size && (pfd[0].revents & POLLIN)) {
      struct sockaddr_storage sa;
      socklen_t len = sizeof sa;
      const int fd = accept(lfd, (struct sockaddr *)&sa, &len);
      if (fd >= 0) {
        if (set_nonblocking(fd) != 0) {
          close(fd);
        } else {
          pending *p = &pend[n_pending++];
          memset(p, 0, sizeof *p);
          p->fd = fd;
          addr_name((struct sockaddr *)&sa, len, p->name, sizeof p->name);
        }
      }
    }
    for (int i = 0; i < n_pending && st == BP_OK;) {
      pending *p = &pend[i];
      const ssize_t k = recv(p->fd, p->buf + p->got, HEAD - p->got, 0);
      if (k < 0 && (errno == EAGAIN || errno == EWOULDBLOCK || errno == EINTR)) {
        ++i;
        continue;
      }
      if (k > 0) p->got += (size_t)k;
      int verdict = 0; /* 0: drop as a stray, 1: a rank, 2: not done yet */
      if (k > 0 && p->got >= sizeof MAGIC && memcmp(p->buf, MAGIC, sizeof MAGIC) != 0)
        verdict = 0;
      else if (k > 0 && p->got < HEAD)
        verdict = 2;
      else if (k > 0)
        verdict = judge_hello(comm, p, seq, bytes, ranks, rdv);
      if (verdict == 2) {
        ++i;
        continue;
      }
      if (verdict < 0) {
        st = BP_ERR_COMM;
        break;
      }
      if (verdict == 1) {
        ++have;
      } else {
        ++n_strays;
        snprintf(stray, sizeof stray, "%s", p->name);
        close(p->fd);
      }
      pend[i] = pend[--n_pending]; /* handled: out of the list */
    }
  }
  for (int i = 0; i < n_pending; ++i) close(pend[i].fd);
  free(pend);
  free(pfd);
  return st;
}

static bp_status rank0_bcast(bp_comm *comm, const void *v, int bytes, int seq, const char *what) {
  char rdv[NI_MAXHOST + 32];
  rdv_name(comm, rdv, sizeof rdv);
  const double deadline = bp_now_us() + comm->timeout_s * 1e6;
  int lfd = -1;
  bp_status st = listen_on(comm, rdv, &lfd);
  if (st != BP_OK) return st;
  int *ranks = malloc(sizeof(int) * (size_t)comm->size);
  if (!ranks) {
    close(lfd);
    return bp_comm_fail(comm, "rank 0: the %s: out of host memory", what);
  }
  for (int r = 0; r < comm->size; ++r) ranks[r] = -1;
  st = gather_ranks(comm, lfd, seq, bytes, ranks, deadline, rdv, what);
  close(lfd); /* every rank is in: nobody else may join this broadcast */
  unsigned char reply[HEAD];
  encode(reply, (head){(uint32_t)comm->size, 0, (uint32_t)seq, (uint32_t)bytes});
  for (int r = 1; r < comm->size && st == BP_OK; ++r) {
    int e = send_all(ranks[r], reply, sizeof reply, deadline);
    if (!e) e = send_all(ranks[r], v, (size_t)bytes, deadline);
    if (e)
      st = bp_comm_fail(comm, "rank 0: the %s through the rendezvous %s: sending to rank %d: %s",
                        what, rdv, r, e == ETIMEDOUT ? "the communication timeout passed"
                                                     : strerror(e));
  }
  /* Our side is done; each rank closes once it has read everything, which
   * is the confirmation that it did. */
  for (int r = 1; r < comm->size && st == BP_OK; ++r) {
    (void)shutdown(ranks[r], SHUT_WR);
    unsigned char c;
    const int e = recv_all(ranks[r], &c, 1, deadline);
    if (e != EPIPE && e != ECONNRESET)
      st = bp_comm_fail(comm,
                        "rank 0: the %s through the rendezvous %s: rank %d did not confirm "
                        "(close its side) within the communication timeout of %g s%s",
                        what, rdv, r, comm->timeout_s, e == 0 ? " (it sent extra bytes)" : "");
  }
  for (int r = 1; r < comm->size; ++r)
    if (ranks[r] >= 0) close(ranks[r]);
  free(ranks);
  return st;
}

/* ---- The other ranks ---- */

/* One connection attempt to any of rank 0's addresses: the socket, or -1
 * with the last errno in *err. */
static int try_connect(const struct addrinfo *res, double deadline, int *err) {
  for (const struct addrinfo *a = res; a; a = a->ai_next) {
    const int fd = socket(a->ai_family, a->ai_socktype | SOCK_CLOEXEC, a->ai_protocol);
    if (fd < 0) {
      *err = errno;
      continue;
    }
    if (set_nonblocking(fd) != 0) {
      *err = errno;
      close(fd);
      continue;
    }
    int e = connect(fd, a->ai_addr, a->ai_addrlen) == 0 ? 0 : errno;
    if (e == EINPROGRESS) {
      struct pollfd pfd = {fd, POLLOUT, 0};
      const int r = poll(&pfd, 1, ms_left(deadline, CONNECT_TRY_MS));
      socklen_t len = sizeof e;
      if (r <= 0)
        e = r == 0 ? ETIMEDOUT : errno;
      else if (getsockopt(fd, SOL_SOCKET, SO_ERROR, &e, &len) != 0)
        e = errno;
    }
    if (e == 0) {
      const int one = 1;
      (void)setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
      return fd;
    }
    *err = e;
    close(fd);
  }
  return -1;
}

static bp_status rank_bcast(bp_comm *comm, void *v, int bytes, int seq, const char *what) {
  char rdv[NI_MAXHOST + 32];
  rdv_name(comm, rdv, sizeof rdv);
  const double deadline = bp_now_us() + comm->timeout_s * 1e6;
  int fd = -1, err = 0;
  while (fd < 0) {
    struct addrinfo *res = NULL;
    const int g = resolve(comm, 0, &res);
    if (g == 0) {
      fd = try_connect(res, deadline, &err);
      freeaddrinfo(res);
    } else if (g != EAI_AGAIN) {
      return bp_comm_fail(comm, "rank %d: cannot resolve the rendezvous address %s: %s",
                          comm->rank, rdv, gai_strerror(g));
    }
    if (fd >= 0) break;
    if (ms_left(deadline, -1) == 0)
      return bp_comm_fail(comm,
                          "rank %d of %d: the %s: nobody answered at the rendezvous %s within the "
                          "communication timeout of %g s (--comm-timeout, bp_comm_set_timeout; "
                          "last error: %s): rank 0 did not start, or this host cannot reach it",
                          comm->rank, comm->size, what, rdv, comm->timeout_s,
                          g ? gai_strerror(g) : strerror(err));
    sleep_ms(ms_left(deadline, RETRY_MS));
  }
  unsigned char buf[HEAD];
  encode(buf, (head){(uint32_t)comm->size, (uint32_t)comm->rank, (uint32_t)seq, (uint32_t)bytes});
  int e = send_all(fd, buf, sizeof buf, deadline);
  if (!e) e = recv_all(fd, buf, sizeof buf, deadline);
  bp_status st = BP_OK;
  head h;
  if (e) {
    st = bp_comm_fail(comm,
                      "rank %d of %d: the %s through the rendezvous %s: %s", comm->rank,
                      comm->size, what, rdv,
                      e == ETIMEDOUT ? "rank 0 did not answer within the communication timeout "
                                       "(another rank missing?)"
                      : e == EPIPE   ? "the connection was closed without an answer: rank 0 "
                                       "failed (see its message: another rank missing, or "
                                       "started wrongly), or the peer is not backprop's rank 0"
                                     : strerror(e));
  } else if (!decode(buf, &h)) {
    st = bp_comm_fail(comm,
                      "rank %d: the rendezvous %s answered, but not as backprop's rank 0 does: "
                      "another program holds the port",
                      comm->rank, rdv);
  } else if (h.rank != 0 || h.size != (uint32_t)comm->size || h.seq != (uint32_t)seq ||
             h.length != (uint32_t)bytes) {
    st = bp_comm_fail(comm,
                      "rank %d: rank 0 at the rendezvous %s refused this rank: it runs a job of "
                      "%u ranks (broadcast %u of %u bytes), this rank was started as rank %d of "
                      "%d (broadcast %d of %d bytes)%s: check BP_RANK and BP_WORLD_SIZE of every "
                      "rank, and give each job its own port",
                      comm->rank, rdv, (unsigned)h.size, (unsigned)h.seq, (unsigned)h.length,
                      comm->rank, comm->size, seq, bytes,
                      h.size == (uint32_t)comm->size ? " (another rank of this number came first?)"
                                                     : "");
  } else if ((e = recv_all(fd, v, (size_t)bytes, deadline)) != 0) {
    st = bp_comm_fail(comm, "rank %d: the %s through the rendezvous %s broke off: %s",
                      comm->rank, what, rdv,
                      e == ETIMEDOUT ? "the communication timeout passed"
                      : e == EPIPE   ? "rank 0 closed the connection early (it failed: see its "
                                       "message)"
                                     : strerror(e));
  }
  close(fd);
  return st;
}

bp_status bp_comm_tcp_bcast_bytes(bp_comm *comm, void *v, int bytes, const char *what) {
  if (comm->failed) return BP_ERR_COMM;
  if (comm->size == 1) return BP_OK;
  const int seq = comm->rdv_seq++;
  return comm->rank == 0 ? rank0_bcast(comm, v, bytes, seq, what)
                         : rank_bcast(comm, v, bytes, seq, what);
}

/* "HOST:PORT" or "[HOST]:PORT" into host and port; 0 or a reason. */
const char *bp_comm_tcp_parse(const char *spec, char *host, size_t host_len, char *port,
                              size_t port_len) {
  const char *colon = strrchr(spec, ':');
  if (!colon) return "no port (expected tcp:HOST:PORT)";
  const char *h = spec, *h_end = colon;
  if (*spec == '[') {
    const char *close_br = strchr(spec, ']');
    if (!close_br || close_br + 1 != colon) return "an IPv6 host goes in brackets: tcp:[::1]:PORT";
    h = spec + 1;
    h_end = close_br;
  } else if (memchr(spec, ':', (size_t)(colon - spec))) {
    return "an IPv6 host goes in brackets: tcp:[::1]:PORT";
  }
  if (h_end == h) return "an empty host";
  if ((size_t)(h_end - h) >= host_len) return "a host name too long";
  const char *p = colon + 1;
  if (!*p) return "no port (expected tcp:HOST:PORT)";
  long v = 0;
  for (const char *q = p; *q; ++q) {
    if (*q < '0' || *q > '9') return "a port that is not a decimal number";
    v = v * 10 + (*q - '0');
    if (v > 65535) break;
  }
  if (v < 1 || v > 65535) return "a port outside 1 .. 65535";
  memcpy(host, h, (size_t)(h_end - h));
  host[h_end - h] = '\0';
  snprintf(port, port_len, "%ld", v);
  return NULL;
}
