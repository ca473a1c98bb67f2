#include "worker.hpp"

#include <netinet/tcp.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <time.h>

#include <cerrno>
#include <cstring>

#include "ringfwd/base/log.hpp"
#include "ringfwd/base/net.hpp"
#include "ringfwd/proto/client_hello.hpp"
#include "ringfwd/tls/terminator.hpp"

namespace rf::dataplane {

namespace {
// Once per completion batch (vDSO, no syscall); precise enough for overlap deadlines.
uint64_t monotonic_ms() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000 + uint64_t(ts.tv_nsec) / 1000000;
}
void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}
void set_linger_zero(int fd) {
  linger l{1, 0};
  setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
}
constexpr uint32_t kTickMs = 250;
constexpr uint32_t kKernelTickMs = 20;  // sockmap: how often slow receivers are looked for
}  // namespace

Worker::Worker(unsigned id, const EngineOptions& opts, EngineShared& shared,
               std::shared_ptr<const routing::RouteTable> table)
    : id_(id), opts_(opts), shared_(shared), pipes_(opts.pipe_size, opts.pipe_pool_max) {
  tables_.push_back(TableRef{std::move(table), 0});
}

Worker::~Worker() {
  join();
  for (Session& s : sessions_) {
    s.tls.reset();
    give_stage(s.stage);
    give_stage(s.tls_buf[1]);
  }
  for (uint8_t* p : stages_) delete[] p;
}

std::future<Result<void>> Worker::start() {
  std::promise<Result<void>> p;
  auto f = p.get_future();
  thread_ = std::thread([this, p = std::move(p)]() mutable { run(std::move(p)); });
  return f;
}

void Worker::join() {
  if (thread_.joinable()) thread_.join();
}

void Worker::wake() {
  uint64_t one = 1;
  ssize_t w = ::write(wake_fd_.get(), &one, sizeof one);
  (void)w;
}

void Worker::post(Change&& c) {
  {
    std::lock_guard<std::mutex> lock(mailbox_mu_);
    mailbox_.push_back(std::move(c));
  }
  wake();
}

void Worker::stop_accepting() {
  stop_accepting_.store(true);
  wake();
}

void Worker::stop() {
  stop_.store(true);
  wake();
}

Result<void> Worker::init() {
  // Signals belong to the main thread.
  sigset_t all;
  sigfillset(&all);
  pthread_sigmask(SIG_BLOCK, &all, nullptr);

  wake_fd_.reset(eventfd(0, EFD_CLOEXEC));
  if (!wake_fd_) return Error::from_errno("eventfd");
  auto ring = uring::Ring::create(4096, 65536);
  if (!ring) return ring.error();
  ring_ = std::move(ring.value());
  if (opts_.mode != Mode::Splice) {
    auto b = uring::BufferRing::create(*ring_, 0, opts_.buffer_count, opts_.buffer_size);
    if (!b) return b.error();
    bufs_ = std::move(b.value());
  }
  udp_ = std::make_unique<UdpPath>(id_, *ring_, shared_, opts_);
  udp_->set_waker(&wol_);
  hello_scratch_ = std::make_unique<uint8_t[]>(proto::kMaxClientHelloBytes);
  if (id_ == 0) RF_INFO("io_uring: %s", ring_->features().describe().c_str());
  return {};
}

uint64_t Worker::ud(uint8_t op, uint32_t idx) const {
  return uring::UserData{op, idx, idx < sessions_.size() ? sessions_[idx].gen : 0}.pack();
}

