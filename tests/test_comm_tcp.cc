// test_comm_tcp.cc - the TCP rendezvous (BP_RENDEZVOUS=tcp:HOST:PORT,
// src/comm/comm_tcp.c), ranks as threads of this process on a loopback
// address and a port the kernel found free:
//   - rank 0's bytes (an NCCL id's 128, and 1 MiB, which cannot go in one
//     write) arrive intact at 2 and 3 ranks, twice through one communicator;
//     the same over IPv6 ([::1]) where the machine has it;
//   - a rank that never shows up is BP_ERR_COMM on the others within the
//     deadline, naming the address and the missing rank;
//   - a rank started for another world size, or a second rank 1, is refused
//     on both sides with the reason and the address;
//   - a client that is not backprop's (garbage) is closed and the job goes
//     on; if no rank comes, the deadline's message names it;
//   - a server on the port that is not backprop's rank 0 is refused;
//   - malformed tcp: values are BP_ERR_INVALID_ARGUMENT with the reason.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include "backprop.h"
#include "comm/comm.h"
#include "support/loopback.h"

namespace {

// A status no call returns: "this rank's call never finished". Inside the
// enum's range (0 .. 15 for the values 0 .. 9): -1 would be an invalid enum
// value, which UBSan reports.
const bp_status kNotRun = static_cast<bp_status>(15);

std::string spec_for(int port, bool ipv6 = false) {
  return std::string(ipv6 ? "tcp:[::1]:" : "tcp:127.0.0.1:") + std::to_string(port);
}

bp_comm *tcp_comm(int rank, int size, const std::string &spec, double timeout_s = 20.0) {
  bp_comm_desc d;
  bp_comm_desc_init(&d);
  d.timeout_s = timeout_s;
  bp_comm *c = nullptr;
  EXPECT_EQ(bp_comm_create_rendezvous(&d, rank, size, rank, spec.c_str(), &c), BP_OK)
      << bp_comm_last_error(nullptr);
  return c;
}

bool contains(const char *text, const std::string &part) {
  return text && std::strstr(text, part.c_str()) != nullptr;
}

double seconds_since(double t0_us) { return (bp_now_us() - t0_us) * 1e-6; }

// n ranks as threads broadcast `bytes` bytes of a pattern from rank 0, twice
// (the second with another pattern); every rank must end with rank 0's bytes.
void broadcast_reaches_every_rank(int n, int bytes, bool ipv6) {
  const int port = free_loopback_port(ipv6);
  ASSERT_NE(port, 0);
  const std::string spec = spec_for(port, ipv6);
  std::vector<bp_comm *> comms(n);
  for (int r = 0; r < n; ++r) comms[r] = tcp_comm(r, n, spec);
  for (int round = 0; round < 2; ++round) {
    std::vector<std::vector<unsigned char>> got(n, std::vector<unsigned char>(bytes, 0));
    for (int i = 0; i < bytes; ++i) got[0][i] = (unsigned char)(i * 7 + 1 + round * 13 + i / 251);
    std::vector<bp_status> st(n, kNotRun);
    std::vector<std::thread> ts;
    for (int r = n - 1; r >= 0; --r)  // the others first: they retry until rank 0 listens
      ts.emplace_back([&, r] {
        if (r == 0) std::this_thread::sleep_for(std::chrono::milliseconds(100));
        st[r] = bp_comm_bcast_bytes(comms[r], got[r].data(), bytes, "test broadcast");
      });
    for (auto &t : ts) t.join();
    for (int r = 0; r < n; ++r) {
      EXPECT_EQ(st[r], BP_OK) << "rank " << r << ": " << bp_comm_last_error(comms[r]);
      EXPECT_EQ(got[r], got[0]) << "rank " << r << ", round " << round;
    }
  }
  for (int r = 0; r < n; ++r) {
    EXPECT_EQ(bp_comm_get_bootstrap(comms[r]), BP_COMM_FILE);
    EXPECT_EQ(bp_comm_rank(comms[r]), r);
    EXPECT_EQ(bp_comm_size(comms[r]), n);
  }
  for (int r = n - 1; r >= 0; --r) bp_comm_destroy(comms[r]);
}

// A raw client: connects to 127.0.0.1:port (retrying while nobody listens),
// sends `text`, and returns true if the peer then closes the connection
// within `wait_s` (reading anything it sends first).
bool garbage_client_is_closed(int port, const std::string &text, double wait_s) {
  const double t0 = bp_now_us();
  int fd = -1;
  while (seconds_since(t0) < wait_s) {
    fd = socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in a;
    std::memset(&a, 0, sizeof a);
    a.sin_family = AF_INET;
    a.sin_port = htons((uint16_t)port);
    a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (connect(fd, reinterpret_cast<sockaddr *>(&a), sizeof a) == 0) break;
    close(fd);
    fd = -1;
    std::this_thread::sleep_for(std::chrono::milliseconds(20));
  }
  if (fd < 0) return false;
  if (send(fd, text.data(), text.size(), MSG_NOSIGNAL) != (ssize_t)text.size()) {
    close(fd);
    return false;
  }
  bool closed = false;
  while (seconds_since(t0) < wait_s) {
    pollfd p = {fd, POLLIN, 0};
    if (poll(&p, 1, 100) <= 0) continue;
    char buf[64];
    const ssize_t k = recv(fd, buf, sizeof buf, 0);
    if (k <= 0) {
      closed = true;
      break;
    }
  }
  close(fd);
  return closed;
}

}  // namespace

