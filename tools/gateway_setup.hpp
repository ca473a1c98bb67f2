// The files `ringfwdctl gateway add` hands the operator: the gateway's ringfwd.json and a
// wg-quick configuration for each side of the tunnel. Pure text from given keys and addresses
// (no processes, no files), so that tools/gateway_setup_test.cpp can pin every line.
#pragma once

#include <cstdint>
#include <optional>
#include <string>
#include <string_view>

namespace rf::ctl {

// What AddGateway answered plus the operator's flags.
struct GatewaySetup {
  std::string id;              // "home"
  std::string tunnel_ip;       // the gateway's tunnel address, "10.8.0.2"
  std::string edge_tunnel_ip;  // the edge's tunnel address, "10.8.0.1" ("" if unknown)
  std::string sync;            // the edge's sync address for the gateway, "10.8.0.1:7946"
  std::string endpoint;        // the edge's public "HOST:PORT" for WireGuard ("" = placeholder)
  uint16_t wg_port = 51820;    // the edge's WireGuard ListenPort
  std::string wg_interface = "wg0";
};

// Where the gateway keeps its copy of the token (its ringfwd.json names it).
inline constexpr const char* kGatewayTokenPath = "/etc/ringfwd/token";
// Stands in for the edge's public address when --endpoint was not given.
inline constexpr const char* kEndpointPlaceholder = "EDGE_PUBLIC_IP";
// Stands in for the edge's tunnel address when the daemon did not say it.
inline constexpr const char* kEdgeTunnelPlaceholder = "EDGE_TUNNEL_IP";

// --endpoint HOST[:PORT]: "HOST:PORT" (an IPv6 address in brackets), the port defaulting to
// default_port; nullopt with *why set when the text is not usable.
std::optional<std::string> endpoint_of(std::string_view arg, uint16_t default_port,
                                       std::string* why);

// A WireGuard key as `wg genkey`/`wg pubkey` print it: 44 characters of base64, ending in '='.
bool is_wg_key(std::string_view key);

// "10.8.0.2" -> "10.8.0.2/32" (host) or "10.8.0.2/24" (the tunnel subnet); IPv6: /128, /64.
std::string host_route(const std::string& ip);
std::string subnet_address(const std::string& ip);

// The gateway's /etc/ringfwd/ringfwd.json: role gateway, its id and tunnel IP, and a "sync"
// section pointing at the edge, with the token in kGatewayTokenPath. Ends with a newline.
std::string gateway_config_json(const GatewaySetup& s);

// The gateway's wg-quick file: its private key and tunnel address, the edge as the one peer
// (endpoint, the edge's tunnel address as AllowedIPs, keepalive 25 s: the gateway is behind NAT).
std::string gateway_wg_conf(const GatewaySetup& s, const std::string& gateway_private_key,
                            const std::string& edge_public_key);

// A whole wg-quick file for an edge that has no WireGuard interface yet: address, listen port,
// private key, and the gateway as a peer.
std::string edge_wg_conf(const GatewaySetup& s, const std::string& edge_private_key,
                         const std::string& gateway_public_key);

// For an edge whose interface already runs: the [Peer] block to append to its wg-quick file.
std::string edge_peer_block(const GatewaySetup& s, const std::string& gateway_public_key);

// The same peer added to the running interface at once.
std::string edge_wg_set_command(const GatewaySetup& s, const std::string& gateway_public_key);

}  // namespace rf::ctl
