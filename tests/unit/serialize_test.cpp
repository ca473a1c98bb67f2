// rf::config::to_json (the canonical text the control plane saves) and
// rf::config::parse_route (one route validated against a running config): round trips of
// the SPEC examples, the repo's examples and configs with every optional field set; each
// field seen by operator== and written by to_json; the file's blocked_ports kept as written;
// every kind of route problem with its "route." path and ProblemKind.
#include <gtest/gtest.h>
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <functional>
#include <sstream>
#include <string>
#include <vector>

#include "ringfwd/config/config.hpp"
#include "ringfwd/routing/conflicts.hpp"

#include "test_support.hpp"

namespace rf::config {
namespace {

using rf::test::kCertPem;
using rf::test::kKeyPem;
using rf::test::TempDir;
using rf::test::tls_dir;
using rf::test::with_dir;

std::string dump(const std::vector<Problem>& problems) {
  std::string s;
  for (const auto& p : problems) s += "  " + p.str() + "\n";
  return s.empty() ? "  (no problems)\n" : s;
}

Config parsed(const std::string& text, const ParseOptions& opts = {}) {
  ParseResult r = parse(text, opts);
  EXPECT_TRUE(r.ok()) << dump(r.problems) << text;
  return r.config.value_or(Config{});
}

// parse(to_json(c)) == c field by field, and to_json is a fixed point (its text diff shows
// which field a failure is about).
void expect_round_trip(const Config& c, const ParseOptions& opts = {}) {
  const std::string saved = to_json(c);
  ParseResult back = parse(saved, opts);
  ASSERT_TRUE(back.ok()) << dump(back.problems) << saved;
  EXPECT_EQ(to_json(*back.config), saved);
  EXPECT_TRUE(*back.config == c) << saved;
}

std::string spec_edge() { return with_dir(rf::test::kSpecEdgeExample); }

const char* kSpecGateway = R"(
{ "role": "gateway", "gateway_id": "home", "tunnel_ip": "10.8.0.2",
  "sync": { "edge": "10.8.0.1:7946", "token_file": "/etc/ringfwd/token" } })";

// Every optional field of an edge set, to values other than the defaults; names and MACs
// written in forms the parser normalizes.
std::string edge_everything() {
  return with_dir(R"({
  "routes": [
    { "id": "full", "protocol": "tcp", "listen": "192.0.2.1", "listen_port": "8000-8009",
      "target": { "gateway": "home", "lan_host": "nas.lan", "lan_port": 9000 },
      "tls": { "mode": "terminate", "domains": ["Wiki.Example.COM", "*.apps.example.com"],
               "default": true, "cert": "@DIR@/wiki.pem", "key": "@DIR@/wiki.key" },
      "timeouts": { "connect_timeout_ms": 1500, "idle_timeout_s": 120,
                    "udp_idle_timeout_s": 15, "drain_timeout_s": 9 },
      "max_connections": 77,
      "allow": ["198.51.100.0/24", "2001:db8::/32", "203.0.113.7"],
      "proxy_protocol": "v2",
      "accept_proxy_protocol": true,
      "wol": { "mac": "AA-BB-CC-DD-EE-0F", "broadcast": "192.168.2.255", "wait_s": 90 } },
    { "id": "udp-v2", "protocol": "tcp+udp", "listen": "2001:db8::1", "listen_port": 6000,
      "target": { "host": "backend.example.net", "port": 7000 }, "proxy_protocol": "v2" },
    { "id": "v1", "listen_port": 6001, "target": { "host": "192.0.2.9", "port": 7001 },
      "proxy_protocol": "v1", "timeouts": { "idle_timeout_s": 5 } }
  ],
  "sync": { "listen": "[fd00::1]:7000" },
  "gateways": [ { "id": "home", "tunnel_ip": "10.8.0.2", "token_file": "/etc/ringfwd/home.token" },
                { "id": "office", "tunnel_ip": "fd00::3", "token_file": "/etc/ringfwd/office.token" } ],
  "limits": { "max_connections": 12345678901, "connect_timeout_ms": 1, "idle_timeout_s": 2,
              "udp_idle_timeout_s": 3, "overlap_ms": 4, "drain_timeout_s": 5 },
  "blocked_ports": [51820, 22, 22, 53],
  "state_dir": "/srv/ringfwd state",
  "workers": 12,
  "dataplane": "splice",
  "role": "edge"
})");
}