void Worker::run(std::promise<Result<void>> started) {
  auto r = init();
  bool ok = r.ok();
  started.set_value(std::move(r));
  if (!ok) return;

  now_ = monotonic_ms();
  ring_->read(wake_fd_.get(), &wake_buf_, sizeof wake_buf_, uring::UserData{kWake, 0, 0}.pack());
  ring_->timeout_ms(kTickMs, uring::UserData{kTick, 0, 0}.pack());
  if (opts_.mode == Mode::Sockmap)
    ring_->timeout_ms(kKernelTickMs, uring::UserData{kKernelTick, 0, 0}.pack());
  apply_changes();  // the first table may have been posted before the loop started

  const uint64_t stop_deadline_slack_ms = 3000;
  uint64_t stop_deadline = 0;
  for (;;) {
    int n = ring_->run_once([this](const uring::Completion& c) { dispatch(c); });
    if (n < 0) {
      RF_ERROR("worker %u: io_uring wait: %s", id_, std::strerror(-n));
      break;
    }
    now_ = monotonic_ms();
    if (stopping_) {
      if (stop_deadline == 0) stop_deadline = now_ + stop_deadline_slack_ms;
      // Every session closed and every completion for it reaped: done.
      if ((open_sessions_ == 0 && udp_->open() == 0) || now_ >= stop_deadline) break;
    }
  }
}

void Worker::dispatch(const uring::Completion& c) {
  const uring::UserData u = uring::UserData::unpack(c.user_data);
  const uint8_t op = u.op & ~kDirBit;
  const int d = (u.op & kDirBit) ? 1 : 0;
  switch (op) {
    case kAccept:
      on_accept(u.index, c);
      return;
    case kWake:
      apply_changes();
      if (stop_accepting_.load() && !accepting_closed_) {
        close_listeners();
        udp_->stop_accepting();
      }
      if (stop_.load() && !stopping_) {
        close_listeners();
        udp_->stop();
        stopping_ = true;
        for (uint32_t i = 0; i < sessions_.size(); ++i)
          if (sessions_[i].in_use && !sessions_[i].closing)
            close_session(sessions_[i], i, false, "shutting down");
      }
      ring_->read(wake_fd_.get(), &wake_buf_, sizeof wake_buf_, c.user_data);
      return;
    case kTick:
      on_tick();
      ring_->timeout_ms(kTickMs, c.user_data);
      return;
    case kOverlapEnd:
      now_ = monotonic_ms();
      close_due_listeners();
      return;
    case kIgnore:
      return;
    case kKernelTick:
      now_ = monotonic_ms();
      on_kernel_tick();
      if (!stopping_) ring_->timeout_ms(kKernelTickMs, c.user_data);
      return;
    default:
      if (op >= kUdpOpFirst && op <= kUdpOpLast) return udp_->dispatch(c, now_);
      break;
  }
  if (u.index >= sessions_.size()) return;
  Session& s = sessions_[u.index];
  if (!s.in_use || s.gen != u.gen) {
    RF_ERROR("worker %u: completion for a stale session slot (op %u)", id_, unsigned(op));
    return;
  }
  s.inflight--;
  switch (op) {
    case kConnect:
      on_connect(s, u.index, c.res);
      break;
    case kConnectTimeout:
      maybe_free(s, u.index);
      break;
    case kPollIn:
      on_poll(s, u.index, d, false, c.res);
      break;
    case kPollOut:
      on_poll(s, u.index, d, true, c.res);
      break;
    case kRecv:
      on_recv(s, u.index, d, c);
      break;
    case kSend:
      on_send(s, u.index, d, c.res);
      break;
    case kPreludeRecv:
      on_prelude_recv(s, u.index, c.res);
      break;
    case kDrain:
      on_drain(s, u.index, d);
      break;
    case kWolRetry:
      if (s.closing) {
        maybe_free(s, u.index);
      } else {
        s.fd[1].reset();
        connect_target(s, u.index);
      }
      break;
    default:
      break;
  }
}

// ---------------------------------------------------------------- listeners

void Worker::arm_accept(uint32_t li) {
  Listener& l = listeners_[li];
  if (l.armed || l.closing || !l.fd) return;
  ring_->accept_multishot(l.fd.get(), uring::UserData{kAccept, li, 0}.pack());
  l.armed = true;
}

