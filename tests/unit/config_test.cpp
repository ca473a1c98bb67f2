// rf::config::parse: every rule of SPEC §3, each problem with its exact JSON path and a
// stable piece of its message, the SPEC examples, the env override, and the file loader.
#include "ringfwd/config/config.hpp"

#include <gtest/gtest.h>
#include <stdlib.h>
#include <sys/stat.h>
#include <unistd.h>

#include <filesystem>
#include <fstream>
#include <string>
#include <vector>

#include "test_support.hpp"

namespace rf::config {
namespace {

using rf::test::kCertPem;
using rf::test::kKeyPem;
using rf::test::TempDir;
using rf::test::tls_dir;
using rf::test::with_dir;

std::string edge(const std::string& routes, const std::string& extra = "") {
  return R"({"role": "edge", "gateways": [{"id": "home", "tunnel_ip": "10.8.0.2"}], )" + extra +
         R"("routes": [)" + routes + "]}";
}

std::string gateway(const std::string& routes, const std::string& extra = "") {
  return R"({"role": "gateway", "gateway_id": "home", "tunnel_ip": "10.8.0.2", )" + extra +
         R"("routes": [)" + routes + "]}";
}

// Route "a": direct TCP 2222 -> 192.0.2.10:22, plus `more` members (each ending in ", ").
std::string direct(const std::string& more = "") {
  return R"({"id": "a", )" + more +
         R"("listen_port": 2222, "target": {"host": "192.0.2.10", "port": 22}})";
}

// Route "a": TCP 3389 to a LAN device behind gateway "home", plus `more` members.
std::string via_home(const std::string& more = "") {
  return R"({"id": "a", )" + more +
         R"("listen_port": 3389, "target": {"gateway": "home", "lan_host": "192.168.2.100", "lan_port": 3389}})";
}

// Route "a" on 443 with the given tls object.
std::string tls_route(const std::string& tls, const std::string& protocol = "tcp") {
  return R"({"id": "a", "protocol": ")" + protocol + R"(", "listen_port": 443, "tls": )" + tls +
         R"(, "target": {"host": "127.0.0.1", "port": 8080}})";
}

std::string dump(const ParseResult& r) {
  std::string s;
  for (const auto& p : r.problems) s += "  " + p.str() + "\n";
  return s.empty() ? "  (no problems)\n" : s;
}

// ---- one case per rule: the file, the path of the problem, a stable part of its message ----

struct Case {
  const char* name;
  std::string json;
  std::string path;
  std::string message;
  size_t count = 1;  // problems expected in all; the first must match
  ProblemKind kind = ProblemKind::Invalid;
};

std::vector<Case> cases() {
  return {
      // JSON text
      {"syntax_error_line_column", "{\"role\": \"edge\",\n \"workers\": tru }", "",
       "invalid JSON at line 2, column 13: syntax error"},
      {"incomplete_json", R"({"role": "edge")", "",
       "invalid JSON at line 1, column 16: incomplete JSON"},
      {"empty_text", "", "", "invalid JSON at line 1, column 1: incomplete JSON"},
      {"trailing_comma", "{\"role\": \"edge\",\n}", "",
       "invalid JSON at line 2, column 1: syntax error"},
      {"extra_data", "{\"role\": \"edge\"}\n{}", "",
       "invalid JSON at line 2, column 1: extra data"},
      {"top_level_array", "[]", "", "the configuration must be a JSON object {...}, not an array"},
      {"duplicate_top_key", R"({"role": "edge", "role": "edge"})", "role",
       R"(duplicate key "role")"},
      {"duplicate_route_key",
       edge(
           R"({"id": "a", "listen_port": 1, "listen_port": 2222, "target": {"host": "h", "port": 1}})"),
       "routes[0].listen_port", R"(duplicate key "listen_port")"},

      // top level
      {"role_missing", "{}", "role", R"(required ("edge" or "gateway"))"},
      {"role_unknown", R"({"role": "router"})", "role",
       R"(expected one of "edge", "gateway" (got "router"))"},
      {"role_not_string", R"({"role": 1})", "role", "expected a string, got a number"},
      {"unknown_top_key_close", R"({"role": "edge", "rolle": 1})", "rolle",
       R"(unknown key (did you mean "role"?))"},
      {"unknown_top_key_far", R"({"role": "edge", "frobnicate": 1})", "frobnicate",
       "unknown key (known keys: role, dataplane"},
      {"unknown_key_odd_characters", R"({"role": "edge", "a b": 1})", R"(["a b"])", "unknown key"},
      {"dataplane_unknown", R"({"role": "edge", "dataplane": "xdp"})", "dataplane",
       R"(expected one of "auto", "sockmap", "splice", "copy" (got "xdp"))"},
      {"workers_negative", R"({"role": "edge", "workers": -1})", "workers",
       "must be between 0 and 1024 (got -1)"},
      {"workers_too_many", R"({"role": "edge", "workers": 1025})", "workers",
       "must be between 0 and 1024 (got 1025)"},
      {"workers_string", R"({"role": "edge", "workers": "4"})", "workers",
       "expected an integer, got a string"},
      {"workers_fraction", R"({"role": "edge", "workers": 1.5})", "workers",
       "expected an integer, got 1.5"},
      {"workers_huge", R"({"role": "edge", "workers": 18446744073709551615})", "workers",
       "must be between 0 and 1024 (got 18446744073709551615)"},
      {"state_dir_relative", R"({"role": "edge", "state_dir": "var/lib"})", "state_dir",
       "must be an absolute path"},
      {"state_dir_empty", R"({"role": "edge", "state_dir": ""})", "state_dir", "must not be empty"},
      {"blocked_ports_not_array", R"({"role": "edge", "blocked_ports": "22"})", "blocked_ports",
       "expected an array [...], got a string"},
      {"blocked_port_zero", R"({"role": "edge", "blocked_ports": [22, 0]})", "blocked_ports[1]",
       "must be between 1 and 65535 (got 0)"},
      {"limits_not_object", R"({"role": "edge", "limits": 5})", "limits",
       "expected an object {...}, got a number"},
      {"limits_zero", R"({"role": "edge", "limits": {"max_connections": 0}})",
       "limits.max_connections", "must be at least 1 (got 0)"},
      {"limits_u32_overflow", R"({"role": "edge", "limits": {"overlap_ms": 4294967296}})",
       "limits.overlap_ms", "must be between 1 and 4294967295 (got 4294967296)"},
      {"limits_typo", R"({"role": "edge", "limits": {"idle_timeout": 5}})", "limits.idle_timeout",
       R"(did you mean "idle_timeout_s"?)"},

      // role-specific keys
      {"edge_with_gateway_id", R"({"role": "edge", "gateway_id": "home"})", "gateway_id",
       "only valid for role gateway"},
      {"edge_with_tunnel_ip", R"({"role": "edge", "tunnel_ip": "10.8.0.2"})", "tunnel_ip",
       "only valid for role gateway"},
      {"gateway_with_gateways", gateway("", R"("gateways": [], )"), "gateways",
       "only valid for role edge"},
      {"gateway_without_id", R"({"role": "gateway", "tunnel_ip": "10.8.0.2"})", "gateway_id",
       "required for role gateway"},
      {"gateway_without_tunnel_ip", R"({"role": "gateway", "gateway_id": "home"})", "tunnel_ip",
       "required for role gateway"},
      {"gateway_bad_tunnel_ip",
       R"({"role": "gateway", "gateway_id": "home", "tunnel_ip": "10.8.0"})", "tunnel_ip",
       R"(expected an IP address like "192.0.2.1" or "2001:db8::1" (got "10.8.0"))"},
      {"gateway_bad_id", R"({"role": "gateway", "gateway_id": "Home", "tunnel_ip": "10.8.0.2"})",
       "gateway_id", R"(invalid id "Home")"},

      // sync
      {"edge_sync_without_listen", R"({"role": "edge", "sync": {}})", "sync.listen",
       "required on an edge"},
      {"edge_sync_no_port", R"({"role": "edge", "sync": {"listen": "10.8.0.1"}})", "sync.listen",
       R"(is not "IP:port")"},
      {"edge_sync_port_zero", R"({"role": "edge", "sync": {"listen": "10.8.0.1:0"}})",
       "sync.listen", "port 0 is out of range (1-65535)"},
      {"edge_sync_v6_without_brackets", R"({"role": "edge", "sync": {"listen": "fd00::1:7946"}})",
       "sync.listen", R"(is not "IP:port")"},
      {"edge_sync_host_name", R"({"role": "edge", "sync": {"listen": "edge.lan:7946"}})",
       "sync.listen", R"(is not "IP:port")"},
      {"edge_sync_edge_key",
       R"({"role": "edge", "sync": {"listen": "10.8.0.1:7946", "edge": "10.8.0.1:7946"}})",
       "sync.edge", "only valid for role gateway"},
      {"edge_sync_token_file",
       R"({"role": "edge", "sync": {"listen": "10.8.0.1:7946", "token_file": "/t"}})",
       "sync.token_file", "only valid for role gateway (an edge reads each gateways[].token_file)"},
      {"edge_sync_gateway_without_token", edge("", R"("sync": {"listen": "10.8.0.1:7946"}, )"),
       "gateways[0].token_file", R"(required when the edge has a "sync" section)"},
      {"gateway_sync_without_token", gateway("", R"("sync": {"edge": "10.8.0.1:7946"}, )"),
       "sync.token_file", "required on a gateway"},
      {"gateway_sync_without_edge",
       gateway("", R"("sync": {"token_file": "/etc/ringfwd/token"}, )"), "sync.edge",
       "required on a gateway"},
      {"gateway_sync_listen",
       gateway(
           "",
           R"("sync": {"listen": "10.8.0.1:7946", "edge": "10.8.0.1:7946", "token_file": "/t"}, )"),
       "sync.listen", "only valid for role edge"},
      {"gateway_sync_relative_token",
       gateway("", R"("sync": {"edge": "10.8.0.1:7946", "token_file": "token"}, )"),
       "sync.token_file", "must be an absolute path"},

      // gateways[]
      {"gateways_not_array", R"({"role": "edge", "gateways": {}})", "gateways",
       "expected an array"},
      {"gateway_entry_not_object", R"({"role": "edge", "gateways": ["home"]})", "gateways[0]",
       "expected an object"},
      {"gateway_missing_id", R"({"role": "edge", "gateways": [{"tunnel_ip": "10.8.0.2"}]})",
       "gateways[0].id", "required"},
      {"gateway_missing_tunnel_ip", R"({"role": "edge", "gateways": [{"id": "home"}]})",
       "gateways[0].tunnel_ip", "required"},
      {"gateway_entry_bad_id",
       R"({"role": "edge", "gateways": [{"id": "my home", "tunnel_ip": "10.8.0.2"}]})",
       "gateways[0].id", R"(invalid id "my home")"},
      {"gateway_duplicate_id",
       R"({"role": "edge", "gateways": [{"id": "home", "tunnel_ip": "10.8.0.2"}, {"id": "home", "tunnel_ip": "10.8.0.3"}]})",
       "gateways[1].id", R"(duplicate id "home" (also gateways[0]))"},
      {"gateway_duplicate_tunnel_ip",
       R"({"role": "edge", "gateways": [{"id": "home", "tunnel_ip": "10.8.0.2"}, {"id": "office", "tunnel_ip": "10.8.0.2"}]})",
       "gateways[1].tunnel_ip", "10.8.0.2 is already the tunnel_ip of gateways[0]"},
      {"gateway_token_relative",
       R"({"role": "edge", "gateways": [{"id": "home", "tunnel_ip": "10.8.0.2", "token_file": "t"}]})",
       "gateways[0].token_file", "must be an absolute path"},
      {"gateway_key_typo",
       R"({"role": "edge", "gateways": [{"id": "home", "tunnelip": "10.8.0.2"}]})",
       "gateways[0].tunnelip", R"(did you mean "tunnel_ip"?)", 2},

      // routes[]: shape and id
      {"routes_not_array", R"({"role": "edge", "routes": {}})", "routes", "expected an array"},
      {"route_not_object", edge("1"), "routes[0]", "expected an object {...}, got a number"},
      {"route_missing_id", edge(R"({"listen_port": 1, "target": {"host": "h", "port": 1}})"),
       "routes[0].id", "required"},
      {"route_missing_port", edge(R"({"id": "a", "target": {"host": "h", "port": 1}})"),
       "routes[0].listen_port", "required"},
      {"route_missing_target", edge(R"({"id": "a", "listen_port": 1})"), "routes[0].target",
       "required"},
      {"route_id_upper_case",
       edge(R"({"id": "Web", "listen_port": 1, "target": {"host": "h", "port": 1}})"),
       "routes[0].id", R"(invalid id "Web": use 1 to 63 characters a-z, 0-9, '_' or '-')"},
      {"route_id_leading_dash",
       edge(R"({"id": "-web", "listen_port": 1, "target": {"host": "h", "port": 1}})"),
       "routes[0].id", R"(invalid id "-web")"},
      {"route_id_64_chars",
       edge(R"({"id": ")" + std::string(64, 'a') +
            R"(", "listen_port": 1, "target": {"host": "h", "port": 1}})"),
       "routes[0].id", "invalid id"},
      {"route_id_duplicate",
       edge(direct() + ", " +
            R"({"id": "a", "listen_port": 2223, "target": {"host": "h", "port": 1}})"),
       "routes[1].id", R"(duplicate id "a" (also routes[0]))"},
      {"route_key_typo",
       edge(R"({"id": "a", "listen_prot": 2222, "target": {"host": "h", "port": 1}})"),
       "routes[0].listen_prot", R"(unknown key (did you mean "listen_port"?))", 2},
      {"protocol_unknown", edge(direct(R"("protocol": "sctp", )")), "routes[0].protocol",
       R"(expected one of "tcp", "udp", "tcp+udp" (got "sctp"))"},
      {"listen_not_ip", edge(direct(R"("listen": "localhost", )")), "routes[0].listen",
       "expected an IP address"},