std::string gateway_everything() {
  return R"({ "role": "gateway", "gateway_id": "home", "tunnel_ip": "10.8.0.2",
  "dataplane": "copy", "workers": 3, "state_dir": "/var/lib/rf-gw", "blocked_ports": [22],
  "sync": { "edge": "10.8.0.1:7946", "token_file": "/etc/ringfwd/token" },
  "routes": [
    { "id": "rdp", "listen": "10.8.0.2", "listen_port": 3389,
      "target": { "gateway": "home", "lan_host": "192.168.2.100", "lan_port": 3389 },
      "wol": { "mac": "aa:bb:cc:dd:ee:ff", "broadcast": "192.168.2.255", "wait_s": 30 },
      "proxy_protocol": "v1", "accept_proxy_protocol": true, "allow": ["10.8.0.1/32"] },
    { "id": "direct", "protocol": "udp", "listen_port": "5000-5001",
      "target": { "host": "192.168.2.7", "port": 65534 } }
  ] })";
}

// ---- to_json: format ---------------------------------------------------------------------

TEST(ToJson, CanonicalTextOfTheSpecGateway) {
  // Whole text: 2-space indent, defaults written out, fixed key order, trailing newline.
  EXPECT_EQ(to_json(parsed(kSpecGateway)), R"({
  "role": "gateway",
  "gateway_id": "home",
  "tunnel_ip": "10.8.0.2",
  "dataplane": "auto",
  "workers": 0,
  "state_dir": "/var/lib/ringfwd",
  "blocked_ports": [],
  "limits": {
    "max_connections": 100000,
    "connect_timeout_ms": 5000,
    "idle_timeout_s": 3600,
    "udp_idle_timeout_s": 30,
    "overlap_ms": 10000,
    "drain_timeout_s": 300,
    "udp_flows_per_client": 256
  },
  "sync": {
    "edge": "10.8.0.1:7946",
    "token_file": "/etc/ringfwd/token"
  },
  "routes": []
}
)");
}

TEST(ToJson, CanonicalTextOfARoute) {
  Config c = parsed(R"({"role": "edge", "routes": [
      {"listen_port": "27015-27020", "protocol": "udp", "id": "games",
       "target": {"port": 27015, "host": "192.0.2.50"}},
      {"id": "ssh", "listen_port": 2222, "target": {"host": "192.0.2.10", "port": 22},
       "allow": ["192.0.2.0/24"]}]})");
  const std::string text = to_json(c);
  EXPECT_NE(text.find(R"(  "routes": [
    {
      "id": "games",
      "protocol": "udp",
      "listen_port": "27015-27020",
      "target": {
        "host": "192.0.2.50",
        "port": 27015
      }
    },
    {
      "id": "ssh",
      "protocol": "tcp",
      "listen_port": 2222,
      "target": {
        "host": "192.0.2.10",
        "port": 22
      },
      "allow": ["192.0.2.0/24"]
    }
  ]
}
)"),
            text.npos)
      << text;
  EXPECT_NE(text.find(R"("gateways": [])"), text.npos) << text;
}

TEST(ToJson, SameConfigSameBytes) {
  // Key order in the input does not matter: two spellings of one config save identically.
  Config a = parsed(R"({"role": "edge", "workers": 2, "routes": [
      {"id": "a", "protocol": "tcp", "listen_port": 80, "target": {"host": "192.0.2.1", "port": 8080}}]})");
  Config b = parsed(R"({"routes": [
      {"target": {"port": 8080, "host": "192.0.2.1"}, "listen_port": 80, "id": "a"}],
      "workers": 2, "role": "edge"})");
  EXPECT_TRUE(a == b);
  EXPECT_EQ(to_json(a), to_json(b));
}

// ---- to_json: round trips ----------------------------------------------------------------

TEST(RoundTrip, SpecEdgeExample) {
  Config c = parsed(spec_edge());
  ASSERT_EQ(c.routes.size(), 6u);
  expect_round_trip(c);
  const std::string text = to_json(c);
  EXPECT_NE(text.find(tls_dir().path() + "/wiki.pem"), text.npos);
  EXPECT_NE(text.find(R"("listen_port": "27015-27020")"), text.npos) << text;
  EXPECT_NE(text.find(R"("listen_port": 3389)"), text.npos) << text;
}

TEST(RoundTrip, SpecGatewayExample) { expect_round_trip(parsed(kSpecGateway)); }

TEST(RoundTrip, EdgeWithEveryOptionalField) {
  Config c = parsed(edge_everything());
  ASSERT_EQ(c.routes.size(), 3u);
  const Route& full = c.routes[0];
  // Make sure the test holds what it claims to: every optional field is set.
  EXPECT_EQ(full.tls.domains, (std::vector<std::string>{"wiki.example.com", "*.apps.example.com"}));
  EXPECT_TRUE(full.tls.is_default);
  EXPECT_TRUE(full.timeouts.connect_timeout_ms && full.timeouts.idle_timeout_s &&
              full.timeouts.udp_idle_timeout_s && full.timeouts.drain_timeout_s);
  EXPECT_EQ(full.max_connections, 77u);
  EXPECT_EQ(full.allow.size(), 3u);
  ASSERT_TRUE(full.wol.has_value());
  EXPECT_EQ(full.wol->mac, "aa:bb:cc:dd:ee:0f");
  EXPECT_EQ(c.limits.max_connections, 12345678901u);
  expect_round_trip(c);
}

