// The sync protocol's pure parts (frames, proofs, hashes, the gateway form of an edge's routes,
// validation of a received set) and the hop routes they produce on a gateway.
#include "ringfwd/sync/protocol.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>

#include <string>

#include "ringfwd/base/net.hpp"
#include "ringfwd/config/config.hpp"
#include "ringfwd/routing/conflicts.hpp"
#include "ringfwd/routing/route_table.hpp"
#include "test_support.hpp"

namespace rf::sync {
namespace {

const char* kEdge = R"({"role": "edge", "blocked_ports": [22],
  "gateways": [{"id": "home", "tunnel_ip": "10.8.0.2", "token_file": "/etc/ringfwd/home.token"},
               {"id": "cabin", "tunnel_ip": "10.8.0.3", "token_file": "/etc/ringfwd/cabin.token"}],
  "sync": {"listen": "10.8.0.1:7946"},
  "routes": [
    {"id": "nas", "listen_port": 443, "tls": {"mode": "passthrough", "domains": ["nas.example.com"]},
     "target": {"gateway": "home", "lan_host": "192.168.2.20", "lan_port": 443},
     "proxy_protocol": "v2", "allow": ["203.0.113.0/24"]},
    {"id": "photos", "listen_port": 443, "tls": {"mode": "passthrough", "domains": ["photos.example.com"]},
     "target": {"gateway": "home", "lan_host": "192.168.2.21", "lan_port": 8443}},
    {"id": "games", "protocol": "udp", "listen_port": "27015-27017",
     "target": {"gateway": "home", "lan_host": "192.168.2.50", "lan_port": 27015}},
    {"id": "cabin-ssh", "listen_port": 2222, "target": {"gateway": "cabin", "lan_host": "192.168.5.2", "lan_port": 22}},
    {"id": "direct", "listen_port": 8080, "target": {"host": "127.0.0.1", "port": 80}}
  ]})";

const char* kGateway = R"({"role": "gateway", "gateway_id": "home", "tunnel_ip": "10.8.0.2",
  "blocked_ports": [22], "sync": {"edge": "10.8.0.1:7946", "token_file": "/etc/ringfwd/token"}})";

config::Config parsed(const char* text) {
  config::ParseOptions opts;
  opts.check_files = false;
  auto r = config::parse(text, opts);
  EXPECT_TRUE(r.ok()) << (r.problems.empty() ? "" : r.problems[0].str());
  return r.ok() ? *r.config : config::Config{};
}

TEST(Frames, RoundTripWholeSplitAndBatched) {
  const std::string a = encode(json::object{{"type", "ping"}});
  const std::string b = encode(json::object{{"type", "routes"}, {"hash", "x"}, {"routes", json::array{}}});
  ASSERT_EQ(a.size(), 4 + std::string(R"({"type":"ping"})").size());
  EXPECT_EQ(a.substr(0, 4), std::string("\0\0\0\x0f", 4));

  FrameReader byte_by_byte(kMaxFrame);
  const std::string both = a + b;
  std::vector<std::string> types;
  for (char c : both) {
    byte_by_byte.feed(&c, 1);
    while (auto m = byte_by_byte.next()) types.emplace_back(type_of(*m));
  }
  EXPECT_EQ(types, (std::vector<std::string>{"ping", "routes"}));
  EXPECT_TRUE(byte_by_byte.error().empty());

  FrameReader batched(kMaxFrame);
  batched.feed(both.data(), both.size());
  ASSERT_TRUE(batched.next());
  auto m = batched.next();
  ASSERT_TRUE(m);
  EXPECT_EQ(string_member(*m, "hash"), "x");
  EXPECT_FALSE(batched.next());
  EXPECT_EQ(batched.buffered(), 0u);
}

TEST(Frames, BadFramesStopTheReader) {
  auto frame = [](std::string body) {
    const uint32_t n = uint32_t(body.size());
    std::string f{char(n >> 24), char(n >> 16), char(n >> 8), char(n)};
    return f + body;
  };
  struct Case {
    std::string bytes;
    const char* error;
  } cases[] = {
      {std::string("\x00\x01\x00\x01", 4), "frame of 65537 bytes (at most 65536)"},
      {frame("{not json"), "frame is not JSON"},
      {frame("[1,2]"), "frame is not a JSON object"},
      {frame(R"({"hash":"x"})"), "frame without a \"type\""},
      {frame(R"({"type":7})"), "frame without a \"type\""},
      {frame(R"({"type":""})"), "frame without a \"type\""},
  };
  for (const Case& c : cases) {
    FrameReader r(kMaxFrameUnauthed);
    r.feed(c.bytes.data(), c.bytes.size());
    const std::string good = encode(json::object{{"type", "ping"}});
    r.feed(good.data(), good.size());
    EXPECT_FALSE(r.next()) << c.error;
    EXPECT_NE(r.error().find(c.error), std::string::npos) << r.error();
    EXPECT_FALSE(r.next()) << "an error is final: " << c.error;
  }
}

