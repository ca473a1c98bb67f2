// Route sync over one TCP connection per gateway (README "The sync protocol"). Both ends are a
// poll() loop on their own thread with non-blocking sockets: the data path never waits on
// them, and the control plane only signals them (eventfd).
#include "ringfwd/sync/sync.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <atomic>
#include <cerrno>
#include <chrono>
#include <cstring>
#include <ctime>
#include <map>
#include <mutex>
#include <random>
#include <thread>

#include "ringfwd/base/log.hpp"
#include "ringfwd/base/net.hpp"
#include "ringfwd/base/unique_fd.hpp"
#include "ringfwd/sync/protocol.hpp"

namespace rf::sync {

namespace {

int64_t now_ms() {
  return std::chrono::duration_cast<std::chrono::milliseconds>(
             std::chrono::steady_clock::now().time_since_epoch())
      .count();
}

std::string short_hash(const std::string& h) { return h.empty() ? "(none)" : h.substr(0, 12); }

json::array string_array(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

std::vector<std::string> strings_of(const json::object& o, std::string_view key) {
  std::vector<std::string> out;
  const json::value* v = o.if_contains(key);
  if (!v || !v->is_array()) return out;
  for (const json::value& e : v->as_array())
    if (e.is_string() && out.size() < 4096) out.emplace_back(e.as_string());
  return out;
}

bool is_hex(const std::string& s, size_t n) {
  return s.size() == n &&
         std::all_of(s.begin(), s.end(), [](char c) { return std::isxdigit(uint8_t(c)); });
}

// One non-blocking sync connection: frames in, frames out.
struct Conn {
  UniqueFd fd;
  std::string peer;
  FrameReader in{kMaxFrameUnauthed};
  std::string out;
  int64_t last_rx = 0;
  int64_t last_tx = 0;
  bool eof = false;

  void send(const json::object& msg) {
    out += encode(msg);
    flush();
  }
  // Writes what it can; false on a hard error.
  bool flush() {
    while (!out.empty()) {
      ssize_t n = ::send(fd.get(), out.data(), out.size(), MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        out.erase(0, size_t(n));
        last_tx = now_ms();
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      eof = true;
      return false;
    }
    return true;
  }
  // Reads what is there; false on end of stream or error.
  bool fill() {
    char buf[16384];
    for (;;) {
      ssize_t n = ::recv(fd.get(), buf, sizeof buf, MSG_DONTWAIT);
      if (n > 0) {
        in.feed(buf, size_t(n));
        last_rx = now_ms();
        if (in.buffered() > kMaxFrame + 4 + (1 << 16)) return true;  // next() will refuse it
        continue;
      }
      if (n < 0 && errno == EINTR) continue;
      if (n < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) return true;
      eof = true;
      return false;
    }
  }
};

void keepalive(int fd) {
  int on = 1;
  ::setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &on, sizeof on);
}

}  // namespace

bool parse_endpoint(const std::string& text, sockaddr_storage& addr, socklen_t& len) {
  const size_t colon = text.rfind(':');
  if (colon == std::string::npos || colon + 1 >= text.size()) return false;
  std::string host = text.substr(0, colon);
  if (host.size() > 2 && host.front() == '[' && host.back() == ']')
    host = host.substr(1, host.size() - 2);
  const std::string port = text.substr(colon + 1);
  if (port.empty() || port.size() > 5 || !std::all_of(port.begin(), port.end(), ::isdigit))
    return false;
  const int p = std::atoi(port.c_str());
  if (p < 1 || p > 65535) return false;
  return net::parse_ip(host, uint16_t(p), addr, len);
}

// ============================== edge ==============================

struct Server::Impl {
  control::Controller& controller;
  std::shared_ptr<routing::GatewayLinks> links;
  std::string listen_text;
  sockaddr_storage listen_addr{};
  socklen_t listen_len = 0;
  UniqueFd listener;
  UniqueFd wake;
  std::atomic<bool> stop{false};
  std::thread thread;
  std::string bind_error;  // logged once per distinct error

