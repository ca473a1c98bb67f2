#include "ringfwd/routing/route_table.hpp"

#include "ringfwd/base/net.hpp"

#include <cstring>

namespace rf::routing {

void ResolvedRoute::target_for(uint16_t listen_port, sockaddr_storage& out, socklen_t& len) const {
  out = target_addr;
  len = target_len;
  net::set_port(out, uint16_t(target_base_port + (listen_port - route.listen_port.first)));
}

namespace {
bool prefix_match(const uint8_t* a, const uint8_t* net, unsigned prefix) {
  const unsigned bytes = prefix / 8, bits = prefix % 8;
  if (std::memcmp(a, net, bytes) != 0) return false;
  if (bits == 0) return true;
  const uint8_t mask = uint8_t(0xff << (8 - bits));
  return (a[bytes] & mask) == (net[bytes] & mask);
}

// Features of SPEC §3 that later releases of the data path implement. Serving such a route
// as plain TCP would be wrong (TLS routes share ports by SNI; PROXY headers would be lost or
// forwarded as data), so the route is not served and the log says so.
std::string tcp_unsupported_reason(const config::Route& r) {
  if (r.tls.mode != config::TlsMode::None)
    return "tls mode \"" + std::string(config::to_string(r.tls.mode)) + "\" is not supported by this build yet";
  if (r.proxy_protocol != config::ProxyProtocol::None)
    return "proxy_protocol is not supported by this build yet";
  if (r.accept_proxy_protocol) return "accept_proxy_protocol is not supported by this build yet";
  return {};
}
}  // namespace

bool ResolvedRoute::allows(const sockaddr_storage& client) const {
  if (route.allow.empty()) return true;
  const uint8_t* a4 = nullptr;
  const uint8_t* a6 = nullptr;
  if (client.ss_family == AF_INET) {
    a4 = reinterpret_cast<const uint8_t*>(&reinterpret_cast<const sockaddr_in*>(&client)->sin_addr);
  } else if (client.ss_family == AF_INET6) {
    const auto& in6 = reinterpret_cast<const sockaddr_in6*>(&client)->sin6_addr;
    a6 = in6.s6_addr;
    if (IN6_IS_ADDR_V4MAPPED(&in6)) a4 = in6.s6_addr + 12;  // IPv4 client on a dual-stack socket
  }
  for (const config::Cidr& c : route.allow) {
    if (!c.v6 && a4 && prefix_match(a4, c.addr, c.prefix)) return true;
    if (c.v6 && a6 && prefix_match(a6, c.addr, c.prefix)) return true;
  }
  return false;
}

const ResolvedRoute* RouteTable::find(std::string_view id) const {
  for (const ResolvedRoute& r : routes_)
    if (r.route.id == id) return &r;
  return nullptr;
}

Result<std::shared_ptr<const RouteTable>> RouteTable::build(const config::Config& cfg,
                                                            const RouteTable* previous) {
  auto t = std::make_shared<RouteTable>();
  t->cfg_ = cfg;
  t->routes_.reserve(cfg.routes.size());
  for (const config::Route& r : cfg.routes) {
    ResolvedRoute rr;
    rr.route = r;
    const config::Limits& lim = cfg.limits;
    rr.connect_timeout_ms = r.timeouts.connect_timeout_ms.value_or(lim.connect_timeout_ms);
    rr.idle_timeout_s = r.timeouts.idle_timeout_s.value_or(lim.idle_timeout_s);
    rr.drain_timeout_s = r.timeouts.drain_timeout_s.value_or(lim.drain_timeout_s);
    rr.max_connections = r.max_connections.value_or(0);
    rr.tcp_unsupported = tcp_unsupported_reason(r);
    if (const ResolvedRoute* old = previous ? previous->find(r.id) : nullptr)
      rr.counters = old->counters;

    std::string bind = r.listen;
    if (bind.empty()) bind = cfg.role == config::Role::Gateway ? cfg.tunnel_ip : "0.0.0.0";
    if (!net::parse_ip(bind, 0, rr.bind_addr, rr.bind_len))
      return Error::msg("route " + r.id + ": bad listen address " + bind);

    // Where the bytes go: a direct host, the gateway's tunnel IP (edge), or the LAN device.
    // An edge keeps the listen port towards the gateway (SPEC §1: tunnel_ip:P).
    std::string host;
    if (r.target.via_gateway() && cfg.role == config::Role::Edge) {
      const config::Gateway* gw = cfg.find_gateway(r.target.gateway);
      if (!gw) return Error::msg("route " + r.id + ": unknown gateway " + r.target.gateway);
      host = gw->tunnel_ip;
      rr.target_base_port = r.listen_port.first;
    } else if (r.target.is_lan()) {
      host = r.target.lan_host;
      rr.target_base_port = r.target.lan_port;
    } else {
      host = r.target.host;
      rr.target_base_port = r.target.port;
    }
    auto res = net::resolve(host, rr.target_base_port, rr.target_addr, rr.target_len);
    if (!res) return Error::msg("route " + r.id + ": " + res.error().str());
    t->routes_.push_back(std::move(rr));
  }
  for (size_t i = 0; i < t->routes_.size(); ++i) {
    const config::Route& r = t->routes_[i].route;
    if (!r.has_tcp() || !t->routes_[i].tcp_unsupported.empty()) continue;
    for (uint32_t p = r.listen_port.first; p <= r.listen_port.last; ++p)
      if (t->tcp_by_port_[p] == 0) t->tcp_by_port_[p] = uint16_t(i + 1);
  }
  return std::shared_ptr<const RouteTable>(std::move(t));
}

}  // namespace rf::routing
