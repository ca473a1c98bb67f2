#pragma once
// The route table the workers read: built from a validated Config on the control thread,
// published as an immutable snapshot (shared_ptr<const RouteTable>), never mutated after.
#include <netinet/in.h>
#include <sys/socket.h>

#include <array>
#include <atomic>
#include <cstdint>
#include <memory>
#include <string>
#include <vector>

#include "ringfwd/base/result.hpp"
#include "ringfwd/config/config.hpp"
#include "ringfwd/routing/gateway_link.hpp"

namespace rf::tls {
class ServerContext;
}

namespace rf::routing {

// Per-route counters, shared by all workers (relaxed atomics, one writer per event).
struct RouteCounters {
  std::atomic<uint64_t> conns_total{0};
  std::atomic<uint64_t> conns_active{0};
  std::atomic<uint64_t> conns_refused{0};   // max_connections, allow list, shutting down
  std::atomic<uint64_t> conns_failed{0};    // target refused / timed out / unreachable
  std::atomic<uint64_t> bytes_up{0};        // client -> target
  std::atomic<uint64_t> bytes_down{0};      // target -> client
  std::atomic<uint64_t> wol_packets{0};     // Wake-on-LAN magic packets sent
};

// A route with everything the data path needs resolved to numbers.
struct ResolvedRoute {
  config::Route route;
  sockaddr_storage bind_addr{};    // port 0; the listener sets each port of the range
  socklen_t bind_len = 0;
  sockaddr_storage target_addr{};  // port of the first listen port's target
  socklen_t target_len = 0;
  uint16_t target_base_port = 0;   // target port for listen_port.first
  uint32_t connect_timeout_ms = 0;
  uint32_t idle_timeout_s = 0;
  uint32_t drain_timeout_s = 0;
  uint64_t max_connections = 0;  // 0 = only the global limit
  std::shared_ptr<RouteCounters> counters = std::make_shared<RouteCounters>();

  // The target address for a connection accepted on listen port p.
  void target_for(uint16_t listen_port, sockaddr_storage& out, socklen_t& len) const;
  // True when the route has no allow list or the client's address is in it.
  bool allows(const sockaddr_storage& client) const;
  // TLS terminate: the certificate, loaded when the table is built (a reload builds a new one).
  std::shared_ptr<tls::ServerContext> tls_ctx;
  uint32_t udp_idle_timeout_s = 0;
  uint32_t udp_flows_per_client = 0;
  // Wake-on-LAN is this daemon's job: the route has `wol` and its target is the LAN device
  // itself (a gateway, or a direct route); an edge leaves it to the gateway.
  bool wol_here = false;
  uint8_t wol_mac[6] = {};
  sockaddr_in wol_to{};  // broadcast address, port 9
  uint32_t wol_wait_ms = 0;
  // Edge with sync, a route to a gateway: the hop to the gateway starts with a PROXY v2 header
  // carrying the client and the route id (the route's own proxy_protocol is the gateway's job),
  // and `link` says whether the gateway is online (new connections are refused when not).
  bool hop_out = false;
  std::shared_ptr<GatewayLink> link;
  bool gateway_offline() const { return link && !link->online(); }
};

// Everything served on one TCP listen address:port: one plain route, or TLS routes that the
// ClientHello's SNI tells apart (SPEC §3).
struct TcpPort {
  std::string key;  // "addr:port", the listener's identity across route changes
  sockaddr_storage bind_addr{};
  socklen_t bind_len = 0;
  uint16_t port = 0;
  const ResolvedRoute* plain = nullptr;  // tls.mode none
  std::vector<std::pair<std::string, const ResolvedRoute*>> exact;     // sorted by name
  std::vector<std::pair<std::string, const ResolvedRoute*>> wildcard;  // ".example.com" suffixes
  const ResolvedRoute* fallback = nullptr;  // "default": true
  bool accept_proxy = false;   // a PROXY header precedes everything
  uint32_t hello_timeout_ms = 0;  // the longest of the port's TLS routes
  // Sync gateway: routes whose connections come from the edge with a hop header naming the
  // route (sorted by id), and the only peer address allowed to send one (the edge's).
  std::vector<std::pair<std::string, const ResolvedRoute*>> hop;
  sockaddr_storage hop_peer{};
  // Bytes must be read before a route is known or a target connected.
  bool needs_prelude() const { return plain == nullptr || accept_proxy; }
  const ResolvedRoute* hop_route(std::string_view id) const;
  // True when `peer` (an accepted connection's) is the edge that may send hop headers.
  bool hop_peer_ok(const sockaddr_storage& peer) const;
  // The route for a ClientHello's server name (empty: no SNI); nullptr when nothing matches.
  const ResolvedRoute* by_sni(std::string_view name) const;
  // Any route of the port (for logs before the SNI is known).
  const ResolvedRoute* any() const;
  std::vector<std::string> route_ids() const;
};

// One UDP listen address:port and its route.
struct UdpPort {
  std::string key;  // "addr:port/udp"
  const ResolvedRoute* route = nullptr;
  uint16_t port = 0;
};

class RouteTable {
 public:
  // Resolves every route of cfg (host names through getaddrinfo, on the calling thread) and
  // loads TLS certificates (an error names the route and the file).
  // Routes whose id is in `previous` keep that route's counters, so stats survive changes.
  RouteTable() = default;
  RouteTable(const RouteTable&) = delete;  // ports point into routes_
  RouteTable& operator=(const RouteTable&) = delete;
  // `links`: an edge's gateway state (sync); routes to a gateway get its link.
  static Result<std::shared_ptr<const RouteTable>> build(const config::Config& cfg,
                                                         const RouteTable* previous = nullptr,
                                                         GatewayLinks* links = nullptr);
  const ResolvedRoute* find(std::string_view id) const;

  const std::vector<ResolvedRoute>& routes() const { return routes_; }
  const config::Config& config() const { return cfg_; }
  const std::vector<TcpPort>& tcp_ports() const { return tcp_ports_; }
  const std::vector<UdpPort>& udp_ports() const { return udp_ports_; }

 private:
  config::Config cfg_;
  std::vector<ResolvedRoute> routes_;
  std::vector<TcpPort> tcp_ports_;
  std::vector<UdpPort> udp_ports_;
};

}  // namespace rf::routing