      // listen_port
      {"port_zero", edge(R"({"id": "a", "listen_port": 0, "target": {"host": "h", "port": 1}})"),
       "routes[0].listen_port", "must be between 1 and 65535 (got 0)"},
      {"port_too_high",
       edge(R"({"id": "a", "listen_port": 70000, "target": {"host": "h", "port": 1}})"),
       "routes[0].listen_port", "must be between 1 and 65535 (got 70000)"},
      {"port_bool", edge(R"({"id": "a", "listen_port": true, "target": {"host": "h", "port": 1}})"),
       "routes[0].listen_port", R"(expected a port number or a range "A-B", got a boolean)"},
      {"port_all", edge(R"({"id": "a", "listen_port": "all", "target": {"host": "h", "port": 1}})"),
       "routes[0].listen_port", R"("all ports" is refused on purpose: each port is a decision)"},
      {"port_star", edge(R"({"id": "a", "listen_port": "*", "target": {"host": "h", "port": 1}})"),
       "routes[0].listen_port", R"("all ports" is refused on purpose)"},
      {"port_full_range",
       edge(R"({"id": "a", "listen_port": "1-65535", "target": {"host": "h", "port": 1}})"),
       "routes[0].listen_port",
       R"(a range may hold at most 1000 ports (got 65535); "all ports" is refused on purpose: each port is a decision)"},
      {"port_range_1001",
       edge(R"({"id": "a", "listen_port": "1000-2000", "target": {"host": "h", "port": 1}})"),
       "routes[0].listen_port", "at most 1000 ports (got 1001)"},
      {"port_range_reversed",
       edge(R"({"id": "a", "listen_port": "30-20", "target": {"host": "h", "port": 1}})"),
       "routes[0].listen_port", "range 30-20 is reversed"},
      {"port_range_zero",
       edge(R"({"id": "a", "listen_port": "0-10", "target": {"host": "h", "port": 1}})"),
       "routes[0].listen_port", "port 0 is out of range (1-65535)"},
      {"port_text",
       edge(R"({"id": "a", "listen_port": "ssh", "target": {"host": "h", "port": 1}})"),
       "routes[0].listen_port", R"("ssh" is not a port or a range "A-B")"},
      {"port_range_spaces",
       edge(R"({"id": "a", "listen_port": "20 - 30", "target": {"host": "h", "port": 1}})"),
       "routes[0].listen_port", "is not a port or a range"},