TEST(RoundTrip, GatewayWithEveryOptionalField) {
  Config c = parsed(gateway_everything());
  ASSERT_EQ(c.routes.size(), 2u);
  expect_round_trip(c);
  // On a gateway's own file the target's gateway is this gateway: not kept, not written.
  EXPECT_EQ(to_json(c).find(R"("gateway": "home")"), std::string::npos) << to_json(c);
}

TEST(RoundTrip, FileWithoutBlockedPorts) {
  Config c = parsed(R"({"role": "edge"})");
  expect_round_trip(c);
  EXPECT_NE(to_json(c).find(R"("blocked_ports": [])"), std::string::npos);
}

TEST(RoundTrip, RepoExamples) {
  const char* src = std::getenv("RINGFWD_SOURCE_DIR");
  ASSERT_NE(src, nullptr) << "run through meson test (it sets RINGFWD_SOURCE_DIR)";
  size_t seen = 0;
  for (const auto& e : std::filesystem::directory_iterator(std::string(src) + "/examples")) {
    if (e.path().extension() != ".json") continue;
    SCOPED_TRACE(e.path().string());
    std::ifstream in(e.path());
    std::stringstream text;
    text << in.rdbuf();
    Config c = parsed(text.str());
    EXPECT_FALSE(c.routes.empty());
    expect_round_trip(c);
    ++seen;
  }
  EXPECT_GE(seen, 4u);
}

// ---- every field is compared by operator== and written by to_json ----------------------

struct Mutation {
  const char* field;
  std::function<void(Config&)> apply;
};

std::vector<Mutation> mutations() {
  return {
      {"role/gateway_id/tunnel_ip", [](Config& c) { c = parsed(gateway_everything()); }},
      {"dataplane", [](Config& c) { c.dataplane = Dataplane::Sockmap; }},
      {"workers", [](Config& c) { c.workers = 5; }},
      {"state_dir", [](Config& c) { c.state_dir = "/elsewhere"; }},
      {"file_blocked_ports",
       [](Config& c) {
         c.file_blocked_ports = {22, 53};
         c.blocked_ports = {22, 53, 7000};
       }},
      {"limits.max_connections", [](Config& c) { c.limits.max_connections = 9; }},
      {"limits.connect_timeout_ms", [](Config& c) { c.limits.connect_timeout_ms = 9; }},
      {"limits.idle_timeout_s", [](Config& c) { c.limits.idle_timeout_s = 9; }},
      {"limits.udp_idle_timeout_s", [](Config& c) { c.limits.udp_idle_timeout_s = 9; }},
      {"limits.overlap_ms", [](Config& c) { c.limits.overlap_ms = 9; }},
      {"limits.drain_timeout_s", [](Config& c) { c.limits.drain_timeout_s = 9; }},
      {"gateways[].id", [](Config& c) { c.gateways[1].id = "work"; }},
      {"gateways[].tunnel_ip", [](Config& c) { c.gateways[1].tunnel_ip = "10.8.0.9"; }},
      {"gateways[].token_file", [](Config& c) { c.gateways[0].token_file = "/etc/t"; }},
      {"gateways (count)", [](Config& c) { c.gateways.pop_back(); }},
      {"sync.listen",
       [](Config& c) {
         c.sync->listen = "10.8.0.1:7001";
         c.blocked_ports = {22, 53, 7001, 51820};
       }},
      {"routes[].id", [](Config& c) { c.routes[1].id = "other"; }},
      {"routes[].protocol", [](Config& c) { c.routes[1].protocol = Protocol::Udp; }},
      {"routes[].listen", [](Config& c) { c.routes[1].listen = "2001:db8::2"; }},
      {"routes[].listen (unset)", [](Config& c) { c.routes[1].listen.clear(); }},
      {"routes[].listen_port",
       [](Config& c) {
         c.routes[1].listen_port = {6100, 6100};
       }},
      {"routes[].listen_port (range)",
       [](Config& c) {
         c.routes[1].listen_port = {6100, 6105};
       }},
      {"routes[].target.host", [](Config& c) { c.routes[1].target.host = "192.0.2.77"; }},
      {"routes[].target.port", [](Config& c) { c.routes[1].target.port = 7777; }},
      {"routes[].target.gateway", [](Config& c) { c.routes[0].target.gateway = "office"; }},
      {"routes[].target.lan_host", [](Config& c) { c.routes[0].target.lan_host = "10.1.1.1"; }},
      {"routes[].target.lan_port", [](Config& c) { c.routes[0].target.lan_port = 9100; }},
      {"routes[].tls.mode",
       [](Config& c) {
         c.routes[0].tls.mode = TlsMode::Passthrough;
         c.routes[0].tls.cert.clear();
         c.routes[0].tls.key.clear();
       }},
      {"routes[].tls.domains", [](Config& c) { c.routes[0].tls.domains.pop_back(); }},
      {"routes[].tls.default", [](Config& c) { c.routes[0].tls.is_default = false; }},
      {"routes[].tls.cert",
       [](Config& c) { c.routes[0].tls.cert = tls_dir().path() + "/other.pem"; }},
      {"routes[].tls.key",
       [](Config& c) { c.routes[0].tls.key = tls_dir().path() + "/other.key"; }},
      {"routes[].timeouts.connect_timeout_ms",
       [](Config& c) { c.routes[0].timeouts.connect_timeout_ms = 3; }},
      {"routes[].timeouts.idle_timeout_s",
       [](Config& c) { c.routes[0].timeouts.idle_timeout_s.reset(); }},
      {"routes[].timeouts.udp_idle_timeout_s",
       [](Config& c) { c.routes[0].timeouts.udp_idle_timeout_s = 4; }},
      {"routes[].timeouts.drain_timeout_s",
       [](Config& c) { c.routes[1].timeouts.drain_timeout_s = 4; }},
      {"routes[].max_connections", [](Config& c) { c.routes[0].max_connections.reset(); }},
      {"routes[].allow", [](Config& c) { c.routes[0].allow.pop_back(); }},
      {"routes[].proxy_protocol",
       [](Config& c) { c.routes[0].proxy_protocol = ProxyProtocol::None; }},
      {"routes[].accept_proxy_protocol",
       [](Config& c) { c.routes[0].accept_proxy_protocol = false; }},
      {"routes[].wol", [](Config& c) { c.routes[0].wol.reset(); }},
      {"routes[].wol.mac", [](Config& c) { c.routes[0].wol->mac = "00:11:22:33:44:55"; }},
      {"routes[].wol.broadcast", [](Config& c) { c.routes[0].wol->broadcast.clear(); }},
      {"routes[].wol.wait_s", [](Config& c) { c.routes[0].wol->wait_s = 61; }},
      {"routes (order)", [](Config& c) { std::swap(c.routes[1], c.routes[2]); }},
  };
}

