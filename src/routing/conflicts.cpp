// SPEC §3 conflict rules. Two routes conflict when the kernel (same protocol, address and
// port) or the SNI dispatch (same name on one TLS port) could not tell them apart.
#include "ringfwd/routing/conflicts.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstring>
#include <string>

namespace rf::routing {
namespace {

using config::Problem;
using config::ProblemKind;
using config::Route;
using config::TlsMode;

// A bind address as far as collisions go.
struct BindAddr {
  enum Kind { All, Any4, V4, V6 } kind = All;  // All: "::" or the edge default (every address)
  uint8_t bytes[16] = {};
  std::string shown;
};

BindAddr bind_addr_of(const Route& r, const config::Config& cfg) {
  std::string text = r.listen;
  if (text.empty() && cfg.role == config::Role::Gateway) text = cfg.tunnel_ip;
  BindAddr a;
  a.shown = text.empty() ? "all addresses" : text;
  uint8_t b[16] = {};
  if (inet_pton(AF_INET, text.c_str(), b) == 1) {
    bool any = b[0] == 0 && b[1] == 0 && b[2] == 0 && b[3] == 0;
    a.kind = any ? BindAddr::Any4 : BindAddr::V4;
    std::memcpy(a.bytes, b, 4);
  } else if (inet_pton(AF_INET6, text.c_str(), b) == 1) {
    static const uint8_t mapped[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
    static const uint8_t zero[16] = {};
    if (std::memcmp(b, zero, 16) == 0) {
      a.kind = BindAddr::All;  // "::" is dual-stack: it takes the port on every address
    } else if (std::memcmp(b, mapped, 12) == 0) {
      bool any = b[12] == 0 && b[13] == 0 && b[14] == 0 && b[15] == 0;
      a.kind = any ? BindAddr::Any4 : BindAddr::V4;
      std::memcpy(a.bytes, b + 12, 4);
    } else {
      a.kind = BindAddr::V6;
      std::memcpy(a.bytes, b, 16);
    }
  }
  return a;  // empty or unparsable: treated as every address, the safe side
}

bool collide(const BindAddr& a, const BindAddr& b) {
  if (a.kind == BindAddr::All || b.kind == BindAddr::All) return true;
  bool a4 = a.kind != BindAddr::V6, b4 = b.kind != BindAddr::V6;
  if (a4 != b4) return false;
  if (a.kind == BindAddr::Any4 || b.kind == BindAddr::Any4) return true;
  return std::memcmp(a.bytes, b.bytes, 16) == 0;
}

std::string route_path(size_t i, const char* field) {
  return "routes[" + std::to_string(i) + "]." + field;
}

std::string quoted(const std::string& s) { return "\"" + s + "\""; }

std::string list(const std::vector<std::string>& items) {
  std::string out;
  for (const auto& s : items) out += (out.empty() ? "" : ", ") + quoted(s);
  return out;
}

std::string to_lower(std::string s) {
  for (char& c : s)
    if (c >= 'A' && c <= 'Z') c = char(c + 32);
  return s;
}

// "tcp port 443 on 0.0.0.0 is already used by route "a" (route "b" conflicts: why)"
std::string clash(std::string_view proto, config::PortRange overlap, const BindAddr& at,
                  const Route& earlier, const Route& later, const std::string& why = {}) {
  std::string ports = overlap.size() == 1
                          ? "port " + std::to_string(overlap.first) + " on " + at.shown + " is"
                          : "ports " + std::to_string(overlap.first) + "-" +
                                std::to_string(overlap.last) + " on " + at.shown + " are";
  return std::string(proto) + " " + ports + " already used by route " + quoted(earlier.id) +
         " (route " + quoted(later.id) + " conflicts" + (why.empty() ? "" : ": " + why) + ")";
}

void blocked(const Route& r, size_t i, const std::vector<uint16_t>& blocked_ports,
             std::vector<Problem>& out) {
  std::vector<std::string> hit;
  for (uint16_t b : blocked_ports)
    if (r.listen_port.contains(b)) hit.push_back(std::to_string(b));
  if (hit.empty()) return;
  std::string msg;
  if (r.listen_port.size() == 1) {
    msg = "port " + hit[0] + " is blocked (blocked_ports)";
  } else {
    std::string ports;
    for (const auto& h : hit) ports += (ports.empty() ? "" : ", ") + h;
    msg = "range " + std::to_string(r.listen_port.first) + "-" +
          std::to_string(r.listen_port.last) + " includes blocked port" +
          (hit.size() > 1 ? "s " : " ") + ports + " (blocked_ports)";
  }
  out.push_back({route_path(i, "listen_port"), msg, ProblemKind::BlockedPort});
}

}  // namespace

std::vector<Problem> find_conflicts(const config::Config& cfg) {
  std::vector<Problem> out;
  std::vector<BindAddr> addrs;
  for (const Route& r : cfg.routes) addrs.push_back(bind_addr_of(r, cfg));

  for (size_t i = 0; i < cfg.routes.size(); ++i) {
    const Route& b = cfg.routes[i];
    blocked(b, i, cfg.blocked_ports, out);
    for (size_t j = 0; j < i; ++j) {
      const Route& a = cfg.routes[j];
      if (!a.listen_port.overlaps(b.listen_port) || !collide(addrs[i], addrs[j])) continue;
      config::PortRange overlap{std::max(a.listen_port.first, b.listen_port.first),
                                std::min(a.listen_port.last, b.listen_port.last)};
      auto conflict = [&](const char* field, std::string msg) {
        out.push_back({route_path(i, field), std::move(msg), ProblemKind::PortConflict});
      };
      const bool a_tls = a.tls.mode != TlsMode::None, b_tls = b.tls.mode != TlsMode::None;
      // Hop routes (a sync gateway's) are told apart by the route id in the edge's header.
      const bool both_hop = a.hop && b.hop;
      const bool tcp_plain = a.has_tcp() && b.has_tcp() && !a_tls && !b_tls && !both_hop;
      const bool udp = a.has_udp() && b.has_udp();  // TLS never applies to UDP
      if (tcp_plain && udp)
        conflict("listen_port", clash("tcp+udp", overlap, addrs[i], a, b));
      else if (tcp_plain)
        conflict("listen_port", clash("tcp", overlap, addrs[i], a, b));
      else if (udp)
        conflict("listen_port", clash("udp", overlap, addrs[i], a, b));

      if (both_hop && a.has_tcp() && b.has_tcp() && addrs[i].shown != addrs[j].shown)
        conflict("listen", clash("tcp", overlap, addrs[i], a, b,
                                 "hop routes sharing a port must listen on the same address"));
      if (!a.has_tcp() || !b.has_tcp() || (!a_tls && !b_tls)) continue;
      if (a_tls != b_tls) {
        conflict("listen_port", clash("tcp", overlap, addrs[i], a, b,
                                      "a route without TLS cannot share a port with TLS "
                                      "routes, which are told apart by SNI"));
        continue;
      }
      // Both TLS: one listening socket reads one ClientHello for all of them, so they must
      // listen on the same address and agree on whether a PROXY header comes first.
      if (addrs[i].shown != addrs[j].shown)
        conflict("listen", clash("tcp", overlap, addrs[i], a, b,
                                 "TLS routes sharing a port must listen on the same address (" +
                                     addrs[j].shown + " vs " + addrs[i].shown + ")"));
      if (a.accept_proxy_protocol != b.accept_proxy_protocol)
        conflict("accept_proxy_protocol",
                 clash("tcp", overlap, addrs[i], a, b,
                       "TLS routes sharing a port must agree on accept_proxy_protocol"));
      // Both TLS: told apart by SNI, so the same exact name or the same wildcard is ambiguous;
      // "a.example.com" beside "*.example.com" is not (the exact name wins).
      std::vector<std::string> shared;
      for (const auto& n : b.tls.domains)
        for (const auto& m : a.tls.domains)
          if (to_lower(n) == to_lower(m)) shared.push_back(to_lower(n));
      if (!shared.empty())
        conflict("tls.domains", clash("tcp", overlap, addrs[i], a, b, "both list " + list(shared)));
      if (a.tls.is_default && b.tls.is_default)
        conflict("tls.default",
                 clash("tcp", overlap, addrs[i], a, b, "both are the \"default\": true route"));
    }
  }
  return out;
}

}  // namespace rf::routing