      // blocked ports
      {"blocked_single", edge(direct(), R"("blocked_ports": [2222], )"), "routes[0].listen_port",
       "port 2222 is blocked (blocked_ports)", 1, ProblemKind::BlockedPort},
      {"blocked_in_range",
       edge(R"({"id": "a", "listen_port": "20-30", "target": {"host": "h", "port": 1020}})",
            R"("blocked_ports": [22, 53], )"),
       "routes[0].listen_port", "range 20-30 includes blocked port 22 (blocked_ports)", 1,
       ProblemKind::BlockedPort},
      {"blocked_several_in_range",
       edge(R"({"id": "a", "listen_port": "20-30", "target": {"host": "h", "port": 1020}})",
            R"("blocked_ports": [22, 25], )"),
       "routes[0].listen_port", "range 20-30 includes blocked ports 22, 25 (blocked_ports)", 1,
       ProblemKind::BlockedPort},
      {"blocked_sync_port",
       R"({"role": "edge", "sync": {"listen": "10.8.0.1:7946"}, "routes": [{"id": "a", "listen_port": 7946, "target": {"host": "h", "port": 1}}]})",
       "routes[0].listen_port", "port 7946 is blocked (blocked_ports)", 1,
       ProblemKind::BlockedPort},

      // target
      {"target_not_object", edge(R"({"id": "a", "listen_port": 1, "target": "h:1"})"),
       "routes[0].target", "expected an object"},
      {"target_mixed",
       edge(R"({"id": "a", "listen_port": 1, "target": {"host": "h", "port": 1, "lan_port": 2}})"),
       "routes[0].target",
       R"(mixes the two target forms: use {"host", "port"} for a direct target or {"gateway", "lan_host", "lan_port"})"},
      {"target_empty", edge(R"({"id": "a", "listen_port": 1, "target": {}})"), "routes[0].target",
       R"(no target given: use {"host", "port"} for a direct target or {"gateway", "lan_host", "lan_port"})"},
      {"target_direct_without_port",
       edge(R"({"id": "a", "listen_port": 1, "target": {"host": "h"}})"), "routes[0].target.port",
       R"(required (a direct target is {"host", "port"}))"},
      {"target_lan_without_gateway_on_edge",
       edge(
           R"({"id": "a", "listen_port": 1, "target": {"lan_host": "192.168.2.1", "lan_port": 1}})"),
       "routes[0].target.gateway",
       R"(required (a LAN target is {"gateway", "lan_host", "lan_port"}))"},
      {"target_unknown_gateway",
       edge(
           R"({"id": "a", "listen_port": 1, "target": {"gateway": "office", "lan_host": "192.168.2.1", "lan_port": 1}})"),
       "routes[0].target.gateway", R"(unknown gateway "office" (known: "home"))"},
      {"target_gateway_none_configured",
       R"({"role": "edge", "routes": [{"id": "a", "listen_port": 1, "target": {"gateway": "home", "lan_host": "h", "lan_port": 1}}]})",
       "routes[0].target.gateway", R"(unknown gateway "home" (no gateways are configured))"},
      {"target_bad_host",
       edge(R"({"id": "a", "listen_port": 1, "target": {"host": "bad_host!", "port": 1}})"),
       "routes[0].target.host", R"("bad_host!" is neither an IP address nor a valid host name)"},
      {"target_bad_ipv4",
       edge(R"({"id": "a", "listen_port": 1, "target": {"host": "192.168.1.300", "port": 1}})"),
       "routes[0].target.host", "is neither an IP address nor a valid host name"},
      {"target_label_dash",
       edge(R"({"id": "a", "listen_port": 1, "target": {"host": "-a.example.com", "port": 1}})"),
       "routes[0].target.host", "is neither an IP address nor a valid host name"},
      {"target_bad_lan_host",
       edge(
           R"({"id": "a", "listen_port": 1, "target": {"gateway": "home", "lan_host": "a..b", "lan_port": 1}})"),
       "routes[0].target.lan_host", "is neither an IP address nor a valid host name"},
      {"target_lan_port_zero",
       edge(
           R"({"id": "a", "listen_port": 1, "target": {"gateway": "home", "lan_host": "h", "lan_port": 0}})"),
       "routes[0].target.lan_port", "must be between 1 and 65535 (got 0)"},
      {"target_key_typo",
       edge(
           R"({"id": "a", "listen_port": 1, "target": {"gateway": "home", "lan_hots": "h", "lan_port": 1}})"),
       "routes[0].target.lan_hots", R"(did you mean "lan_host"?)", 2},
      {"target_range_past_65535",
       edge(R"({"id": "a", "listen_port": "60000-60010", "target": {"host": "h", "port": 65530}})"),
       "routes[0].target.port", "the range 60000-60010 maps to 65530-65540, past port 65535"},
      {"target_lan_range_past_65535",
       edge(
           R"({"id": "a", "listen_port": "100-103", "target": {"gateway": "home", "lan_host": "h", "lan_port": 65533}})"),
       "routes[0].target.lan_port", "maps to 65533-65536, past port 65535"},
      {"gateway_target_other_gateway",
       gateway(
           R"({"id": "a", "listen_port": 1, "target": {"gateway": "office", "lan_host": "h", "lan_port": 1}})"),
       "routes[0].target.gateway", R"("office" is not this gateway (gateway_id "home"))"},
      {"gateway_target_forms",
       gateway(R"({"id": "a", "listen_port": 1, "target": {"gateway": "home"}})"),
       "routes[0].target.lan_host", R"(required (a LAN target is {"lan_host", "lan_port"}))", 2},
      {"gateway_target_mixed",
       gateway(R"({"id": "a", "listen_port": 1, "target": {"host": "h", "lan_port": 1}})"),
       "routes[0].target",
       R"(use {"lan_host", "lan_port"} for a LAN device or {"host", "port"} for a direct target)"},