TEST(RoundTrip, EachFieldIsComparedAndWritten) {
  const Config base = parsed(edge_everything());
  for (const Mutation& m : mutations()) {
    SCOPED_TRACE(m.field);
    Config c = base;
    m.apply(c);
    EXPECT_FALSE(c == base) << "operator== does not see " << m.field;
    EXPECT_NE(to_json(c), to_json(base)) << "to_json does not write " << m.field;
    expect_round_trip(c);
  }
}

TEST(RoundTrip, ComparesCidrBytesToo) {
  Config a = parsed(edge_everything());
  Config b = a;
  b.routes[0].allow[0].addr[2] ^= 1;  // same text, different address
  EXPECT_FALSE(a == b);
  b = a;
  b.routes[0].allow[0].prefix = 25;
  EXPECT_FALSE(a == b);
}

// ---- blocked ports: the file keeps what the operator wrote ------------------------------

TEST(BlockedPorts, EnvironmentAndSyncPortAreNotBakedIn) {
  const std::string file = R"({"role": "edge", "blocked_ports": [53, 22],
      "gateways": [{"id": "home", "tunnel_ip": "10.8.0.2", "token_file": "/etc/t"}],
      "sync": {"listen": "10.8.0.1:7946"},
      "routes": [{"id": "ssh", "listen_port": 22, "target": {"host": "192.0.2.10", "port": 22}}]})";
  ParseOptions env;
  env.blocked_ports_env = "2222, 8080";
  Config c = parsed(file, env);
  EXPECT_EQ(c.blocked_ports, (std::vector<uint16_t>{2222, 7946, 8080}));
  EXPECT_EQ(c.file_blocked_ports, (std::vector<uint16_t>{53, 22}));

  const std::string saved = to_json(c);
  EXPECT_NE(saved.find(R"("blocked_ports": [53, 22])"), saved.npos) << saved;
  for (const char* leaked : {"2222", "8080"})
    EXPECT_EQ(saved.find(leaked), saved.npos) << leaked << " leaked into\n" << saved;
  expect_round_trip(c, env);

  // Without the variable, the saved file reads back as the operator's file does: port 22
  // is blocked again (so this file's route is refused, as the original would be).
  ParseResult plain = parse(saved);
  ASSERT_EQ(plain.problems.size(), 1u) << dump(plain.problems);
  EXPECT_EQ(plain.problems[0].str(), "routes[0].listen_port: port 22 is blocked (blocked_ports)");
  ParseResult original = parse(file);
  ASSERT_EQ(original.problems.size(), 1u);
  EXPECT_EQ(original.problems[0].str(), plain.problems[0].str());
}

