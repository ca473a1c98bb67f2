#pragma once
// The configuration model (SPEC §3). Parsed once, validated whole, then immutable:
// workers only ever see snapshots built from a Config, never the JSON.
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

namespace rf::config {

enum class Role { Edge, Gateway };
enum class Dataplane { Auto, Sockmap, Splice, Copy };
enum class Protocol { Tcp, Udp, TcpUdp };
enum class TlsMode { None, Passthrough, Terminate };
enum class ProxyProtocol { None, V1, V2 };

std::string_view to_string(Role);
std::string_view to_string(Dataplane);
std::string_view to_string(Protocol);
std::string_view to_string(TlsMode);
std::string_view to_string(ProxyProtocol);

// Ranges are bounded on purpose: each published port is a decision, like a firewall rule.
inline constexpr uint32_t kMaxRangePorts = 1000;

// An inclusive port range; a single port has first == last.
struct PortRange {
  uint16_t first = 0;
  uint16_t last = 0;
  uint32_t size() const { return uint32_t(last) - first + 1; }
  bool contains(uint16_t p) const { return p >= first && p <= last; }
  bool overlaps(const PortRange& o) const { return first <= o.last && o.first <= last; }
  bool operator==(const PortRange&) const = default;
};

struct Limits {
  uint64_t max_connections = 100000;
  uint32_t connect_timeout_ms = 5000;
  uint32_t idle_timeout_s = 3600;
  uint32_t udp_idle_timeout_s = 30;
  uint32_t overlap_ms = 10000;
  uint32_t drain_timeout_s = 300;
  // UDP: live flows one client address may hold on a route; new ones beyond are dropped
  // (live flows are never evicted to make room).
  uint32_t udp_flows_per_client = 256;
  bool operator==(const Limits&) const = default;
};

// Per-route overrides of Limits ("timeouts": {...} in a route); unset means "use limits".
struct RouteTimeouts {
  std::optional<uint32_t> connect_timeout_ms;
  std::optional<uint32_t> idle_timeout_s;
  std::optional<uint32_t> udp_idle_timeout_s;
  std::optional<uint32_t> drain_timeout_s;
  bool operator==(const RouteTimeouts&) const = default;
};

struct Tls {
  TlsMode mode = TlsMode::None;
  std::vector<std::string> domains;  // lower-cased; "*.example.com" = exactly one label
  bool is_default = false;           // "default": true
  std::string cert;                  // terminate only
  std::string key;                   // terminate only
  std::vector<std::string> alpn;     // terminate only: protocols offered, in preference order
  // How long a client may take to send its ClientHello (and a PROXY header before it).
  uint32_t hello_timeout_ms = 5000;
  bool operator==(const Tls&) const = default;
};

// Either a direct target {host, port} or a LAN device behind a gateway
// {gateway, lan_host, lan_port}. On a gateway's own file, {lan_host, lan_port} (gateway
// optional, must then be this gateway's id).
struct Target {
  std::string host;  // direct: IP literal or host name
  uint16_t port = 0;
  std::string gateway;   // non-empty: via that gateway
  std::string lan_host;  // non-empty: a LAN device (edge via gateway, or gateway role)
  uint16_t lan_port = 0;
  bool via_gateway() const { return !gateway.empty(); }
  bool is_lan() const { return !lan_host.empty(); }
  bool operator==(const Target&) const = default;
};

struct Cidr {
  std::string text;       // as written, for messages
  bool v6 = false;
  uint8_t addr[16] = {};  // network byte order
  uint8_t prefix = 0;
  bool operator==(const Cidr&) const = default;
};

struct Wol {
  std::string mac;        // "aa:bb:cc:dd:ee:ff"
  std::string broadcast;  // optional, default: the LAN broadcast
  uint32_t wait_s = 60;
  bool operator==(const Wol&) const = default;
};

struct Route {
  std::string id;
  Protocol protocol = Protocol::Tcp;
  std::string listen;  // bind address; empty = role default (edge: all, gateway: tunnel_ip)
  PortRange listen_port;
  Target target;
  Tls tls;
  RouteTimeouts timeouts;
  std::optional<uint64_t> max_connections;
  std::vector<Cidr> allow;  // empty = everyone
  ProxyProtocol proxy_protocol = ProxyProtocol::None;
  bool accept_proxy_protocol = false;
  std::optional<Wol> wol;
  // Gateway role, set by the edge's sync: every TCP connection starts with the edge's PROXY v2
  // hop header (the real client, the route id in TLV 0xE0); hop routes may share a port.
  bool hop = false;

