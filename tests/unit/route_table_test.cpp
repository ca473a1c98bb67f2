// rf::routing::RouteTable: the listen ports a table serves (TCP grouped per address:port so
// that TLS routes share one socket, UDP apart) and SNI dispatch on a shared TLS port.
#include "ringfwd/routing/route_table.hpp"

#include <gtest/gtest.h>

#include <string>

#include "ringfwd/config/config.hpp"

namespace rf::routing {
namespace {

std::shared_ptr<const RouteTable> table_of(const std::string& routes) {
  auto parsed = config::parse(R"({"role": "edge", "routes": [)" + routes + "]}");
  EXPECT_TRUE(parsed.ok()) << (parsed.problems.empty() ? "" : parsed.problems[0].str());
  if (!parsed.ok()) return nullptr;
  auto t = RouteTable::build(*parsed.config);
  EXPECT_TRUE(t.ok());
  return t.ok() ? *t : nullptr;
}

std::string passthrough(const std::string& id, const std::string& domains, bool is_default = false,
                        const std::string& port = "443") {
  return R"({"id": ")" + id + R"(", "listen_port": )" + port +
         R"(, "tls": {"mode": "passthrough", "domains": [)" + domains + "]" +
         (is_default ? R"(, "default": true)" : "") +
         R"(}, "target": {"host": "127.0.0.1", "port": 9000}})";
}

const char* id_of(const ResolvedRoute* r) { return r ? r->route.id.c_str() : "(none)"; }

TEST(SniDispatch, ExactWildcardDefault) {
  auto t = table_of(passthrough("exact", R"("a.example.com")") + "," +
                    passthrough("wild", R"("*.example.com")") + "," +
                    passthrough("other", R"("example.org", "*.test")") + "," +
                    passthrough("fallback", "", true));
  ASSERT_TRUE(t);
  ASSERT_EQ(t->tcp_ports().size(), 1u);  // one socket for all four routes
  const TcpPort& p = t->tcp_ports()[0];
  EXPECT_EQ(p.key, "0.0.0.0:443");
  EXPECT_TRUE(p.needs_prelude());
  EXPECT_EQ(p.route_ids().size(), 4u);
  EXPECT_STREQ(id_of(p.by_sni("a.example.com")), "exact");      // exact wins over wildcard
  EXPECT_STREQ(id_of(p.by_sni("b.example.com")), "wild");
  EXPECT_STREQ(id_of(p.by_sni("x.y.example.com")), "fallback");  // a wildcard is one label
  EXPECT_STREQ(id_of(p.by_sni("example.com")), "fallback");
  EXPECT_STREQ(id_of(p.by_sni("example.org")), "other");
  EXPECT_STREQ(id_of(p.by_sni("host.test")), "other");
  EXPECT_STREQ(id_of(p.by_sni("")), "fallback");                 // no SNI at all
  EXPECT_STREQ(id_of(p.by_sni(".example.com")), "fallback");     // empty first label
}

TEST(SniDispatch, NothingMatchesWithoutDefault) {
  auto t = table_of(passthrough("a", R"("a.example.com")"));
  ASSERT_TRUE(t);
  const TcpPort& p = t->tcp_ports()[0];
  EXPECT_EQ(p.by_sni("b.example.com"), nullptr);
  EXPECT_EQ(p.by_sni(""), nullptr);
  EXPECT_EQ(p.hello_timeout_ms, 5000u);  // the default
}

TEST(Ports, PlainRouteNeedsNoPreludeUnlessAProxyHeaderComes) {
  auto t = table_of(
      R"({"id": "plain", "listen_port": "7000-7002", "target": {"host": "127.0.0.1", "port": 8000}},
         {"id": "lb", "listen_port": 7100, "accept_proxy_protocol": true, "target": {"host": "127.0.0.1", "port": 8100}})");
  ASSERT_TRUE(t);
  ASSERT_EQ(t->tcp_ports().size(), 4u);
  for (const TcpPort& p : t->tcp_ports()) {
    ASSERT_NE(p.plain, nullptr);
    EXPECT_EQ(p.needs_prelude(), p.plain->route.id == "lb") << p.key;
    EXPECT_EQ(p.by_sni("anything"), nullptr) << "SNI plays no part on a plain port";
  }
  EXPECT_TRUE(t->udp_ports().empty());
}

TEST(Ports, TcpUdpRouteListensOnBoth) {
  auto t = table_of(
      R"({"id": "dns", "protocol": "tcp+udp", "listen": "127.0.0.1", "listen_port": "5300-5301", "target": {"host": "127.0.0.1", "port": 53}},
         {"id": "game", "protocol": "udp", "listen_port": 27015, "target": {"host": "127.0.0.1", "port": 27015}})");
  ASSERT_TRUE(t);
  ASSERT_EQ(t->tcp_ports().size(), 2u);
  ASSERT_EQ(t->udp_ports().size(), 3u);
  EXPECT_EQ(t->tcp_ports()[0].key, "127.0.0.1:5300");
  EXPECT_EQ(t->udp_ports()[0].key, "127.0.0.1:5300/udp");
  EXPECT_EQ(t->udp_ports()[2].key, "0.0.0.0:27015/udp");
  EXPECT_EQ(t->udp_ports()[2].route->route.id, "game");
  sockaddr_storage a{};
  socklen_t len = 0;
  t->udp_ports()[1].route->target_for(t->udp_ports()[1].port, a, len);
  EXPECT_EQ(ntohs(reinterpret_cast<sockaddr_in*>(&a)->sin_port), 54);  // the range's offset
}

TEST(Ports, HelloTimeoutIsTheLongestOfThePort) {
  auto t = table_of(
      R"({"id": "a", "listen_port": 443, "tls": {"mode": "passthrough", "domains": ["a.example.com"], "hello_timeout_ms": 800}, "target": {"host": "127.0.0.1", "port": 9000}},
         {"id": "b", "listen_port": 443, "tls": {"mode": "passthrough", "domains": ["b.example.com"], "hello_timeout_ms": 1500}, "target": {"host": "127.0.0.1", "port": 9001}})");
  ASSERT_TRUE(t);
  EXPECT_EQ(t->tcp_ports()[0].hello_timeout_ms, 1500u);
}

}  // namespace
}  // namespace rf::routing