      // tls
      {"tls_not_object", edge(tls_route("true")), "routes[0].tls", "expected an object"},
      {"tls_mode_missing", edge(tls_route(R"({"domains": ["a.example.com"]})")),
       "routes[0].tls.mode", R"(required ("none", "passthrough" or "terminate"))"},
      {"tls_mode_unknown", edge(tls_route(R"({"mode": "sni"})")), "routes[0].tls.mode",
       R"(expected one of "none", "passthrough", "terminate" (got "sni"))"},
      {"tls_on_udp",
       edge(tls_route(R"({"mode": "passthrough", "domains": ["a.example.com"]})", "udp")),
       "routes[0].tls", R"(TLS needs protocol "tcp" (this route is "udp"))"},
      {"tls_on_tcp_udp",
       edge(tls_route(R"({"mode": "passthrough", "domains": ["a.example.com"]})", "tcp+udp")),
       "routes[0].tls", R"(TLS needs protocol "tcp" (this route is "tcp+udp"))"},
      {"tls_passthrough_without_domains", edge(tls_route(R"({"mode": "passthrough"})")),
       "routes[0].tls.domains", R"(required unless "default": true)"},
      {"tls_passthrough_empty_domains",
       edge(tls_route(R"({"mode": "passthrough", "domains": []})")), "routes[0].tls.domains",
       R"(must list at least one name unless "default": true)"},
      {"tls_domains_not_array",
       edge(tls_route(R"({"mode": "passthrough", "domains": "a.example.com"})")),
       "routes[0].tls.domains", "expected an array"},
      {"tls_double_wildcard",
       edge(tls_route(R"({"mode": "passthrough", "domains": ["*.*.example.com"]})")),
       "routes[0].tls.domains[0]",
       R"(a wildcard may only be the whole first label, as in "*.example.com")"},
      {"tls_partial_wildcard",
       edge(tls_route(R"({"mode": "passthrough", "domains": ["a.com", "w*.example.com"]})")),
       "routes[0].tls.domains[1]", "a wildcard may only be the whole first label"},
      {"tls_inner_wildcard",
       edge(tls_route(R"({"mode": "passthrough", "domains": ["a.*.example.com"]})")),
       "routes[0].tls.domains[0]", "a wildcard may only be the whole first label"},
      {"tls_ip_name", edge(tls_route(R"({"mode": "passthrough", "domains": ["192.0.2.1"]})")),
       "routes[0].tls.domains[0]", "is an IP address; SNI carries host names only"},
      {"tls_bad_name", edge(tls_route(R"({"mode": "passthrough", "domains": ["exa mple.com"]})")),
       "routes[0].tls.domains[0]", R"("exa mple.com" is not a valid DNS name)"},
      {"tls_trailing_dot",
       edge(tls_route(R"({"mode": "passthrough", "domains": ["a.example.com."]})")),
       "routes[0].tls.domains[0]", "must not end with a dot"},
      {"tls_duplicate_name",
       edge(tls_route(R"({"mode": "passthrough", "domains": ["a.example.com", "A.example.com"]})")),
       "routes[0].tls.domains[1]", R"(duplicate name "a.example.com")"},
      {"tls_default_not_bool", edge(tls_route(R"({"mode": "passthrough", "default": "yes"})")),
       "routes[0].tls.default", "expected true or false, got a string"},
      {"tls_passthrough_with_cert",
       edge(tls_route(
           R"({"mode": "passthrough", "domains": ["a.example.com"], "cert": "@DIR@/wiki.pem"})")),
       "routes[0].tls.cert", R"(only valid with mode "terminate")"},
      {"tls_none_with_domains",
       edge(tls_route(R"({"mode": "none", "domains": ["a.example.com"]})")),
       "routes[0].tls.domains", R"(only valid with mode "passthrough" or "terminate")"},
      {"tls_none_with_key", edge(tls_route(R"({"mode": "none", "key": "@DIR@/wiki.key"})")),
       "routes[0].tls.key", R"(only valid with mode "terminate")"},
      {"tls_terminate_without_files",
       edge(tls_route(R"({"mode": "terminate", "domains": ["a.example.com"]})")),
       "routes[0].tls.cert", R"(required for mode "terminate")", 2},
      {"tls_terminate_missing_cert",
       edge(tls_route(
           R"({"mode": "terminate", "domains": ["a.example.com"], "cert": "/nonexistent/x.pem", "key": "@DIR@/wiki.key"})")),
       "routes[0].tls.cert", "cannot read /nonexistent/x.pem: No such file or directory"},
      {"tls_terminate_cert_is_dir",
       edge(tls_route(
           R"({"mode": "terminate", "domains": ["a.example.com"], "cert": "@DIR@", "key": "@DIR@/wiki.key"})")),
       "routes[0].tls.cert", "Is a directory"},
      {"tls_terminate_key_as_cert",
       edge(tls_route(
           R"({"mode": "terminate", "domains": ["a.example.com"], "cert": "@DIR@/wiki.key", "key": "@DIR@/wiki.key"})")),
       "routes[0].tls.cert", "does not hold a PEM certificate"},
      {"tls_terminate_cert_as_key",
       edge(tls_route(
           R"({"mode": "terminate", "domains": ["a.example.com"], "cert": "@DIR@/wiki.pem", "key": "@DIR@/wiki.pem"})")),
       "routes[0].tls.key", "does not hold a PEM private key"},
      {"tls_terminate_relative_cert",
       edge(tls_route(
           R"({"mode": "terminate", "domains": ["a.example.com"], "cert": "wiki.pem", "key": "@DIR@/wiki.key"})")),
       "routes[0].tls.cert", R"(must be an absolute path (got "wiki.pem"))"},

      {"tls_alpn_on_passthrough",
       edge(tls_route(R"({"mode": "passthrough", "domains": ["a.example.com"], "alpn": ["h2"]})")),
       "routes[0].tls.alpn", R"(only valid with mode "terminate")"},
      {"tls_alpn_empty_name",
       edge(tls_route(
           R"({"mode": "terminate", "domains": ["a.example.com"], "cert": "@DIR@/wiki.pem", "key": "@DIR@/wiki.key", "alpn": [""]})")),
       "routes[0].tls.alpn[0]", "must not be empty"},
      {"tls_alpn_duplicate",
       edge(tls_route(
           R"({"mode": "terminate", "domains": ["a.example.com"], "cert": "@DIR@/wiki.pem", "key": "@DIR@/wiki.key", "alpn": ["h2", "h2"]})")),
       "routes[0].tls.alpn[1]", R"(duplicate protocol "h2")"},
      {"tls_hello_timeout_too_small",
       edge(tls_route(R"({"mode": "passthrough", "domains": ["a.example.com"], "hello_timeout_ms": 10})")),
       "routes[0].tls.hello_timeout_ms", "must be 100-600000 (milliseconds)"},
      {"tls_hello_timeout_on_none", edge(tls_route(R"({"mode": "none", "hello_timeout_ms": 1000})")),
       "routes[0].tls.hello_timeout_ms", R"(only valid with mode "passthrough" or "terminate")"},
      {"limits_udp_flows_per_client_zero",
       R"({"role": "edge", "limits": {"udp_flows_per_client": 0}})",
       "limits.udp_flows_per_client", "must be at least 1"},

      // timeouts, limits, allow, PROXY protocol
      {"timeouts_zero", edge(direct(R"("timeouts": {"connect_timeout_ms": 0}, )")),
       "routes[0].timeouts.connect_timeout_ms", "must be at least 1 (got 0)"},
      {"timeouts_typo", edge(direct(R"("timeouts": {"idle_timeout": 5}, )")),
       "routes[0].timeouts.idle_timeout", R"(did you mean "idle_timeout_s"?)"},
      {"timeouts_overlap_not_per_route", edge(direct(R"("timeouts": {"overlap_ms": 5}, )")),
       "routes[0].timeouts.overlap_ms", "unknown key"},
      {"max_connections_zero", edge(direct(R"("max_connections": 0, )")),
       "routes[0].max_connections", "must be at least 1 (got 0)"},
      {"allow_not_array", edge(direct(R"("allow": "10.0.0.0/8", )")), "routes[0].allow",
       "expected an array"},
      {"allow_empty", edge(direct(R"("allow": [], )")), "routes[0].allow", R"(leave "allow" out)"},
      {"allow_host_bits", edge(direct(R"("allow": ["10.0.0.1/8"], )")), "routes[0].allow[0]",
       R"(has bits set past the prefix (did you mean "10.0.0.0/8"?))"},
      {"allow_v6_host_bits", edge(direct(R"("allow": ["10.0.0.0/8", "2001:db8::1/32"], )")),
       "routes[0].allow[1]", R"((did you mean "2001:db8::/32"?))"},
      {"allow_v4_prefix_33", edge(direct(R"("allow": ["10.0.0.0/33"], )")), "routes[0].allow[0]",
       "the prefix may be at most /32 for an IPv4 address"},
      {"allow_v6_prefix_129", edge(direct(R"("allow": ["2001:db8::/129"], )")),
       "routes[0].allow[0]", "the prefix may be at most /128 for an IPv6 address"},
      {"allow_name", edge(direct(R"("allow": ["example.com"], )")), "routes[0].allow[0]",
       R"("example.com" is not an address or CIDR)"},
      {"allow_empty_prefix", edge(direct(R"("allow": ["10.0.0.0/"], )")), "routes[0].allow[0]",
       "has an invalid prefix length"},
      {"allow_not_string", edge(direct(R"("allow": [10], )")), "routes[0].allow[0]",
       "expected a string, got a number"},
      {"proxy_protocol_unknown", edge(direct(R"("proxy_protocol": "v3", )")),
       "routes[0].proxy_protocol", R"(expected one of "v1", "v2" (got "v3"))"},
      {"proxy_v1_udp", edge(direct(R"("protocol": "udp", "proxy_protocol": "v1", )")),
       "routes[0].proxy_protocol", R"(PROXY protocol v1 describes TCP only)"},
      {"accept_proxy_not_bool", edge(direct(R"("accept_proxy_protocol": "yes", )")),
       "routes[0].accept_proxy_protocol", "expected true or false"},