TEST(Crypto, KnownVectors) {
  EXPECT_EQ(sha256_hex("abc"), "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad");
  // RFC 4231 test case 2.
  EXPECT_EQ(hmac_hex("Jefe", "what do ya want for nothing?"),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
  EXPECT_TRUE(equal_constant_time("abcd", "abcd"));
  EXPECT_FALSE(equal_constant_time("abcd", "abce"));
  EXPECT_FALSE(equal_constant_time("abcd", "abc"));
  const std::string n1 = random_hex(32), n2 = random_hex(32);
  EXPECT_EQ(n1.size(), 64u);
  EXPECT_NE(n1, n2);
}

TEST(Crypto, ProofsBindTokenNonceAndId) {
  const std::string p = gateway_proof("token-0123456789", "n1", "home");
  EXPECT_EQ(p, hmac_hex("token-0123456789", "ringfwd-sync-v1 gateway n1 home"));
  EXPECT_NE(p, gateway_proof("token-0123456789", "n2", "home"));
  EXPECT_NE(p, gateway_proof("token-0123456789", "n1", "cabin"));
  EXPECT_NE(p, gateway_proof("token-9876543210", "n1", "home"));
  EXPECT_EQ(edge_proof("token-0123456789", "g1"),
            hmac_hex("token-0123456789", "ringfwd-sync-v1 edge g1"));
  EXPECT_NE(edge_proof("token-0123456789", "g1"), gateway_proof("token-0123456789", "g1", ""));
}

TEST(Token, TrimmedAndChecked) {
  test::TempDir dir;
  auto ok = read_token(dir.write("t", "  0123456789abcdef0123\n"));
  ASSERT_TRUE(ok);
  EXPECT_EQ(*ok, "0123456789abcdef0123");
  auto shorty = read_token(dir.write("s", "short\n"));
  ASSERT_FALSE(shorty);
  EXPECT_NE(shorty.error().str().find("shorter than 16"), std::string::npos);
  auto empty = read_token(dir.write("e", "\n\n"));
  ASSERT_FALSE(empty);
  EXPECT_NE(empty.error().str().find("is empty"), std::string::npos);
  auto missing = read_token(dir.path() + "/none");
  ASSERT_FALSE(missing);
  EXPECT_NE(missing.error().str().find("No such file"), std::string::npos);
}

TEST(GatewayRoutes, OnlyThisGatewaysInGatewayForm) {
  const config::Config edge = parsed(kEdge);
  const std::string text = gateway_routes(edge, "home");
  json::value v = json::parse(text);
  ASSERT_TRUE(v.is_array());
  const json::array& a = v.as_array();
  ASSERT_EQ(a.size(), 3u);
  EXPECT_EQ(json::serialize(a[0]),
            R"({"id":"nas","protocol":"tcp","listen_port":443,"target":{"lan_host":"192.168.2.20",)"
            R"("lan_port":443},"allow":["203.0.113.0/24"],"proxy_protocol":"v2","hop":true})");
  EXPECT_EQ(json::serialize(a[2]),
            R"({"id":"games","protocol":"udp","listen_port":"27015-27017","target":)"
            R"({"lan_host":"192.168.2.50","lan_port":27015},"hop":true})");
  EXPECT_EQ(gateway_routes(edge, "cabin").find("cabin-ssh") != std::string::npos, true);
  EXPECT_EQ(gateway_routes(edge, "nobody"), "[]");
  // The hash names the set: the same set gives the same hash, any change another.
  EXPECT_EQ(sha256_hex(text), sha256_hex(gateway_routes(parsed(kEdge), "home")));
  config::Config changed = edge;
  changed.routes[1].target.lan_port = 9443;
  EXPECT_NE(sha256_hex(text), sha256_hex(gateway_routes(changed, "home")));
  changed = edge;
  changed.routes[3].listen_port = {2223, 2223};  // another gateway's route
  EXPECT_EQ(sha256_hex(text), sha256_hex(gateway_routes(changed, "home")));
}

TEST(Combine, AValidSetBecomesHopRoutesSharingAPort) {
  const config::Config gw = parsed(kGateway);
  auto c = combine(gw, json::parse(gateway_routes(parsed(kEdge), "home")));
  ASSERT_TRUE(c) << c.error().str();
  ASSERT_EQ(c->routes.size(), 3u);
  EXPECT_TRUE(c->routes[0].hop);
  EXPECT_EQ(c->gateway_id, "home");

  auto table = routing::RouteTable::build(*c);
  ASSERT_TRUE(table) << table.error().str();
  const routing::TcpPort* p443 = nullptr;
  for (const auto& p : (*table)->tcp_ports())
    if (p.port == 443) p443 = &p;
  ASSERT_TRUE(p443);
  EXPECT_EQ(p443->key, "10.8.0.2:443");  // both SNI routes, one socket on the tunnel address
  EXPECT_TRUE(p443->needs_prelude());
  ASSERT_TRUE(p443->hop_route("nas"));
  EXPECT_EQ(p443->hop_route("nas")->route.target.lan_host, "192.168.2.20");
  EXPECT_EQ(p443->hop_route("photos")->target_base_port, 8443);
  EXPECT_FALSE(p443->hop_route("games"));
  EXPECT_FALSE(p443->hop_route(""));

  sockaddr_storage a{};
  socklen_t len;
  ASSERT_TRUE(net::parse_ip("10.8.0.1", 5000, a, len));
  EXPECT_TRUE(p443->hop_peer_ok(a));
  ASSERT_TRUE(net::parse_ip("::ffff:10.8.0.1", 5000, a, len));
  EXPECT_TRUE(p443->hop_peer_ok(a)) << "IPv4-mapped on a dual-stack socket";
  ASSERT_TRUE(net::parse_ip("10.8.0.3", 5000, a, len));
  EXPECT_FALSE(p443->hop_peer_ok(a)) << "another tunnel peer may not speak for the edge";
  ASSERT_TRUE(net::parse_ip("192.168.2.30", 5000, a, len));
  EXPECT_FALSE(p443->hop_peer_ok(a));
}

TEST(Combine, RefusedWholeWithTheReason) {
  const config::Config gw = parsed(kGateway);
  struct Case {
    const char* routes;
    const char* want;
  } cases[] = {
      {R"({"routes": 1})", "expected an array"},
      {R"([{"id":"a","listen_port":80,"target":{"lan_host":"192.168.2.2","lan_port":80}}])",
       "routes[0]: a route from the edge must be a hop route"},
      {R"([{"id":"a","listen_port":22,"hop":true,"target":{"lan_host":"192.168.2.2","lan_port":22}}])",
       "port 22 is blocked"},
      {R"([{"id":"a","protocol":"udp","listen_port":53,"hop":true,"target":{"lan_host":"192.168.2.2","lan_port":53}},
          {"id":"b","protocol":"udp","listen_port":53,"hop":true,"target":{"lan_host":"192.168.2.3","lan_port":53}}])",
       "udp port 53"},
      {R"([{"id":"a","listen_port":80,"hop":true,"tls":{"mode":"passthrough","domains":["x.test"]},"target":{"lan_host":"192.168.2.2","lan_port":80}}])",
       "a hop route carries no TLS"},
      {R"([{"id":"a","listen_port":80,"hop":true,"target":{"lan_host":"192.168.2.2"}}])",
       "routes[0].target"},
      {R"([{"id":"A B","listen_port":80,"hop":true,"target":{"lan_host":"192.168.2.2","lan_port":80}}])",
       "routes[0].id"},
  };
  for (const Case& c : cases) {
    json::value v = json::parse(c.routes);
    if (v.is_object()) v = v.as_object()["routes"];
    auto r = combine(gw, v);
    ASSERT_FALSE(r) << c.routes;
    EXPECT_NE(r.error().str().find(c.want), std::string::npos) << r.error().str();
  }
  // Two TCP hop routes on one port are fine: the hop header names the route.
  auto ok = combine(gw, json::parse(R"([
      {"id":"a","listen_port":80,"hop":true,"target":{"lan_host":"192.168.2.2","lan_port":80}},
      {"id":"b","listen_port":80,"hop":true,"target":{"lan_host":"192.168.2.3","lan_port":80}}])"));
  EXPECT_TRUE(ok) << ok.error().str();
}

