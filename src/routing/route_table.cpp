#include "ringfwd/routing/route_table.hpp"

#include "ringfwd/base/net.hpp"
#include "ringfwd/tls/terminator.hpp"

#include <arpa/inet.h>
#include <ifaddrs.h>
#include <net/if.h>

#include <algorithm>
#include <cstdio>
#include <cstring>
#include <map>

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

}  // namespace

namespace {
// The broadcast address of the interface whose IPv4 subnet holds `host` ("the LAN broadcast");
// 255.255.255.255 when no interface does (the kernel then sends it on the default route's).
in_addr lan_broadcast_for(const sockaddr_storage& host) {
  in_addr out{};
  out.s_addr = INADDR_BROADCAST;
  if (host.ss_family != AF_INET) return out;
  const uint32_t h = reinterpret_cast<const sockaddr_in*>(&host)->sin_addr.s_addr;
  ifaddrs* list = nullptr;
  if (getifaddrs(&list) != 0) return out;
  for (ifaddrs* i = list; i; i = i->ifa_next) {
    if (!i->ifa_addr || !i->ifa_netmask || i->ifa_addr->sa_family != AF_INET) continue;
    if (!(i->ifa_flags & IFF_BROADCAST) || !i->ifa_broadaddr) continue;  // not loopback
    const uint32_t a = reinterpret_cast<const sockaddr_in*>(i->ifa_addr)->sin_addr.s_addr;
    const uint32_t m = reinterpret_cast<const sockaddr_in*>(i->ifa_netmask)->sin_addr.s_addr;
    if ((a & m) == (h & m)) {
      // The interface's broadcast address; an address added without one (0.0.0.0) gets the
      // subnet's directed broadcast.
      out = reinterpret_cast<const sockaddr_in*>(i->ifa_broadaddr)->sin_addr;
      if (out.s_addr == 0) out.s_addr = a | ~m;
      break;
    }
  }
  freeifaddrs(list);
  return out;
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

const ResolvedRoute* TcpPort::by_sni(std::string_view name) const {
  if (!name.empty()) {
    auto it = std::lower_bound(exact.begin(), exact.end(), name,
                               [](const auto& e, std::string_view n) { return e.first < n; });
    if (it != exact.end() && it->first == name) return it->second;
    // "*.example.com" matches exactly one label: "a.example.com", not "a.b.example.com".
    const size_t dot = name.find('.');
    if (dot != std::string_view::npos && dot > 0) {
      const std::string_view suffix = name.substr(dot);
      auto w = std::lower_bound(wildcard.begin(), wildcard.end(), suffix,
                                [](const auto& e, std::string_view n) { return e.first < n; });
      if (w != wildcard.end() && w->first == suffix) return w->second;
    }
  }
  return fallback;
}

const ResolvedRoute* TcpPort::hop_route(std::string_view id) const {
  auto it = std::lower_bound(hop.begin(), hop.end(), id,
                             [](const auto& e, std::string_view n) { return e.first < n; });
  return it != hop.end() && it->first == id ? it->second : nullptr;
}

bool TcpPort::hop_peer_ok(const sockaddr_storage& peer) const {
  uint8_t a[16], b[16];
  const bool a4 = net::ip_bytes(peer, a), b4 = net::ip_bytes(hop_peer, b);
  return hop_peer.ss_family != 0 && a4 == b4 && std::memcmp(a, b, a4 ? 4 : 16) == 0;
}

const ResolvedRoute* TcpPort::any() const {
  if (plain) return plain;
  if (!hop.empty()) return hop.front().second;
  if (!exact.empty()) return exact.front().second;
  if (!wildcard.empty()) return wildcard.front().second;
  return fallback;
}

std::vector<std::string> TcpPort::route_ids() const {
  std::vector<std::string> ids;
  auto add = [&](const ResolvedRoute* r) {
    if (r && std::find(ids.begin(), ids.end(), r->route.id) == ids.end()) ids.push_back(r->route.id);
  };
  add(plain);
  for (const auto& e : hop) add(e.second);
  for (const auto& e : exact) add(e.second);
  for (const auto& e : wildcard) add(e.second);
  add(fallback);
  return ids;
}

const ResolvedRoute* RouteTable::find(std::string_view id) const {
  for (const ResolvedRoute& r : routes_)
    if (r.route.id == id) return &r;
  return nullptr;
}

Result<std::shared_ptr<const RouteTable>> RouteTable::build(const config::Config& cfg,
                                                            const RouteTable* previous,
                                                            GatewayLinks* links) {
  auto t = std::make_shared<RouteTable>();
  // A sync gateway accepts hop headers from the edge's tunnel address only.
  sockaddr_storage edge_addr{};
  if (cfg.role == config::Role::Gateway && cfg.sync && !cfg.sync->edge.empty()) {
    socklen_t len = 0;
    const std::string& e = cfg.sync->edge;
    std::string host = e.substr(0, e.rfind(':'));
    if (host.size() > 2 && host.front() == '[') host = host.substr(1, host.size() - 2);
    if (!net::parse_ip(host, 0, edge_addr, len))
      return Error::msg("sync.edge: bad address " + e);
  }
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
    rr.udp_idle_timeout_s = r.timeouts.udp_idle_timeout_s.value_or(lim.udp_idle_timeout_s);
    rr.udp_flows_per_client = lim.udp_flows_per_client;
    if (r.tls.mode == config::TlsMode::Terminate) {
      tls::global_init();
      auto ctx = tls::ServerContext::load(r.tls.cert, r.tls.key, r.tls.alpn);
      if (!ctx) return Error::msg("route " + r.id + ": " + ctx.error().str());
      rr.tls_ctx = std::move(ctx.value());
    }
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
      if (cfg.sync) {
        rr.hop_out = true;
        if (links) rr.link = links->get(gw->id);
      }
    } else if (r.target.is_lan()) {
      host = r.target.lan_host;
      rr.target_base_port = r.target.lan_port;
    } else {
      host = r.target.host;
      rr.target_base_port = r.target.port;
    }
    auto res = net::resolve(host, rr.target_base_port, rr.target_addr, rr.target_len);
    if (!res) return Error::msg("route " + r.id + ": " + res.error().str());
    if (r.wol && (cfg.role == config::Role::Gateway || !r.target.via_gateway())) {
      rr.wol_here = true;
      unsigned b[6];
      if (std::sscanf(r.wol->mac.c_str(), "%2x:%2x:%2x:%2x:%2x:%2x", &b[0], &b[1], &b[2], &b[3],
                      &b[4], &b[5]) != 6)
        return Error::msg("route " + r.id + ": bad wol.mac " + r.wol->mac);
      for (int k = 0; k < 6; ++k) rr.wol_mac[k] = uint8_t(b[k]);
      rr.wol_to.sin_family = AF_INET;
      rr.wol_to.sin_port = htons(9);
      if (!r.wol->broadcast.empty())
        inet_pton(AF_INET, r.wol->broadcast.c_str(), &rr.wol_to.sin_addr);
      else
        rr.wol_to.sin_addr = lan_broadcast_for(rr.target_addr);
      rr.wol_wait_ms = r.wol->wait_s * 1000;
    }
    t->routes_.push_back(std::move(rr));
  }
  // Listen ports: one TcpPort per TCP address:port (TLS routes share it), one UdpPort per UDP
  // address:port. Conflicts were refused by config validation, so a port has one plain route
  // or only TLS routes.
  std::map<std::string, size_t> tcp_index;
  for (size_t i = 0; i < t->routes_.size(); ++i) {
    const ResolvedRoute& rr = t->routes_[i];
    const config::Route& r = rr.route;
    for (uint32_t p = r.listen_port.first; p <= r.listen_port.last; ++p) {
      sockaddr_storage a = rr.bind_addr;
      net::set_port(a, uint16_t(p));
      const std::string key = net::to_string(a);
      if (r.has_udp()) t->udp_ports_.push_back(UdpPort{key + "/udp", &rr, uint16_t(p)});
      if (!r.has_tcp()) continue;
      auto [it, fresh] = tcp_index.emplace(key, t->tcp_ports_.size());
      if (fresh) {
        TcpPort tp;
        tp.key = key;
        tp.bind_addr = a;
        tp.bind_len = rr.bind_len;
        tp.port = uint16_t(p);
        t->tcp_ports_.push_back(std::move(tp));
      }
      TcpPort& tp = t->tcp_ports_[it->second];
      if (r.accept_proxy_protocol) tp.accept_proxy = true;
      if (r.hop) {
        tp.hop.emplace_back(r.id, &rr);
        tp.hop_peer = edge_addr;
        continue;
      }
      if (r.tls.mode == config::TlsMode::None) {
        tp.plain = &rr;
        continue;
      }
      tp.hello_timeout_ms = std::max(tp.hello_timeout_ms, r.tls.hello_timeout_ms);
      if (r.tls.is_default) tp.fallback = &rr;
      for (const std::string& d : r.tls.domains) {
        if (d.size() > 2 && d[0] == '*' && d[1] == '.')
          tp.wildcard.emplace_back(d.substr(1), &rr);
        else
          tp.exact.emplace_back(d, &rr);
      }
    }
  }
  for (TcpPort& tp : t->tcp_ports_) {
    std::sort(tp.exact.begin(), tp.exact.end());
    std::sort(tp.wildcard.begin(), tp.wildcard.end());
    if (tp.hello_timeout_ms == 0) tp.hello_timeout_ms = config::Tls{}.hello_timeout_ms;
  }
  return std::shared_ptr<const RouteTable>(std::move(t));
}

}  // namespace rf::routing