TEST(CommTcpRendezvous, TwoRanksReceiveRankZerosBytes) {
  broadcast_reaches_every_rank(2, 128, false);
}

TEST(CommTcpRendezvous, ThreeRanksReceiveAMebibyte) {
  broadcast_reaches_every_rank(3, 1 << 20, false);
}

TEST(CommTcpRendezvous, OverIpv6Loopback) {
  if (free_loopback_port(true) == 0) GTEST_SKIP() << "no IPv6 loopback on this machine";
  broadcast_reaches_every_rank(3, 128, true);
}

TEST(CommTcpRendezvous, AMissingRankIsACommErrorWithinTheDeadline) {
  const int port = free_loopback_port();
  ASSERT_NE(port, 0);
  const std::string spec = spec_for(port);
  // Rank 0 of 3, rank 1 present, rank 2 never starts. Rank 1's deadline is
  // later, so it is rank 0's failure that it sees.
  bp_comm *c0 = tcp_comm(0, 3, spec, 0.5), *c1 = tcp_comm(1, 3, spec, 3.0);
  unsigned char id0[128] = {9, 8, 7}, id1[128] = {0};
  bp_status st0 = BP_OK, st1 = BP_OK;
  const double t0 = bp_now_us();
  std::thread t1([&] { st1 = bp_comm_bcast_bytes(c1, id1, 128, "broadcast of NCCL's unique id"); });
  st0 = bp_comm_bcast_bytes(c0, id0, 128, "broadcast of NCCL's unique id");
  t1.join();
  EXPECT_LT(seconds_since(t0), 5.0);
  EXPECT_EQ(st0, BP_ERR_COMM);
  EXPECT_TRUE(contains(bp_comm_last_error(c0), "missing rank(s) 2")) << bp_comm_last_error(c0);
  EXPECT_TRUE(contains(bp_comm_last_error(c0), spec)) << bp_comm_last_error(c0);
  EXPECT_TRUE(contains(bp_comm_last_error(c0), "timeout of 0.5 s")) << bp_comm_last_error(c0);
  EXPECT_EQ(st1, BP_ERR_COMM) << "rank 1 never got the bytes";
  EXPECT_TRUE(contains(bp_comm_last_error(c1), "rank 0 failed")) << bp_comm_last_error(c1);
  // Broken from now on.
  double v = 1;
  EXPECT_EQ(bp_comm_allreduce_sum(c0, &v, 1), BP_ERR_COMM);
  bp_comm_destroy(c1);
  bp_comm_destroy(c0);
}

TEST(CommTcpRendezvous, NoRankZeroIsACommErrorWithinTheDeadline) {
  const int port = free_loopback_port();
  ASSERT_NE(port, 0);
  bp_comm *c = tcp_comm(1, 2, spec_for(port), 0.4);
  unsigned char id[128];
  const double t0 = bp_now_us();
  EXPECT_EQ(bp_comm_bcast_bytes(c, id, 128, "broadcast of NCCL's unique id"), BP_ERR_COMM);
  EXPECT_LT(seconds_since(t0), 5.0);
  EXPECT_GE(seconds_since(t0), 0.3) << "it retried until the deadline";
  EXPECT_TRUE(contains(bp_comm_last_error(c), "nobody answered")) << bp_comm_last_error(c);
  EXPECT_TRUE(contains(bp_comm_last_error(c), spec_for(port))) << bp_comm_last_error(c);
  bp_comm_destroy(c);
}

