// The sockmap dataplane's userspace half: each direction of a connection is handed to the
// kernel's verdict (bpf/redirect.bpf.c), which redirects every byte until the socket closes.
// Userspace handles what the verdict cannot:
//  - the FIN: the verdict consumes it without passing it on. The poll on the source sees it;
//    once every byte before it was judged (the flow's count against TCP's bytes_received) and
//    sits in the destination's send queue (acked + SIOCOUTQ against the count), userspace reads
//    the EOF and half-closes the destination like the copy path does;
//  - errors: an RST on either socket resets both;
//  - idle time and byte counts: from the flow entry's counters;
//  - a destination that does not keep up: redirected bytes wait in its queue without limit of
//    their own, so a periodic check narrows the source's TCP window (TCP_WINDOW_CLAMP) while
//    more than inflight_limit is queued, opens it again below half, and resets a connection
//    whose queue passes 16 times the limit rather than let it grow without bound.
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <sys/socket.h>

#include <algorithm>
#include <cerrno>
#include <cstring>

#include "ringfwd/base/log.hpp"
#include "worker.hpp"

namespace rf::dataplane {

namespace {
constexpr uint8_t kDrainMaxMs = 32;
constexpr uint64_t kResetFactor = 16;      // backlog over limit * this: reset
constexpr uint32_t kChecksPerTick = 256;   // sessions looked at per kernel tick
}  // namespace

bool Worker::start_kernel(Session& s, uint32_t idx) {
  using bpf::Sockmap;
  const int fd0 = s.fd[0].get(), fd1 = s.fd[1].get();
  const uint64_t c0 = Sockmap::cookie(fd0), c1 = Sockmap::cookie(fd1);
  // Read before the link: afterwards the sockets' ioctls answer for the sockmap's queue.
  auto base0 = Sockmap::consumed(fd0), base1 = Sockmap::consumed(fd1);
  auto w0 = Sockmap::written(fd1), w1 = Sockmap::written(fd0);
  if (!c0 || !c1 || !base0 || !base1 || !w0 || !w1) return false;
  // The kernel's redirect queue retries one jiffy later (4 ms at HZ=250) whenever the
  // destination's send buffer is full, and the CPUs idle meanwhile: bigger send buffers make
  // that rarer (perf/lab, one stream: 3.4 Gbit/s with autotuned buffers, 7-8 with 16-32 MiB).
  // SO_SNDBUFFORCE passes net.core.wmem_max; sockmap runs with CAP_NET_ADMIN anyway.
  if (int v = int(opts_.sockmap->sndbuf()); v > 0) {
    for (int fd : {fd0, fd1})
      if (setsockopt(fd, SOL_SOCKET, SO_SNDBUFFORCE, &v, sizeof v) < 0)
        setsockopt(fd, SOL_SOCKET, SO_SNDBUF, &v, sizeof v);
  }
  auto linked = opts_.sockmap->link(fd0, c0, fd1, c1);
  if (!linked) {
    // EOPNOTSUPP: a socket is no longer ESTABLISHED (the target answered and closed at once);
    // the copy path handles that without the kernel.
    char cb[64];
    if (linked.error().code.value() == EOPNOTSUPP) {
      RF_DEBUG("route=%s client=%s: %s; copied in userspace", s.route->route.id.c_str(),
               client_str(s, cb, sizeof cb), linked.error().str().c_str());
    } else if (warn_limit_.allow(unsigned(now_ / 1000))) {
      RF_WARN("route=%s client=%s: %s; this connection is copied in userspace",
              s.route->route.id.c_str(), client_str(s, cb, sizeof cb), linked.error().str().c_str());
    }
    return false;
  }
  s.cookie[0] = c0;
  s.cookie[1] = c1;
  s.flow[0].k_base = *base0;
  s.flow[1].k_base = *base1;
  s.flow[0].k_w0 = *w0;
  s.flow[1].k_w0 = *w1;
  for (int d = 0; d < 2; ++d) {
    if (*linked & (1u << d)) {
      s.flow[d].k_linked = true;
      kernel_arm(s, idx, d);
    } else {
      post_recv(s, idx, d);  // the client closed meanwhile: userspace forwards its FIN
    }
  }
  return true;
}

void Worker::kernel_arm(Session& s, uint32_t idx, int d) {
  Flow& f = s.flow[d];
  f.kernel = Flow::Kernel::On;
  if (f.poll_in) return;
  f.poll_in = true;
  s.inflight++;
  ring_->poll(s.fd[d].get(), POLLRDHUP, ud(kPollIn | (d ? kDirBit : 0), idx));
}

void Worker::on_kernel_event(Session& s, uint32_t idx, int d, int res) {
  Flow& f = s.flow[d];
  if (res & POLLERR) {
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s.fd[d].get(), SOL_SOCKET, SO_ERROR, &err, &len);
    return close_session(s, idx, true, err ? std::strerror(err) : "socket error");
  }
  if (!(res & (POLLRDHUP | POLLHUP))) return kernel_arm(s, idx, d);  // nothing for us
  f.k_fin = true;
  kernel_wait(s, idx, d, Flow::Kernel::Draining);
}