      // wol
      {"wol_on_direct_edge_route", edge(direct(R"("wol": {"mac": "aa:bb:cc:dd:ee:ff"}, )")),
       "routes[0].wol", "only valid for a route to a LAN device behind a gateway"},
      {"wol_bad_mac", edge(via_home(R"("wol": {"mac": "aa:bb:cc:dd:ee"}, )")), "routes[0].wol.mac",
       R"(expected a MAC address like "aa:bb:cc:dd:ee:ff" (got "aa:bb:cc:dd:ee"))"},
      {"wol_mixed_separators", edge(via_home(R"("wol": {"mac": "aa:bb-cc:dd:ee:ff"}, )")),
       "routes[0].wol.mac", "expected a MAC address"},
      {"wol_without_mac", edge(via_home(R"("wol": {"wait_s": 30}, )")), "routes[0].wol.mac",
       "required"},
      {"wol_v6_broadcast",
       edge(via_home(R"("wol": {"mac": "aa:bb:cc:dd:ee:ff", "broadcast": "ff02::1"}, )")),
       "routes[0].wol.broadcast", "expected an IPv4 broadcast address"},
      {"wol_wait_too_long",
       edge(via_home(R"("wol": {"mac": "aa:bb:cc:dd:ee:ff", "wait_s": 601}, )")),
       "routes[0].wol.wait_s", "must be between 1 and 600 (got 601)"},
      {"wol_wait_zero", edge(via_home(R"("wol": {"mac": "aa:bb:cc:dd:ee:ff", "wait_s": 0}, )")),
       "routes[0].wol.wait_s", "must be between 1 and 600 (got 0)"},
  };
}

class ProblemTest : public ::testing::TestWithParam<Case> {};

TEST_P(ProblemTest, ReportsPathAndMessage) {
  const Case& c = GetParam();
  ParseResult r = parse(with_dir(c.json));
  EXPECT_FALSE(r.ok());
  EXPECT_FALSE(r.config.has_value());
  ASSERT_EQ(r.problems.size(), c.count) << dump(r);
  EXPECT_EQ(r.problems[0].path, c.path) << dump(r);
  EXPECT_NE(r.problems[0].message.find(with_dir(c.message)), std::string::npos) << dump(r);
  EXPECT_EQ(r.problems[0].kind, c.kind) << dump(r);
  if (c.path.empty()) {
    EXPECT_EQ(r.problems[0].str(), r.problems[0].message);
  } else {
    EXPECT_EQ(r.problems[0].str(), r.problems[0].path + ": " + r.problems[0].message);
  }
}

INSTANTIATE_TEST_SUITE_P(Rules, ProblemTest, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

// Valid variants: each must parse with no problem at all (guards against over-strict rules).
struct Valid {
  const char* name;
  std::string json;
};

std::vector<Valid> valid_cases() {
  return {
      {"minimal_edge", R"({"role": "edge"})"},
      {"workers_as_float_integer", R"({"role": "edge", "workers": 4.0})"},
      {"workers_exponent", R"({"role": "edge", "workers": 1e1})"},
      {"edge_empty_routes", edge("")},
      {"route_id_63_chars", edge(R"({"id": ")" + std::string(63, 'a') +
                                 R"(", "listen_port": 1, "target": {"host": "h", "port": 1}})")},
      {"route_id_digits_dash_underscore",
       edge(R"({"id": "0a_b-c", "listen_port": 1, "target": {"host": "h", "port": 1}})")},
      {"port_as_string",
       edge(R"({"id": "a", "listen_port": "2222", "target": {"host": "h", "port": 22}})")},
      {"range_1000_ports",
       edge(R"({"id": "a", "listen_port": "1000-1999", "target": {"host": "h", "port": 1000}})")},
      {"range_to_65535",
       edge(
           R"({"id": "a", "listen_port": "65530-65535", "target": {"host": "h", "port": 65530}})")},
      {"host_name_target",
       edge(
           R"({"id": "a", "listen_port": 1, "target": {"host": "db.example.com.", "port": 5432}})")},
      {"ipv6_everything",
       edge(
           R"({"id": "a", "listen": "2001:db8::1", "listen_port": 1, "allow": ["2001:db8::/32", "::1"], "target": {"host": "2001:db8::2", "port": 1}})")},
      {"tls_default_without_domains",
       edge(tls_route(R"({"mode": "passthrough", "default": true})"))},
      {"tls_wildcard",
       edge(tls_route(R"({"mode": "passthrough", "domains": ["*.example.com", "example.com"]})"))},
      {"tls_none_explicit", edge(tls_route(R"({"mode": "none"})"))},
      {"tls_terminate_alpn_and_hello_timeout",
       edge(tls_route(
           R"({"mode": "terminate", "domains": ["a.example.com"], "cert": "@DIR@/wiki.pem", "key": "@DIR@/wiki.key", "alpn": ["h2", "http/1.1"], "hello_timeout_ms": 250})"))},
      {"limits_udp_flows_per_client", R"({"role": "edge", "limits": {"udp_flows_per_client": 1}})"},
      {"proxy_v2_udp", edge(direct(R"("protocol": "udp", "proxy_protocol": "v2", )"))},
      {"proxy_none_round_trip", edge(direct(R"("proxy_protocol": "none", )"))},
      {"wol_windows_mac",
       edge(via_home(
           R"("wol": {"mac": "AA-BB-CC-DD-EE-FF", "broadcast": "192.168.2.255", "wait_s": 600}, )"))},
      {"gateway_lan_route_with_wol",
       gateway(
           R"({"id": "a", "listen_port": 1, "target": {"lan_host": "192.168.2.1", "lan_port": 1}, "wol": {"mac": "aa:bb:cc:dd:ee:ff"}})")},
      {"gateway_direct_route",
       gateway(R"({"id": "a", "listen_port": 1, "target": {"host": "192.168.2.1", "port": 1}})")},
      {"gateway_own_id_in_target",
       gateway(
           R"({"id": "a", "listen_port": 1, "target": {"gateway": "home", "lan_host": "h", "lan_port": 1}})")},
      {"edge_sync_v6", R"({"role": "edge", "sync": {"listen": "[fd00::1]:7946"}})"},
      {"gateways_in_any_order",
       R"({"role": "edge", "routes": [{"id": "a", "listen_port": 1, "target": {"gateway": "late", "lan_host": "h", "lan_port": 1}}], "gateways": [{"id": "late", "tunnel_ip": "10.8.0.9"}]})"},
  };
}

class ValidTest : public ::testing::TestWithParam<Valid> {};

TEST_P(ValidTest, ParsesWithoutProblems) {
  ParseResult r = parse(with_dir(GetParam().json));
  EXPECT_TRUE(r.ok()) << dump(r);
  EXPECT_TRUE(r.problems.empty());
}

INSTANTIATE_TEST_SUITE_P(Rules, ValidTest, ::testing::ValuesIn(valid_cases()),
                         [](const ::testing::TestParamInfo<Valid>& info) {
                           return std::string(info.param.name);
                         });

// ---- the SPEC §3 examples --------------------------------------------------------------

std::string spec_edge() { return with_dir(rf::test::kSpecEdgeExample); }