TEST(CommTcpRendezvous, AnotherWorldSizeIsRefusedOnBothSides) {
  const int port = free_loopback_port();
  ASSERT_NE(port, 0);
  const std::string spec = spec_for(port);
  bp_comm *c0 = tcp_comm(0, 2, spec, 5.0), *c1 = tcp_comm(1, 3, spec, 5.0);
  unsigned char id0[128] = {1}, id1[128] = {0};
  bp_status st1 = BP_OK;
  const double t0 = bp_now_us();
  std::thread t1([&] { st1 = bp_comm_bcast_bytes(c1, id1, 128, "x"); });
  const bp_status st0 = bp_comm_bcast_bytes(c0, id0, 128, "x");
  t1.join();
  EXPECT_LT(seconds_since(t0), 4.0) << "refused at once, not at the deadline";
  EXPECT_EQ(st0, BP_ERR_COMM);
  EXPECT_TRUE(contains(bp_comm_last_error(c0), "world size")) << bp_comm_last_error(c0);
  EXPECT_TRUE(contains(bp_comm_last_error(c0), "from 127.0.0.1:")) << bp_comm_last_error(c0);
  EXPECT_EQ(st1, BP_ERR_COMM);
  EXPECT_TRUE(contains(bp_comm_last_error(c1), "refused this rank: it runs a job of 2 ranks"))
      << bp_comm_last_error(c1);
  EXPECT_TRUE(contains(bp_comm_last_error(c1), spec)) << bp_comm_last_error(c1);
  bp_comm_destroy(c1);
  bp_comm_destroy(c0);
}

TEST(CommTcpRendezvous, ASecondRankOneIsRefused) {
  const int port = free_loopback_port();
  ASSERT_NE(port, 0);
  const std::string spec = spec_for(port);
  bp_comm *c0 = tcp_comm(0, 3, spec, 5.0), *a = tcp_comm(1, 3, spec, 5.0),
          *b = tcp_comm(1, 3, spec, 5.0);
  unsigned char id[3][128] = {{1}, {0}, {0}};
  bp_status sa = kNotRun, sb = kNotRun;
  std::thread ta([&] { sa = bp_comm_bcast_bytes(a, id[1], 128, "x"); });
  std::thread tb([&] { sb = bp_comm_bcast_bytes(b, id[2], 128, "x"); });
  EXPECT_EQ(bp_comm_bcast_bytes(c0, id[0], 128, "x"), BP_ERR_COMM);
  ta.join();
  tb.join();
  EXPECT_TRUE(contains(bp_comm_last_error(c0), "a second rank of that number"))
      << bp_comm_last_error(c0);
  // The one refused is told so; the one accepted first learns that rank 0 failed.
  EXPECT_EQ(sa, BP_ERR_COMM);
  EXPECT_EQ(sb, BP_ERR_COMM);
  const std::string ea = bp_comm_last_error(a), eb = bp_comm_last_error(b);
  EXPECT_TRUE(contains((ea + eb).c_str(), "came first?")) << ea << "\n" << eb;
  bp_comm_destroy(b);
  bp_comm_destroy(a);
  bp_comm_destroy(c0);
}

TEST(CommTcpRendezvous, AGarbageClientIsClosedAndTheJobGoesOn) {
  const int port = free_loopback_port();
  ASSERT_NE(port, 0);
  const std::string spec = spec_for(port);
  bp_comm *c0 = tcp_comm(0, 2, spec, 10.0), *c1 = tcp_comm(1, 2, spec, 10.0);
  unsigned char id0[128], id1[128] = {0};
  for (int i = 0; i < 128; ++i) id0[i] = (unsigned char)(255 - i);
  bp_status st0 = kNotRun, st1 = kNotRun;
  std::thread t0([&] { st0 = bp_comm_bcast_bytes(c0, id0, 128, "x"); });
  EXPECT_TRUE(garbage_client_is_closed(port, "GET / HTTP/1.0\r\n\r\n", 5.0))
      << "rank 0 closes a connection that is not a backprop rank's";
  std::thread t1([&] { st1 = bp_comm_bcast_bytes(c1, id1, 128, "x"); });
  t0.join();
  t1.join();
  EXPECT_EQ(st0, BP_OK) << bp_comm_last_error(c0);
  EXPECT_EQ(st1, BP_OK) << bp_comm_last_error(c1);
  EXPECT_EQ(std::memcmp(id0, id1, 128), 0);
  bp_comm_destroy(c1);
  bp_comm_destroy(c0);
}

TEST(CommTcpRendezvous, OnlyGarbageIsNamedAtTheDeadline) {
  const int port = free_loopback_port();
  ASSERT_NE(port, 0);
  bp_comm *c0 = tcp_comm(0, 2, spec_for(port), 0.8);
  unsigned char id[128] = {0};
  bp_status st0 = kNotRun;
  std::thread t0([&] { st0 = bp_comm_bcast_bytes(c0, id, 128, "x"); });
  EXPECT_TRUE(garbage_client_is_closed(port, std::string(40, 'z'), 5.0));
  t0.join();
  EXPECT_EQ(st0, BP_ERR_COMM);
  EXPECT_TRUE(contains(bp_comm_last_error(c0), "not backprop ranks were closed, the last from "
                                               "127.0.0.1:"))
      << bp_comm_last_error(c0);
  bp_comm_destroy(c0);
}

