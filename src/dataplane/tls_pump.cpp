// TLS terminate: the handshake with the client (wolfSSL over the non-blocking socket, driven
// by readiness polls on the ring) and the pump that decrypts client bytes to the target and
// encrypts the target's answers. Plain bytes go to the target through the same prefix path as
// every route (a PROXY header first when asked).
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "ringfwd/base/log.hpp"
#include "ringfwd/tls/terminator.hpp"
#include "worker.hpp"

namespace rf::dataplane {

namespace {
constexpr uint32_t kTlsChunk = 16384;  // one TLS record of plaintext
}  // namespace

void Worker::start_tls(Session& s, uint32_t idx) {
  auto conn = tls::Conn::create(s.route->tls_ctx, s.fd[0].get(),
                                {s.stage + s.out_off, s.stage_len - s.out_off});
  if (!conn) {
    char cb[64];
    RF_WARN("route=%s client=%s: TLS: %s", s.route->route.id.c_str(),
            client_str(s, cb, sizeof cb), conn.error().str().c_str());
    return close_session(s, idx, false, nullptr);
  }
  s.tls = std::move(conn.value());
  s.phase = Phase::Handshake;
  s.deadline = now_ + s.tport->hello_timeout_ms;
  continue_handshake(s, idx);
}

void Worker::continue_handshake(Session& s, uint32_t idx) {
  switch (s.tls->handshake()) {
    case tls::Conn::Io::Ok: {
      char cb[64];
      RF_DEBUG("route=%s client=%s: TLS %.*s %.*s alpn=%.*s", s.route->route.id.c_str(),
               client_str(s, cb, sizeof cb), int(s.tls->version().size()),
               s.tls->version().data(), int(s.tls->cipher().size()), s.tls->cipher().data(),
               int(s.tls->alpn().size()), s.tls->alpn().data());
      return connect_target(s, idx);
    }
    case tls::Conn::Io::WantRead:
      if (!s.flow[0].poll_in) {
        s.flow[0].poll_in = true;
        s.inflight++;
        ring_->poll(s.fd[0].get(), POLLIN | POLLRDHUP, ud(kPollIn, idx));
      }
      return;
    case tls::Conn::Io::WantWrite:
      if (!s.flow[1].poll_out) {
        s.flow[1].poll_out = true;
        s.inflight++;
        ring_->poll(s.fd[0].get(), POLLOUT, ud(kPollOut | kDirBit, idx));
      }
      return;
    case tls::Conn::Io::Closed:
      return reject(s, idx, "TLS handshake failed", "client closed");
    case tls::Conn::Io::Error:
      return reject(s, idx, "TLS handshake failed", s.tls->error().c_str());
  }
}

// Direction 0: decrypt from the client, send to the target. Direction 1: receive from the
// target, encrypt to the client. Each waits on one readiness poll at a time; any wake-up
// re-runs the direction, which finds out from its state what to do.
void Worker::pump_tls(Session& s, uint32_t idx, int d) {
  Flow& f = s.flow[d];
  if (f.done || s.closing) return;
  routing::RouteCounters& ctr = *s.route->counters;
  auto wait = [&](int fd, uint32_t mask, bool& flag, uint8_t op) {
    if (flag) return;
    flag = true;
    s.inflight++;
    ring_->poll(fd, mask, ud(uint8_t(op | (d ? kDirBit : 0)), idx));
  };
  if (d == 0) {
    if (!s.tls_buf[0]) s.tls_buf[0] = s.stage + kHeadroom;  // the stage, now free
    uint8_t* buf = s.tls_buf[0];
    for (;;) {
      if (s.tls_off[0] < s.tls_len[0]) {
        ssize_t n = ::send(s.fd[1].get(), buf + s.tls_off[0], s.tls_len[0] - s.tls_off[0],
                           MSG_NOSIGNAL | MSG_DONTWAIT);
        if (n > 0) {
          s.tls_off[0] += uint32_t(n);
          ctr.bytes_up.fetch_add(uint64_t(n), std::memory_order_relaxed);
          s.last_active = now_;
          continue;
        }
        if (n < 0 && errno == EINTR) continue;
        if (n < 0 && errno == EAGAIN) return wait(s.fd[1].get(), POLLOUT, f.poll_out, kPollOut);
        return close_session(s, idx, true, std::strerror(errno));
      }
      s.tls_off[0] = s.tls_len[0] = 0;
      if (f.src_eof) {
        f.done = true;
        ::shutdown(s.fd[1].get(), SHUT_WR);
        if (s.flow[1].done) close_session(s, idx, false, nullptr);
        return;
      }
      size_t n = 0;
      switch (s.tls->read(buf, kTlsChunk, n)) {
        case tls::Conn::Io::Ok:
          s.tls_len[0] = uint32_t(n);
          continue;
        case tls::Conn::Io::WantRead:
          return wait(s.fd[0].get(), POLLIN | POLLRDHUP, f.poll_in, kPollIn);
        case tls::Conn::Io::WantWrite:
          return wait(s.fd[0].get(), POLLOUT, f.poll_in, kPollIn);
        case tls::Conn::Io::Closed:
          f.src_eof = true;
          continue;
        case tls::Conn::Io::Error: {
          char cb[64];
          if (warn_limit_.allow(unsigned(now_ / 1000)))
            RF_INFO("route=%s client=%s: TLS: %s", s.route->route.id.c_str(),
                    client_str(s, cb, sizeof cb), s.tls->error().c_str());
          return close_session(s, idx, true, "TLS error");
        }
      }
    }
  }
  if (!s.tls_buf[1]) {
    s.tls_buf[1] = take_stage();
    if (!s.tls_buf[1]) return close_session(s, idx, false, "out of memory");
  }
  uint8_t* buf = s.tls_buf[1];
  for (;;) {
    if (s.tls_off[1] < s.tls_len[1]) {
      size_t n = 0;
      switch (s.tls->write(buf + s.tls_off[1], s.tls_len[1] - s.tls_off[1], n)) {
        case tls::Conn::Io::Ok:
          s.tls_off[1] += uint32_t(n);
          ctr.bytes_down.fetch_add(uint64_t(n), std::memory_order_relaxed);
          s.last_active = now_;
          continue;
        case tls::Conn::Io::WantWrite:
          return wait(s.fd[0].get(), POLLOUT, f.poll_out, kPollOut);
        case tls::Conn::Io::WantRead:
          return wait(s.fd[0].get(), POLLIN, f.poll_out, kPollOut);
        case tls::Conn::Io::Closed:
        case tls::Conn::Io::Error:
          return close_session(s, idx, true, "TLS write failed");
      }
    }
    s.tls_off[1] = s.tls_len[1] = 0;
    if (f.src_eof) {
      // The target finished: close_notify, then FIN, while the client may still talk.
      f.done = true;
      s.tls->shutdown();
      ::shutdown(s.fd[0].get(), SHUT_WR);
      if (s.flow[0].done) close_session(s, idx, false, nullptr);
      return;
    }
    ssize_t n = ::recv(s.fd[1].get(), buf, kTlsChunk, MSG_DONTWAIT);
    if (n > 0) {
      s.tls_len[1] = uint32_t(n);
      continue;
    }
    if (n == 0) {
      f.src_eof = true;
      continue;
    }
    if (errno == EINTR) continue;
    if (errno == EAGAIN) return wait(s.fd[1].get(), POLLIN | POLLRDHUP, f.poll_in, kPollIn);
    return close_session(s, idx, is_reset(errno), std::strerror(errno));
  }
}

}  // namespace rf::dataplane
