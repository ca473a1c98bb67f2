#include "gateway_setup.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cctype>

#include <boost/json.hpp>

namespace rf::ctl {

namespace {

bool is_ipv6(const std::string& s) {
  in6_addr a{};
  return inet_pton(AF_INET6, s.c_str(), &a) == 1;
}

// A DNS name or an IPv4 address: letters, digits, '-', '.'; nothing a wg-quick line could
// take for more than a value.
bool is_host_text(std::string_view h) {
  if (h.empty() || h.size() > 253) return false;
  return std::all_of(h.begin(), h.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '-' || c == '.';
  });
}

std::optional<uint16_t> port_of(std::string_view p) {
  if (p.empty() || p.size() > 5 ||
      !std::all_of(p.begin(), p.end(), [](unsigned char c) { return std::isdigit(c); }))
    return std::nullopt;
  unsigned long v = std::stoul(std::string(p));
  if (v == 0 || v > 65535) return std::nullopt;
  return static_cast<uint16_t>(v);
}

std::string quoted(const std::string& s) { return boost::json::serialize(boost::json::value(s)); }

std::string or_placeholder(const std::string& s, const char* placeholder) {
  return s.empty() ? placeholder : s;
}

}  // namespace

std::optional<std::string> endpoint_of(std::string_view arg, uint16_t default_port,
                                       std::string* why) {
  const std::string form = "wants HOST or HOST:PORT (an IPv6 address as [ADDR]:PORT), got '" +
                           std::string(arg) + "'";
  std::string host;
  std::optional<uint16_t> port = default_port;
  if (!arg.empty() && arg.front() == '[') {
    size_t close = arg.find(']');
    if (close == std::string_view::npos) return *why = form, std::nullopt;
    host = std::string(arg.substr(1, close - 1));
    std::string_view rest = arg.substr(close + 1);
    if (!rest.empty()) {
      if (rest.front() != ':') return *why = form, std::nullopt;
      port = port_of(rest.substr(1));
    }
    if (!is_ipv6(host)) return *why = form, std::nullopt;
  } else if (std::count(arg.begin(), arg.end(), ':') > 1) {
    host = std::string(arg);  // a bare IPv6 address
    if (!is_ipv6(host)) return *why = form, std::nullopt;
  } else {
    size_t colon = arg.find(':');
    host = std::string(arg.substr(0, colon));
    if (colon != std::string_view::npos) port = port_of(arg.substr(colon + 1));
    if (!is_host_text(host)) return *why = form, std::nullopt;
  }
  if (!port) return *why = form + " (the port is 1-65535)", std::nullopt;
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return host + ":" + std::to_string(*port);
}

bool is_wg_key(std::string_view key) {
  if (key.size() != 44 || key.back() != '=') return false;
  return std::all_of(key.begin(), key.end() - 1, [](unsigned char c) {
    return std::isalnum(c) || c == '+' || c == '/';
  });
}

std::string host_route(const std::string& ip) { return ip + (is_ipv6(ip) ? "/128" : "/32"); }

std::string subnet_address(const std::string& ip) { return ip + (is_ipv6(ip) ? "/64" : "/24"); }

std::string gateway_config_json(const GatewaySetup& s) {
  std::string out;
  out += "{\n";
  out += "  \"role\": \"gateway\",\n";
  out += "  \"gateway_id\": " + quoted(s.id) + ",\n";
  out += "  \"tunnel_ip\": " + quoted(s.tunnel_ip) + ",\n";
  out += "  \"sync\": { \"edge\": " + quoted(s.sync) + ", \"token_file\": " +
         quoted(kGatewayTokenPath) + " }\n";
  out += "}\n";
  return out;
}

std::string gateway_wg_conf(const GatewaySetup& s, const std::string& gateway_private_key,
                            const std::string& edge_public_key) {
  const std::string edge_ip = or_placeholder(s.edge_tunnel_ip, kEdgeTunnelPlaceholder);
  std::string out;
  out += "# WireGuard on gateway " + s.id + ": /etc/wireguard/" + s.wg_interface +
         ".conf (mode 0600), then: wg-quick up " + s.wg_interface + "\n";
  out += "[Interface]\n";
  out += "PrivateKey = " + gateway_private_key + "\n";
  out += "Address = " + subnet_address(s.tunnel_ip) + "\n";
  out += "\n";
  out += "[Peer]\n";
  out += "# the edge (ringfwd sync at " + s.sync + ")\n";
  out += "PublicKey = " + edge_public_key + "\n";
  if (s.endpoint.empty()) {
    out += "# Replace " + std::string(kEndpointPlaceholder) +
           " with the edge's public IP address or DNS name.\n";
    out += "Endpoint = " + std::string(kEndpointPlaceholder) + ":" + std::to_string(s.wg_port) +
           "\n";
  } else {
    out += "Endpoint = " + s.endpoint + "\n";
  }
  out += "AllowedIPs = " + host_route(edge_ip) + "\n";
  out += "PersistentKeepalive = 25\n";
  return out;
}

std::string edge_wg_conf(const GatewaySetup& s, const std::string& edge_private_key,
                         const std::string& gateway_public_key) {
  const std::string edge_ip = or_placeholder(s.edge_tunnel_ip, kEdgeTunnelPlaceholder);
  std::string out;
  out += "# WireGuard on the edge: /etc/wireguard/" + s.wg_interface +
         ".conf (mode 0600), then: wg-quick up " + s.wg_interface + "\n";
  out += "[Interface]\n";
  out += "Address = " + subnet_address(edge_ip) + "\n";
  out += "ListenPort = " + std::to_string(s.wg_port) + "\n";
  out += "PrivateKey = " + edge_private_key + "\n";
  out += "\n";
  out += edge_peer_block(s, gateway_public_key);
  return out;
}

std::string edge_peer_block(const GatewaySetup& s, const std::string& gateway_public_key) {
  std::string out;
  out += "[Peer]\n";
  out += "# gateway " + s.id + "\n";
  out += "PublicKey = " + gateway_public_key + "\n";
  out += "AllowedIPs = " + host_route(s.tunnel_ip) + "\n";
  return out;
}

std::string edge_wg_set_command(const GatewaySetup& s, const std::string& gateway_public_key) {
  return "wg set " + s.wg_interface + " peer " + gateway_public_key + " allowed-ips " +
         host_route(s.tunnel_ip);
}

}  // namespace rf::ctl