void Worker::kernel_wait(Session& s, uint32_t idx, int d, Flow::Kernel state) {
  Flow& f = s.flow[d];
  f.kernel = state;
  f.drain_ms = 1;
  s.inflight++;
  ring_->timeout_ms(f.drain_ms, ud(kDrain | (d ? kDirBit : 0), idx));
}

// Bytes redirected for direction d that are not yet in its destination's send queue.
std::optional<uint64_t> Worker::kernel_backlog(Session& s, int d) {
  const Flow& f = s.flow[d];
  auto fl = opts_.sockmap->flow(s.cookie[d]);
  auto w = bpf::Sockmap::written(s.fd[d ^ 1].get());
  if (!fl || !w) return std::nullopt;
  if (fl->last_ns) s.last_active = std::max(s.last_active, fl->last_ns / 1000000);
  const uint64_t delivered = *w - f.k_w0;
  return delivered >= fl->redirected ? 0 : fl->redirected - delivered;
}

// After src's FIN: true once every byte before it was judged by the verdict (the flow's count
// against TCP's bytes_received, which counts the FIN as one) and sits in dst's send queue;
// nullopt when the kernel cannot tell (no flow entry).
std::optional<bool> Worker::kernel_done(Session& s, int d) {
  auto fl = opts_.sockmap->flow(s.cookie[d]);
  auto rcv = bpf::Sockmap::received(s.fd[d].get());
  if (!fl || !rcv) return std::nullopt;
  if (fl->redirected + 1 < *rcv - s.flow[d].k_base) return false;  // still being judged
  auto backlog = kernel_backlog(s, d);
  return backlog && *backlog == 0;
}

// The copy path read src's FIN: true if the half-close may follow; otherwise waits (Tail) and
// reads again.
bool Worker::kernel_eof(Session& s, uint32_t idx, int d) {
  auto done = kernel_done(s, d);
  if (!done || *done) {  // no flow entry: nothing more to learn from the kernel
    account_kernel(s);
    return true;
  }
  kernel_wait(s, idx, d, Flow::Kernel::Tail);
  return false;
}

void Worker::on_drain(Session& s, uint32_t idx, int d) {
  Flow& f = s.flow[d];
  if (s.closing) return maybe_free(s, idx);
  // While waiting here nobody polls these sockets: an error on either, or a destination that
  // is closed (this direction has not shut it, so closed means reset or aborted; its error may
  // already have been taken by the kernel's failed send) never drains: reset the connection.
  // The source may well be closed by now: after both FINs it is a TIME_WAIT stub.
  for (const UniqueFd& fd : s.fd) {
    int err = 0;
    socklen_t len = sizeof err;
    if (getsockopt(fd.get(), SOL_SOCKET, SO_ERROR, &err, &len) == 0 && err)
      return close_session(s, idx, true, std::strerror(err));
  }
  tcp_info ti{};
  socklen_t tlen = sizeof ti;
  if (getsockopt(s.fd[d ^ 1].get(), IPPROTO_TCP, TCP_INFO, &ti, &tlen) == 0 &&
      ti.tcpi_state == TCP_CLOSE)
    return close_session(s, idx, true, "connection reset");
  if (f.kernel == Flow::Kernel::Tail) {
    f.kernel = Flow::Kernel::Off;
    return post_recv(s, idx, d);
  }
  if (f.kernel != Flow::Kernel::Draining) return;
  // The FIN may wake us before the verdict judged the last buffers in front of it.
  auto done = kernel_done(s, d);
  if (!done) return close_session(s, idx, true, "sockmap flow entry lost");
  if (*done) {
    account_kernel(s);
    f.kernel = Flow::Kernel::Off;
    return post_recv(s, idx, d);  // reads the EOF, then half-closes dst
  }
  f.drain_ms = uint8_t(std::min<unsigned>(f.drain_ms * 2u, kDrainMaxMs));
  s.inflight++;
  ring_->timeout_ms(f.drain_ms, ud(kDrain | (d ? kDirBit : 0), idx));
}