void Worker::close_listeners() {
  accepting_closed_ = true;
  for (uint32_t i = 0; i < listeners_.size(); ++i) close_listener(i);
}

void Worker::close_listener(uint32_t li) {
  Listener& l = listeners_[li];
  if (l.closing || !l.fd) return;
  l.closing = true;
  auto it = listener_by_key_.find(l.key);
  if (it != listener_by_key_.end() && it->second == li) listener_by_key_.erase(it);
  // shutdown() stops the socket listening now (the kernel refuses new SYNs) even while the
  // ring still holds a reference to it; the cancel releases that reference.
  ::shutdown(l.fd.get(), SHUT_RDWR);
  if (l.armed)
    ring_->cancel(uring::UserData{kAccept, li, 0}.pack(), uring::UserData{kIgnore, 0, 0}.pack());
  else
    listener_closed(li);
}

void Worker::listener_closed(uint32_t li) {
  Listener& l = listeners_[li];
  l.fd.reset();
  l.tcp = nullptr;
  unref_table(l.table_slot);
  free_listeners_.push_back(li);
}

uint32_t Worker::hold_table(std::shared_ptr<const routing::RouteTable> t) {
  uint32_t slot = 0;
  while (slot < tables_.size() && tables_[slot].table) ++slot;
  if (slot == tables_.size()) tables_.emplace_back();
  tables_[slot] = TableRef{std::move(t), 0};
  return slot;
}

void Worker::unref_table(uint32_t slot) {
  TableRef& t = tables_[slot];
  if (--t.refs == 0 && slot != current_) t.table.reset();
}

void Worker::apply_changes() {
  std::vector<Change> changes;
  {
    std::lock_guard<std::mutex> lock(mailbox_mu_);
    changes.swap(mailbox_);
  }
  for (Change& c : changes) apply(c);
}

void Worker::apply(Change& c) {
  const uint32_t old = current_;
  current_ = hold_table(std::move(c.table));
  if (tables_[old].refs == 0 && old != current_) tables_[old].table.reset();
  const routing::RouteTable& table = *tables_[current_].table;

  for (auto& [key, port] : c.remap) {
    auto it = listener_by_key_.find(key);
    if (it == listener_by_key_.end()) continue;
    Listener& l = listeners_[it->second];
    ref_table(current_);
    unref_table(l.table_slot);
    l.table_slot = current_;
    l.tcp = port;  // new connections take the new target at once, on the same socket
  }
  for (auto& [key, route] : c.remap_udp) udp_->remap(key, route, tables_[current_].table);
  for (const std::string& key : c.close_now) {
    auto it = listener_by_key_.find(key);
    if (it != listener_by_key_.end())
      close_listener(it->second);
    else
      udp_->close_now(key);
  }
  // now_ may be as old as the worker's last sleep: take the clock afresh for deadlines.
  const uint64_t now = monotonic_ms();
  bool overlap = false;
  for (const std::string& key : c.close_later) {
    auto it = listener_by_key_.find(key);
    if (it == listener_by_key_.end()) {
      udp_->close_at(key, now + c.overlap_ms);
      continue;
    }
    pending_closes_.push_back({it->second, now + c.overlap_ms});
    listener_by_key_.erase(it);  // the key is free for a new listener in a later change
    overlap = true;
  }
  // A timer of its own, so that old ports close when overlap_ms is over, not at the next tick.
  if (overlap) ring_->timeout_ms(c.overlap_ms + 1, uring::UserData{kOverlapEnd, 0, 0}.pack());
  for (Listener& nl : c.add) {
    if (nl.udp) {
      if (accepting_closed_) continue;
      udp_->add_listener(std::move(nl.fd), nl.udp, nl.port, nl.key, tables_[current_].table);
      continue;
    }
    uint32_t li;
    if (!free_listeners_.empty()) {
      li = free_listeners_.back();
      free_listeners_.pop_back();
    } else {
      li = uint32_t(listeners_.size());
      listeners_.emplace_back();
    }
    listeners_[li] = std::move(nl);
    listeners_[li].table_slot = current_;
    ref_table(current_);
    listener_by_key_[listeners_[li].key] = li;
    if (accepting_closed_)
      close_listener(li);
    else
      arm_accept(li);
  }
  // A route that comes back (same id) is no longer draining.
  std::erase_if(draining_, [&](const Draining& d) { return table.find(d.route_id) != nullptr; });
  for (auto& [id, drain_s] : c.drain) {
    draining_.push_back({id, now + uint64_t(drain_s) * 1000});
    udp_->drain(id, now + uint64_t(drain_s) * 1000);
  }
  if (c.applied) c.applied->done();
}

