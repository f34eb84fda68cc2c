// loopback.h - a free TCP port on a loopback address, for the tests of the
// TCP rendezvous (only loopback addresses in tests: nothing leaves the
// machine). The kernel picks the port (bind to port 0); it is free when this
// returns, and a test that then loses it to another process fails with
// "cannot listen", never silently.
#ifndef BP_TEST_LOOPBACK_H
#define BP_TEST_LOOPBACK_H

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cstring>

// A free port on 127.0.0.1 (ipv6 = false) or ::1; 0 if none can be bound
// (no IPv6 on this machine, say).
inline int free_loopback_port(bool ipv6 = false) {
  const int fd = socket(ipv6 ? AF_INET6 : AF_INET, SOCK_STREAM, 0);
  if (fd < 0) return 0;
  sockaddr_storage ss;
  std::memset(&ss, 0, sizeof ss);
  socklen_t len;
  if (ipv6) {
    auto *a = reinterpret_cast<sockaddr_in6 *>(&ss);
    a->sin6_family = AF_INET6;
    a->sin6_addr = in6addr_loopback;
    len = sizeof *a;
  } else {
    auto *a = reinterpret_cast<sockaddr_in *>(&ss);
    a->sin_family = AF_INET;
    a->sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    len = sizeof *a;
  }
  int port = 0;
  if (bind(fd, reinterpret_cast<sockaddr *>(&ss), len) == 0 &&
      getsockname(fd, reinterpret_cast<sockaddr *>(&ss), &len) == 0)
    port = ntohs(ipv6 ? reinterpret_cast<sockaddr_in6 *>(&ss)->sin6_port
                      : reinterpret_cast<sockaddr_in *>(&ss)->sin_port);
  close(fd);
  return port;
}

#endif