  bool has_tcp() const { return protocol != Protocol::Udp; }
  bool has_udp() const { return protocol != Protocol::Tcp; }
  // Target port for listen port p (1:1 mapping keeping the offset within the range).
  uint16_t target_port_for(uint16_t p) const {
    uint16_t base = target.is_lan() ? target.lan_port : target.port;
    if (target.via_gateway()) base = listen_port.first;  // edge -> gateway keeps the port
    return static_cast<uint16_t>(base + (p - listen_port.first));
  }
  bool operator==(const Route&) const = default;
};

struct Gateway {
  std::string id;
  std::string tunnel_ip;
  std::string token_file;
  bool operator==(const Gateway&) const = default;
};

struct Sync {
  std::string listen;      // edge: "10.8.0.1:7946"
  std::string edge;        // gateway: "10.8.0.1:7946"
  std::string token_file;  // gateway
  bool operator==(const Sync&) const = default;
};

struct Config {
  Role role = Role::Edge;
  Dataplane dataplane = Dataplane::Auto;
  unsigned workers = 0;  // 0 = one per online core
  std::string state_dir = "/var/lib/ringfwd";
  std::vector<uint16_t> blocked_ports;  // effective list (env override applied, sync port added)
  // The file's own "blocked_ports", as written: what to_json() saves, so that writing the
  // config back never bakes RINGFWD_BLOCKED_PORTS or the sync port into the file.
  std::vector<uint16_t> file_blocked_ports;
  Limits limits;
  std::vector<Gateway> gateways;  // edge
  std::optional<Sync> sync;
  std::string gateway_id;  // gateway role
  std::string tunnel_ip;   // gateway role
  std::vector<Route> routes;

  const Gateway* find_gateway(std::string_view id) const;
  const Route* find_route(std::string_view id) const;
  // Field by field, every field (blocked_ports and file_blocked_ports both).
  bool operator==(const Config&) const = default;
};

// What a problem is about, so that callers (D-Bus errors) need not match message text.
enum class ProblemKind { Invalid, BlockedPort, PortConflict };

// One validation problem: "routes[3].listen_port: port 22 is blocked (blocked_ports)".
struct Problem {
  std::string path;
  std::string message;
  ProblemKind kind = ProblemKind::Invalid;
  std::string str() const { return path.empty() ? message : path + ": " + message; }
};

struct ParseOptions {
  // RINGFWD_BLOCKED_PORTS value ("22,53,51820"); when set it replaces the file's list.
  // An empty string means "no blocked ports" (load_file treats an empty variable as unset).
  std::optional<std::string> blocked_ports_env;
  // Check that tls.cert/tls.key are readable PEM files. Off only where the files live on
  // another machine (a route received over sync is checked by the edge that owns it).
  bool check_files = true;
};

// Deeper certificate check for terminate routes (does the key match the certificate?): set
// once by the programs that link the TLS layer; returns "" when fine, else the problem.
// parse() calls it after the PEM checks when ParseOptions::check_files is on.
using CertificateCheck = std::string (*)(const std::string& cert, const std::string& key);
void set_certificate_check(CertificateCheck fn);

struct ParseResult {
  std::optional<Config> config;   // set only when problems is empty
  std::vector<Problem> problems;  // every problem found, in document order
  bool ok() const { return config.has_value() && problems.empty(); }
};

// Parses and validates a whole config: every field, blocked ports, and (through
// rf::routing::find_conflicts) the conflict rules. Never throws.
ParseResult parse(std::string_view json, const ParseOptions& opts = {});
// Reads FILE (problem path "" with the OS error if unreadable) and parses it. Takes
// RINGFWD_BLOCKED_PORTS from the environment.
ParseResult load_file(const std::string& path);

// One route object (as AddRoute/UpdateRoute receive it), validated by the same code as a
// route inside a config file, against `base`: its role, gateways, gateway_id and effective
// blocked_ports (opts.blocked_ports_env is not consulted: base already applied it). Problem
// paths start at "route" ("route.listen_port: port 22 is blocked (blocked_ports)"), with the
// ProblemKind parse() gives. Conflicts with other routes are NOT checked: the caller runs
// routing::find_conflicts on the new set. Never throws.
struct RouteParse {
  std::optional<Route> route;     // set only when problems is empty
  std::vector<Problem> problems;  // in document order, blocked ports last
  bool ok() const { return route.has_value() && problems.empty(); }
};
RouteParse parse_route(std::string_view route_json, const Config& base,
                       const ParseOptions& opts = {});

// The canonical JSON text of a config: 2-space indent, a trailing newline, keys in a fixed
// order, defaults written out. parse(to_json(c)) gives back c. blocked_ports is written from
// file_blocked_ports (the operator's list), never from the effective list.
std::string to_json(const Config& cfg);
// One route as compact JSON, the same members to_json(Config) writes for it.
std::string to_json(const Route& route);

// `ringfwd --check FILE` and `ringfwdctl check FILE`: load_file, every problem on stderr as
// "path: message" and a count, or a one-line summary on stdout. True when the file is valid.
bool check_file(const std::string& path);

// Parses "A-B" or "A" into a range; nullopt with a message on error.
std::optional<PortRange> parse_port_range(std::string_view text, std::string* why);

}  // namespace rf::config
