// The two ways bytes move through a connection: splice (socket -> pipe -> socket, driven by
// readiness) and copy (recv into provided buffers, send, at most one send in flight a direction).
#include <fcntl.h>
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "ringfwd/base/log.hpp"
#include "worker.hpp"

namespace rf::dataplane {

// ---------------------------------------------------------------- splice

// Moves as much as possible from src to dst for direction d; arms a poll where it must wait.
// splice() runs synchronously here: IORING_OP_SPLICE would be punted to an io-wq thread.
void Worker::pump(Session& s, uint32_t idx, int d) {
  Flow& f = s.flow[d];
  const int src = s.fd[d].get();
  const int dst = s.fd[d ^ 1].get();
  routing::RouteCounters& ctr = *s.route->counters;
  auto& bytes = d == 0 ? ctr.bytes_up : ctr.bytes_down;
  bool moved = false;
  for (;;) {
    if (f.in_pipe > 0) {
      ssize_t n = ::splice(f.pipe.r.get(), nullptr, dst, nullptr, f.in_pipe,
                           SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
      if (n > 0) {
        f.in_pipe -= uint32_t(n);
        bytes.fetch_add(uint64_t(n), std::memory_order_relaxed);
        moved = true;
        continue;
      }
      if (n < 0 && errno == EAGAIN) {
        if (!f.poll_out) {
          f.poll_out = true;
          s.inflight++;
          ring_->poll(dst, POLLOUT, ud(kPollOut | (d ? kDirBit : 0), idx));
        }
        break;
      }
      if (n < 0 && errno == EINTR) continue;
      close_session(s, idx, true, n == 0 ? "write side closed" : std::strerror(errno));
      return;
    }
    // The pipe is empty.
    if (f.src_eof) {
      finish_flow(s, idx, d);
      return;
    }
    if (f.drained) {
      f.drained = false;
      pipes_.release(std::move(f.pipe));
      wait_source(s, idx, d);
      break;
    }
    if (!f.pipe) {
      f.pipe = pipes_.acquire();
      if (!f.pipe) {
        // Out of fds for a pipe: try again at the next readiness event rather than failing.
        if (warn_limit_.allow(unsigned(now_ / 1000)))
          RF_WARN("route=%s: no pipe available: %s", s.route->route.id.c_str(), std::strerror(errno));
        wait_source(s, idx, d);
        break;
      }
    }
    ssize_t n = ::splice(src, nullptr, f.pipe.w.get(), nullptr, pipes_.capacity(),
                         SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
    if (n > 0) {
      f.in_pipe = uint32_t(n);
      moved = true;
      // A short read almost always means the socket is drained: after writing, wait for
      // readiness instead of paying for a splice that returns EAGAIN. A poll armed on a
      // socket that is already readable completes at once, so nothing is missed.
      // Hybrid keeps splicing until EAGAIN instead: it leaves splice only when the burst
      // ends, and every return to copy costs a buffered round trip.
      if (opts_.mode == Mode::Splice && uint32_t(n) < pipes_.capacity() / 2) f.drained = true;
      continue;
    }
    if (n == 0) {
      f.src_eof = true;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) {
      // Nothing to read: give the (empty) pipe back so an idle connection holds none.
      pipes_.release(std::move(f.pipe));
      wait_source(s, idx, d);
      break;
    }
    close_session(s, idx, is_reset(errno), std::strerror(errno));
    return;
  }
  if (moved) s.last_active = now_;
}

void Worker::arm_poll_in(Session& s, uint32_t idx, int d) {
  Flow& f = s.flow[d];
  if (f.poll_in) return;
  f.poll_in = true;
  s.inflight++;
  ring_->poll(s.fd[d].get(), POLLIN | POLLRDHUP, ud(kPollIn | (d ? kDirBit : 0), idx));
}

void Worker::wait_source(Session& s, uint32_t idx, int d) {
  if (opts_.mode == Mode::Hybrid) {
    // The burst is over: back to buffered recv, which holds no pipe and no buffer while idle.
    s.flow[d].spliced = false;
    post_recv(s, idx, d);
  } else {
    arm_poll_in(s, idx, d);
  }
}

void Worker::on_poll(Session& s, uint32_t idx, int d, bool out, int res) {
  Flow& f = s.flow[d];
  (out ? f.poll_out : f.poll_in) = false;
  if (s.closing) return maybe_free(s, idx);
  if (res < 0 && res != -ECANCELED) {
    close_session(s, idx, true, std::strerror(-res));
    return;
  }
  if (s.phase == Phase::Prefix) return send_prefix(s, idx);
  if (s.phase == Phase::Handshake) return continue_handshake(s, idx);
  if (f.done) {
    // Sockmap: the errors-only poll armed when this direction finished. A hang-up here while
    // the other direction still writes to this socket means it is closed or reset.
    if (s.cookie[0] && !out && (res & (POLLERR | POLLHUP))) close_session(s, idx, true, "reset");
    return;
  }
  if (!out && f.kernel == Flow::Kernel::On) return on_kernel_event(s, idx, d, res);
  if (s.tls) return pump_tls(s, idx, d);
  // pump() decides from the flow's state what to do next, whichever side woke it.
  pump(s, idx, d);
}

// ---------------------------------------------------------------- copy

void Worker::post_recv(Session& s, uint32_t idx, int d) {
  Flow& f = s.flow[d];
  if (f.recv_inflight || f.src_eof || s.closing) return;
  f.recv_inflight = true;
  s.inflight++;
  ring_->recv_select(s.fd[d].get(), bufs_->group(), bufs_->size(), ud(kRecv | (d ? kDirBit : 0), idx));
}

void Worker::post_send(Session& s, uint32_t idx, int d, int bid, uint32_t len) {
  Flow& f = s.flow[d];
  f.send_bid = bid;
  f.send_off = 0;
  f.send_len = len;
  f.send_inflight = true;
  s.inflight++;
  ring_->send(s.fd[d ^ 1].get(), bufs_->data(bid), len, ud(kSend | (d ? kDirBit : 0), idx));
}

void Worker::recycle(int bid) {
  bufs_->recycle(bid);
  // A buffer is free again: resume one direction that found the ring empty.
  while (!starved_.empty()) {
    Starved st = starved_.back();
    starved_.pop_back();
    if (st.idx >= sessions_.size()) continue;
    Session& s = sessions_[st.idx];
    if (!s.in_use || s.gen != st.gen || s.closing) continue;
    post_recv(s, st.idx, st.d);
    break;
  }
}

void Worker::on_recv(Session& s, uint32_t idx, int d, const uring::Completion& c) {
  Flow& f = s.flow[d];
  f.recv_inflight = false;
  const int bid = c.buffer_id();
  if (s.closing) {
    if (bid >= 0) recycle(bid);
    return maybe_free(s, idx);
  }
  if (c.res > 0) {
    s.last_active = now_;
    auto& bytes = d == 0 ? s.route->counters->bytes_up : s.route->counters->bytes_down;
    bytes.fetch_add(uint64_t(c.res), std::memory_order_relaxed);
    // Hybrid: a recv that filled a whole buffer means a bulk stream; after this buffer is
    // sent the direction switches to splice instead of posting another recv.
    if (opts_.mode == Mode::Hybrid && uint32_t(c.res) == bufs_->size()) f.want_splice = true;
    if (!f.send_inflight) {
      post_send(s, idx, d, bid, uint32_t(c.res));
      if (!f.want_splice) post_recv(s, idx, d);
    } else {
      f.pending_bid = bid;  // one buffer waits; no new recv until the send completes
      f.pending_len = uint32_t(c.res);
    }
    return;
  }
  if (bid >= 0) recycle(bid);
  if (c.res == 0) {
    // Sockmap: a FIN read before the kernel has handed over every byte before it.
    if (f.k_linked && !kernel_eof(s, idx, d)) return;
    f.src_eof = true;
    if (!f.send_inflight && f.pending_bid < 0) finish_flow(s, idx, d);
    return;
  }
  if (c.res == -ENOBUFS) {
    starved_.push_back({idx, s.gen, d});
    return;
  }
  if (c.res == -EINTR || c.res == -EAGAIN) return post_recv(s, idx, d);
  close_session(s, idx, is_reset(-c.res), std::strerror(-c.res));
}

void Worker::on_send(Session& s, uint32_t idx, int d, int res) {
  Flow& f = s.flow[d];
  f.send_inflight = false;
  if (s.closing || res < 0) {
    if (f.send_bid >= 0) recycle(f.send_bid);
    f.send_bid = -1;
    if (s.closing) return maybe_free(s, idx);
    return close_session(s, idx, is_reset(-res), std::strerror(-res));
  }
  f.send_off += uint32_t(res);
  if (f.send_off < f.send_len) {
    // Short send: the rest of the same buffer goes next, still one send in flight.
    f.send_inflight = true;
    s.inflight++;
    ring_->send(s.fd[d ^ 1].get(), bufs_->data(f.send_bid) + f.send_off, f.send_len - f.send_off,
                ud(kSend | (d ? kDirBit : 0), idx));
    return;
  }
  recycle(f.send_bid);
  f.send_bid = -1;
  s.last_active = now_;
  if (f.pending_bid >= 0) {
    const int bid = f.pending_bid;
    f.pending_bid = -1;
    post_send(s, idx, d, bid, f.pending_len);
    if (!f.want_splice) post_recv(s, idx, d);
  } else if (f.src_eof) {
    finish_flow(s, idx, d);
  } else if (f.want_splice) {
    f.want_splice = false;
    f.spliced = true;
    pump(s, idx, d);
  }
}

}  // namespace rf::dataplane