TEST(BlockedPorts, EmptyEnvironmentValueKeepsFileList) {
  ParseOptions env;
  env.blocked_ports_env = "";
  Config c = parsed(R"({"role": "edge", "blocked_ports": [22, 53]})", env);
  EXPECT_TRUE(c.blocked_ports.empty());
  EXPECT_NE(to_json(c).find(R"("blocked_ports": [22, 53])"), std::string::npos);
}

// ---- parse_route -------------------------------------------------------------------------

const Config& spec_base() {
  static const Config c = parsed(spec_edge());
  return c;
}

TEST(ParseRoute, ValidDirectRoute) {
  RouteParse r = parse_route(
      R"({"id": "ssh", "protocol": "tcp", "listen_port": 2200,
          "target": {"host": "192.168.2.10", "port": 22}})",
      spec_base(), {});
  ASSERT_TRUE(r.ok()) << dump(r.problems);
  EXPECT_EQ(r.route->id, "ssh");
  EXPECT_EQ(r.route->listen_port, (PortRange{2200, 2200}));
  EXPECT_EQ(r.route->target.host, "192.168.2.10");
  EXPECT_EQ(r.route->target.port, 22);
}

TEST(ParseRoute, SameRouteAsInsideAConfig) {
  // Every optional field: parse_route and parse give the very same Route.
  const Config whole = parsed(edge_everything());
  const std::string route = with_dir(R"(
    { "id": "full", "protocol": "tcp", "listen": "192.0.2.1", "listen_port": "8000-8009",
      "target": { "gateway": "home", "lan_host": "nas.lan", "lan_port": 9000 },
      "tls": { "mode": "terminate", "domains": ["Wiki.Example.COM", "*.apps.example.com"],
               "default": true, "cert": "@DIR@/wiki.pem", "key": "@DIR@/wiki.key" },
      "timeouts": { "connect_timeout_ms": 1500, "idle_timeout_s": 120,
                    "udp_idle_timeout_s": 15, "drain_timeout_s": 9 },
      "max_connections": 77,
      "allow": ["198.51.100.0/24", "2001:db8::/32", "203.0.113.7"],
      "proxy_protocol": "v2",
      "accept_proxy_protocol": true,
      "wol": { "mac": "AA-BB-CC-DD-EE-0F", "broadcast": "192.168.2.255", "wait_s": 90 } })");
  RouteParse r = parse_route(route, whole, {});
  ASSERT_TRUE(r.ok()) << dump(r.problems);
  EXPECT_TRUE(*r.route == whole.routes[0]);
}

TEST(ParseRoute, RouteWrittenByToJsonReadsBack) {
  // What the control plane saves for a route is what it accepts for one.
  const Config whole = parsed(edge_everything());
  for (const Route& route : whole.routes) {
    Config one = whole;
    one.routes = {route};
    std::string text = to_json(one);
    size_t open = text.find("\n    {", text.find(R"("routes": [)")), close = text.rfind("\n    }");
    ASSERT_NE(open, text.npos);
    ASSERT_NE(close, text.npos);
    RouteParse r = parse_route(text.substr(open, close + 6 - open), whole, {});
    ASSERT_TRUE(r.ok()) << dump(r.problems);
    EXPECT_TRUE(*r.route == route) << route.id;
  }
}

TEST(ParseRoute, DoesNotCheckConflictsWithOtherRoutes) {
  // Same port as "ssh-box" and the same id as "rdp": the caller judges the new set.
  RouteParse r = parse_route(
      R"({"id": "rdp", "listen_port": 2222, "target": {"host": "192.0.2.1", "port": 22}})",
      spec_base(), {});
  ASSERT_TRUE(r.ok()) << dump(r.problems);
  Config next = spec_base();
  next.routes.push_back(*r.route);
  auto conflicts = routing::find_conflicts(next);
  ASSERT_EQ(conflicts.size(), 1u);
  EXPECT_EQ(conflicts[0].kind, ProblemKind::PortConflict);
  EXPECT_NE(conflicts[0].message.find("ssh-box"), std::string::npos);
}

