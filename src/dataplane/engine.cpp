#include "ringfwd/dataplane/engine.hpp"

#include <netinet/in.h>
#include <netinet/tcp.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstring>
#include <ctime>
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
    case Mode::Sockmap: return "sockmap";
  }
  return "?";
}

namespace {
bpf::Sockmap::Options sockmap_options(uint64_t max_connections) {
  bpf::Sockmap::Options o;
  o.max_sockets = uint32_t(std::min<uint64_t>(2 * max_connections + 64, 1u << 22));
  return o;
}
}  // namespace

Result<ModeChoice> choose_mode(config::Dataplane wanted, uint64_t max_connections) {
  ModeChoice c;
  switch (wanted) {
    case config::Dataplane::Splice:
      c.mode = Mode::Splice;
      c.why = "splice (configured)";
      return c;
    case config::Dataplane::Copy:
      c.mode = Mode::Copy;
      c.why = "copy (configured)";
      return c;
    case config::Dataplane::Sockmap: {
      auto sm = bpf::Sockmap::open(sockmap_options(max_connections));
      if (!sm) return Error{sm.error().code, "dataplane \"sockmap\" cannot run here: " + sm.error().context};
      c.mode = Mode::Sockmap;
      c.sockmap = std::move(sm.value());
      c.why = "sockmap (configured; kernel redirect after the route is chosen, copy where bytes must be seen)";
      return c;
    }
    case config::Dataplane::Auto:
      break;
  }
  // perf/lab on loopback: splice moves bulk streams at half copy's CPU, copy answers small
  // requests with fewer syscalls; hybrid takes each where it wins (README "Performance").
  // sockmap is probed so that the log says whether it could run here, but auto does not pick
  // it: on this kernel it lost to hybrid for one stream, keep-alive requests and new
  // connections, won only for many parallel bulk streams (~10 %), and its redirect queue has no
  // backpressure of its own (README "sockmap: where the time goes").
  c.mode = Mode::Hybrid;
  c.why = "hybrid (auto: copy for small messages, splice for bulk)";
  if (auto sm = bpf::Sockmap::open(sockmap_options(max_connections)); sm)
    c.why += "; sockmap works here but auto does not use it (slower here except for many parallel bulk streams; set \"sockmap\" to force it)";
  else
    c.why += "; sockmap unavailable: " + sm.error().str();
  return c;
}

