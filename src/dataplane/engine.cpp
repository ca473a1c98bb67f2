#include "ringfwd/dataplane/engine.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>
#include <thread>

#include "ringfwd/base/log.hpp"
#include "ringfwd/base/net.hpp"
#include "worker.hpp"

namespace rf::dataplane {

std::string_view to_string(Mode m) {
  switch (m) {
    case Mode::Splice: return "splice";
    case Mode::Copy: return "copy";
    case Mode::Hybrid: return "hybrid";
  }
  return "?";
}

Result<Mode> choose_mode(config::Dataplane wanted, std::string* why) {
  switch (wanted) {
    case config::Dataplane::Splice:
      *why = "splice (configured)";
      return Mode::Splice;
    case config::Dataplane::Copy:
      *why = "copy (configured)";
      return Mode::Copy;
    case config::Dataplane::Sockmap:
      return Error::msg("dataplane \"sockmap\" is not available in this build (use auto, splice or copy)");
    case config::Dataplane::Auto:
      break;
  }
  // perf/lab on loopback: splice moves bulk streams at half copy's CPU, copy answers small
  // requests with fewer syscalls; hybrid takes each where it wins (README "Performance").
  *why = "hybrid (auto: copy for small messages, splice for bulk; sockmap not built)";
  return Mode::Hybrid;
}

namespace {
Result<UniqueFd> bind_listener(const routing::ResolvedRoute& r, uint16_t port) {
  sockaddr_storage a = r.bind_addr;
  net::set_port(a, port);
  UniqueFd fd(::socket(a.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return Error::from_errno("socket");
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
    return Error::from_errno("SO_REUSEPORT");
  if (a.ss_family == AF_INET6) {
    // "::" serves IPv6 only; an IPv4 route on 0.0.0.0 may bind the same port beside it.
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), r.bind_len) < 0) {
    int e = errno;
    std::string hint = e == EADDRINUSE ? " (another program uses this port)"
                       : e == EACCES   ? " (binding ports below 1024 needs CAP_NET_BIND_SERVICE)"
                       : e == EADDRNOTAVAIL ? " (no interface has this address)"
                                            : "";
    return Error::from_errno("route " + r.route.id + ": bind " + net::to_string(a) + hint, e);
  }
  // Accepted sockets inherit TCP_NODELAY: bytes are forwarded as they come, never held back.
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::listen(fd.get(), 4096) < 0) return Error::from_errno("listen " + net::to_string(a));
  return fd;
}
}  // namespace

Result<std::unique_ptr<Engine>> Engine::start(std::shared_ptr<const routing::RouteTable> table,
                                              const EngineOptions& opts) {
  std::unique_ptr<Engine> e(new Engine());
  e->opts_ = opts;
  e->table_ = std::move(table);
  e->shared_.max_connections = opts.max_connections;
  unsigned n = opts.workers ? opts.workers : std::max(1u, std::thread::hardware_concurrency());
  e->opts_.workers = n;

  // Every listener is bound before any worker starts, so a port problem stops the start
  // with one clear message instead of a half-served configuration.
  std::vector<std::vector<Listener>> per_worker(n);
  for (const routing::ResolvedRoute& r : e->table_->routes()) {
    if (r.route.has_udp())
      RF_WARN("route=%s: udp is not served by this build yet%s", r.route.id.c_str(),
              r.route.has_tcp() ? " (tcp is)" : "; route not served");
    if (!r.route.has_tcp()) continue;
    if (!r.tcp_unsupported.empty()) {
      RF_WARN("route=%s: %s; route not served", r.route.id.c_str(), r.tcp_unsupported.c_str());
      continue;
    }
    if (r.route.wol)
      RF_WARN("route=%s: Wake-on-LAN is not part of this build yet; served without it",
              r.route.id.c_str());
    for (uint32_t p = r.route.listen_port.first; p <= r.route.listen_port.last; ++p) {
      for (unsigned w = 0; w < n; ++w) {
        auto fd = bind_listener(r, uint16_t(p));
        if (!fd) return fd.error();
        per_worker[w].push_back(Listener{std::move(fd.value()), &r, uint16_t(p)});
        e->listener_count_++;
      }
    }
  }
  std::vector<std::future<Result<void>>> started;
  for (unsigned w = 0; w < n; ++w) {
    e->workers_.push_back(
        std::make_unique<Worker>(w, e->opts_, e->shared_, e->table_, std::move(per_worker[w])));
    started.push_back(e->workers_.back()->start());
  }
  for (auto& f : started) {
    auto r = f.get();
    if (!r) {
      e->stop();
      return Error{r.error().code, "worker: " + r.error().context};
    }
  }
  return e;
}

Engine::~Engine() { stop(); }

void Engine::stop_accepting() {
  for (auto& w : workers_) w->stop_accepting();
}

void Engine::stop() {
  if (stopped_) return;
  stopped_ = true;
  for (auto& w : workers_) w->stop();
  for (auto& w : workers_) w->join();
}

}  // namespace rf::dataplane