TEST(HopConfig, OnlyOnASyncGateway) {
  auto problems = [](const std::string& text) {
    config::ParseOptions opts;
    opts.check_files = false;
    std::string all;
    for (const auto& p : config::parse(text, opts).problems) all += p.str() + "\n";
    return all;
  };
  EXPECT_NE(problems(R"({"role":"edge","routes":[{"id":"a","listen_port":80,"hop":true,
      "target":{"host":"127.0.0.1","port":80}}]})")
                .find("routes[0].hop: only valid for role gateway"),
            std::string::npos);
  EXPECT_NE(problems(R"({"role":"gateway","gateway_id":"g","tunnel_ip":"10.8.0.2","routes":[
      {"id":"a","listen_port":80,"hop":true,"target":{"lan_host":"192.168.2.2","lan_port":80}}]})")
                .find("routes[0].hop: needs a \"sync\" section"),
            std::string::npos);
  EXPECT_NE(problems(R"({"role":"gateway","gateway_id":"g","tunnel_ip":"10.8.0.2",
      "sync":{"edge":"10.8.0.1:7946","token_file":"/t"},"routes":[
      {"id":"a","listen_port":80,"hop":true,"accept_proxy_protocol":true,
       "target":{"lan_host":"192.168.2.2","lan_port":80}}]})")
                .find("routes[0].accept_proxy_protocol: a hop route always reads"),
            std::string::npos);
  // A hop route and one of the gateway's own on one TCP port cannot be told apart.
  EXPECT_NE(problems(R"({"role":"gateway","gateway_id":"g","tunnel_ip":"10.8.0.2",
      "sync":{"edge":"10.8.0.1:7946","token_file":"/t"},"routes":[
      {"id":"a","listen_port":80,"hop":true,"target":{"lan_host":"192.168.2.2","lan_port":80}},
      {"id":"b","listen_port":80,"target":{"lan_host":"192.168.2.3","lan_port":80}}]})")
                .find("tcp port 80 on 10.8.0.2 is already used by route \"a\""),
            std::string::npos);
}