TEST(SpecExample, EdgeParsesWhole) {
  ParseResult r = parse(spec_edge());
  ASSERT_TRUE(r.ok()) << dump(r);
  const Config& c = *r.config;
  EXPECT_EQ(c.role, Role::Edge);
  EXPECT_EQ(c.dataplane, Dataplane::Auto);
  EXPECT_EQ(c.workers, 0u);
  EXPECT_EQ(c.state_dir, "/var/lib/ringfwd");
  // The sync port joins the file's list.
  EXPECT_EQ(c.blocked_ports, (std::vector<uint16_t>{22, 53, 7946, 51820}));
  EXPECT_EQ(c.limits.max_connections, 100000u);
  EXPECT_EQ(c.limits.overlap_ms, 10000u);
  ASSERT_EQ(c.gateways.size(), 1u);
  EXPECT_EQ(c.gateways[0].token_file, "/etc/ringfwd/home.token");
  ASSERT_TRUE(c.sync.has_value());
  EXPECT_EQ(c.sync->listen, "10.8.0.1:7946");
  ASSERT_EQ(c.routes.size(), 6u);

  const Route* rdp = c.find_route("rdp");
  ASSERT_NE(rdp, nullptr);
  EXPECT_TRUE(rdp->target.via_gateway());
  ASSERT_TRUE(rdp->wol.has_value());
  EXPECT_EQ(rdp->wol->mac, "aa:bb:cc:dd:ee:ff");
  EXPECT_EQ(rdp->wol->wait_s, 60u);

  const Route* nas = c.find_route("nas");
  ASSERT_NE(nas, nullptr);
  EXPECT_EQ(nas->tls.mode, TlsMode::Passthrough);
  EXPECT_EQ(nas->tls.domains, std::vector<std::string>{"nas.example.com"});

  const Route* wiki = c.find_route("wiki");
  ASSERT_NE(wiki, nullptr);
  EXPECT_EQ(wiki->tls.mode, TlsMode::Terminate);
  EXPECT_EQ(wiki->tls.cert, tls_dir().path() + "/wiki.pem");
  EXPECT_FALSE(wiki->target.via_gateway());
  EXPECT_EQ(wiki->target.host, "127.0.0.1");

  const Route* games = c.find_route("games");
  ASSERT_NE(games, nullptr);
  EXPECT_EQ(games->protocol, Protocol::Udp);
  EXPECT_EQ(games->listen_port, (PortRange{27015, 27020}));
  EXPECT_TRUE(games->has_udp());
  EXPECT_FALSE(games->has_tcp());

  const Route* dns = c.find_route("dns");
  ASSERT_NE(dns, nullptr);
  EXPECT_EQ(dns->protocol, Protocol::TcpUdp);
  EXPECT_TRUE(dns->has_tcp() && dns->has_udp());
  EXPECT_EQ(dns->listen, "0.0.0.0");
  EXPECT_EQ(dns->target_port_for(5353), 53);

  EXPECT_EQ(c.find_route("nope"), nullptr);
  ASSERT_NE(c.find_gateway("home"), nullptr);
  EXPECT_EQ(c.find_gateway("home")->tunnel_ip, "10.8.0.2");
  EXPECT_EQ(c.find_gateway("office"), nullptr);
}

TEST(SpecExample, GatewayParses) {
  ParseResult r = parse(R"({ "role": "gateway", "gateway_id": "home", "tunnel_ip": "10.8.0.2",
  "sync": { "edge": "10.8.0.1:7946", "token_file": "/etc/ringfwd/token" } })");
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_EQ(r.config->role, Role::Gateway);
  EXPECT_EQ(r.config->gateway_id, "home");
  EXPECT_EQ(r.config->tunnel_ip, "10.8.0.2");
  EXPECT_EQ(r.config->sync->edge, "10.8.0.1:7946");
  EXPECT_EQ(r.config->sync->token_file, "/etc/ringfwd/token");
  EXPECT_EQ(r.config->blocked_ports, std::vector<uint16_t>{7946});
  EXPECT_TRUE(r.config->routes.empty());
}

TEST(SpecExample, DefaultsWhenLeftOut) {
  ParseResult r = parse(edge(direct()));
  ASSERT_TRUE(r.ok()) << dump(r);
  const Config& c = *r.config;
  EXPECT_EQ(c.dataplane, Dataplane::Auto);
  EXPECT_EQ(c.state_dir, "/var/lib/ringfwd");
  EXPECT_TRUE(c.blocked_ports.empty());
  EXPECT_EQ(c.limits.connect_timeout_ms, 5000u);
  EXPECT_FALSE(c.sync.has_value());
  const Route& a = c.routes[0];
  EXPECT_EQ(a.protocol, Protocol::Tcp);
  EXPECT_EQ(a.listen, "");
  EXPECT_EQ(a.tls.mode, TlsMode::None);
  EXPECT_EQ(a.proxy_protocol, ProxyProtocol::None);
  EXPECT_FALSE(a.accept_proxy_protocol);
  EXPECT_FALSE(a.max_connections.has_value());
  EXPECT_FALSE(a.timeouts.idle_timeout_s.has_value());
  EXPECT_TRUE(a.allow.empty());
  EXPECT_FALSE(a.wol.has_value());
}

// ---- what the parsed values hold ----------------------------------------------------------

TEST(Values, RouteFieldsAreStored) {
  ParseResult r =
      parse(edge(R"({"id": "full", "protocol": "tcp", "listen": "192.0.2.1", "listen_port": 8443,
    "tls": {"mode": "passthrough", "domains": ["NAS.Example.COM", "*.Lab.example.com"], "default": true},
    "timeouts": {"connect_timeout_ms": 250, "idle_timeout_s": 60, "udp_idle_timeout_s": 9, "drain_timeout_s": 7},
    "max_connections": 12, "allow": ["192.0.2.0/24", "2001:db8::/48", "198.51.100.7"],
    "proxy_protocol": "v2", "accept_proxy_protocol": true,
    "target": {"gateway": "home", "lan_host": "nas.lan", "lan_port": 443},
    "wol": {"mac": "AA-BB-CC-00-11-22", "broadcast": "192.168.2.255", "wait_s": 90}})"));
  ASSERT_TRUE(r.ok()) << dump(r);
  const Route& a = r.config->routes[0];
  EXPECT_EQ(a.listen, "192.0.2.1");
  EXPECT_EQ(a.tls.domains, (std::vector<std::string>{"nas.example.com", "*.lab.example.com"}));
  EXPECT_TRUE(a.tls.is_default);
  EXPECT_EQ(a.timeouts.connect_timeout_ms, 250u);
  EXPECT_EQ(a.timeouts.idle_timeout_s, 60u);
  EXPECT_EQ(a.timeouts.udp_idle_timeout_s, 9u);
  EXPECT_EQ(a.timeouts.drain_timeout_s, 7u);
  EXPECT_EQ(a.max_connections, 12u);
  EXPECT_EQ(a.proxy_protocol, ProxyProtocol::V2);
  EXPECT_TRUE(a.accept_proxy_protocol);
  EXPECT_EQ(a.target.gateway, "home");
  EXPECT_EQ(a.target.lan_host, "nas.lan");
  ASSERT_TRUE(a.wol.has_value());
  EXPECT_EQ(a.wol->mac, "aa:bb:cc:00:11:22");
  EXPECT_EQ(a.wol->broadcast, "192.168.2.255");
  EXPECT_EQ(a.wol->wait_s, 90u);

  ASSERT_EQ(a.allow.size(), 3u);
  EXPECT_EQ(a.allow[0].text, "192.0.2.0/24");
  EXPECT_FALSE(a.allow[0].v6);
  EXPECT_EQ(a.allow[0].prefix, 24);
  EXPECT_EQ(a.allow[0].addr[0], 192);
  EXPECT_EQ(a.allow[0].addr[2], 2);
  EXPECT_TRUE(a.allow[1].v6);
  EXPECT_EQ(a.allow[1].prefix, 48);
  EXPECT_EQ(a.allow[1].addr[0], 0x20);
  EXPECT_EQ(a.allow[1].addr[1], 0x01);
  EXPECT_EQ(a.allow[2].prefix, 32);  // a bare address is one host
}

TEST(Values, BareIpv6IsOneHost) {
  ParseResult r = parse(edge(direct(R"("allow": ["2001:db8::7"], )")));
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_EQ(r.config->routes[0].allow[0].prefix, 128);
  EXPECT_EQ(r.config->routes[0].allow[0].addr[15], 7);
}

