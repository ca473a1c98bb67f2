#include "ringfwd/routing/route_table.hpp"

#include "ringfwd/base/net.hpp"

namespace rf::routing {

void ResolvedRoute::target_for(uint16_t listen_port, sockaddr_storage& out, socklen_t& len) const {
  out = target_addr;
  len = target_len;
  net::set_port(out, uint16_t(target_base_port + (listen_port - route.listen_port.first)));
}

Result<std::shared_ptr<const RouteTable>> RouteTable::build(const config::Config& cfg) {
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
    if (!r.has_tcp()) continue;
    for (uint32_t p = r.listen_port.first; p <= r.listen_port.last; ++p)
      if (t->tcp_by_port_[p] == 0) t->tcp_by_port_[p] = uint16_t(i + 1);
  }
  return std::shared_ptr<const RouteTable>(std::move(t));
}

}  // namespace rf::routing