TEST(ParseRoute, GatewayBase) {
  const Config gw = parsed(kSpecGateway);
  RouteParse ok = parse_route(
      R"({"id": "rdp", "listen_port": 3389, "target": {"lan_host": "192.168.2.100", "lan_port": 3389},
          "wol": {"mac": "aa:bb:cc:dd:ee:ff"}})",
      gw, {});
  ASSERT_TRUE(ok.ok()) << dump(ok.problems);
  EXPECT_TRUE(ok.route->target.is_lan());
  EXPECT_FALSE(ok.route->target.via_gateway());

  RouteParse own = parse_route(
      R"({"id": "rdp", "listen_port": 3389,
          "target": {"gateway": "home", "lan_host": "192.168.2.100", "lan_port": 3389}})",
      gw, {});
  ASSERT_TRUE(own.ok()) << dump(own.problems);

  RouteParse other = parse_route(
      R"({"id": "rdp", "listen_port": 3389,
          "target": {"gateway": "office", "lan_host": "192.168.2.100", "lan_port": 3389}})",
      gw, {});
  ASSERT_EQ(other.problems.size(), 1u) << dump(other.problems);
  EXPECT_FALSE(other.route.has_value());
  EXPECT_EQ(other.problems[0].str(),
            R"(route.target.gateway: "office" is not this gateway (gateway_id "home"))");

  // The sync port of a gateway's file is the edge's: blocked here too (7946).
  RouteParse sync = parse_route(
      R"({"id": "x", "listen_port": 7946, "target": {"lan_host": "192.168.2.1", "lan_port": 1}})",
      gw, {});
  ASSERT_EQ(sync.problems.size(), 1u) << dump(sync.problems);
  EXPECT_EQ(sync.problems[0].kind, ProblemKind::BlockedPort);
}

TEST(ParseRoute, BlockedPortsComeFromTheEffectiveList) {
  ParseOptions env;
  env.blocked_ports_env = "2200";
  const Config base = parsed(spec_edge(), env);
  const char* on22 =
      R"({"id": "x", "listen_port": 22, "target": {"host": "192.0.2.1", "port": 22}})";
  const char* on2200 =
      R"({"id": "x", "listen_port": 2200, "target": {"host": "192.0.2.1", "port": 22}})";
  EXPECT_TRUE(parse_route(on22, base, {}).ok());  // the variable replaced the file's list
  RouteParse r = parse_route(on2200, base, {});
  ASSERT_EQ(r.problems.size(), 1u) << dump(r.problems);
  EXPECT_EQ(r.problems[0].str(), "route.listen_port: port 2200 is blocked (blocked_ports)");
  EXPECT_EQ(r.problems[0].kind, ProblemKind::BlockedPort);
  // opts.blocked_ports_env is not parse_route's business: base already applied it.
  ParseOptions other;
  other.blocked_ports_env = "9999";
  EXPECT_FALSE(parse_route(on2200, base, other).ok());
}

TEST(ParseRoute, TerminateChecksFilesUnlessTold) {
  const char* route = R"({"id": "t", "listen_port": 8443,
      "tls": {"mode": "terminate", "domains": ["a.example.com"],
              "cert": "/nonexistent/ringfwd/a.pem", "key": "/nonexistent/ringfwd/a.key"},
      "target": {"host": "127.0.0.1", "port": 8080}})";
  RouteParse checked = parse_route(route, spec_base(), {});
  ASSERT_EQ(checked.problems.size(), 2u) << dump(checked.problems);
  EXPECT_EQ(checked.problems[0].path, "route.tls.cert");
  EXPECT_NE(checked.problems[0].message.find("cannot read /nonexistent/ringfwd/a.pem"),
            std::string::npos);
  EXPECT_EQ(checked.problems[1].path, "route.tls.key");
  ParseOptions remote;
  remote.check_files = false;
  EXPECT_TRUE(parse_route(route, spec_base(), remote).ok());
}

struct BadRoute {
  const char* name;
  std::string json;
  std::string path;     // of the first problem
  std::string message;  // a stable part of it
  ProblemKind kind = ProblemKind::Invalid;
};