void Worker::on_accept(uint32_t li, const uring::Completion& c) {
  if (li >= listeners_.size()) return;
  Listener& l = listeners_[li];
  if (!c.more()) l.armed = false;
  if (l.closing) {
    if (c.res >= 0) ::close(c.res);
    if (!l.armed && l.fd) listener_closed(li);
    return;
  }
  if (c.res < 0) {
    if (c.res == -EMFILE || c.res == -ENFILE || c.res == -ENOMEM || c.res == -ENOBUFS) {
      // Out of fds or memory: stop taking new connections for a tick, keep the others going.
      if (!accept_stalled_)
        RF_WARN("port %s: accept: %s; new connections wait until resources free up",
                l.key.c_str(), std::strerror(-c.res));
      accept_stalled_ = true;
    } else if (c.res != -ECANCELED) {
      RF_WARN("port %s: accept: %s", l.key.c_str(), std::strerror(-c.res));
    }
    return;  // on_tick re-arms
  }
  if (!l.armed) arm_accept(li);

  UniqueFd client(c.res);
  const uint64_t active = shared_.active.fetch_add(1, std::memory_order_relaxed);
  if (active >= shared_.max_connections.load(std::memory_order_relaxed)) {
    shared_.active.fetch_sub(1, std::memory_order_relaxed);
    const routing::ResolvedRoute* any = l.tcp->any();
    any->counters->conns_refused.fetch_add(1, std::memory_order_relaxed);
    if (warn_limit_.allow(unsigned(now_ / 1000)))
      RF_INFO("route=%s: refused a connection: limits.max_connections reached",
              any->route.id.c_str());
    return;  // closing `client` tells the client at once
  }

  const uint32_t idx = alloc_session();
  Session& s = sessions_[idx];
  s.tport = l.tcp;
  s.table_slot = l.table_slot;
  ref_table(s.table_slot);
  s.listen_port = l.port;
  s.last_active = now_;
  s.fd[0] = std::move(client);  // TCP_NODELAY is inherited from the listener
  open_sessions_++;

  if (s.tport->needs_prelude()) return start_prelude(s, idx);
  if (!admit(s, idx, s.tport->plain)) return;
  connect_target(s, idx);
}

// The route is known: its limits and allow list decide whether the connection goes on.
bool Worker::admit(Session& s, uint32_t idx, const routing::ResolvedRoute* route) {
  routing::RouteCounters& ctr = *route->counters;
  const uint64_t route_active = ctr.conns_active.fetch_add(1, std::memory_order_relaxed);
  s.route = route;  // from here on close_session() gives the route's slot back
  if (route->gateway_offline()) {
    // Refused at once (a reset), not left waiting for a connect that cannot succeed.
    ctr.conns_refused.fetch_add(1, std::memory_order_relaxed);
    char cb[64];
    if (warn_limit_.allow(unsigned(now_ / 1000)))
      RF_INFO("route=%s client=%s: refused: gateway %s is offline", route->route.id.c_str(),
              client_str(s, cb, sizeof cb), route->link->id().c_str());
    close_session(s, idx, true, nullptr);
    return false;
  }
  if (route->max_connections && route_active >= route->max_connections) {
    ctr.conns_refused.fetch_add(1, std::memory_order_relaxed);
    if (warn_limit_.allow(unsigned(now_ / 1000)))
      RF_INFO("route=%s: refused a connection: route max_connections reached",
              route->route.id.c_str());
    close_session(s, idx, false, nullptr);
    return false;
  }
  if (!route->route.allow.empty() && (!ensure_client(s) || !route->allows(s.client))) {
    ctr.conns_refused.fetch_add(1, std::memory_order_relaxed);
    char cb[64];
    if (warn_limit_.allow(unsigned(now_ / 1000)))
      RF_INFO("route=%s client=%s: refused: not in the allow list", route->route.id.c_str(),
              client_str(s, cb, sizeof cb));
    close_session(s, idx, false, nullptr);
    return false;
  }
  ctr.conns_total.fetch_add(1, std::memory_order_relaxed);
  return true;
}