// On a gateway the LAN target is local: a matching "gateway" key must not turn the route
// into an edge-style "via gateway" route (that would forward to the listen port).
TEST(Values, GatewayRoleTargetIsLan) {
  ParseResult r = parse(gateway(
      R"({"id": "a", "listen_port": "5000-5009", "target": {"gateway": "home", "lan_host": "192.168.2.5", "lan_port": 6000}})"));
  ASSERT_TRUE(r.ok()) << dump(r);
  const Route& a = r.config->routes[0];
  EXPECT_FALSE(a.target.via_gateway());
  EXPECT_TRUE(a.target.is_lan());
  EXPECT_EQ(a.target_port_for(5000), 6000);
  EXPECT_EQ(a.target_port_for(5009), 6009);
}

// ---- ranges and the offset mapping ----------------------------------------------------------

TEST(Ranges, DirectRangeKeepsOffset) {
  ParseResult r = parse(edge(
      R"({"id": "a", "listen_port": "27015-27020", "target": {"host": "192.0.2.9", "port": 37015}})"));
  ASSERT_TRUE(r.ok()) << dump(r);
  const Route& a = r.config->routes[0];
  EXPECT_EQ(a.listen_port, (PortRange{27015, 27020}));
  EXPECT_EQ(a.listen_port.size(), 6u);
  EXPECT_EQ(a.target_port_for(27015), 37015);
  EXPECT_EQ(a.target_port_for(27017), 37017);
  EXPECT_EQ(a.target_port_for(27020), 37020);
}

TEST(Ranges, EdgeToGatewayKeepsListenPort) {
  // The edge sends to the gateway's tunnel IP at the listen port; the gateway maps to lan_port.
  ParseResult r = parse(edge(
      R"({"id": "a", "listen_port": "27015-27020", "target": {"gateway": "home", "lan_host": "192.168.2.50", "lan_port": 47015}})"));
  ASSERT_TRUE(r.ok()) << dump(r);
  const Route& a = r.config->routes[0];
  EXPECT_EQ(a.target_port_for(27015), 27015);
  EXPECT_EQ(a.target_port_for(27020), 27020);
}

TEST(Ranges, SinglePortIsARangeOfOne) {
  ParseResult r = parse(edge(direct()));
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_EQ(r.config->routes[0].listen_port, (PortRange{2222, 2222}));
  EXPECT_EQ(r.config->routes[0].target_port_for(2222), 22);
}

TEST(Ranges, ParsePortRange) {
  std::string why;
  EXPECT_EQ(parse_port_range("80", &why), (PortRange{80, 80}));
  EXPECT_EQ(parse_port_range("1-1000", &why), (PortRange{1, 1000}));
  EXPECT_EQ(parse_port_range("65535-65535", &why), (PortRange{65535, 65535}));
  EXPECT_EQ(parse_port_range("65535", nullptr), (PortRange{65535, 65535}));
  struct Bad {
    const char* text;
    const char* why;
  };
  for (const Bad& b :
       {Bad{"", "is not a port or a range"}, Bad{"-", "is not a port or a range"},
        Bad{"10-", "is not a port or a range"}, Bad{"-10", "is not a port or a range"},
        Bad{"1-2-3", "is not a port or a range"}, Bad{"+80", "is not a port or a range"},
        Bad{"65536", "port 65536 is out of range"}, Bad{"99999999999", "is not a port"},
        Bad{"ALL", "\"all ports\" is refused"}, Bad{"any", "\"all ports\" is refused"},
        Bad{"1-1001", "at most 1000 ports (got 1001)"}, Bad{"9-8", "reversed"}}) {
    why.clear();
    EXPECT_FALSE(parse_port_range(b.text, &why).has_value()) << b.text;
    EXPECT_NE(why.find(b.why), std::string::npos) << b.text << " -> " << why;
  }
  EXPECT_FALSE(parse_port_range("x", nullptr).has_value());  // why is optional
}

TEST(Ranges, PortRangeHelpers) {
  PortRange r{10, 20};
  EXPECT_TRUE(r.contains(10) && r.contains(20));
  EXPECT_FALSE(r.contains(9) || r.contains(21));
  EXPECT_TRUE(r.overlaps({20, 30}));
  EXPECT_TRUE(r.overlaps({1, 10}));
  EXPECT_FALSE(r.overlaps({21, 30}));
  EXPECT_EQ((PortRange{1, 65535}).size(), 65535u);
}

// ---- several problems in one file, in document order -----------------------------------------

TEST(Problems, AllReportedInDocumentOrder) {
  ParseResult r = parse(R"({
    "role": "edge",
    "workers": -3,
    "blocked_ports": [22],
    "gateways": [{"id": "home", "tunnel_ip": "10.8.0.256"}],
    "routes": [
      {"id": "ok", "listen_port": 2222, "target": {"host": "192.0.2.1", "port": 22}},
      {"id": "Bad", "listen_port": "1-65535", "target": {"host": "192.0.2.1", "port": 22}},
      {"id": "ssh", "listen_port": 22, "target": {"host": "192.0.2.1", "port": 22}, "tls": {"mode": "x"}},
      {"id": "blocked", "listen_port": 22, "target": {"host": "192.0.2.1", "port": 22}},
      {"id": "clash", "listen_port": 2222, "target": {"host": "192.0.2.2", "port": 22}}
    ],
    "dataplane": "fast"
  })");
  ASSERT_FALSE(r.ok());
  std::vector<std::string> paths;
  for (const auto& p : r.problems) paths.push_back(p.path);
  EXPECT_EQ(paths, (std::vector<std::string>{
                       "workers",
                       "gateways[0].tunnel_ip",
                       "routes[1].id",
                       "routes[1].listen_port",
                       "routes[2].tls.mode",
                       "dataplane",
                       // the conflict rules come after the fields, for the routes that parsed
                       "routes[3].listen_port",
                       "routes[4].listen_port",
                   }))
      << dump(r);
  EXPECT_EQ(r.problems[6].kind, ProblemKind::BlockedPort);
  EXPECT_EQ(r.problems[6].message, "port 22 is blocked (blocked_ports)");
  EXPECT_EQ(r.problems[7].kind, ProblemKind::PortConflict);
  EXPECT_NE(r.problems[7].message.find(R"(already used by route "ok" (route "clash" conflicts))"),
            std::string::npos)
      << dump(r);
}

TEST(Problems, EveryBadRouteOfALongList) {
  std::string routes;
  for (int i = 0; i < 50; ++i)
    routes += std::string(i ? ", " : "") + R"({"id": "r)" + std::to_string(i) +
              R"(", "listen_port": )" + std::to_string(i % 2 ? 0 : 1000 + i) +
              R"(, "target": {"host": "h", "port": 1}})";
  ParseResult r = parse(edge(routes));
  ASSERT_EQ(r.problems.size(), 25u) << dump(r);
  for (size_t k = 0; k < 25; ++k)
    EXPECT_EQ(r.problems[k].path, "routes[" + std::to_string(2 * k + 1) + "].listen_port");
}

TEST(Problems, DuplicateKeysInValuesNotOtherwiseRead) {
  ParseResult r = parse(R"({"role": "edge", "x": {"a": 1, "a": 2}})");
  ASSERT_EQ(r.problems.size(), 2u) << dump(r);
  EXPECT_EQ(r.problems[0].path, "x");
  EXPECT_EQ(r.problems[1].str(), R"(x.a: duplicate key "a" (the last one would win))");
}

TEST(Problems, DuplicateKeysInArraysOfObjects) {
  ParseResult r = parse(
      edge(direct() +
           R"(, {"id": "b", "id": "c", "listen_port": 1, "target": {"host": "h", "port": 1}})"));
  ASSERT_EQ(r.problems.size(), 1u) << dump(r);
  EXPECT_EQ(r.problems[0].str(), R"(routes[1].id: duplicate key "id" (the last one would win))");
}

// ---- RINGFWD_BLOCKED_PORTS -----------------------------------------------------------------