TEST(CommTcpRendezvous, AServerThatIsNotRankZeroIsRefused) {
  // Something else listens on the port and answers with text.
  const int lfd = socket(AF_INET, SOCK_STREAM, 0);
  ASSERT_GE(lfd, 0);
  sockaddr_in a;
  std::memset(&a, 0, sizeof a);
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  ASSERT_EQ(bind(lfd, reinterpret_cast<sockaddr *>(&a), sizeof a), 0);
  ASSERT_EQ(listen(lfd, 4), 0);
  ASSERT_EQ(getsockname(lfd, reinterpret_cast<sockaddr *>(&a), &len), 0);
  const int port = ntohs(a.sin_port);
  std::thread server([lfd] {
    const int fd = accept(lfd, nullptr, nullptr);
    if (fd < 0) return;
    const char reply[] = "HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n";
    (void)send(fd, reply, sizeof reply - 1, MSG_NOSIGNAL);
    std::this_thread::sleep_for(std::chrono::milliseconds(200));
    close(fd);
  });
  bp_comm *c = tcp_comm(1, 2, spec_for(port), 5.0);
  unsigned char id[128];
  EXPECT_EQ(bp_comm_bcast_bytes(c, id, 128, "x"), BP_ERR_COMM);
  EXPECT_TRUE(contains(bp_comm_last_error(c), "not as backprop's rank 0")) << bp_comm_last_error(c);
  server.join();
  close(lfd);
  bp_comm_destroy(c);
}

TEST(CommTcpRendezvous, MalformedAddressesAreInvalidArguments) {
  const struct {
    const char *spec, *why;
  } cases[] = {
      {"tcp:127.0.0.1", "no port"},
      {"tcp:127.0.0.1:", "no port"},
      {"tcp:127.0.0.1:0", "outside 1 .. 65535"},
      {"tcp:127.0.0.1:65536", "outside 1 .. 65535"},
      {"tcp:127.0.0.1:99999999999999999999", "outside 1 .. 65535"},
      {"tcp:127.0.0.1:29x", "not a decimal number"},
      {"tcp::29500", "empty host"},
      {"tcp:[]:29500", "empty host"},
      {"tcp:::1:29500", "in brackets"},
      {"tcp:[::1]29500", "in brackets"},
      {"tcp:", "no port"},
      {"udp:127.0.0.1:29500", "expected file:PATH or tcp:HOST:PORT"},
  };
  for (const auto &k : cases) {
    bp_comm *c = reinterpret_cast<bp_comm *>(&c);  // must be reset to NULL
    EXPECT_EQ(bp_comm_create_rendezvous(nullptr, 0, 2, 0, k.spec, &c), BP_ERR_INVALID_ARGUMENT)
        << k.spec;
    EXPECT_EQ(c, nullptr) << k.spec;
    EXPECT_TRUE(contains(bp_comm_last_error(nullptr), k.why))
        << k.spec << ": " << bp_comm_last_error(nullptr);
    EXPECT_TRUE(contains(bp_comm_last_error(nullptr), k.spec)) << bp_comm_last_error(nullptr);
  }
  bp_comm *c = nullptr;
  ASSERT_EQ(bp_comm_create_rendezvous(nullptr, 0, 2, 0, "tcp:[::1]:65535", &c), BP_OK)
      << bp_comm_last_error(nullptr);
  bp_comm_destroy(c);
}

TEST(CommTcpRendezvous, FromTheEnvironment) {
  if (std::getenv("OMPI_COMM_WORLD_SIZE") || std::getenv("PMI_SIZE") || std::getenv("PMIX_RANK"))
    GTEST_SKIP() << "under an MPI launcher, which takes precedence";
  setenv("BP_RENDEZVOUS", "tcp:localhost:29500", 1);
  setenv("BP_RANK", "1", 1);
  setenv("BP_WORLD_SIZE", "2", 1);
  bp_comm *c = nullptr;
  ASSERT_EQ(bp_comm_create_from_env(nullptr, &c), BP_OK) << bp_comm_last_error(nullptr);
  EXPECT_EQ(bp_comm_get_bootstrap(c), BP_COMM_FILE);
  EXPECT_EQ(bp_comm_rank(c), 1);
  EXPECT_EQ(bp_comm_size(c), 2);
  bp_comm_destroy(c);  // creation connects to nothing: only a broadcast does
  setenv("BP_RENDEZVOUS", "tcp:localhost:0", 1);
  EXPECT_EQ(bp_comm_create_from_env(nullptr, &c), BP_ERR_INVALID_ARGUMENT);
  EXPECT_EQ(c, nullptr);
  EXPECT_TRUE(contains(bp_comm_last_error(nullptr), "BP_RENDEZVOUS=tcp:localhost:0"))
      << bp_comm_last_error(nullptr);
  unsetenv("BP_RENDEZVOUS");
  unsetenv("BP_RANK");
  unsetenv("BP_WORLD_SIZE");
}