std::vector<BadRoute> bad_routes() {
  const std::string direct = R"("target": {"host": "192.0.2.10", "port": 22})";
  return {
      {"BlockedPort", R"({"id": "x", "listen_port": 22, )" + direct + "}", "route.listen_port",
       "port 22 is blocked (blocked_ports)", ProblemKind::BlockedPort},
      {"BlockedSyncPort", R"({"id": "x", "listen_port": 7946, )" + direct + "}",
       "route.listen_port", "port 7946 is blocked (blocked_ports)", ProblemKind::BlockedPort},
      {"RangeWithBlockedPort", R"({"id": "x", "listen_port": "50-60", )" + direct + "}",
       "route.listen_port", "range 50-60 includes blocked port 53 (blocked_ports)",
       ProblemKind::BlockedPort},
      {"NotJson", R"({"id": "x",)", "route", "invalid JSON at line 1"},
      {"NotAnObject", R"(["x"])", "route", "expected an object {...}, got an array"},
      {"BadId", R"({"id": "Bad Id", "listen_port": 2200, )" + direct + "}", "route.id",
       "invalid id"},
      {"MissingId", R"({"listen_port": 2200, )" + direct + "}", "route.id", "required"},
      {"MissingListenPort", R"({"id": "x", )" + direct + "}", "route.listen_port", "required"},
      {"MissingTarget", R"({"id": "x", "listen_port": 2200})", "route.target", "required"},
      {"UnknownKey", R"({"id": "x", "lisen_port": 2200, "listen_port": 2201, )" + direct + "}",
       "route.lisen_port", "did you mean \"listen_port\""},
      {"DuplicateKey", R"({"id": "x", "listen_port": 2200, "listen_port": 2201, )" + direct + "}",
       "route.listen_port", "duplicate key \"listen_port\""},
      {"DuplicateNestedKey",
       R"({"id": "x", "listen_port": 2200, "target": {"host": "192.0.2.10", "port": 22, "port": 23}})",
       "route.target.port", "duplicate key \"port\""},
      {"DuplicateInsideUnknownKey",
       R"({"id": "x", "listen_port": 2200, "extra": {"a": 1, "a": 2}, )" + direct + "}",
       "route.extra", "unknown key"},
      {"BadProtocol", R"({"id": "x", "protocol": "sctp", "listen_port": 2200, )" + direct + "}",
       "route.protocol", "expected one of \"tcp\", \"udp\", \"tcp+udp\""},
      {"AllPorts", R"({"id": "x", "listen_port": "all", )" + direct + "}", "route.listen_port",
       "refused on purpose"},
      {"RangeTooLong", R"({"id": "x", "listen_port": "2000-3500", )" + direct + "}",
       "route.listen_port", "at most 1000 ports"},
      {"RangePast65535",
       R"({"id": "x", "listen_port": "2000-2010", "target": {"host": "192.0.2.1", "port": 65530}})",
       "route.target.port", "past port 65535"},
      {"UnknownGateway",
       R"({"id": "x", "listen_port": 2200, "target": {"gateway": "office", "lan_host": "192.168.2.1", "lan_port": 22}})",
       "route.target.gateway", "unknown gateway \"office\" (known: \"home\")"},
      {"MixedTarget",
       R"({"id": "x", "listen_port": 2200, "target": {"host": "192.0.2.1", "lan_port": 22}})",
       "route.target", "mixes the two target forms"},
      {"BadHost",
       R"({"id": "x", "listen_port": 2200, "target": {"host": "192.168.1.300", "port": 22}})",
       "route.target.host", "neither an IP address nor a valid host name"},
      {"BadListen", R"({"id": "x", "listen": "eth0", "listen_port": 2200, )" + direct + "}",
       "route.listen", "expected an IP address"},
      {"TlsOnUdp",
       R"({"id": "x", "protocol": "udp", "listen_port": 2200, "tls": {"mode": "passthrough", "domains": ["a.example.com"]}, )" +
           direct + "}",
       "route.tls", "TLS needs protocol \"tcp\""},
      {"TlsWithoutDomains",
       R"({"id": "x", "listen_port": 2200, "tls": {"mode": "passthrough"}, )" + direct + "}",
       "route.tls.domains", "required unless \"default\": true"},
      {"BadSniName",
       R"({"id": "x", "listen_port": 2200, "tls": {"mode": "passthrough", "domains": ["a.*.com"]}, )" +
           direct + "}",
       "route.tls.domains[0]", "a wildcard may only be the whole first label"},
      {"TimeoutZero",
       R"({"id": "x", "listen_port": 2200, "timeouts": {"idle_timeout_s": 0}, )" + direct + "}",
       "route.timeouts.idle_timeout_s", "must be at least 1"},
      {"MaxConnectionsNotANumber",
       R"({"id": "x", "listen_port": 2200, "max_connections": "many", )" + direct + "}",
       "route.max_connections", "expected an integer"},
      {"BadCidr", R"({"id": "x", "listen_port": 2200, "allow": ["10.0.0.1/8"], )" + direct + "}",
       "route.allow[0]", "bits set past the prefix"},
      {"EmptyAllow", R"({"id": "x", "listen_port": 2200, "allow": [], )" + direct + "}",
       "route.allow", "is empty"},
      {"ProxyV1OnUdp",
       R"({"id": "x", "protocol": "udp", "listen_port": 2200, "proxy_protocol": "v1", )" + direct +
           "}",
       "route.proxy_protocol", "use \"v2\""},
      {"WolOnDirectTarget",
       R"({"id": "x", "listen_port": 2200, "wol": {"mac": "aa:bb:cc:dd:ee:ff"}, )" + direct + "}",
       "route.wol", "only valid for a route to a LAN device"},
      {"BadMac",
       R"({"id": "x", "listen_port": 2200, "wol": {"mac": "aa:bb"}, "target": {"gateway": "home", "lan_host": "192.168.2.1", "lan_port": 22}})",
       "route.wol.mac", "expected a MAC address"},
  };
}