TEST(EdgeTable, GatewayRoutesHopAndWatchTheirGateway) {
  const config::Config edge = parsed(kEdge);
  routing::GatewayLinks links;
  auto t = routing::RouteTable::build(edge, nullptr, &links);
  ASSERT_TRUE(t) << t.error().str();
  const routing::ResolvedRoute* nas = (*t)->find("nas");
  ASSERT_TRUE(nas && nas->link);
  EXPECT_TRUE(nas->hop_out);
  EXPECT_TRUE(nas->gateway_offline()) << "offline until its session authenticates";
  links.get("home")->set_online(true, "10.8.0.2:40000");
  EXPECT_FALSE(nas->gateway_offline());
  EXPECT_TRUE((*t)->find("cabin-ssh")->gateway_offline()) << "each gateway on its own";
  const routing::ResolvedRoute* direct = (*t)->find("direct");
  EXPECT_FALSE(direct->hop_out);
  EXPECT_FALSE(direct->link);
  EXPECT_FALSE(direct->gateway_offline());
  // A rebuilt table (any change) watches the same state.
  auto t2 = routing::RouteTable::build(edge, t->get(), &links);
  ASSERT_TRUE(t2);
  EXPECT_EQ((*t2)->find("nas")->link, nas->link);
  const auto st = links.get("home")->status();
  EXPECT_TRUE(st.online);
  EXPECT_EQ(st.address, "10.8.0.2:40000");
  EXPECT_GT(st.since, 0);

  // Without sync an edge's gateways are configured by hand: no hop header, nothing to watch.
  config::Config hand = edge;
  hand.sync.reset();
  auto t3 = routing::RouteTable::build(hand, nullptr, &links);
  ASSERT_TRUE(t3);
  EXPECT_FALSE((*t3)->find("nas")->hop_out);
  EXPECT_FALSE((*t3)->find("nas")->gateway_offline());
}

TEST(Stored, RoundTripAndRefusals) {
  test::TempDir dir;
  json::value routes = json::parse(gateway_routes(parsed(kEdge), "home"));
  const std::string hash = sha256_hex(json::serialize(routes));
  auto s = read_stored(dir.write("ok.json", stored_text(hash, routes)));
  ASSERT_TRUE(s) << s.error().str();
  EXPECT_EQ(s->hash, hash);
  EXPECT_EQ(json::serialize(s->routes), json::serialize(routes));
  EXPECT_FALSE(read_stored(dir.write("v2.json", R"({"version":2,"hash":"h","routes":[]})")));
  EXPECT_FALSE(read_stored(dir.write("torn.json", stored_text(hash, routes).substr(0, 40))));
  auto none = read_stored(dir.path() + "/none.json");
  ASSERT_FALSE(none);
  EXPECT_EQ(none.error().code, std::errc::no_such_file_or_directory);
}

}  // namespace
}  // namespace rf::sync