TEST(BlockedPortsEnv, ReplacesTheFileList) {
  std::string json = edge(R"({"id": "a", "listen_port": 22, "target": {"host": "h", "port": 22}},
                             {"id": "b", "listen_port": 2222, "target": {"host": "h", "port": 22}})",
                          R"("blocked_ports": [22], )");
  ParseResult without = parse(json);
  ASSERT_EQ(without.problems.size(), 1u) << dump(without);
  EXPECT_EQ(without.problems[0].path, "routes[0].listen_port");

  ParseOptions opts;
  opts.blocked_ports_env = "2222";
  ParseResult with = parse(json, opts);
  ASSERT_EQ(with.problems.size(), 1u) << dump(with);
  EXPECT_EQ(with.problems[0].path, "routes[1].listen_port");
  EXPECT_EQ(with.problems[0].message, "port 2222 is blocked (blocked_ports)");
}

TEST(BlockedPortsEnv, ListIsSortedWithSyncPort) {
  ParseOptions opts;
  opts.blocked_ports_env = " 51820, 22,53 ,22,";
  ParseResult r = parse(
      R"({"role": "edge", "blocked_ports": [80], "sync": {"listen": "10.8.0.1:7946"}})", opts);
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_EQ(r.config->blocked_ports, (std::vector<uint16_t>{22, 53, 7946, 51820}));
}

TEST(BlockedPortsEnv, EmptyValueMeansNoBlockedPorts) {
  ParseOptions opts;
  opts.blocked_ports_env = "";
  ParseResult r =
      parse(edge(R"({"id": "a", "listen_port": 22, "target": {"host": "h", "port": 22}})",
                 R"("blocked_ports": [22], )"),
            opts);
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_TRUE(r.config->blocked_ports.empty());
}

TEST(BlockedPortsEnv, BadValuesAreProblems) {
  for (const char* bad : {"22,abc", "70000", "0", "22;53", "-1"}) {
    ParseOptions opts;
    opts.blocked_ports_env = bad;
    ParseResult r = parse(R"({"role": "edge"})", opts);
    ASSERT_EQ(r.problems.size(), 1u) << bad << "\n" << dump(r);
    EXPECT_EQ(r.problems[0].path, "RINGFWD_BLOCKED_PORTS") << bad;
    EXPECT_NE(r.problems[0].message.find(R"(expected a comma-separated list like "22,53,51820")"),
              std::string::npos)
        << dump(r);
  }
}

// ---- load_file -----------------------------------------------------------------------------

class LoadFile : public ::testing::Test {
 protected:
  void SetUp() override { ::unsetenv("RINGFWD_BLOCKED_PORTS"); }
  void TearDown() override { ::unsetenv("RINGFWD_BLOCKED_PORTS"); }
  TempDir dir;
};

TEST_F(LoadFile, ReadsAndParses) {
  std::string file = dir.write("ringfwd.json", spec_edge());
  ParseResult r = load_file(file);
  ASSERT_TRUE(r.ok()) << dump(r);
  EXPECT_EQ(r.config->routes.size(), 6u);
}

TEST_F(LoadFile, MissingFile) {
  ParseResult r = load_file(dir.path() + "/nope.json");
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].path, "");
  EXPECT_EQ(r.problems[0].message,
            "cannot read " + dir.path() + "/nope.json: No such file or directory");
}

TEST_F(LoadFile, DirectoryIsNotAFile) {
  ParseResult r = load_file(dir.path());
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].message, "cannot read " + dir.path() + ": Is a directory");
}

TEST_F(LoadFile, TakesBlockedPortsFromTheEnvironment) {
  std::string file = dir.write("ringfwd.json", edge(direct(), R"("blocked_ports": [22], )"));
  ASSERT_TRUE(load_file(file).ok());
  ::setenv("RINGFWD_BLOCKED_PORTS", "2222,22", 1);
  ParseResult r = load_file(file);
  ASSERT_EQ(r.problems.size(), 1u) << dump(r);
  EXPECT_EQ(r.problems[0].str(), "routes[0].listen_port: port 2222 is blocked (blocked_ports)");
  ::setenv("RINGFWD_BLOCKED_PORTS", "x", 1);
  r = load_file(file);
  ASSERT_EQ(r.problems.size(), 1u) << dump(r);
  EXPECT_EQ(r.problems[0].path, "RINGFWD_BLOCKED_PORTS");
}

TEST_F(LoadFile, EmptyEnvironmentVariableIsUnset) {
  std::string file = dir.write("ringfwd.json", edge(direct(), R"("blocked_ports": [2222], )"));
  ::setenv("RINGFWD_BLOCKED_PORTS", "", 1);
  ParseResult r = load_file(file);
  ASSERT_EQ(r.problems.size(), 1u) << dump(r);
  EXPECT_EQ(r.problems[0].message, "port 2222 is blocked (blocked_ports)");
}

// ---- odds and ends ---------------------------------------------------------------------------

TEST(Misc, ToStringNamesReadBackIn) {
  for (Protocol p : {Protocol::Tcp, Protocol::Udp, Protocol::TcpUdp}) {
    ParseResult r = parse(edge(direct(R"("protocol": ")" + std::string(to_string(p)) + R"(", )")));
    ASSERT_TRUE(r.ok()) << dump(r);
    EXPECT_EQ(r.config->routes[0].protocol, p);
  }
  for (Dataplane d : {Dataplane::Auto, Dataplane::Sockmap, Dataplane::Splice, Dataplane::Copy}) {
    ParseResult r =
        parse(R"({"role": "edge", "dataplane": ")" + std::string(to_string(d)) + R"("})");
    ASSERT_TRUE(r.ok()) << dump(r);
    EXPECT_EQ(r.config->dataplane, d);
  }
  for (ProxyProtocol p : {ProxyProtocol::None, ProxyProtocol::V1, ProxyProtocol::V2}) {
    ParseResult r =
        parse(edge(direct(R"("proxy_protocol": ")" + std::string(to_string(p)) + R"(", )")));
    ASSERT_TRUE(r.ok()) << dump(r);
    EXPECT_EQ(r.config->routes[0].proxy_protocol, p);
  }
  EXPECT_EQ(to_string(Role::Gateway), "gateway");
  EXPECT_EQ(to_string(TlsMode::Terminate), "terminate");
  EXPECT_EQ(to_string(TlsMode::Passthrough), "passthrough");
  EXPECT_EQ(to_string(TlsMode::None), "none");
}

TEST(Misc, FilesNotCheckedWhenAskedNotTo) {
  ParseOptions opts;
  opts.check_files = false;
  ParseResult r = parse(
      edge(tls_route(
          R"({"mode": "terminate", "domains": ["a.example.com"], "cert": "/nonexistent/c.pem", "key": "/nonexistent/k.pem"})")),
      opts);
  EXPECT_TRUE(r.ok()) << dump(r);
}

TEST(Misc, HostileInputNeverThrows) {
  std::string deep(10000, '[');
  std::vector<std::string> inputs = {
      deep,
      std::string("\0\xff\xfe", 3),
      "{\"role\": \"\xc3\x28\"}",
      "nul",
      R"({"role": "edge", "routes": [null, [], "x", 1.5e400]})",
      R"({"role": "edge", "limits": {"max_connections": -9223372036854775808}})"};
  for (const auto& in : inputs) {
    ParseResult r;
    EXPECT_NO_THROW(r = parse(in));
    EXPECT_FALSE(r.ok());
    EXPECT_FALSE(r.problems.empty());
  }
}

TEST(Misc, ControlCharactersAreQuotedInMessages) {
  ParseResult r = parse("{\"role\": \"ed\\nge\"}");
  ASSERT_EQ(r.problems.size(), 1u);
  EXPECT_EQ(r.problems[0].message.find('\n'), std::string::npos) << r.problems[0].message;
  EXPECT_NE(r.problems[0].message.find(R"("ed\nge")"), std::string::npos) << r.problems[0].message;
}

}  // namespace
}  // namespace rf::config
