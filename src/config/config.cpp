// The small, shared pieces of the config model: names of enum values, lookups, port
// ranges.
#include "ringfwd/config/config.hpp"

#include <cstdio>
#include <string>

namespace rf::config {

std::string_view to_string(Role r) {
  switch (r) {
    case Role::Edge:
      return "edge";
    case Role::Gateway:
      return "gateway";
  }
  return "?";
}

std::string_view to_string(Dataplane d) {
  switch (d) {
    case Dataplane::Auto:
      return "auto";
    case Dataplane::Sockmap:
      return "sockmap";
    case Dataplane::Splice:
      return "splice";
    case Dataplane::Copy:
      return "copy";
  }
  return "?";
}

std::string_view to_string(Protocol p) {
  switch (p) {
    case Protocol::Tcp:
      return "tcp";
    case Protocol::Udp:
      return "udp";
    case Protocol::TcpUdp:
      return "tcp+udp";
  }
  return "?";
}

std::string_view to_string(TlsMode m) {
  switch (m) {
    case TlsMode::None:
      return "none";
    case TlsMode::Passthrough:
      return "passthrough";
    case TlsMode::Terminate:
      return "terminate";
  }
  return "?";
}

std::string_view to_string(ProxyProtocol p) {
  switch (p) {
    case ProxyProtocol::None:
      return "none";
    case ProxyProtocol::V1:
      return "v1";
    case ProxyProtocol::V2:
      return "v2";
  }
  return "?";
}

const Gateway* Config::find_gateway(std::string_view id) const {
  for (const auto& g : gateways)
    if (g.id == id) return &g;
  return nullptr;
}

const Route* Config::find_route(std::string_view id) const {
  for (const auto& r : routes)
    if (r.id == id) return &r;
  return nullptr;
}

namespace {

// A decimal number of at most 9 digits (no sign, no spaces); larger values cannot be ports
// anyway and stay below uint32 overflow.
std::optional<uint32_t> decimal(std::string_view s) {
  if (s.empty() || s.size() > 9) return std::nullopt;
  uint32_t v = 0;
  for (char c : s) {
    if (c < '0' || c > '9') return std::nullopt;
    v = v * 10 + uint32_t(c - '0');
  }
  return v;
}

bool means_all_ports(std::string_view s) {
  std::string low;
  for (char c : s) low += char(c >= 'A' && c <= 'Z' ? c + 32 : c);
  return low == "*" || low == "all" || low == "any" || low == "all ports" || low == "*-*";
}

}  // namespace

std::optional<PortRange> parse_port_range(std::string_view text, std::string* why) {
  auto fail = [&](std::string msg) -> std::optional<PortRange> {
    if (why) *why = std::move(msg);
    return std::nullopt;
  };
  // Built by appending: gcc 12 at -O3 warns (-Wrestrict, a false positive) on "\"" + string.
  std::string shown;
  shown.reserve(text.size() + 2);
  shown.append(1, '"').append(text).append(1, '"');
  if (means_all_ports(text))
    return fail(shown + " is not a port: \"all ports\" is refused on purpose: each port is a " +
                "decision; give a port or a range \"A-B\" of at most " +
                std::to_string(kMaxRangePorts) + " ports");

  size_t dash = text.find('-');
  std::string_view a = text.substr(0, dash);
  std::string_view b = dash == std::string_view::npos ? a : text.substr(dash + 1);
  auto first = decimal(a);
  auto last = decimal(b);
  if (!first || !last) return fail(shown + " is not a port or a range \"A-B\"");
  for (uint32_t p : {*first, *last})
    if (p < 1 || p > 65535) return fail("port " + std::to_string(p) + " is out of range (1-65535)");
  if (*first > *last)
    return fail("range " + std::to_string(*first) + "-" + std::to_string(*last) +
                " is reversed (the first port must not exceed the last)");
  PortRange r{uint16_t(*first), uint16_t(*last)};
  if (r.size() > kMaxRangePorts)
    return fail("a range may hold at most " + std::to_string(kMaxRangePorts) + " ports (got " +
                std::to_string(r.size()) +
                "); \"all ports\" is refused on purpose: each port is a decision");
  return r;
}

bool check_file(const std::string& path) {
  auto res = load_file(path);
  for (const auto& p : res.problems) std::fprintf(stderr, "%s\n", p.str().c_str());
  if (!res.ok()) {
    std::fprintf(stderr, "%s: %zu problem%s\n", path.c_str(), res.problems.size(),
                 res.problems.size() == 1 ? "" : "s");
    return false;
  }
  if (res.config->role == Role::Gateway && res.config->sync && !res.config->routes.empty()) {
    // The daemon would refuse to start: its routes come from the edge.
    std::fprintf(stderr,
                 "routes: a gateway with a \"sync\" section gets its routes from the edge; "
                 "remove them (or the sync section)\n%s: 1 problem\n",
                 path.c_str());
    return false;
  }
  std::printf("%s: ok (%zu routes, role %s)\n", path.c_str(), res.config->routes.size(),
              std::string(to_string(res.config->role)).c_str());
  return true;
}

}  // namespace rf::config