namespace {
Result<UniqueFd> bind_listener(const sockaddr_storage& a, socklen_t len, bool udp,
                               const std::string& route_ids) {
  UniqueFd fd(::socket(a.ss_family, (udp ? SOCK_DGRAM : SOCK_STREAM) | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!fd) return Error::from_errno("socket");
  int one = 1;
  setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (setsockopt(fd.get(), SOL_SOCKET, SO_REUSEPORT, &one, sizeof one) < 0)
    return Error::from_errno("SO_REUSEPORT");
  if (a.ss_family == AF_INET6) {
    // "::" serves IPv6 only; an IPv4 route on 0.0.0.0 may bind the same port beside it.
    setsockopt(fd.get(), IPPROTO_IPV6, IPV6_V6ONLY, &one, sizeof one);
  }
  if (::bind(fd.get(), reinterpret_cast<const sockaddr*>(&a), len) < 0) {
    int e = errno;
    std::string hint = e == EADDRINUSE ? " (another program uses this port)"
                       : e == EACCES   ? " (binding ports below 1024 needs CAP_NET_BIND_SERVICE)"
                       : e == EADDRNOTAVAIL ? " (no interface has this address)"
                                            : "";
    return Error::from_errno("route " + route_ids + ": bind " + std::string(udp ? "udp " : "") +
                                 net::to_string(a) + hint,
                             e);
  }
  if (udp) {
    // Room for bursts while the worker is busy elsewhere (the kernel caps it at rmem_max).
    int rcv = 4 << 20;
    setsockopt(fd.get(), SOL_SOCKET, SO_RCVBUF, &rcv, sizeof rcv);
    return fd;
  }
  // Accepted sockets inherit TCP_NODELAY: bytes are forwarded as they come, never held back.
  setsockopt(fd.get(), IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
  if (::listen(fd.get(), 4096) < 0) return Error::from_errno("listen " + net::to_string(a));
  return fd;
}

std::string joined(const std::vector<std::string>& ids) {
  std::string out;
  for (const auto& id : ids) out += (out.empty() ? "" : ",") + id;
  return out;
}
}  // namespace

Result<std::unique_ptr<Engine>> Engine::start(std::shared_ptr<const routing::RouteTable> table,
                                              const EngineOptions& opts) {
  std::unique_ptr<Engine> e(new Engine());
  e->opts_ = opts;
  e->shared_.max_connections.store(opts.max_connections);
  unsigned n = opts.workers ? opts.workers : std::max(1u, std::thread::hardware_concurrency());
  e->opts_.workers = n;
  e->table_ = std::make_shared<routing::RouteTable>();  // empty until the first apply()

  std::vector<std::future<Result<void>>> started;
  for (unsigned w = 0; w < n; ++w) {
    e->workers_.push_back(std::make_unique<Worker>(w, e->opts_, e->shared_, e->table_));
    started.push_back(e->workers_.back()->start());
  }
  for (auto& f : started) {
    auto r = f.get();
    if (!r) {
      e->stop();
      return Error{r.error().code, "worker: " + r.error().context};
    }
  }
  auto applied = e->apply(std::move(table), 0);
  if (!applied) {
    e->stop();
    return applied.error();
  }
  return e;
}

namespace {
// Every listening socket a table needs, by key: a TCP port (one plain route or several TLS
// routes) or a UDP port.
struct Want {
  const routing::TcpPort* tcp = nullptr;
  const routing::UdpPort* udp = nullptr;
  std::vector<std::string> ids;
};
std::map<std::string, Want> wanted_listens(const routing::RouteTable& t) {
  std::map<std::string, Want> out;
  for (const routing::TcpPort& p : t.tcp_ports()) out[p.key] = Want{&p, nullptr, p.route_ids()};
  for (const routing::UdpPort& p : t.udp_ports())
    out[p.key] = Want{nullptr, &p, {p.route->route.id}};
  return out;
}
}  // namespace

namespace {
double mono_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}
}  // namespace

std::vector<std::string> Engine::listening(std::string_view route_id) const {
  std::vector<std::string> out;
  for (const auto& [key, ids] : listeners_)
    if (std::find(ids.begin(), ids.end(), route_id) != ids.end()) out.push_back(key);
  return out;
}

std::vector<std::string> Engine::overlapping(std::string_view route_id) const {
  std::vector<std::string> out;
  const double now = mono_s();
  for (const auto& [key, o] : overlaps_)
    if (now < o.until_s &&
        std::find(o.route_ids.begin(), o.route_ids.end(), route_id) != o.route_ids.end())
      out.push_back(key);
  return out;
}

std::vector<Engine::Draining> Engine::draining() const {
  std::vector<Draining> out;
  const double now = mono_s();
  for (const Draining& d : draining_)
    if (now < d.until_s && d.counters->conns_active.load() > 0) out.push_back(d);
  return out;
}

Result<void> Engine::apply(std::shared_ptr<const routing::RouteTable> next, uint32_t overlap_ms) {
  const auto wanted = wanted_listens(*next);

  // 1. Bind what is new, for every worker, before touching anything that runs.
  const size_t n = workers_.size();
  std::vector<Worker::Change> changes(n);
  for (auto& c : changes) c.table = next;
  for (const auto& [key, want] : wanted) {
    if (listeners_.count(key)) continue;
    for (size_t w = 0; w < n; ++w) {
      Listener l;
      l.key = key;
      if (want.tcp) {
        auto fd = bind_listener(want.tcp->bind_addr, want.tcp->bind_len, false, joined(want.ids));
        if (!fd) return fd.error();  // `changes` owns what was bound so far: closed on return
        l.fd = std::move(fd.value());
        l.tcp = want.tcp;
        l.port = want.tcp->port;
      } else {
        const routing::ResolvedRoute& r = *want.udp->route;
        sockaddr_storage a = r.bind_addr;
        net::set_port(a, want.udp->port);
        auto fd = bind_listener(a, r.bind_len, true, r.route.id);
        if (!fd) return fd.error();
        l.fd = std::move(fd.value());
        l.udp = &r;
        l.port = want.udp->port;
      }
      changes[w].add.push_back(std::move(l));
    }
  }
  // 2. The plan for what exists already.
  for (auto& c : changes) c.overlap_ms = overlap_ms;
  for (const auto& [key, ids] : listeners_) {
    auto it = wanted.find(key);
    const bool lives_on = std::any_of(ids.begin(), ids.end(),
                                      [&](const std::string& id) { return next->find(id); });
    for (auto& c : changes) {
      if (it != wanted.end() && it->second.tcp)
        c.remap.emplace_back(key, it->second.tcp);
      else if (it != wanted.end())
        c.remap_udp.emplace_back(key, it->second.udp->route);
      else if (lives_on)
        c.close_later.push_back(key);  // its route moved: dual-bind overlap
      else
        c.close_now.push_back(key);
    }
  }
  for (const routing::ResolvedRoute& old : table_->routes()) {
    if (next->find(old.route.id)) continue;
    for (auto& c : changes) c.drain.emplace_back(old.route.id, old.drain_timeout_s);
  }
  // 3. Publish: from here on nothing can fail.
  const double now = mono_s();
  std::erase_if(overlaps_, [&](const auto& kv) { return now >= kv.second.until_s; });
  std::erase_if(draining_, [&](const Draining& d) { return now >= d.until_s; });
  if (!changes.empty()) {
    for (const std::string& key : changes[0].close_later)
      overlaps_[key] = Overlap{listeners_[key], now + overlap_ms / 1000.0};
  }
  for (const routing::ResolvedRoute& old : table_->routes())
    if (!next->find(old.route.id))
      draining_.push_back({old.route.id, old.counters, now + old.drain_timeout_s});
  auto barrier = std::make_shared<ChangeBarrier>();
  barrier->pending = unsigned(n);
  for (size_t w = 0; w < n; ++w) {
    changes[w].applied = barrier;
    workers_[w]->post(std::move(changes[w]));
  }
  // Workers apply a change within one loop turn; the bound only guards against a stuck one.
  if (!barrier->wait_for(std::chrono::milliseconds(2000)))
    RF_WARN("route change: a worker took more than 2 s to apply it");
  listeners_.clear();
  for (const auto& [key, want] : wanted) listeners_.emplace(key, want.ids);
  std::lock_guard<std::mutex> lock(table_mu_);
  table_ = std::move(next);
  return {};
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