// A slice of the linked sessions per tick: byte counts, and the slow-receiver check.
void Worker::on_kernel_tick() {
  const uint32_t n = uint32_t(sessions_.size());
  for (uint32_t k = 0, looked = 0; k < n && looked < kChecksPerTick; ++k) {
    account_cursor_ = (account_cursor_ + 1) % n;
    Session& s = sessions_[account_cursor_];
    if (!s.in_use || s.closing || !s.cookie[0]) continue;
    kernel_check(s, account_cursor_);
    ++looked;
  }
}

void Worker::kernel_check(Session& s, uint32_t idx) {
  account_kernel(s);
  const uint64_t limit = opts_.sockmap->inflight_limit();
  for (int d = 0; d < 2 && !s.closing; ++d) {
    Flow& f = s.flow[d];
    if (f.kernel != Flow::Kernel::On) continue;
    auto backlog = kernel_backlog(s, d);
    if (!backlog) continue;
    const int src = s.fd[d].get();
    char cb[64];
    if (*backlog > limit * kResetFactor) {
      RF_WARN("route=%s client=%s: the %s side does not read: %llu KiB queued in the kernel; "
              "connection reset", s.route->route.id.c_str(), client_str(s, cb, sizeof cb),
              d == 0 ? "target" : "client", (unsigned long long)(*backlog >> 10));
      return close_session(s, idx, true, "receiver does not read");
    }
    if (!f.k_throttled && *backlog > limit) {
      socklen_t len = sizeof f.k_clamp;
      if (getsockopt(src, IPPROTO_TCP, TCP_WINDOW_CLAMP, &f.k_clamp, &len) < 0) continue;
      int tiny = 1;  // the kernel raises it to its minimum (about 1 KiB)
      if (setsockopt(src, IPPROTO_TCP, TCP_WINDOW_CLAMP, &tiny, sizeof tiny) == 0) {
        f.k_throttled = true;
        RF_DEBUG("route=%s client=%s: %llu KiB queued for the %s: window narrowed",
                 s.route->route.id.c_str(), client_str(s, cb, sizeof cb),
                 (unsigned long long)(*backlog >> 10), d == 0 ? "target" : "client");
      }
    } else if (f.k_throttled && *backlog <= limit / 2) {
      setsockopt(src, IPPROTO_TCP, TCP_WINDOW_CLAMP, &f.k_clamp, sizeof f.k_clamp);
      f.k_throttled = false;
    }
  }
}

// Adds what the kernel redirected since the last look to the route's byte counters.
void Worker::account_kernel(Session& s) {
  if (!s.cookie[0] || !s.route) return;
  for (int d = 0; d < 2; ++d) {
    Flow& f = s.flow[d];
    auto fl = opts_.sockmap->flow(s.cookie[d]);
    if (!fl || fl->redirected == f.k_counted) continue;
    auto& bytes = d == 0 ? s.route->counters->bytes_up : s.route->counters->bytes_down;
    bytes.fetch_add(fl->redirected - f.k_counted, std::memory_order_relaxed);
    f.k_counted = fl->redirected;
  }
}

// The idle timeout needs to know when the kernel last moved a byte.
void Worker::kernel_refresh_activity(Session& s) {
  if (!s.cookie[0]) return;
  for (int d = 0; d < 2; ++d) {
    auto fl = opts_.sockmap->flow(s.cookie[d]);
    if (fl && fl->last_ns) s.last_active = std::max(s.last_active, fl->last_ns / 1000000);
  }
}

// At close: final byte counts, then the flow entries go (the sockets leave the sockhashes
// when they are closed).
void Worker::unlink_kernel(Session& s) {
  if (!s.cookie[0]) return;
  account_kernel(s);
  opts_.sockmap->forget(s.cookie[0]);
  opts_.sockmap->forget(s.cookie[1]);
  s.cookie[0] = s.cookie[1] = 0;
}

}  // namespace rf::dataplane
