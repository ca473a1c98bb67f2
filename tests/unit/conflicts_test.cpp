// rf::routing::find_conflicts: the SPEC §3 conflict rules, both through parse() (paths in the
// file's numbering) and on a Config built in code (as the D-Bus API will hand it over).
#include "ringfwd/routing/conflicts.hpp"

#include <gtest/gtest.h>

#include <string>
#include <vector>

#include "ringfwd/config/config.hpp"

namespace rf::routing {
namespace {

using config::ParseResult;
using config::ProblemKind;

std::string dump(const std::vector<config::Problem>& problems) {
  std::string s;
  for (const auto& p : problems) s += "  " + p.str() + "\n";
  return s.empty() ? "  (no problems)\n" : s;
}

std::string edge(const std::string& routes) {
  return R"({"role": "edge", "gateways": [{"id": "home", "tunnel_ip": "10.8.0.2"}], "routes": [)" +
         routes + "]}";
}

std::string gateway(const std::string& routes) {
  return R"({"role": "gateway", "gateway_id": "home", "tunnel_ip": "10.8.0.2", "routes": [)" +
         routes + "]}";
}

// A route with id, protocol, listen_port (JSON value) and optional extra members.
std::string route(const std::string& id, const std::string& protocol, const std::string& port,
                  const std::string& more = "") {
  return R"({"id": ")" + id + R"(", "protocol": ")" + protocol + R"(", "listen_port": )" + port +
         ", " + more + R"("target": {"host": "192.0.2.1", "port": 1000}})";
}

std::string at(const std::string& listen) { return R"("listen": ")" + listen + R"(", )"; }

std::string tls(const std::string& mode, const std::string& domains, bool is_default = false) {
  return R"("tls": {"mode": ")" + mode + R"(", "domains": [)" + domains + "]" +
         (is_default ? R"(, "default": true)" : "") + "}, ";
}

struct Case {
  const char* name;
  std::string json;
  std::string path;     // empty: no conflict expected
  std::string message;  // mostly the whole message: its wording is part of the contract
  size_t count = 1;
};

std::vector<Case> cases() {
  const std::string a22 = route("a", "tcp", "2222"), b22 = route("b", "tcp", "2222");
  return {
      // same protocol, address and port
      {"tcp_same_port", edge(a22 + ", " + b22), "routes[1].listen_port",
       R"(tcp port 2222 on all addresses is already used by route "a" (route "b" conflicts))"},
      {"udp_same_port", edge(route("a", "udp", "53") + ", " + route("b", "udp", "53")),
       "routes[1].listen_port",
       R"(udp port 53 on all addresses is already used by route "a" (route "b" conflicts))"},
      {"tcp_and_udp_share", edge(route("a", "tcp", "53") + ", " + route("b", "udp", "53")), "", ""},
      {"tcp_udp_vs_udp", edge(route("a", "tcp+udp", "53") + ", " + route("b", "udp", "53")),
       "routes[1].listen_port",
       R"(udp port 53 on all addresses is already used by route "a" (route "b" conflicts))"},
      {"udp_vs_tcp_udp", edge(route("a", "udp", "53") + ", " + route("b", "tcp+udp", "53")),
       "routes[1].listen_port",
       R"(udp port 53 on all addresses is already used by route "a" (route "b" conflicts))"},
      {"tcp_udp_vs_tcp_udp", edge(route("a", "tcp+udp", "53") + ", " + route("b", "tcp+udp", "53")),
       "routes[1].listen_port",
       R"(tcp+udp port 53 on all addresses is already used by route "a" (route "b" conflicts))"},
      {"ranges_overlap",
       edge(route("a", "tcp", R"("20-30")") + ", " + route("b", "tcp", R"("25-40")")),
       "routes[1].listen_port",
       R"(tcp ports 25-30 on all addresses are already used by route "a" (route "b" conflicts))"},
      {"range_holds_port",
       edge(route("a", "udp", R"("27015-27020")") + ", " + route("b", "udp", "27017")),
       "routes[1].listen_port",
       R"(udp port 27017 on all addresses is already used by route "a" (route "b" conflicts))"},
      {"ranges_touch_not",
       edge(route("a", "tcp", R"("20-30")") + ", " + route("b", "tcp", R"("31-40")")), "", ""},

      // addresses
      {"different_v4",
       edge(route("a", "tcp", "80", at("192.0.2.1")) + ", " +
            route("b", "tcp", "80", at("192.0.2.2"))),
       "", ""},
      {"same_v4",
       edge(route("a", "tcp", "80", at("192.0.2.1")) + ", " +
            route("b", "tcp", "80", at("192.0.2.1"))),
       "routes[1].listen_port",
       R"(tcp port 80 on 192.0.2.1 is already used by route "a" (route "b" conflicts))"},
      {"any4_vs_v4",
       edge(route("a", "tcp", "80", at("0.0.0.0")) + ", " +
            route("b", "tcp", "80", at("192.0.2.1"))),
       "routes[1].listen_port",
       R"(tcp port 80 on 192.0.2.1 is already used by route "a" (route "b" conflicts))"},
      {"v4_vs_any4",
       edge(route("a", "tcp", "80", at("192.0.2.1")) + ", " +
            route("b", "tcp", "80", at("0.0.0.0"))),
       "routes[1].listen_port",
       R"(tcp port 80 on 0.0.0.0 is already used by route "a" (route "b" conflicts))"},
      {"any4_vs_v6",
       edge(route("a", "tcp", "80", at("0.0.0.0")) + ", " +
            route("b", "tcp", "80", at("2001:db8::1"))),
       "", ""},
      {"v4_vs_v6",
       edge(route("a", "tcp", "80", at("192.0.2.1")) + ", " +
            route("b", "tcp", "80", at("2001:db8::1"))),
       "", ""},
      {"any6_vs_v4",
       edge(route("a", "tcp", "80", at("::")) + ", " + route("b", "tcp", "80", at("192.0.2.1"))),
       "routes[1].listen_port",
       R"(tcp port 80 on 192.0.2.1 is already used by route "a" (route "b" conflicts))"},
      {"any6_vs_v6",
       edge(route("a", "tcp", "80", at("2001:db8::1")) + ", " + route("b", "tcp", "80", at("::"))),
       "routes[1].listen_port",
       R"(tcp port 80 on :: is already used by route "a" (route "b" conflicts))"},
      {"edge_default_vs_v6",
       edge(route("a", "tcp", "80") + ", " + route("b", "tcp", "80", at("2001:db8::1"))),
       "routes[1].listen_port",
       R"(tcp port 80 on 2001:db8::1 is already used by route "a" (route "b" conflicts))"},
      {"same_v6_other_spelling",
       edge(route("a", "tcp", "80", at("2001:db8:0::1")) + ", " +
            route("b", "tcp", "80", at("2001:DB8::0:1"))),
       "routes[1].listen_port",
       R"(tcp port 80 on 2001:DB8::0:1 is already used by route "a" (route "b" conflicts))"},
      {"different_v6",
       edge(route("a", "tcp", "80", at("2001:db8::1")) + ", " +
            route("b", "tcp", "80", at("2001:db8::2"))),
       "", ""},
      {"v4_mapped_v6",
       edge(route("a", "tcp", "80", at("::ffff:192.0.2.1")) + ", " +
            route("b", "tcp", "80", at("192.0.2.1"))),
       "routes[1].listen_port",
       R"(tcp port 80 on 192.0.2.1 is already used by route "a" (route "b" conflicts))"},

      // TLS and plain on one port
      {"none_then_tls",
       edge(route("a", "tcp", "443") + ", " +
            route("b", "tcp", "443", tls("passthrough", R"("b.example.com")"))),
       "routes[1].listen_port",
       R"(tcp port 443 on all addresses is already used by route "a" (route "b" conflicts: a route without TLS cannot share a port with TLS routes, which are told apart by SNI))"},
      {"tls_then_plain",
       edge(route("a", "tcp", "443", tls("passthrough", R"("a.example.com")")) + ", " +
            route("b", "tcp", "443")),
       "routes[1].listen_port",
       R"(tcp port 443 on all addresses is already used by route "a" (route "b" conflicts: a route without TLS cannot share a port with TLS routes, which are told apart by SNI))"},
      {"tls_and_udp_plain",
       edge(route("a", "tcp", "443", tls("passthrough", R"("a.example.com")")) + ", " +
            route("b", "udp", "443")),
       "", ""},
      {"tls_and_tcp_udp_plain",
       edge(route("a", "tcp", "443", tls("passthrough", R"("a.example.com")")) + ", " +
            route("b", "tcp+udp", "443")),
       "routes[1].listen_port",
       R"((route "b" conflicts: a route without TLS cannot share a port with TLS routes)"},

      // TLS names on one port
      {"tls_different_names",
       edge(route("a", "tcp", "443", tls("passthrough", R"("a.example.com")")) + ", " +
            route("b", "tcp", "443", tls("passthrough", R"("b.example.com")"))),
       "", ""},
      {"tls_same_name",
       edge(route("a", "tcp", "443", tls("passthrough", R"("x.example.com", "nas.example.com")")) +
            ", " + route("b", "tcp", "443", tls("passthrough", R"("nas.example.com")"))),
       "routes[1].tls.domains",
       R"(tcp port 443 on all addresses is already used by route "a" (route "b" conflicts: both list "nas.example.com"))"},
      {"tls_same_name_other_case",
       edge(route("a", "tcp", "443", tls("passthrough", R"("NAS.example.com")")) + ", " +
            route("b", "tcp", "443", tls("passthrough", R"("nas.EXAMPLE.com", "y.example.com")"))),
       "routes[1].tls.domains", R"(both list "nas.example.com")"},
      {"tls_several_shared_names",
       edge(route("a", "tcp", "443", tls("passthrough", R"("a.example.com", "b.example.com")")) +
            ", " +
            route("b", "tcp", "443", tls("passthrough", R"("b.example.com", "a.example.com")"))),
       "routes[1].tls.domains", R"(both list "b.example.com", "a.example.com")"},
      {"tls_same_wildcard",
       edge(route("a", "tcp", "443", tls("passthrough", R"("*.example.com")")) + ", " +
            route("b", "tcp", "443", tls("passthrough", R"("*.example.com")"))),
       "routes[1].tls.domains", R"(both list "*.example.com")"},
      {"tls_exact_beside_wildcard",
       edge(route("a", "tcp", "443", tls("passthrough", R"("*.example.com")")) + ", " +
            route("b", "tcp", "443", tls("passthrough", R"("a.example.com")"))),
       "", ""},
      {"tls_same_name_other_port",
       edge(route("a", "tcp", "443", tls("passthrough", R"("a.example.com")")) + ", " +
            route("b", "tcp", "8443", tls("passthrough", R"("a.example.com")"))),
       "", ""},
      {"tls_same_name_other_address",
       edge(route("a", "tcp", "443", at("192.0.2.1") + tls("passthrough", R"("a.example.com")")) +
            ", " +
            route("b", "tcp", "443", at("192.0.2.2") + tls("passthrough", R"("a.example.com")"))),
       "", ""},
      {"tls_two_defaults",
       edge(route("a", "tcp", "443", tls("passthrough", R"("a.example.com")", true)) + ", " +
            route("b", "tcp", "443", tls("passthrough", R"("b.example.com")", true))),
       "routes[1].tls.default",
       R"(tcp port 443 on all addresses is already used by route "a" (route "b" conflicts: both are the "default": true route))"},
      {"tls_one_default",
       edge(route("a", "tcp", "443", tls("passthrough", "", true)) + ", " +
            route("b", "tcp", "443", tls("passthrough", R"("b.example.com")"))),
       "", ""},
      {"tls_range_overlap",
       edge(route("a", "tcp", R"("8440-8450")", tls("passthrough", R"("a.example.com")")) + ", " +
            route("b", "tcp", R"("8445-8460")", tls("passthrough", R"("a.example.com")"))),
       "routes[1].tls.domains",
       R"(tcp ports 8445-8450 on all addresses are already used by route "a" (route "b" conflicts: both list "a.example.com"))"},

      {"tls_shared_port_other_address",
       edge(route("a", "tcp", "443", tls("passthrough", R"("a.example.com")")) + ", " +
            route("b", "tcp", "443", at("192.0.2.1") + tls("passthrough", R"("b.example.com")"))),
       "routes[1].listen",
       R"(tcp port 443 on 192.0.2.1 is already used by route "a" (route "b" conflicts: TLS routes sharing a port must listen on the same address (all addresses vs 192.0.2.1)))"},
      {"tls_shared_port_accept_proxy_differs",
       edge(route("a", "tcp", "443", tls("passthrough", R"("a.example.com")")) + ", " +
            route("b", "tcp", "443",
                  R"("accept_proxy_protocol": true, )" + tls("passthrough", R"("b.example.com")"))),
       "routes[1].accept_proxy_protocol",
       R"(tcp port 443 on all addresses is already used by route "a" (route "b" conflicts: TLS routes sharing a port must agree on accept_proxy_protocol))"},
      {"tls_shared_port_both_accept_proxy",
       edge(route("a", "tcp", "443",
                  R"("accept_proxy_protocol": true, )" + tls("passthrough", R"("a.example.com")")) +
            ", " +
            route("b", "tcp", "443",
                  R"("accept_proxy_protocol": true, )" + tls("passthrough", R"("b.example.com")"))),
       "", ""},

      // more than two routes: each later route names every earlier one it collides with
      {"three_on_one_port", edge(a22 + ", " + b22 + ", " + route("c", "tcp", "2222")),
       "routes[1].listen_port",
       R"(tcp port 2222 on all addresses is already used by route "a" (route "b" conflicts))", 3},

      // gateway role: the default bind address is the tunnel IP
      {"gateway_default_vs_tunnel_ip",
       gateway(route("a", "tcp", "80") + ", " + route("b", "tcp", "80", at("10.8.0.2"))),
       "routes[1].listen_port",
       R"(tcp port 80 on 10.8.0.2 is already used by route "a" (route "b" conflicts))"},
      {"gateway_default_vs_other_ip",
       gateway(route("a", "tcp", "80") + ", " + route("b", "tcp", "80", at("192.168.2.1"))), "",
       ""},
      {"gateway_two_defaults", gateway(route("a", "tcp", "80") + ", " + route("b", "tcp", "80")),
       "routes[1].listen_port",
       R"(tcp port 80 on 10.8.0.2 is already used by route "a" (route "b" conflicts))"},

      // a route with a problem of its own is left out; the numbering stays the file's
      {"invalid_route_skipped",
       edge(a22 + R"(, {"id": "bad", "listen_port": 2222, "target": {}}, )" +
            route("c", "tcp", "2222")),
       "routes[1].target", "no target given", 2},
  };
}

class ConflictTest : public ::testing::TestWithParam<Case> {};

TEST_P(ConflictTest, Reports) {
  const Case& c = GetParam();
  ParseResult r = config::parse(c.json);
  if (c.path.empty()) {
    EXPECT_TRUE(r.ok()) << dump(r.problems);
    return;
  }
  ASSERT_EQ(r.problems.size(), c.count) << dump(r.problems);
  EXPECT_EQ(r.problems[0].path, c.path) << dump(r.problems);
  EXPECT_NE(r.problems[0].message.find(c.message), std::string::npos) << dump(r.problems);
}

INSTANTIATE_TEST_SUITE_P(Rules, ConflictTest, ::testing::ValuesIn(cases()),
                         [](const ::testing::TestParamInfo<Case>& info) {
                           return std::string(info.param.name);
                         });

TEST(Conflicts, ThreeRoutesNameEveryPair) {
  ParseResult r = config::parse(edge(route("a", "tcp", "2222") + ", " + route("b", "tcp", "2222") +
                                     ", " + route("c", "tcp", "2222")));
  ASSERT_EQ(r.problems.size(), 3u) << dump(r.problems);
  EXPECT_EQ(
      r.problems[1].str(),
      R"(routes[2].listen_port: tcp port 2222 on all addresses is already used by route "a" (route "c" conflicts))");
  EXPECT_EQ(
      r.problems[2].str(),
      R"(routes[2].listen_port: tcp port 2222 on all addresses is already used by route "b" (route "c" conflicts))");
  for (const auto& p : r.problems) EXPECT_EQ(p.kind, ProblemKind::PortConflict);
}

TEST(Conflicts, PathsFollowTheFileWhenRoutesAreSkipped) {
  ParseResult r = config::parse(edge(route("a", "tcp", "2222") +
                                     R"(, {"id": "bad", "listen_port": 2222, "target": {}}, )" +
                                     route("c", "tcp", "2222")));
  ASSERT_EQ(r.problems.size(), 2u) << dump(r.problems);
  EXPECT_EQ(
      r.problems[1].str(),
      R"(routes[2].listen_port: tcp port 2222 on all addresses is already used by route "a" (route "c" conflicts))");
}

TEST(Conflicts, BlockedAndConflictTogether) {
  ParseResult r =
      config::parse(R"({"role": "edge", "blocked_ports": [25], "routes": [)" +
                    route("a", "tcp", R"("20-30")") + ", " + route("b", "tcp", "25") + "]}");
  ASSERT_EQ(r.problems.size(), 3u) << dump(r.problems);
  EXPECT_EQ(r.problems[0].str(),
            "routes[0].listen_port: range 20-30 includes blocked port 25 (blocked_ports)");
  EXPECT_EQ(r.problems[0].kind, ProblemKind::BlockedPort);
  EXPECT_EQ(r.problems[1].str(), "routes[1].listen_port: port 25 is blocked (blocked_ports)");
  EXPECT_EQ(r.problems[1].kind, ProblemKind::BlockedPort);
  EXPECT_EQ(r.problems[2].kind, ProblemKind::PortConflict);
  EXPECT_EQ(r.problems[2].path, "routes[1].listen_port");
}

// The same rules on a Config built in code, as the control plane will check a change.
config::Route make(const std::string& id, config::Protocol proto, uint16_t first, uint16_t last,
                   config::TlsMode mode = config::TlsMode::None,
                   std::vector<std::string> domains = {}) {
  config::Route r;
  r.id = id;
  r.protocol = proto;
  r.listen_port = {first, last};
  r.target.host = "192.0.2.1";
  r.target.port = 1000;
  r.tls.mode = mode;
  r.tls.domains = std::move(domains);
  return r;
}

TEST(FindConflicts, EmptyAndSingleAreClean) {
  config::Config cfg;
  EXPECT_TRUE(find_conflicts(cfg).empty());
  cfg.routes.push_back(make("a", config::Protocol::Tcp, 80, 80));
  EXPECT_TRUE(find_conflicts(cfg).empty());
}

TEST(FindConflicts, OnABuiltConfig) {
  config::Config cfg;
  cfg.blocked_ports = {22};
  cfg.routes.push_back(make("a", config::Protocol::Tcp, 1000, 1999));
  cfg.routes.push_back(make("ssh", config::Protocol::Tcp, 22, 22));
  cfg.routes.push_back(make("web", config::Protocol::TcpUdp, 1999, 2005));
  cfg.routes.push_back(
      make("sni", config::Protocol::Tcp, 443, 443, config::TlsMode::Terminate, {"a.example.com"}));
  cfg.routes.push_back(make("sni2", config::Protocol::Tcp, 443, 443, config::TlsMode::Passthrough,
                            {"*.example.com"}));
  auto problems = find_conflicts(cfg);
  ASSERT_EQ(problems.size(), 2u) << dump(problems);
  EXPECT_EQ(problems[0].str(), "routes[1].listen_port: port 22 is blocked (blocked_ports)");
  EXPECT_EQ(
      problems[1].str(),
      R"(routes[2].listen_port: tcp port 1999 on all addresses is already used by route "a" (route "web" conflicts))");
}

TEST(FindConflicts, PassthroughAndTerminateShareNames) {
  config::Config cfg;
  cfg.routes.push_back(make("nas", config::Protocol::Tcp, 443, 443, config::TlsMode::Passthrough,
                            {"nas.example.com"}));
  cfg.routes.push_back(make("wiki", config::Protocol::Tcp, 443, 443, config::TlsMode::Terminate,
                            {"wiki.example.com"}));
  EXPECT_TRUE(find_conflicts(cfg).empty());
  cfg.routes[1].tls.domains.push_back(
      "NAS.example.com");  // a Config not from parse() may keep case
  auto problems = find_conflicts(cfg);
  ASSERT_EQ(problems.size(), 1u) << dump(problems);
  EXPECT_EQ(
      problems[0].str(),
      R"(routes[1].tls.domains: tcp port 443 on all addresses is already used by route "nas" (route "wiki" conflicts: both list "nas.example.com"))");
  EXPECT_EQ(problems[0].kind, ProblemKind::PortConflict);
}

TEST(FindConflicts, GatewayRoleUsesTunnelIp) {
  config::Config cfg;
  cfg.role = config::Role::Gateway;
  cfg.tunnel_ip = "fd00::2";
  cfg.routes.push_back(make("a", config::Protocol::Udp, 5000, 5000));
  cfg.routes.push_back(make("b", config::Protocol::Udp, 5000, 5000));
  cfg.routes[1].listen = "10.0.0.1";  // other family than the tunnel IP: no clash
  EXPECT_TRUE(find_conflicts(cfg).empty());
  cfg.routes[1].listen = "fd00:0:0::2";
  auto problems = find_conflicts(cfg);
  ASSERT_EQ(problems.size(), 1u) << dump(problems);
  EXPECT_EQ(problems[0].message,
            R"(udp port 5000 on fd00:0:0::2 is already used by route "a" (route "b" conflicts))");
}

}  // namespace
}  // namespace rf::routing
