// The text `ringfwdctl gateway add` hands out, line by line.
#include "gateway_setup.hpp"

#include <gtest/gtest.h>

#include <boost/json.hpp>

namespace {

using namespace rf::ctl;

const std::string kGwPriv = "yAnz5TF+lXXJte14tji3zlMNq+hd2rYUIgJBgB3fBmk=";
const std::string kGwPub = "HIgo9xNzJMWLKASShiTqIybxZ0U3wGLiUeJ1PKf8ykw=";
const std::string kEdgePriv = "QGP3JtFYVWlXCcYGMW1Q2hCVbkcPkdqL9gWdP3sJ0XA=";
const std::string kEdgePub = "xTIBA5rboUvnH4htodjb6e697QjLERt1NAB4mZqp8Dg=";

GatewaySetup home() {
  GatewaySetup s;
  s.id = "home";
  s.tunnel_ip = "10.8.0.2";
  s.edge_tunnel_ip = "10.8.0.1";
  s.sync = "10.8.0.1:7946";
  s.endpoint = "203.0.113.1:51820";
  return s;
}

TEST(GatewaySetup, Endpoint) {
  std::string why;
  EXPECT_EQ(endpoint_of("203.0.113.1", 51820, &why), "203.0.113.1:51820");
  EXPECT_EQ(endpoint_of("203.0.113.1:4000", 51820, &why), "203.0.113.1:4000");
  EXPECT_EQ(endpoint_of("vps.example.com", 51821, &why), "vps.example.com:51821");
  EXPECT_EQ(endpoint_of("2001:db8::1", 51820, &why), "[2001:db8::1]:51820");
  EXPECT_EQ(endpoint_of("[2001:db8::1]", 51820, &why), "[2001:db8::1]:51820");
  EXPECT_EQ(endpoint_of("[2001:db8::1]:7", 51820, &why), "[2001:db8::1]:7");
  for (const char* bad : {"", ":1", "host:", "host:0", "host:70000", "host:x", "a b",
                          "a\nPostUp = rm -rf /", "[2001:db8::1", "[nope]:1", "[::1]x"}) {
    why.clear();
    EXPECT_FALSE(endpoint_of(bad, 51820, &why)) << bad;
    EXPECT_NE(why, "") << bad;
  }
}

TEST(GatewaySetup, Keys) {
  EXPECT_TRUE(is_wg_key(kGwPriv));
  EXPECT_FALSE(is_wg_key(""));
  EXPECT_FALSE(is_wg_key(kGwPriv.substr(1)));
  EXPECT_FALSE(is_wg_key(std::string(43, 'A') + "A"));
  EXPECT_FALSE(is_wg_key(std::string(43, '\n') + "="));
}

TEST(GatewaySetup, Prefixes) {
  EXPECT_EQ(host_route("10.8.0.2"), "10.8.0.2/32");
  EXPECT_EQ(subnet_address("10.8.0.2"), "10.8.0.2/24");
  EXPECT_EQ(host_route("fd00::2"), "fd00::2/128");
  EXPECT_EQ(subnet_address("fd00::2"), "fd00::2/64");
}

TEST(GatewaySetup, GatewayConfig) {
  const std::string text = gateway_config_json(home());
  boost::json::value v = boost::json::parse(text);
  EXPECT_EQ(v, boost::json::parse(R"({"role":"gateway","gateway_id":"home","tunnel_ip":"10.8.0.2",
      "sync":{"edge":"10.8.0.1:7946","token_file":"/etc/ringfwd/token"}})"));
  EXPECT_EQ(text.back(), '\n');
}

TEST(GatewaySetup, GatewayWgConf) {
  EXPECT_EQ(gateway_wg_conf(home(), kGwPriv, kEdgePub),
            "# WireGuard on gateway home: /etc/wireguard/wg0.conf (mode 0600), then: wg-quick up wg0\n"
            "[Interface]\n"
            "PrivateKey = " + kGwPriv + "\n"
            "Address = 10.8.0.2/24\n"
            "\n"
            "[Peer]\n"
            "# the edge (ringfwd sync at 10.8.0.1:7946)\n"
            "PublicKey = " + kEdgePub + "\n"
            "Endpoint = 203.0.113.1:51820\n"
            "AllowedIPs = 10.8.0.1/32\n"
            "PersistentKeepalive = 25\n");
}

TEST(GatewaySetup, GatewayWgConfWithoutEndpoint) {
  GatewaySetup s = home();
  s.endpoint.clear();
  s.wg_port = 51999;
  const std::string text = gateway_wg_conf(s, kGwPriv, kEdgePub);
  EXPECT_NE(text.find("\nEndpoint = EDGE_PUBLIC_IP:51999\n"), std::string::npos) << text;
  EXPECT_NE(text.find("# Replace EDGE_PUBLIC_IP"), std::string::npos) << text;
}

TEST(GatewaySetup, EdgeWgConf) {
  GatewaySetup s = home();
  s.wg_interface = "wg1";
  EXPECT_EQ(edge_wg_conf(s, kEdgePriv, kGwPub),
            "# WireGuard on the edge: /etc/wireguard/wg1.conf (mode 0600), then: wg-quick up wg1\n"
            "[Interface]\n"
            "Address = 10.8.0.1/24\n"
            "ListenPort = 51820\n"
            "PrivateKey = " + kEdgePriv + "\n"
            "\n"
            "[Peer]\n"
            "# gateway home\n"
            "PublicKey = " + kGwPub + "\n"
            "AllowedIPs = 10.8.0.2/32\n");
}

TEST(GatewaySetup, EdgePeer) {
  EXPECT_EQ(edge_peer_block(home(), kGwPub),
            "[Peer]\n# gateway home\nPublicKey = " + kGwPub + "\nAllowedIPs = 10.8.0.2/32\n");
  EXPECT_EQ(edge_wg_set_command(home(), kGwPub),
            "wg set wg0 peer " + kGwPub + " allowed-ips 10.8.0.2/32");
}

TEST(GatewaySetup, UnknownEdgeTunnelIp) {
  GatewaySetup s = home();
  s.edge_tunnel_ip.clear();
  EXPECT_NE(gateway_wg_conf(s, kGwPriv, kEdgePub).find("AllowedIPs = EDGE_TUNNEL_IP/32"),
            std::string::npos);
}

}  // namespace
