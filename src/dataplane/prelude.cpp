// What happens between accept and the stream: a PROXY header from a load balancer in front,
// the ClientHello whose SNI picks the route on a TLS port, and the PROXY header ringfwd sends
// to the target. Bytes read here are never lost: they are the first bytes the target gets.
#include <poll.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "ringfwd/base/log.hpp"
#include "ringfwd/base/net.hpp"
#include "ringfwd/proto/client_hello.hpp"
#include "ringfwd/proto/proxy_header.hpp"
#include "worker.hpp"

namespace rf::dataplane {

uint8_t* Worker::take_stage() {
  if (!stages_.empty()) {
    uint8_t* p = stages_.back();
    stages_.pop_back();
    return p;
  }
  return new (std::nothrow) uint8_t[kStageBytes];
}

void Worker::give_stage(uint8_t*& p) {
  if (!p) return;
  if (stages_.size() < 1024)
    stages_.push_back(p);
  else
    delete[] p;
  p = nullptr;
}

bool Worker::ensure_client(Session& s) {
  if (s.client_known) return true;
  socklen_t len = sizeof s.client;
  if (getpeername(s.fd[0].get(), reinterpret_cast<sockaddr*>(&s.client), &len) < 0) return false;
  s.client_known = true;
  return true;
}

void Worker::start_prelude(Session& s, uint32_t idx) {
  s.phase = Phase::Prelude;
  s.stage = take_stage();
  if (!s.stage) return reject(s, idx, "out of memory", "no stage buffer");
  s.stage_len = s.out_off = kHeadroom;
  s.deadline = now_ + s.tport->hello_timeout_ms;
  post_prelude_recv(s, idx);
}

void Worker::post_prelude_recv(Session& s, uint32_t idx) {
  if (s.stage_len >= kStageBytes) {
    return reject(s, idx,
                  s.tport->plain || !s.tport->hop.empty() ? "PROXY header too long"
                                                          : "ClientHello too large",
                  "buffer full");
  }
  s.inflight++;
  ring_->recv(s.fd[0].get(), s.stage + s.stage_len, kStageBytes - s.stage_len,
              ud(kPreludeRecv, idx));
}

void Worker::reject(Session& s, uint32_t idx, const char* what, const char* detail) {
  shared_.rejected.fetch_add(1, std::memory_order_relaxed);
  char cb[64];
  if (warn_limit_.allow(unsigned(now_ / 1000)))
    RF_INFO("port=%s client=%s: closed: %s (%s)", s.tport->key.c_str(),
            client_str(s, cb, sizeof cb), what, detail);
  close_session(s, idx, false, nullptr);
}

void Worker::on_prelude_recv(Session& s, uint32_t idx, int res) {
  if (s.closing) return maybe_free(s, idx);
  if (res == -EINTR || res == -EAGAIN) return post_prelude_recv(s, idx);
  if (res <= 0) {
    // A client that leaves before saying enough: nothing to forward, nowhere to forward it.
    return reject(s, idx, "client closed before the route was known",
                  res == 0 ? "end of stream" : std::strerror(-res));
  }
  s.stage_len += uint32_t(res);
  s.last_active = now_;
  const routing::TcpPort& port = *s.tport;

  if (!port.hop.empty()) {
    // A sync gateway: the edge's hop header names the route and the real client.
    if (!s.proxy_read) {
      if (!s.client_known && !ensure_client(s)) return reject(s, idx, "hop", "no peer address");
      if (!port.hop_peer_ok(s.client))
        return reject(s, idx, "not the edge", "only the edge may connect to a hop route");
    }
    proto::ProxyHeader hdr;
    auto r = proto::parse_proxy_header({s.stage + s.out_off, s.stage_len - s.out_off}, hdr);
    if (r.status == proto::ProxyStatus::NeedMore) return post_prelude_recv(s, idx);
    if (r.status == proto::ProxyStatus::Malformed)
      return reject(s, idx, "bad hop header", r.why);
    std::span<const uint8_t> id;
    if (hdr.version != 2 || !hdr.find_tlv(proto::kTlvRouteId, id))
      return reject(s, idx, "bad hop header", "no route id (TLV 0xE0)");
    const routing::ResolvedRoute* route =
        port.hop_route({reinterpret_cast<const char*>(id.data()), id.size()});
    if (!route) {
      char name[80];
      std::snprintf(name, sizeof name, "route \"%.*s\" (the edge runs a set this gateway has not applied)",
                    int(std::min<size_t>(id.size(), 64)), reinterpret_cast<const char*>(id.data()));
      return reject(s, idx, "no hop route for", name);
    }
    if (!hdr.local) {
      s.client = hdr.src;
      s.local = hdr.dst;
      s.client_known = s.local_known = true;
    }
    s.out_off += uint32_t(r.consumed);
    s.proxy_read = true;
    if (!admit(s, idx, route)) return;
    return connect_target(s, idx);
  }

  if (port.accept_proxy && !s.proxy_read) {
    proto::ProxyHeader hdr;
    auto r = proto::parse_proxy_header({s.stage + s.out_off, s.stage_len - s.out_off}, hdr);
    if (r.status == proto::ProxyStatus::NeedMore) return post_prelude_recv(s, idx);
    if (r.status == proto::ProxyStatus::Malformed)
      return reject(s, idx, "bad PROXY header", r.why);
    if (!hdr.local) {
      // The load balancer's word is the client's address from here on: logs, allow lists,
      // and the PROXY header ringfwd itself sends.
      s.client = hdr.src;
      s.local = hdr.dst;
      s.client_known = s.local_known = true;
    }
    s.out_off += uint32_t(r.consumed);
    s.proxy_read = true;
  }

  if (port.plain) {
    if (!admit(s, idx, port.plain)) return;
    return connect_target(s, idx);
  }

  proto::ClientHello hello;
  auto h = proto::parse_client_hello({s.stage + s.out_off, s.stage_len - s.out_off},
                                     {hello_scratch_.get(), proto::kMaxClientHelloBytes}, hello);
  switch (h.status) {
    case proto::HelloStatus::NeedMore:
      return post_prelude_recv(s, idx);
    case proto::HelloStatus::Done:
      break;
    case proto::HelloStatus::NotTls:
      return reject(s, idx, "not TLS", h.why);
    case proto::HelloStatus::Malformed:
      return reject(s, idx, "malformed ClientHello", h.why);
    case proto::HelloStatus::TooLarge:
      return reject(s, idx, "ClientHello too large", h.why);
  }
  const std::string_view sni = hello.server_name();
  const routing::ResolvedRoute* route = port.by_sni(sni);
  if (!route) {
    char name[260];
    std::snprintf(name, sizeof name, "server name \"%.*s\"", int(sni.size()), sni.data());
    return reject(s, idx, sni.empty() ? "no server name and no default route" : "no route for",
                  name);
  }
  if (!admit(s, idx, route)) return;
  if (route->route.tls.mode == config::TlsMode::Terminate) return start_tls(s, idx);
  connect_target(s, idx);
}

// Connected to the target: what must precede the stream goes first.
void Worker::after_connect(Session& s, uint32_t idx) {
  s.phase = Phase::Prefix;
  const routing::ResolvedRoute& r = *s.route;
  if (s.stage) {
    // Passthrough or a plain route behind a PROXY reader: the bytes read so far (the
    // ClientHello, or payload that came with the PROXY header). Terminate: already consumed.
    s.out_end = s.tls ? s.out_off : s.stage_len;
    s.route->counters->bytes_up.fetch_add(s.out_end - s.out_off, std::memory_order_relaxed);
  }
  // Towards a sync gateway the hop header replaces the route's own PROXY header (the gateway
  // sends that one to the LAN device).
  const config::ProxyProtocol pp = r.hop_out ? config::ProxyProtocol::V2 : r.route.proxy_protocol;
  if (pp != config::ProxyProtocol::None) {
    if (!s.stage) {
      s.stage = take_stage();
      if (!s.stage) return close_session(s, idx, false, "out of memory");
      s.out_off = s.out_end = kHeadroom;
    }
    if (!s.local_known) {
      socklen_t len = sizeof s.local;
      if (getsockname(s.fd[0].get(), reinterpret_cast<sockaddr*>(&s.local), &len) == 0)
        s.local_known = true;
    }
    ensure_client(s);
    uint8_t hdr[kHeadroom];
    size_t n = 0;
    if (pp == config::ProxyProtocol::V1) {
      n = proto::write_proxy_v1(s.client, s.local, {hdr, sizeof hdr});
    } else {
      proto::Tlv tlvs[3];
      size_t nt = 0;
      std::string_view alpn, sni;
      proto::ClientHello hello;
      if (s.tls) {
        alpn = s.tls->alpn();
      }
      if (r.route.tls.mode != config::TlsMode::None) {
        // The ClientHello is still in the stage from out_off on (terminate too: the TLS
        // connection took a copy, the pump reuses the stage only after the prefix is sent).
        proto::parse_client_hello({s.stage + s.out_off, s.stage_len - s.out_off},
                                  {hello_scratch_.get(), proto::kMaxClientHelloBytes}, hello);
      }
      if (s.tls == nullptr && hello.alpn_len) alpn = hello.first_alpn();
      sni = hello.server_name();
      if (!alpn.empty())
        tlvs[nt++] = {proto::kTlvAlpn, {reinterpret_cast<const uint8_t*>(alpn.data()), alpn.size()}};
      if (!sni.empty())
        tlvs[nt++] = {proto::kTlvAuthority, {reinterpret_cast<const uint8_t*>(sni.data()), sni.size()}};
      if (r.hop_out) {
        const std::string& id = r.route.id;
        tlvs[nt++] = {proto::kTlvRouteId, {reinterpret_cast<const uint8_t*>(id.data()), id.size()}};
      }
      n = proto::write_proxy_v2(s.client, s.local, false, {tlvs, nt}, {hdr, sizeof hdr});
    }
    if (n == 0 || n > s.out_off) return close_session(s, idx, false, "PROXY header does not fit");
    s.out_off -= uint32_t(n);
    std::memcpy(s.stage + s.out_off, hdr, n);
  }
  send_prefix(s, idx);
}

void Worker::send_prefix(Session& s, uint32_t idx) {
  while (s.stage && s.out_off < s.out_end) {
    ssize_t n = ::send(s.fd[1].get(), s.stage + s.out_off, s.out_end - s.out_off,
                       MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      s.out_off += uint32_t(n);
      continue;
    }
    if (n < 0 && errno == EINTR) continue;
    if (n < 0 && errno == EAGAIN) {
      Flow& f = s.flow[0];
      if (!f.poll_out) {
        f.poll_out = true;
        s.inflight++;
        ring_->poll(s.fd[1].get(), POLLOUT, ud(kPollOut, idx));
      }
      return;
    }
    return close_session(s, idx, true, std::strerror(errno));
  }
  s.phase = Phase::Flowing;
  s.last_active = now_;
  if (s.tls) {
    s.out_off = s.out_end = 0;
    pump_tls(s, idx, 0);
    if (!s.closing) pump_tls(s, idx, 1);
    return;
  }
  give_stage(s.stage);
  start_flows(s, idx);
}

}  // namespace rf::dataplane
