// change_client: a persistent D-Bus client (the generated io.ringfwd1 proxy) for perf/change_latency.
// One bus connection for the whole run, so no process start or bus handshake is in the figures.
//
//   change_client latency ADDRESS ROUTE_ID TARGET_PORT COUNT PORT...
//     COUNT times: UpdateRoute moving ROUTE_ID to the next PORT (cycling), then connect to the
//     new port until it accepts. Prints one line per change: "<call_us> <accept_us>" where
//     call_us is issue -> method return and accept_us is issue -> first accepted TCP connect.
//   change_client churn ADDRESS ROUTE_ID TARGET_PORT RATE SECONDS PORT...
//     RATE UpdateRoutes per second (moving ROUTE_ID over the PORTs) for SECONDS; prints
//     "changes=N errors=E".
// Exit status: 0 ok, 1 a change failed (the D-Bus error is printed), 2 usage.
#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <string>
#include <thread>
#include <vector>

#include <sdbus-c++/sdbus-c++.h>

#include "ringfwd1_proxy.h"

namespace {

using Clock = std::chrono::steady_clock;

class Client final : public sdbus::ProxyInterfaces<io::ringfwd1::Manager_proxy> {
 public:
  Client(sdbus::IConnection& c) : ProxyInterfaces(c, "io.ringfwd1", "/io/ringfwd1") { registerProxy(); }
  ~Client() { unregisterProxy(); }

 private:
  void onRoutesChanged() override {}
};

std::string route(const std::string& id, int port, int target) {
  return R"({"id":")" + id + R"(","protocol":"tcp","listen":"127.0.0.1","listen_port":)" +
         std::to_string(port) + R"(,"target":{"host":"127.0.0.1","port":)" + std::to_string(target) +
         "}}";
}

// 0 when 127.0.0.1:port accepted a connection, else errno.
int try_connect(int port) {
  int fd = ::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(uint16_t(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  int r = ::connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a);
  int e = r == 0 ? 0 : errno;
  if (r == 0) {
    linger l{1, 0};  // RST: no TIME_WAIT pile-up over a thousand probes
    ::setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  }
  ::close(fd);
  return e;
}

double us(Clock::time_point a, Clock::time_point b) {
  return std::chrono::duration<double, std::micro>(b - a).count();
}

int usage() {
  std::fprintf(stderr,
               "usage: change_client latency ADDRESS ROUTE_ID TARGET_PORT COUNT PORT...\n"
               "       change_client churn ADDRESS ROUTE_ID TARGET_PORT RATE SECONDS PORT...\n");
  return 2;
}

}  // namespace

int main(int argc, char** argv) {
  if (argc < 7) return usage();
  const std::string mode = argv[1], address = argv[2], id = argv[3];
  const int target = std::atoi(argv[4]);
  try {
    auto conn = sdbus::createSessionBusConnectionWithAddress(address);
    Client client(*conn);
    if (mode == "latency") {
      const int count = std::atoi(argv[5]);
      std::vector<int> ports;
      for (int i = 6; i < argc; ++i) ports.push_back(std::atoi(argv[i]));
      if (ports.empty() || count <= 0) return usage();
      for (int i = 0; i < count; ++i) {
        const int port = ports[size_t(i) % ports.size()];
        auto t0 = Clock::now();
        client.UpdateRoute(route(id, port, target));
        auto t1 = Clock::now();
        int e;
        while ((e = try_connect(port)) != 0) {
          if (e != ECONNREFUSED) {
            std::fprintf(stderr, "connect %d: %s\n", port, std::strerror(e));
            return 1;
          }
          if (us(t0, Clock::now()) > 5e6) {
            std::fprintf(stderr, "port %d did not accept within 5 s\n", port);
            return 1;
          }
        }
        auto t2 = Clock::now();
        std::printf("%.1f %.1f\n", us(t0, t1), us(t0, t2));
      }
      return 0;
    }
    if (mode == "churn") {
      if (argc < 8) return usage();
      const double rate = std::atof(argv[5]), seconds = std::atof(argv[6]);
      std::vector<int> ports;
      for (int i = 7; i < argc; ++i) ports.push_back(std::atoi(argv[i]));
      const auto start = Clock::now();
      const auto step = std::chrono::duration_cast<Clock::duration>(std::chrono::duration<double>(1.0 / rate));
      int n = 0, errors = 0;
      for (auto next = start; Clock::now() - start < std::chrono::duration<double>(seconds); next += step) {
        std::this_thread::sleep_until(next);
        try {
          client.UpdateRoute(route(id, ports[size_t(n) % ports.size()], target));
        } catch (const sdbus::Error& e) {
          if (errors++ < 5) std::fprintf(stderr, "%s: %s\n", e.getName().c_str(), e.getMessage().c_str());
        }
        ++n;
      }
      std::printf("changes=%d errors=%d seconds=%.3f\n", n, errors,
                  std::chrono::duration<double>(Clock::now() - start).count());
      return errors ? 1 : 0;
    }
    return usage();
  } catch (const sdbus::Error& e) {
    std::fprintf(stderr, "change_client: %s: %s\n", e.getName().c_str(), e.getMessage().c_str());
    return 1;
  }
}
