// Config -> canonical JSON text, the inverse of parse(): what the control plane writes back
// to the config file after a change. One fixed key order and one layout, so that saving an
// unchanged config gives the same bytes and a diff of two saves shows only what changed.
#include <algorithm>
#include <boost/json.hpp>
#include <string>

#include "ringfwd/config/config.hpp"

namespace rf::config {
namespace {

namespace json = boost::json;

json::string str(std::string_view s) { return json::string(s.data(), s.size()); }

// A single port as a number, a range as "A-B" (the forms an operator writes).
json::value port_range(const PortRange& r) {
  if (r.first == r.last) return json::value(uint64_t(r.first));
  return str(std::to_string(r.first) + "-" + std::to_string(r.last));
}

json::object limits(const Limits& l) {
  json::object o;
  o["max_connections"] = l.max_connections;
  o["connect_timeout_ms"] = l.connect_timeout_ms;
  o["idle_timeout_s"] = l.idle_timeout_s;
  o["udp_idle_timeout_s"] = l.udp_idle_timeout_s;
  o["overlap_ms"] = l.overlap_ms;
  o["drain_timeout_s"] = l.drain_timeout_s;
  o["udp_flows_per_client"] = l.udp_flows_per_client;
  return o;
}

json::object target(const Target& t) {
  json::object o;
  if (t.is_lan()) {
    // On a gateway's own file the route carries no gateway: its target is the LAN itself.
    if (t.via_gateway()) o["gateway"] = str(t.gateway);
    o["lan_host"] = str(t.lan_host);
    o["lan_port"] = t.lan_port;
  } else {
    o["host"] = str(t.host);
    o["port"] = t.port;
  }
  return o;
}

json::object tls(const Tls& t) {
  json::object o;
  o["mode"] = str(to_string(t.mode));
  if (!t.domains.empty()) {
    json::array a;
    for (const auto& d : t.domains) a.push_back(str(d));
    o["domains"] = std::move(a);
  }
  if (t.is_default) o["default"] = true;
  if (!t.cert.empty()) o["cert"] = str(t.cert);
  if (!t.key.empty()) o["key"] = str(t.key);
  if (!t.alpn.empty()) {
    json::array a;
    for (const auto& n : t.alpn) a.push_back(str(n));
    o["alpn"] = std::move(a);
  }
  if (t.mode != TlsMode::None) o["hello_timeout_ms"] = t.hello_timeout_ms;
  return o;
}

json::object timeouts(const RouteTimeouts& t) {
  json::object o;
  if (t.connect_timeout_ms) o["connect_timeout_ms"] = *t.connect_timeout_ms;
  if (t.idle_timeout_s) o["idle_timeout_s"] = *t.idle_timeout_s;
  if (t.udp_idle_timeout_s) o["udp_idle_timeout_s"] = *t.udp_idle_timeout_s;
  if (t.drain_timeout_s) o["drain_timeout_s"] = *t.drain_timeout_s;
  return o;
}

json::object wol(const Wol& w) {
  json::object o;
  o["mac"] = str(w.mac);
  if (!w.broadcast.empty()) o["broadcast"] = str(w.broadcast);
  o["wait_s"] = w.wait_s;
  return o;
}

json::object route(const Route& r) {
  json::object o;
  o["id"] = str(r.id);
  o["protocol"] = str(to_string(r.protocol));
  if (!r.listen.empty()) o["listen"] = str(r.listen);
  o["listen_port"] = port_range(r.listen_port);
  o["target"] = target(r.target);
  // Optional parts only when set: a route reads as what the operator asked for.
  if (r.tls.mode != TlsMode::None) o["tls"] = tls(r.tls);
  if (json::object t = timeouts(r.timeouts); !t.empty()) o["timeouts"] = std::move(t);
  if (r.max_connections) o["max_connections"] = *r.max_connections;
  if (!r.allow.empty()) {
    json::array a;
    for (const Cidr& c : r.allow) a.push_back(str(c.text));
    o["allow"] = std::move(a);
  }
  if (r.proxy_protocol != ProxyProtocol::None)
    o["proxy_protocol"] = str(to_string(r.proxy_protocol));
  if (r.accept_proxy_protocol) o["accept_proxy_protocol"] = true;
  if (r.wol) o["wol"] = wol(*r.wol);
  if (r.hop) o["hop"] = true;
  return o;
}

json::object document(const Config& c) {
  const bool edge = c.role == Role::Edge;
  json::object o;
  o["role"] = str(to_string(c.role));
  // A gateway's identity first, as in the SPEC's gateway file.
  if (!edge) {
    o["gateway_id"] = str(c.gateway_id);
    o["tunnel_ip"] = str(c.tunnel_ip);
  }
  o["dataplane"] = str(to_string(c.dataplane));
  o["workers"] = c.workers;
  o["state_dir"] = str(c.state_dir);
  json::array blocked;
  for (uint16_t p : c.file_blocked_ports) blocked.push_back(p);
  o["blocked_ports"] = std::move(blocked);
  o["limits"] = limits(c.limits);
  if (edge) {
    json::array gateways;
    for (const Gateway& g : c.gateways) {
      json::object go;
      go["id"] = str(g.id);
      go["tunnel_ip"] = str(g.tunnel_ip);
      if (!g.token_file.empty()) go["token_file"] = str(g.token_file);
      gateways.push_back(std::move(go));
    }
    o["gateways"] = std::move(gateways);
  }
  if (c.sync) {
    json::object s;
    if (!c.sync->listen.empty()) s["listen"] = str(c.sync->listen);
    if (!c.sync->edge.empty()) s["edge"] = str(c.sync->edge);
    if (!c.sync->token_file.empty()) s["token_file"] = str(c.sync->token_file);
    o["sync"] = std::move(s);
  }
  json::array routes;
  for (const Route& r : c.routes) routes.push_back(route(r));
  o["routes"] = std::move(routes);
  return o;
}

bool is_scalar(const json::value& v) { return !v.is_object() && !v.is_array(); }

// Boost.JSON 1.81 has no pretty printer. Objects take one member a line; arrays of scalars
// stay on one line ("blocked_ports": [22, 53, 51820]), as operators write them.
void pretty(const json::value& v, std::string& out, size_t depth) {
  const std::string pad((depth + 1) * 2, ' ');
  const std::string close_pad(depth * 2, ' ');
  if (const json::object* o = v.if_object()) {
    if (o->empty()) return void(out += "{}");
    out += "{\n";
    bool first = true;
    for (const auto& kv : *o) {
      if (!first) out += ",\n";
      first = false;
      out += pad + json::serialize(kv.key()) + ": ";
      pretty(kv.value(), out, depth + 1);
    }
    out += "\n" + close_pad + "}";
  } else if (const json::array* a = v.if_array()) {
    if (a->empty()) return void(out += "[]");
    const bool flat = std::all_of(a->begin(), a->end(), is_scalar);
    out += flat ? "[" : "[\n";
    for (size_t i = 0; i < a->size(); ++i) {
      if (i) out += flat ? ", " : ",\n";
      if (!flat) out += pad;
      pretty((*a)[i], out, depth + 1);
    }
    out += flat ? "]" : "\n" + close_pad + "]";
  } else {
    out += json::serialize(v);
  }
}

}  // namespace

std::string to_json(const Config& cfg) {
  std::string out;
  pretty(json::value(document(cfg)), out, 0);
  out += '\n';
  return out;
}

std::string to_json(const Route& r) { return json::serialize(route(r)); }

}  // namespace rf::config