  struct Session {
    Conn c;
    bool authed = false;
    std::string nonce;  // ours (challenge)
    std::string gateway;
    std::string hash_sent;
    int64_t deadline = 0;  // authentication must be done by then
    bool closing = false;  // flush, then close
  };
  std::vector<std::unique_ptr<Session>> sessions;

  Impl(control::Controller& c, std::shared_ptr<routing::GatewayLinks> l)
      : controller(c), links(std::move(l)) {}

  bool try_listen() {
    UniqueFd fd(::socket(listen_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) return false;
    int on = 1;
    ::setsockopt(fd.get(), SOL_SOCKET, SO_REUSEADDR, &on, sizeof on);
    // The tunnel interface may come up after ringfwd: bind to its address anyway.
    ::setsockopt(fd.get(), SOL_IP, IP_FREEBIND, &on, sizeof on);
    if (::bind(fd.get(), reinterpret_cast<sockaddr*>(&listen_addr), listen_len) != 0 ||
        ::listen(fd.get(), 64) != 0) {
      std::string why = std::strerror(errno);
      if (why != bind_error)
        RF_WARN("sync: cannot listen on %s: %s; retrying every second", listen_text.c_str(),
                why.c_str());
      bind_error = why;
      return false;
    }
    if (!bind_error.empty()) RF_INFO("sync: listening on %s now", listen_text.c_str());
    bind_error.clear();
    listener = std::move(fd);
    return true;
  }

  void close_session(Session& s, const std::string& why) {
    if (s.c.fd.get() < 0) return;
    if (s.authed) {
      // A newer session of the same gateway may have replaced this one: it owns the state.
      bool current = true;
      for (auto& o : sessions)
        if (o.get() != &s && o->authed && o->gateway == s.gateway && o->c.fd.get() >= 0)
          current = false;
      if (current) {
        if (auto l = links->find(s.gateway)) l->set_online(false, "", why);
        RF_WARN("sync: gateway \"%s\" (%s) offline: %s", s.gateway.c_str(), s.c.peer.c_str(),
                why.c_str());
      }
    } else {
      RF_DEBUG("sync: %s: session closed before authentication: %s", s.c.peer.c_str(),
               why.c_str());
    }
    s.c.fd.reset();
  }

  void accept_all() {
    for (;;) {
      sockaddr_storage peer{};
      socklen_t len = sizeof peer;
      int fd = ::accept4(listener.get(), reinterpret_cast<sockaddr*>(&peer), &len,
                         SOCK_NONBLOCK | SOCK_CLOEXEC);
      if (fd < 0) return;
      if (sessions.size() >= 256) {  // unauthenticated peers cannot pile up sessions
        ::close(fd);
        continue;
      }
      auto s = std::make_unique<Session>();
      s->c.fd = UniqueFd(fd);
      keepalive(fd);
      s->c.peer = net::to_string(peer);
      s->c.last_rx = now_ms();
      s->deadline = now_ms() + 10000;
      s->nonce = random_hex(32);
      if (s->nonce.empty()) {
        RF_ERROR("sync: no random numbers (getrandom): %s", std::strerror(errno));
        continue;
      }
      s->c.send(json::object{{"type", "challenge"}, {"version", kVersion}, {"nonce", s->nonce}});
      sessions.push_back(std::move(s));
    }
  }

  void refuse(Session& s, const char* log_why) {
    RF_WARN("sync: %s: authentication refused: %s", s.c.peer.c_str(), log_why);
    // One answer for every failure: nothing tells a stranger which part was wrong.
    s.c.send(json::object{{"type", "error"}, {"error", "authentication failed"}});
    s.closing = true;
  }

  void on_hello(Session& s, const json::object& m) {
    const json::value* ver = m.if_contains("version");
    if (!ver || !ver->is_int64() || ver->as_int64() != kVersion) {
      s.c.send(json::object{{"type", "error"},
                            {"error", "sync protocol version " + std::to_string(kVersion) +
                                          " only"}});
      s.closing = true;
      RF_WARN("sync: %s: unsupported protocol version", s.c.peer.c_str());
      return;
    }
    const std::string id = string_member(m, "gateway");
    const std::string gw_nonce = string_member(m, "nonce");
    const std::string proof = string_member(m, "proof");
    const config::Config cfg = controller.running();
    const config::Gateway* g = cfg.find_gateway(id);
    std::string token;
    std::string problem;
    if (!g) {
      problem = "unknown gateway \"" + id.substr(0, 64) + "\"";
    } else if (auto t = read_token(g->token_file); !t) {
      problem = "gateway \"" + id + "\": " + t.error().str();
    } else {
      token = *t;
    }
    // The same work whether or not the id is known.
    const std::string expected =
        gateway_proof(token.empty() ? std::string(32, 'x') : token, s.nonce, id);
    const bool proof_ok = equal_constant_time(expected, proof);
    if (!problem.empty()) return refuse(s, problem.c_str());
    if (!proof_ok) {
      problem = "gateway \"" + id + "\": wrong token (the proof does not match)";
      return refuse(s, problem.c_str());
    }
    if (!is_hex(gw_nonce, 64)) return refuse(s, "the gateway's nonce is not 32 bytes of hex");
    // A gateway has one session: a newer one replaces the old (a restart, a new address).
    for (auto& o : sessions)
      if (o.get() != &s && o->authed && o->gateway == id && o->c.fd.get() >= 0) {
        RF_INFO("sync: gateway \"%s\": new session from %s replaces %s", id.c_str(),
                s.c.peer.c_str(), o->c.peer.c_str());
        o->authed = false;  // its close must not mark the gateway offline
        o->c.fd.reset();
      }
    s.authed = true;
    s.gateway = id;
    s.c.in.set_max(kMaxFrame);
    s.c.send(json::object{{"type", "welcome"}, {"proof", edge_proof(token, gw_nonce)}});
    auto link = links->get(id);
    link->set_online(true, s.c.peer);
    link->update([](routing::GatewayStatus& st) { st.last_error.clear(); });
    RF_INFO("sync: gateway \"%s\" online from %s", id.c_str(), s.c.peer.c_str());
    const std::string running = string_member(m, "hash");
    push(s, cfg, running);
  }

  // Sends the gateway its set unless it runs it already (`running`: what it says it runs).
  void push(Session& s, const config::Config& cfg, const std::string& running = {}) {
    const std::string text = gateway_routes(cfg, s.gateway);
    const std::string hash = sha256_hex(text);
    if (hash == s.hash_sent) return;
    s.hash_sent = hash;
    auto link = links->get(s.gateway);
    link->update([&](routing::GatewayStatus& st) {
      st.hash_sent = hash;
      if (!running.empty()) st.hash_applied = running;
    });
    if (hash == running) return;
    json::object msg{{"type", "routes"}, {"hash", hash}, {"routes", json::parse(text)}};
    s.c.send(msg);
    RF_INFO("sync: gateway \"%s\": sent route set %s", s.gateway.c_str(), short_hash(hash).c_str());
  }

  void on_message(Session& s, const json::object& m) {
    const std::string_view type = type_of(m);
    if (!s.authed) {
      if (type == "hello") return on_hello(s, m);
      return refuse(s, "first message is not a hello");
    }
    auto link = links->get(s.gateway);
    link->update([](routing::GatewayStatus& st) { st.last_seen = ::time(nullptr); });
    if (type == "ping") return;
    if (type == "applied") {
      const std::string hash = string_member(m, "hash");
      auto listening = strings_of(m, "listening");
      auto failures = strings_of(m, "failures");
      link->update([&](routing::GatewayStatus& st) {
        st.hash_applied = hash;
        st.listening = listening;
        st.failures = failures;
        st.last_error.clear();
      });
      RF_INFO("sync: gateway \"%s\" applied route set %s (%zu listening)", s.gateway.c_str(),
              short_hash(hash).c_str(), listening.size());
      return;
    }
    if (type == "refused") {
      const std::string hash = string_member(m, "hash");
      std::string error = string_member(m, "error").substr(0, 4096);
      auto failures = strings_of(m, "failures");
      link->update([&](routing::GatewayStatus& st) {
        st.last_error = error;
        st.failures = failures;
      });
      RF_WARN("sync: gateway \"%s\" refused route set %s: %s", s.gateway.c_str(),
              short_hash(hash).c_str(), error.c_str());
      return;
    }
    RF_DEBUG("sync: gateway \"%s\": ignoring a \"%.*s\" message", s.gateway.c_str(),
             int(std::min<size_t>(type.size(), 32)), type.data());
  }

  void on_readable(Session& s) {
    const bool open = s.c.fill();
    while (!s.closing && s.c.fd.get() >= 0) {
      auto m = s.c.in.next();
      if (!m) break;
      on_message(s, *m);
    }
    if (!s.c.in.error().empty() && !s.closing) {
      RF_WARN("sync: %s%s: bad frame: %s", s.c.peer.c_str(),
              s.authed ? (" (gateway \"" + s.gateway + "\")").c_str() : "",
              s.c.in.error().c_str());
      close_session(s, "bad frame: " + s.c.in.error());
      return;
    }
    if (!open) close_session(s, "connection closed");
  }

  void on_change() {
    const config::Config cfg = controller.running();
    for (auto& s : sessions) {
      if (!s->authed || s->c.fd.get() < 0) continue;
      if (!cfg.find_gateway(s->gateway)) {
        close_session(*s, "removed from the configuration");
        continue;
      }
      push(*s, cfg);
    }
  }

  void run() {
    int64_t next_listen_try = 0;
    while (!stop.load()) {
      const int64_t now = now_ms();
      if (!listener && now >= next_listen_try) {
        if (!try_listen()) next_listen_try = now + 1000;
      }
      std::vector<pollfd> pfds;
      pfds.push_back({wake.get(), POLLIN, 0});
      pfds.push_back({listener ? listener.get() : -1, POLLIN, 0});
      for (auto& s : sessions)
        pfds.push_back({s->c.fd.get(), short(POLLIN | (s->c.out.empty() ? 0 : POLLOUT)), 0});
      ::poll(pfds.data(), pfds.size(), 250);
      if (pfds[0].revents & POLLIN) {
        uint64_t v;
        [[maybe_unused]] auto r = ::read(wake.get(), &v, sizeof v);
        on_change();
      }
      if (pfds[1].revents & POLLIN) accept_all();
      const int64_t t = now_ms();
      for (size_t i = 0; i < sessions.size(); ++i) {
        Session& s = *sessions[i];
        if (s.c.fd.get() < 0) continue;
        const short ev = i + 2 < pfds.size() ? pfds[i + 2].revents : 0;
        if (ev & (POLLIN | POLLHUP | POLLERR)) on_readable(s);
        if (s.c.fd.get() < 0) continue;
        if (!s.c.flush()) {
          close_session(s, "connection lost");
          continue;
        }
        if (s.closing && s.c.out.empty()) {
          close_session(s, "closed by the edge");
          continue;
        }
        if (!s.authed && t > s.deadline) {
          close_session(s, "no authentication within 10 s");
          continue;
        }
        if (t - s.c.last_rx > kDeadMs) {
          close_session(s, "no message for " + std::to_string(kDeadMs / 1000) + " s");
          continue;
        }
        if (s.authed && t - s.c.last_tx >= kPingMs) s.c.send(json::object{{"type", "ping"}});
      }
      std::erase_if(sessions, [](const auto& s) { return s->c.fd.get() < 0; });
    }
    for (auto& s : sessions) close_session(*s, "the edge is stopping");
  }
};

Result<std::unique_ptr<Server>> Server::start(control::Controller& controller,
                                              std::shared_ptr<routing::GatewayLinks> links,
                                              const std::string& listen) {
  auto impl = std::make_unique<Impl>(controller, std::move(links));
  impl->listen_text = listen;
  if (!parse_endpoint(listen, impl->listen_addr, impl->listen_len))
    return Error::msg("sync.listen: bad address " + listen);
  impl->wake = UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!impl->wake) return Error::from_errno("sync: eventfd");
  impl->try_listen();
  Impl* p = impl.get();
  impl->thread = std::thread([p] { p->run(); });
  RF_INFO("sync: serving gateways on %s", listen.c_str());
  return std::unique_ptr<Server>(new Server(std::move(impl)));
}

Server::Server(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Server::~Server() {
  impl_->stop = true;
  notify();
  if (impl_->thread.joinable()) impl_->thread.join();
}

void Server::notify() {
  uint64_t one = 1;
  [[maybe_unused]] auto r = ::write(impl_->wake.get(), &one, sizeof one);
}

// ============================== gateway ==============================

struct Client::Impl {
  control::Controller& controller;
  config::Config file;
  std::function<void()> on_applied;
  sockaddr_storage edge_addr{};
  socklen_t edge_len = 0;
  UniqueFd wake;
  std::atomic<bool> stop{false};
  std::thread thread;
  std::mt19937 rng{std::random_device{}()};

  mutable std::mutex mu;  // guards the status below
  bool connected = false;
  int64_t since = 0;
  int64_t applied_at = 0;
  std::string last_error;
  std::string hash;  // a copy of the controller's: status_json runs under the controller's lock

  Impl(control::Controller& c, const config::Config& f) : controller(c), file(f) {}

  void set_status(bool on, const std::string& error) {
    std::lock_guard lock(mu);
    if (on != connected) since = ::time(nullptr);
    connected = on;
    if (!error.empty() || on) last_error = error;
  }

  // Sleeps up to ms, false when stopping.
  bool sleep_ms(int64_t ms) {
    pollfd p{wake.get(), POLLIN, 0};
    ::poll(&p, 1, int(std::max<int64_t>(ms, 0)));
    return !stop.load();
  }

  // A connected socket to the edge, or an error text.
  UniqueFd connect_edge(std::string* why) {
    UniqueFd fd(::socket(edge_addr.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
    if (!fd) {
      *why = std::strerror(errno);
      return {};
    }
    if (::connect(fd.get(), reinterpret_cast<sockaddr*>(&edge_addr), edge_len) != 0 &&
        errno != EINPROGRESS) {
      *why = std::strerror(errno);
      return {};
    }
    pollfd p[2] = {{fd.get(), POLLOUT, 0}, {wake.get(), POLLIN, 0}};
    if (::poll(p, 2, 3000) <= 0 || !(p[0].revents & (POLLOUT | POLLERR | POLLHUP))) {
      *why = stop ? "stopping" : "connect timed out (3 s)";
      return {};
    }
    int err = 0;
    socklen_t len = sizeof err;
    ::getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err) {
      *why = std::strerror(err);
      return {};
    }
    keepalive(fd.get());
    return fd;
  }

  // Waits for the next message (or deadline); nullopt with *why set when the session ends.
  std::optional<json::object> receive(Conn& c, int64_t deadline, std::string* why) {
    for (;;) {
      if (auto m = c.in.next()) return m;
      if (!c.in.error().empty()) {
        *why = "bad frame from the edge: " + c.in.error();
        return std::nullopt;
      }
      const int64_t now = now_ms();
      if (now >= deadline) {
        *why = "";
        return std::nullopt;
      }
      pollfd p[2] = {{c.fd.get(), short(POLLIN | (c.out.empty() ? 0 : POLLOUT)), 0},
                     {wake.get(), POLLIN, 0}};
      ::poll(p, 2, int(deadline - now));
      if (stop.load()) {
        *why = "stopping";
        return std::nullopt;
      }
      if (!c.flush()) {
        *why = "connection lost";
        return std::nullopt;
      }
      if (p[0].revents & (POLLIN | POLLHUP | POLLERR)) {
        if (!c.fill()) {
          // Messages that came with the end of stream are still read.
          if (auto m = c.in.next()) return m;
          *why = "the edge closed the connection";
          return std::nullopt;
        }
      }
    }
  }

  void on_routes(Conn& c, const json::object& m) {
    const std::string hash = string_member(m, "hash");
    const json::value* routes = m.if_contains("routes");
    if (!is_hex(hash, 64) || !routes || !routes->is_array()) {
      const std::string error = "a routes message needs a 64-hex \"hash\" and a \"routes\" array";
      RF_WARN("sync: refused a route set from the edge: %s; the running routes stay",
              error.c_str());
      c.send(json::object{{"type", "refused"}, {"hash", hash.substr(0, 64)}, {"error", error}});
      return;
    }
    if (hash == controller.synced_hash()) {
      c.send(json::object{{"type", "applied"}, {"hash", hash}});
      return;
    }
    std::vector<std::string> listening;
    auto err = controller.apply_synced(json::serialize(*routes), hash, &listening);
    if (err) {
      RF_WARN("sync: refused route set %s from the edge: %s; the running routes stay",
              short_hash(hash).c_str(), err->message.c_str());
      json::object msg{{"type", "refused"}, {"hash", hash}, {"error", err->message}};
      if (err->name == control::kErrPortConflict)
        msg["failures"] = json::array{json::string(err->message)};
      c.send(msg);
      std::lock_guard lock(mu);
      last_error = "refused route set " + short_hash(hash) + ": " + err->message;
      return;
    }
    c.send(json::object{{"type", "applied"}, {"hash", hash}, {"listening", string_array(listening)}});
    {
      std::lock_guard lock(mu);
      applied_at = ::time(nullptr);
      last_error.clear();
      this->hash = hash;
    }
    if (on_applied) on_applied();
  }

  // One session: handshake, then routes until it ends. Returns why it ended; *authed tells
  // whether it got past the handshake.
  std::string session(bool* authed) {
    *authed = false;
    auto token = read_token(file.sync->token_file);
    if (!token) return token.error().str();
    std::string why;
    Conn c;
    c.fd = connect_edge(&why);
    if (!c.fd) return "cannot connect to " + file.sync->edge + ": " + why;
    c.peer = file.sync->edge;
    c.last_rx = now_ms();
    auto ch = receive(c, now_ms() + 10000, &why);
    if (!ch) return why.empty() ? "no challenge from the edge within 10 s" : why;
    if (type_of(*ch) != "challenge") return "the edge sent \"" + std::string(type_of(*ch)).substr(0, 32) + "\" first";
    const std::string edge_nonce = string_member(*ch, "nonce");
    if (!is_hex(edge_nonce, 64)) return "the edge's challenge has no 32-byte nonce";
    const std::string nonce = random_hex(32);
    if (nonce.empty()) return "no random numbers (getrandom)";
    c.send(json::object{{"type", "hello"},
                        {"version", kVersion},
                        {"gateway", file.gateway_id},
                        {"nonce", nonce},
                        {"proof", gateway_proof(*token, edge_nonce, file.gateway_id)},
                        {"hash", controller.synced_hash()}});
    auto w = receive(c, now_ms() + 10000, &why);
    if (!w) return why.empty() ? "no answer to hello within 10 s" : why;
    if (type_of(*w) == "error")
      return "the edge refused this gateway: " + string_member(*w, "error").substr(0, 200) +
             " (check gateway_id \"" + file.gateway_id + "\" and the token in " +
             file.sync->token_file + ")";
    if (type_of(*w) != "welcome") return "the edge answered hello with something else";
    if (!equal_constant_time(edge_proof(*token, nonce), string_member(*w, "proof")))
      return "the edge did not prove it knows the token: not our edge";
    *authed = true;
    c.in.set_max(kMaxFrame);
    set_status(true, "");
    RF_INFO("sync: connected to the edge %s as gateway \"%s\"", file.sync->edge.c_str(),
            file.gateway_id.c_str());
    for (;;) {
      const int64_t now = now_ms();
      if (now - c.last_tx >= kPingMs) c.send(json::object{{"type", "ping"}});
      auto m = receive(c, std::min(c.last_tx + kPingMs, c.last_rx + kDeadMs), &why);
      if (!m) {
        if (!why.empty()) {
          if (why.rfind("bad frame", 0) == 0) {
            // Reported to the edge before the session ends; what runs stays.
            c.send(json::object{{"type", "refused"}, {"hash", ""}, {"error", why}});
          }
          return why;
        }
        if (now_ms() - c.last_rx >= kDeadMs) return "no message from the edge for 6 s";
        continue;
      }
      const std::string_view type = type_of(*m);
      if (type == "routes") {
        on_routes(c, *m);
      } else if (type == "error") {
        return "the edge: " + string_member(*m, "error").substr(0, 200);
      }
      // ping and unknown types: the session is alive, nothing to do.
    }
  }

  void run() {
    int64_t backoff = 250;
    std::string last_logged;
    while (!stop.load()) {
      bool authed = false;
      const std::string why = session(&authed);
      if (stop.load()) break;
      if (authed) {
        backoff = 250;
        RF_WARN("sync: session with the edge ended: %s; the running routes stay", why.c_str());
        last_logged.clear();
      }
      set_status(false, why);
      std::uniform_real_distribution<double> jitter(0.75, 1.25);
      const int64_t wait = int64_t(double(backoff) * jitter(rng));
      if (why != last_logged) {
        RF_WARN("sync: %s; retrying (backoff up to 5 s)", why.c_str());
        last_logged = why;
      }
      if (!sleep_ms(wait)) break;
      backoff = std::min<int64_t>(backoff * 2, 5000);
    }
    set_status(false, "");
  }
};

Result<std::unique_ptr<Client>> Client::start(control::Controller& controller,
                                              const config::Config& file,
                                              std::function<void()> on_applied) {
  if (!file.sync || file.sync->edge.empty()) return Error::msg("sync: no sync.edge");
  auto impl = std::make_unique<Impl>(controller, file);
  impl->on_applied = std::move(on_applied);
  if (!parse_endpoint(file.sync->edge, impl->edge_addr, impl->edge_len))
    return Error::msg("sync.edge: bad address " + file.sync->edge);
  impl->wake = UniqueFd(::eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC));
  if (!impl->wake) return Error::from_errno("sync: eventfd");
  impl->hash = controller.synced_hash();
  Impl* p = impl.get();
  impl->thread = std::thread([p] { p->run(); });
  return std::unique_ptr<Client>(new Client(std::move(impl)));
}

Client::Client(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

Client::~Client() {
  impl_->stop = true;
  uint64_t one = 1;
  [[maybe_unused]] auto r = ::write(impl_->wake.get(), &one, sizeof one);
  if (impl_->thread.joinable()) impl_->thread.join();
}

std::string Client::status_json() const {
  std::lock_guard lock(impl_->mu);
  return json::serialize(json::object{{"edge", impl_->file.sync->edge},
                                      {"connected", impl_->connected},
                                      {"since", impl_->since},
                                      {"hash", impl_->hash},
                                      {"last_error", impl_->last_error},
                                      {"applied_at", impl_->applied_at}});
}

}  // namespace rf::sync