void Worker::connect_target(Session& s, uint32_t idx) {
  const routing::ResolvedRoute* route = s.route;
  s.phase = Phase::Connecting;
  route->target_for(s.listen_port, s.target, s.target_len);
  s.fd[1].reset(::socket(s.target.ss_family, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!s.fd[1]) {
    char cb[64];
    if (warn_limit_.allow(unsigned(now_ / 1000)))
      RF_WARN("route=%s client=%s: socket: %s", route->route.id.c_str(),
              client_str(s, cb, sizeof cb), std::strerror(errno));
    route->counters->conns_failed.fetch_add(1, std::memory_order_relaxed);
    close_session(s, idx, false, nullptr);
    return;
  }
  set_nodelay(s.fd[1].get());
  // While a target wakes up, an attempt that hangs (no ARP answer yet) ends soon, so that the
  // next one starts on time.
  uint32_t timeout = route->connect_timeout_ms;
  if (s.wol_until && (timeout == 0 || timeout > 1000)) timeout = 1000;
  s.inflight += timeout ? 2 : 1;
  ring_->connect(s.fd[1].get(), reinterpret_cast<const sockaddr*>(&s.target), s.target_len,
                 ud(kConnect, idx), timeout, ud(kConnectTimeout, idx));
}

// ---------------------------------------------------------------- sessions

uint32_t Worker::alloc_session() {
  uint32_t idx;
  if (!free_.empty()) {
    idx = free_.back();
    free_.pop_back();
  } else {
    idx = uint32_t(sessions_.size());
    sessions_.emplace_back();
  }
  Session& s = sessions_[idx];
  const uint32_t gen = s.gen;
  s = Session{};
  s.gen = (gen + 1) & 0xffffff;
  s.in_use = true;
  return idx;
}

const char* Worker::client_str(const Session& s, char* buf, size_t len) const {
  if (s.client_known) return net::format(s.client, buf, len);
  sockaddr_storage a{};
  socklen_t al = sizeof a;
  if (!s.fd[0] || getpeername(s.fd[0].get(), reinterpret_cast<sockaddr*>(&a), &al) < 0) {
    std::snprintf(buf, len, "?");
    return buf;
  }
  return net::format(a, buf, len);
}

void Worker::on_connect(Session& s, uint32_t idx, int res) {
  if (s.closing) return maybe_free(s, idx);
  if (res < 0 && try_wake(s, idx, res)) return;
  if (res < 0) {
    char cb[64], tb[64];
    routing::RouteCounters& ctr = *s.route->counters;
    ctr.conns_failed.fetch_add(1, std::memory_order_relaxed);
    if (warn_limit_.allow(unsigned(now_ / 1000))) {
      if (res == -ECANCELED)
        RF_WARN("route=%s client=%s: target %s did not answer within %u ms",
                s.route->route.id.c_str(), client_str(s, cb, sizeof cb),
                net::format(s.target, tb, sizeof tb), s.route->connect_timeout_ms);
      else
        RF_WARN("route=%s client=%s: connect to %s: %s", s.route->route.id.c_str(),
                client_str(s, cb, sizeof cb), net::format(s.target, tb, sizeof tb),
                std::strerror(-res));
    }
    return close_session(s, idx, false, nullptr);
  }
  s.connected = true;
  s.last_active = now_;
  after_connect(s, idx);
}

bool Worker::try_wake(Session& s, uint32_t idx, int res) {
  const routing::ResolvedRoute& r = *s.route;
  if (!r.wol_here) return false;
  // Refused (booting, service not up yet), unreachable (no ARP answer), or no answer at all.
  if (res != -ECONNREFUSED && res != -EHOSTUNREACH && res != -ENETUNREACH &&
      res != -ETIMEDOUT && res != -ECANCELED)
    return false;
  char cb[64], tb[64];
  if (s.wol_until == 0) {
    s.wol_until = now_ + r.wol_wait_ms;
    RF_INFO("route=%s client=%s: target %s %s; Wake-on-LAN for %s, the client waits up to %u s",
            r.route.id.c_str(), client_str(s, cb, sizeof cb), net::format(s.target, tb, sizeof tb),
            res == -ECONNREFUSED ? "refused" : res == -ECANCELED ? "did not answer" : "is unreachable",
            r.route.wol->mac.c_str(), r.wol_wait_ms / 1000);
  } else if (now_ >= s.wol_until) {
    RF_WARN("route=%s client=%s: target %s did not wake within wol.wait_s", r.route.id.c_str(),
            client_str(s, cb, sizeof cb), net::format(s.target, tb, sizeof tb));
    return false;
  }
  if (wol_.wake(r, now_)) r.counters->wol_packets.fetch_add(1, std::memory_order_relaxed);
  s.fd[1].reset();
  s.inflight++;
  ring_->timeout_ms(500, ud(kWolRetry, idx));
  return true;
}

void Worker::start_flows(Session& s, uint32_t idx) {
  // Sockmap: everything userspace had to write (PROXY header, bytes read while choosing the
  // route) is in the target's send queue by now, so the kernel may go on from here.
  if (opts_.mode == Mode::Sockmap && start_kernel(s, idx)) return;
  if (opts_.mode != Mode::Splice) {
    post_recv(s, idx, 0);
    post_recv(s, idx, 1);
    return;
  }
  // The client may have spoken already; a target that was just connected has not.
  pump(s, idx, 0);
  if (!s.closing) arm_poll_in(s, idx, 1);
}

// FIN from a direction's source has been forwarded: half-close the destination.
void Worker::finish_flow(Session& s, uint32_t idx, int d) {
  Flow& f = s.flow[d];
  if (f.done) return;
  f.done = true;
  pipes_.release(std::move(f.pipe));
  ::shutdown(s.fd[d == 0 ? 1 : 0].get(), SHUT_WR);
  if (s.flow[0].done && s.flow[1].done) return close_session(s, idx, false, nullptr);
  if (s.cookie[0] && !f.poll_in) {
    // Sockmap: the other direction may be redirected by the kernel into this direction's
    // source; nobody would notice that socket's RST without a poll on it (errors only).
    f.poll_in = true;
    s.inflight++;
    ring_->poll(s.fd[d].get(), 0, ud(kPollIn | (d ? kDirBit : 0), idx));
  }
}

void Worker::close_session(Session& s, uint32_t idx, bool reset, const char* why) {
  if (s.closing) return;
  s.closing = true;
  char cb[64];
  RF_DEBUG("route=%s client=%s: closed: %s", s.route ? s.route->route.id.c_str() : "-",
           client_str(s, cb, sizeof cb),
           why ? why : (s.flow[0].done && s.flow[1].done ? "both sides finished" : "ended"));
  if (reset) {
    // An RST on one side becomes an RST on the other.
    for (auto& fd : s.fd)
      if (fd) set_linger_zero(fd.get());
  }
  for (int d = 0; d < 2; ++d) {
    Flow& f = s.flow[d];
    f.pipe = Pipe{};  // may hold bytes for a peer that is gone: drop, never pool it
    if (f.pending_bid >= 0) {
      recycle(f.pending_bid);
      f.pending_bid = -1;
    }
  }
  if (s.inflight > 0) {
    for (auto& fd : s.fd)
      if (fd) ring_->cancel_fd(fd.get(), uring::UserData{kIgnore, 0, 0}.pack());
  }
  unlink_kernel(s);
  shared_.active.fetch_sub(1, std::memory_order_relaxed);
  if (s.route) s.route->counters->conns_active.fetch_sub(1, std::memory_order_relaxed);
  maybe_free(s, idx);
}

void Worker::maybe_free(Session& s, uint32_t idx) {
  if (!s.closing || s.inflight > 0) return;
  // Buffers still owned by an unfinished send come back with the send's completion, which
  // has arrived by now (inflight == 0).
  s.tls.reset();  // before the sockets: it may still name fd[0]
  s.fd[0].reset();
  s.fd[1].reset();
  give_stage(s.stage);
  give_stage(s.tls_buf[1]);
  s.tls_buf[0] = nullptr;  // was the stage
  s.in_use = false;
  s.route = nullptr;
  unref_table(s.table_slot);
  open_sessions_--;
  free_.push_back(idx);
}

// Dual-bind overlap: old ports of moved routes stop accepting once overlap_ms is over.
void Worker::close_due_listeners() {
  std::erase_if(pending_closes_, [&](const PendingClose& p) {
    if (now_ < p.at_ms) return false;
    close_listener(p.li);
    return true;
  });
}

void Worker::on_tick() {
  if (accept_stalled_ && !accepting_closed_) {
    accept_stalled_ = false;
    for (uint32_t i = 0; i < listeners_.size(); ++i) arm_accept(i);
  }
  close_due_listeners();
  udp_->tick(now_);
  // Removed routes: their connections drain until drain_timeout_s, then close.
  const Draining* expired = nullptr;
  for (const Draining& d : draining_)
    if (now_ >= d.until_ms) expired = &d;
  // Idle timeout: a coarse scan; activity only stamps last_active on the hot path.
  for (uint32_t i = 0; i < sessions_.size(); ++i) {
    Session& s = sessions_[i];
    if (!s.in_use || s.closing) continue;
    if (s.phase == Phase::Prelude || s.phase == Phase::Handshake) {
      // A client that connects and says nothing holds a slot only until its deadline.
      if (now_ >= s.deadline)
        reject(s, i, s.phase == Phase::Prelude ? "no complete PROXY header/ClientHello"
                                               : "TLS handshake not finished",
               "within tls.hello_timeout_ms");
      continue;
    }
    if (!s.route) continue;
    if (expired) {
      bool gone = false;
      for (const Draining& d : draining_)
        if (now_ >= d.until_ms && s.route->route.id == d.route_id) gone = true;
      if (gone) {
        char cb[64];
        RF_INFO("route=%s client=%s: route removed and drain_timeout_s over, closing",
                s.route->route.id.c_str(), client_str(s, cb, sizeof cb));
        close_session(s, i, false, nullptr);
        continue;
      }
    }
    if (!s.connected) continue;
    const uint32_t limit = s.route->idle_timeout_s;
    if (limit && now_ - s.last_active >= uint64_t(limit) * 1000) kernel_refresh_activity(s);
    if (limit && now_ - s.last_active >= uint64_t(limit) * 1000) {
      char cb[64];
      RF_INFO("route=%s client=%s: idle for %u s, closing", s.route->route.id.c_str(),
              client_str(s, cb, sizeof cb), limit);
      close_session(s, i, false, nullptr);
    }
  }
  if (expired) std::erase_if(draining_, [&](const Draining& d) { return now_ >= d.until_ms; });
}

}  // namespace rf::dataplane