class ParseRouteBad : public ::testing::TestWithParam<BadRoute> {};

TEST_P(ParseRouteBad, ReportsPathAndKind) {
  const BadRoute& c = GetParam();
  RouteParse r = parse_route(c.json, spec_base(), {});
  EXPECT_FALSE(r.route.has_value());
  EXPECT_FALSE(r.ok());
  ASSERT_FALSE(r.problems.empty()) << c.json;
  const Problem& p = r.problems[0];
  EXPECT_EQ(p.path, c.path) << dump(r.problems);
  EXPECT_NE(p.message.find(c.message), std::string::npos) << dump(r.problems);
  EXPECT_EQ(p.kind, c.kind) << dump(r.problems);
  for (const Problem& q : r.problems)
    EXPECT_EQ(q.path.compare(0, 5, "route"), 0) << "not rooted at route: " << q.str();
}

INSTANTIATE_TEST_SUITE_P(Rules, ParseRouteBad, ::testing::ValuesIn(bad_routes()),
                         [](const ::testing::TestParamInfo<BadRoute>& info) {
                           return std::string(info.param.name);
                         });

TEST(ParseRoute, ReportsEveryProblemAtOnce) {
  RouteParse r = parse_route(
      R"({"id": "Bad", "protocol": "icmp", "listen_port": 0, "target": {"host": "", "port": 99999}})",
      spec_base(), {});
  std::vector<std::string> paths;
  for (const auto& p : r.problems) paths.push_back(p.path);
  EXPECT_EQ(paths, (std::vector<std::string>{"route.id", "route.protocol", "route.listen_port",
                                             "route.target.host", "route.target.port"}))
      << dump(r.problems);
}

TEST(ParseRoute, DuplicateKeysWhereTheWalkDoesNotGo) {
  RouteParse r = parse_route(
      R"({"id": "x", "listen_port": 2200, "extra": {"a": 1, "a": 2},
          "target": {"host": "192.0.2.1", "port": 22}})",
      spec_base(), {});
  ASSERT_EQ(r.problems.size(), 2u) << dump(r.problems);
  EXPECT_EQ(r.problems[1].str(), R"(route.extra.a: duplicate key "a" (the last one would win))");
}

TEST(ParseRoute, InvalidRouteOnABlockedPortReportsOnlyTheInvalidField) {
  // As in parse(): only a well-formed route meets the blocked-port rule.
  RouteParse r =
      parse_route(R"({"id": "x", "listen_port": 22, "target": {"host": "192.0.2.1", "port": 0}})",
                  spec_base(), {});
  ASSERT_EQ(r.problems.size(), 1u) << dump(r.problems);
  EXPECT_EQ(r.problems[0].path, "route.target.port");
  EXPECT_EQ(r.problems[0].kind, ProblemKind::Invalid);
}

TEST(ParseRoute, MatchesTheProblemsOfParse) {
  // The same bad route inside a config and alone: the same messages, paths re-rooted.
  for (const BadRoute& c : bad_routes()) {
    if (c.path == "route") continue;  // document-level: no counterpart inside "routes"
    SCOPED_TRACE(c.name);
    std::string file = spec_edge();
    file.replace(file.rfind("]\n}"), 1, ", " + c.json + "]");
    ParseResult whole = parse(file);
    RouteParse alone = parse_route(c.json, spec_base(), {});
    ASSERT_EQ(whole.problems.size(), alone.problems.size()) << dump(whole.problems) << "vs\n"
                                                            << dump(alone.problems);
    for (size_t i = 0; i < whole.problems.size(); ++i) {
      std::string path = whole.problems[i].path;
      ASSERT_EQ(path.compare(0, 9, "routes[6]"), 0) << path;
      EXPECT_EQ("route" + path.substr(9), alone.problems[i].path);
      EXPECT_EQ(whole.problems[i].message, alone.problems[i].message);
      EXPECT_EQ(whole.problems[i].kind, alone.problems[i].kind);
    }
  }
}

}  // namespace
}  // namespace rf::config
