// rf::proto PROXY protocol v1/v2: the writers byte for byte (IPv4, IPv6, v4-mapped, mixed
// families, TLVs), the strict reader on valid headers of every kind, on every prefix of them
// and on a list of near misses, and writer -> reader round trips.
#include "ringfwd/proto/proxy_header.hpp"

#include <arpa/inet.h>
#include <gtest/gtest.h>
#include <sys/un.h>

#include <cstdint>
#include <cstring>
#include <string>
#include <string_view>
#include <vector>

namespace rf::proto {
namespace {

using Bytes = std::vector<uint8_t>;

sockaddr_storage ip(const char* addr, uint16_t port) {
  sockaddr_storage ss{};
  if (std::strchr(addr, ':')) {
    auto& sin6 = reinterpret_cast<sockaddr_in6&>(ss);
    sin6.sin6_family = AF_INET6;
    sin6.sin6_port = htons(port);
    EXPECT_EQ(inet_pton(AF_INET6, addr, &sin6.sin6_addr), 1) << addr;
  } else {
    auto& sin = reinterpret_cast<sockaddr_in&>(ss);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(port);
    EXPECT_EQ(inet_pton(AF_INET, addr, &sin.sin_addr), 1) << addr;
  }
  return ss;
}

sockaddr_storage unix_addr() {
  sockaddr_storage ss{};
  auto& sun = reinterpret_cast<sockaddr_un&>(ss);
  sun.sun_family = AF_UNIX;
  std::strcpy(sun.sun_path, "/run/x.sock");
  return ss;
}

// "192.0.2.1:80", "[2001:db8::1]:443", or "" for anything else.
std::string text(const sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (ss.ss_family == AF_INET) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    inet_ntop(AF_INET, &sin.sin_addr, buf, sizeof buf);
    return std::string(buf) + ":" + std::to_string(ntohs(sin.sin_port));
  }
  if (ss.ss_family == AF_INET6) {
    const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
    inet_ntop(AF_INET6, &sin6.sin6_addr, buf, sizeof buf);
    return "[" + std::string(buf) + "]:" + std::to_string(ntohs(sin6.sin6_port));
  }
  return "";
}

std::span<const uint8_t> span_of(std::string_view s) {
  return {reinterpret_cast<const uint8_t*>(s.data()), s.size()};
}
std::string string_of(std::span<const uint8_t> b) {
  return std::string(reinterpret_cast<const char*>(b.data()), b.size());
}

const std::string kSig("\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A", 12);

// A v2 header from its variable bytes: version/command, family/protocol, body.
std::string v2(uint8_t ver_cmd, uint8_t fam, std::string_view body, int len_delta = 0) {
  const size_t len = static_cast<size_t>(static_cast<int>(body.size()) + len_delta);
  std::string s = kSig;
  s += static_cast<char>(ver_cmd);
  s += static_cast<char>(fam);
  s += static_cast<char>(len >> 8);
  s += static_cast<char>(len & 0xFF);
  s += body;
  return s;
}

// --- writers -----------------------------------------------------------------------------

struct WriteCase {
  const char* name;
  sockaddr_storage src, dst;
  std::string_view v1;
  std::string v2_prefix;  // the 16 fixed bytes and the addresses
};

std::vector<WriteCase> write_cases() {
  const std::string a4("\xC0\x00\x02\x01\xC6\x33\x64\x07\xC8\x22\x01\xBB", 12);
  const std::string a6 = std::string("\x20\x01\x0d\xb8", 4) + std::string(11, '\0') + "\x01" +
                         std::string("\x20\x01\x0d\xb8", 4) + std::string(11, '\0') + "\x02" +
                         "\xC8\x22\x01\xBB";
  const std::string a6m = std::string(10, '\0') + std::string("\xFF\xFF\xC0\x00\x02\x01", 6) +
                          std::string("\x20\x01\x0d\xb8", 4) + std::string(11, '\0') + "\x02" +
                          "\xC8\x22\x01\xBB";
  return {
      {"v4", ip("192.0.2.1", 51234), ip("198.51.100.7", 443),
       "PROXY TCP4 192.0.2.1 198.51.100.7 51234 443\r\n", v2(0x21, 0x11, a4)},
      {"v6", ip("2001:db8::1", 51234), ip("2001:db8::2", 443),
       "PROXY TCP6 2001:db8::1 2001:db8::2 51234 443\r\n", v2(0x21, 0x21, a6)},
      {"mapped both", ip("::ffff:192.0.2.1", 51234), ip("::ffff:198.51.100.7", 443),
       "PROXY TCP4 192.0.2.1 198.51.100.7 51234 443\r\n", v2(0x21, 0x11, a4)},
      {"mapped and v4", ip("::ffff:192.0.2.1", 51234), ip("198.51.100.7", 443),
       "PROXY TCP4 192.0.2.1 198.51.100.7 51234 443\r\n", v2(0x21, 0x11, a4)},
      {"v4 and mapped", ip("192.0.2.1", 51234), ip("::ffff:198.51.100.7", 443),
       "PROXY TCP4 192.0.2.1 198.51.100.7 51234 443\r\n", v2(0x21, 0x11, a4)},
      {"mapped and v6", ip("::ffff:192.0.2.1", 51234), ip("2001:db8::2", 443),
       "PROXY TCP6 ::ffff:192.0.2.1 2001:db8::2 51234 443\r\n", v2(0x21, 0x21, a6m)},
      {"v4 and v6", ip("192.0.2.1", 51234), ip("2001:db8::2", 443), "PROXY UNKNOWN\r\n",
       v2(0x21, 0x00, "")},
      {"unix", unix_addr(), unix_addr(), "PROXY UNKNOWN\r\n", v2(0x21, 0x00, "")},
      {"ports 0 and 65535", ip("0.0.0.0", 0), ip("255.255.255.255", 65535),
       "PROXY TCP4 0.0.0.0 255.255.255.255 0 65535\r\n",
       v2(0x21, 0x11, std::string("\0\0\0\0\xFF\xFF\xFF\xFF\0\0\xFF\xFF", 12))},
      {"longest v1", ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe", 65535),
       ip("ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", 65535),
       "PROXY TCP6 ffff:ffff:ffff:ffff:ffff:ffff:ffff:fffe "
       "ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff 65535 65535\r\n",
       v2(0x21, 0x21, std::string(15, '\xFF') + '\xFE' + std::string(20, '\xFF'))},
  };
}

TEST(ProxyWrite, V1ByteForByte) {
  for (const auto& c : write_cases()) {
    SCOPED_TRACE(c.name);
    uint8_t buf[kMaxProxyV1Bytes];
    const size_t n = write_proxy_v1(c.src, c.dst, buf);
    EXPECT_EQ(string_of(std::span(buf, n)), c.v1);
  }
}

TEST(ProxyWrite, V2ByteForByte) {
  for (const auto& c : write_cases()) {
    SCOPED_TRACE(c.name);
    uint8_t buf[256];
    const size_t n = write_proxy_v2(c.src, c.dst, false, {}, buf);
    EXPECT_EQ(string_of(std::span(buf, n)), c.v2_prefix);
  }
}

TEST(ProxyWrite, V2DatagramFamilies) {
  uint8_t buf[256];
  size_t n = write_proxy_v2(ip("192.0.2.1", 53), ip("198.51.100.7", 53), true, {}, buf);
  ASSERT_EQ(n, 28u);
  EXPECT_EQ(buf[12], 0x21);
  EXPECT_EQ(buf[13], 0x12);
  n = write_proxy_v2(ip("2001:db8::1", 53), ip("2001:db8::2", 53), true, {}, buf);
  ASSERT_EQ(n, 52u);
  EXPECT_EQ(buf[13], 0x22);
}

TEST(ProxyWrite, V2WithTlvsInOrder) {
  const std::string_view alpn = "h2", host = "a.example.com";
  const uint8_t route[4] = {0, 0, 0x01, 0x2C};
  const Tlv tlvs[] = {
      {kTlvAlpn, span_of(alpn)}, {kTlvAuthority, span_of(host)}, {kTlvRouteId, route}, {0x04, {}}};
  uint8_t buf[256];
  const size_t n =
      write_proxy_v2(ip("192.0.2.1", 51234), ip("198.51.100.7", 443), false, tlvs, buf);
  const std::string expected =
      v2(0x21, 0x11,
         std::string("\xC0\x00\x02\x01\xC6\x33\x64\x07\xC8\x22\x01\xBB", 12) +
             std::string("\x01\x00\x02h2", 5) + std::string("\x02\x00\x0d", 3) + "a.example.com" +
             std::string("\xE0\x00\x04\x00\x00\x01\x2C", 7) + std::string("\x04\x00\x00", 3));
  EXPECT_EQ(string_of(std::span(buf, n)), expected);
  EXPECT_EQ(buf[14] << 8 | buf[15], 12 + 5 + 16 + 7 + 3);

  // Families that differ: no addresses, but the TLVs are still sent.
  const size_t m =
      write_proxy_v2(ip("192.0.2.1", 1), ip("2001:db8::2", 2), false, std::span(tlvs, 1), buf);
  EXPECT_EQ(string_of(std::span(buf, m)), v2(0x21, 0x00, std::string("\x01\x00\x02h2", 5)));
}

TEST(ProxyWrite, RefusesWhatDoesNotFit) {
  const auto s = ip("192.0.2.1", 1), d = ip("192.0.2.2", 2);
  uint8_t small[kMaxProxyV1Bytes - 1];
  EXPECT_EQ(write_proxy_v1(s, d, small), 0u);
  uint8_t buf[64];
  EXPECT_EQ(write_proxy_v2(s, d, false, {}, std::span(buf, 27)), 0u);
  EXPECT_EQ(write_proxy_v2(s, d, false, {}, std::span(buf, 28)), 28u);
  const Bytes big(65536, 'x');
  const Tlv too_big[] = {{kTlvAuthority, big}};
  std::vector<uint8_t> out(70000);
  EXPECT_EQ(write_proxy_v2(s, d, false, too_big, out), 0u);
  // Each TLV fits, but the 16-bit length field cannot cover them together.
  const Bytes half(40000, 'y');
  const Tlv two[] = {{kTlvAuthority, half}, {kTlvAlpn, half}};
  std::vector<uint8_t> out2(90000);
  EXPECT_EQ(write_proxy_v2(s, d, false, two, out2), 0u);
}

// --- reader: valid headers ---------------------------------------------------------------

struct GoodCase {
  const char* name;
  std::string header;
  int version;
  bool local, dgram;
  std::string src, dst;  // text() of the addresses, "" when local
  std::string tlvs;      // the TLV area
};

std::string a4(std::string_view src, std::string_view dst, uint16_t sp, uint16_t dp) {
  std::string s(12, '\0');
  inet_pton(AF_INET, std::string(src).c_str(), s.data());
  inet_pton(AF_INET, std::string(dst).c_str(), s.data() + 4);
  s[8] = static_cast<char>(sp >> 8), s[9] = static_cast<char>(sp);
  s[10] = static_cast<char>(dp >> 8), s[11] = static_cast<char>(dp);
  return s;
}
std::string a6(std::string_view src, std::string_view dst, uint16_t sp, uint16_t dp) {
  std::string s(36, '\0');
  inet_pton(AF_INET6, std::string(src).c_str(), s.data());
  inet_pton(AF_INET6, std::string(dst).c_str(), s.data() + 16);
  s[32] = static_cast<char>(sp >> 8), s[33] = static_cast<char>(sp);
  s[34] = static_cast<char>(dp >> 8), s[35] = static_cast<char>(dp);
  return s;
}

const std::string kTlvs =
    std::string("\x01\x00\x02h2\x02\x00\x09x.example\xE0\x00\x02\x00\x07", 22);

std::vector<GoodCase> good_cases() {
  return {
      {"v1 tcp4", "PROXY TCP4 192.0.2.1 198.51.100.7 51234 443\r\n", 1, false, false,
       "192.0.2.1:51234", "198.51.100.7:443", ""},
      {"v1 tcp6", "PROXY TCP6 2001:db8::1 ::1 1 65535\r\n", 1, false, false, "[2001:db8::1]:1",
       "[::1]:65535", ""},
      {"v1 tcp6 mapped", "PROXY TCP6 ::ffff:192.0.2.1 2001:DB8::2 0 80\r\n", 1, false, false,
       "[::ffff:192.0.2.1]:0", "[2001:db8::2]:80", ""},
      {"v1 port 0", "PROXY TCP4 0.0.0.0 255.255.255.255 0 0\r\n", 1, false, false, "0.0.0.0:0",
       "255.255.255.255:0", ""},
      {"v1 unknown", "PROXY UNKNOWN\r\n", 1, true, false, "", "", ""},
      {"v1 unknown with addresses", "PROXY UNKNOWN ffff::1 ffff::2 1 2\r\n", 1, true, false, "", "",
       ""},
      {"v1 unknown at 107 bytes", "PROXY UNKNOWN" + std::string(92, 'x') + "\r\n", 1, true, false,
       "", "", ""},
      {"v2 tcp4", v2(0x21, 0x11, a4("192.0.2.1", "198.51.100.7", 51234, 443)), 2, false, false,
       "192.0.2.1:51234", "198.51.100.7:443", ""},
      {"v2 udp4", v2(0x21, 0x12, a4("192.0.2.1", "198.51.100.7", 5353, 53)), 2, false, true,
       "192.0.2.1:5353", "198.51.100.7:53", ""},
      {"v2 tcp6", v2(0x21, 0x21, a6("2001:db8::1", "2001:db8::2", 51234, 443)), 2, false, false,
       "[2001:db8::1]:51234", "[2001:db8::2]:443", ""},
      {"v2 udp6", v2(0x21, 0x22, a6("2001:db8::1", "2001:db8::2", 5353, 53)), 2, false, true,
       "[2001:db8::1]:5353", "[2001:db8::2]:53", ""},
      {"v2 tcp4 tlvs", v2(0x21, 0x11, a4("192.0.2.1", "198.51.100.7", 1, 2) + kTlvs), 2, false,
       false, "192.0.2.1:1", "198.51.100.7:2", kTlvs},
      {"v2 tcp6 tlvs", v2(0x21, 0x21, a6("::1", "::2", 1, 2) + kTlvs), 2, false, false, "[::1]:1",
       "[::2]:2", kTlvs},
      {"v2 local", v2(0x20, 0x00, ""), 2, true, false, "", "", ""},
      {"v2 local tlvs", v2(0x20, 0x00, kTlvs), 2, true, false, "", "", kTlvs},
      {"v2 local inet", v2(0x20, 0x11, a4("192.0.2.1", "198.51.100.7", 1, 2)), 2, true, false, "",
       "", ""},
      {"v2 proxy unspec", v2(0x21, 0x00, ""), 2, true, false, "", "", ""},
      {"v2 unix stream", v2(0x21, 0x31, std::string(216, 'u')), 2, true, false, "", "", ""},
      {"v2 unix dgram tlvs", v2(0x21, 0x32, std::string(216, 'u') + kTlvs), 2, true, true, "", "",
       kTlvs},
      {"v2 empty tlv", v2(0x21, 0x11, a4("192.0.2.1", "192.0.2.2", 1, 2) + std::string(3, '\0')), 2,
       false, false, "192.0.2.1:1", "192.0.2.2:2", std::string(3, '\0')},
  };
}

TEST(ProxyRead, ValidHeaders) {
  for (const auto& c : good_cases()) {
    SCOPED_TRACE(c.name);
    for (std::string_view payload : {"", "GET / HTTP/1.1\r\n", "\r\n\r\n\0PROXY"}) {
      const std::string input = c.header + std::string(payload);
      ProxyHeader h;
      const auto r = parse_proxy_header(span_of(input), h);
      ASSERT_EQ(r.status, ProxyStatus::Done) << r.why;
      EXPECT_EQ(r.consumed, c.header.size());
      EXPECT_EQ(h.version, c.version);
      EXPECT_EQ(h.local, c.local);
      EXPECT_EQ(h.dgram, c.dgram);
      EXPECT_EQ(text(h.src), c.src);
      EXPECT_EQ(text(h.dst), c.dst);
      EXPECT_EQ(string_of(h.tlvs), c.tlvs);
    }
  }
}

TEST(ProxyRead, EveryPrefixNeedsMore) {
  for (const auto& c : good_cases()) {
    SCOPED_TRACE(c.name);
    for (size_t n = 0; n < c.header.size(); ++n) {
      ProxyHeader h;
      const auto r = parse_proxy_header(span_of(c.header).first(n), h);
      ASSERT_EQ(r.status, ProxyStatus::NeedMore) << "prefix " << n << ": " << r.why;
    }
  }
}

TEST(ProxyRead, FindTlv) {
  const std::string in = v2(0x21, 0x11, a4("192.0.2.1", "198.51.100.7", 1, 2) + kTlvs);
  ProxyHeader h;
  ASSERT_EQ(parse_proxy_header(span_of(in), h).status, ProxyStatus::Done);
  std::span<const uint8_t> v;
  ASSERT_TRUE(h.find_tlv(kTlvAlpn, v));
  EXPECT_EQ(string_of(v), "h2");
  ASSERT_TRUE(h.find_tlv(kTlvAuthority, v));
  EXPECT_EQ(string_of(v), "x.example");
  ASSERT_TRUE(h.find_tlv(kTlvRouteId, v));
  EXPECT_EQ(string_of(v), std::string("\x00\x07", 2));
  EXPECT_FALSE(h.find_tlv(0x05, v));
  ProxyHeader none;
  EXPECT_FALSE(none.find_tlv(kTlvAlpn, v));
}

// --- reader: refusals --------------------------------------------------------------------

struct BadCase {
  const char* name;
  std::string input;
  std::string_view why;
};

std::vector<BadCase> bad_cases() {
  const std::string addrs4 = a4("192.0.2.1", "198.51.100.7", 1, 2);
  return {
      {"empty-ish http", "GET / HTTP/1.1\r\n", "not a PROXY protocol header"},
      {"lower case", "proxy TCP4 1.2.3.4 5.6.7.8 1 2\r\n", "not a PROXY protocol header"},
      {"tls", "\x16\x03\x01", "not a PROXY protocol header"},
      {"PROXY without space", "PROXYTCP4", "v1 header does not match the grammar"},
      {"double space after PROXY", "PROXY  TCP4 1.2.3.4 5.6.7.8 1 2\r\n",
       "v1 protocol is not TCP4, TCP6 or UNKNOWN"},
      {"unknown protocol", "PROXY UDP4 1.2.3.4 5.6.7.8 1 2\r\n",
       "v1 protocol is not TCP4, TCP6 or UNKNOWN"},
      {"tcp5", "PROXY TCP5 ", "v1 protocol is not TCP4, TCP6 or UNKNOWN"},
      {"lower-case tcp4", "PROXY tcp4 1.2.3.4 5.6.7.8 1 2\r\n",
       "v1 protocol is not TCP4, TCP6 or UNKNOWN"},
      {"double space between addresses", "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\n",
       "v1 empty field (double space?)"},
      {"double space before ports", "PROXY TCP4 1.2.3.4 5.6.7.8  1 2\r\n",
       "v1 empty field (double space?)"},
      {"tab", "PROXY TCP4 1.2.3.4\t5.6.7.8 1 2\r\n", "v1 bad source address"},
      {"leading zero port", "PROXY TCP4 1.2.3.4 5.6.7.8 0443 2\r\n", "v1 bad source port"},
      {"leading zero dst port", "PROXY TCP4 1.2.3.4 5.6.7.8 1 00\r\n", "v1 bad destination port"},
      {"port 65536", "PROXY TCP4 1.2.3.4 5.6.7.8 65536 2\r\n", "v1 bad source port"},
      {"port 99999", "PROXY TCP4 1.2.3.4 5.6.7.8 1 99999\r\n", "v1 bad destination port"},
      {"negative port", "PROXY TCP4 1.2.3.4 5.6.7.8 -1 2\r\n", "v1 bad source port"},
      {"plus port", "PROXY TCP4 1.2.3.4 5.6.7.8 +1 2\r\n", "v1 bad source port"},
      {"octet 256", "PROXY TCP4 1.2.3.256 5.6.7.8 1 2\r\n", "v1 bad source address"},
      {"leading zero octet", "PROXY TCP4 1.2.3.4 5.6.07.8 1 2\r\n", "v1 bad destination address"},
      {"three octets", "PROXY TCP4 1.2.3 5.6.7.8 1 2\r\n", "v1 bad source address"},
      {"five octets", "PROXY TCP4 1.2.3.4.5 5.6.7.8 1 2\r\n", "v1 bad source address"},
      {"empty octet", "PROXY TCP4 1..3.4 5.6.7.8 1 2\r\n", "v1 bad source address"},
      {"hostname", "PROXY TCP4 localhost 5.6.7.8 1 2\r\n", "v1 bad source address"},
      {"v6 in tcp4", "PROXY TCP4 ::1 ::2 1 2\r\n", "v1 bad source address"},
      {"v4 in tcp6", "PROXY TCP6 1.2.3.4 5.6.7.8 1 2\r\n", "v1 bad source address"},
      {"bad v6", "PROXY TCP6 2001:db8:::1 ::2 1 2\r\n", "v1 bad source address"},
      {"v6 zone", "PROXY TCP6 fe80::1%eth0 ::2 1 2\r\n", "v1 bad source address"},
      {"missing CR", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\n", "v1 bad destination port"},
      {"CR without LF", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2\rX",
       "v1 header does not match the grammar"},
      {"trailing space", "PROXY TCP4 1.2.3.4 5.6.7.8 1 2 \r\n", "v1 bad destination port"},
      {"missing port", "PROXY TCP4 1.2.3.4 5.6.7.8 1\r\n", "v1 bad source port"},
      {"unknown 108 bytes", "PROXY UNKNOWN" + std::string(93, 'x') + "\r\n",
       "v1 header without CRLF within 107 bytes"},
      {"unknown no CRLF", "PROXY UNKNOWN" + std::string(200, 'x'),
       "v1 header without CRLF within 107 bytes"},
      {"bad signature", "\r\n\r\n\0\r\nQUIT!" + std::string(20, '\0'), "v2 bad signature"},
      {"bad signature early", std::string("\r\n\r\n\x01", 5), "v2 bad signature"},
      {"v2 version 1", v2(0x11, 0x11, addrs4), "v2 version is not 2"},
      {"v2 version 3", v2(0x31, 0x11, addrs4), "v2 version is not 2"},
      {"v2 command 2", v2(0x22, 0x11, addrs4), "v2 unknown command"},
      {"v2 command 15", v2(0x2F, 0x11, addrs4), "v2 unknown command"},
      {"v2 family 4", v2(0x21, 0x41, addrs4), "v2 unknown address family"},
      {"v2 protocol 3", v2(0x21, 0x13, addrs4), "v2 unknown transport protocol"},
      {"v2 inet unspec protocol", v2(0x21, 0x10, addrs4), "v2 unknown transport protocol"},
      {"v2 unspec with stream", v2(0x21, 0x01, ""), "v2 unknown transport protocol"},
      {"v2 inet length 11", v2(0x21, 0x11, addrs4.substr(0, 11)),
       "v2 length too small for the addresses"},
      {"v2 inet length 0", v2(0x21, 0x11, ""), "v2 length too small for the addresses"},
      {"v2 inet6 length 35", v2(0x21, 0x21, std::string(35, '\0')),
       "v2 length too small for the addresses"},
      {"v2 unix length 100", v2(0x21, 0x31, std::string(100, '\0')),
       "v2 length too small for the addresses"},
      {"v2 too long", v2(0x21, 0x11, std::string(kMaxProxyV2Bytes - 16 + 1, '\0')),
       "v2 header longer than the accepted maximum"},
      {"v2 tlv overruns", v2(0x21, 0x11, addrs4 + std::string("\x01\x00\x05h2", 5)),
       "v2 TLV overruns the header"},
      {"v2 tlv header cut", v2(0x21, 0x11, addrs4 + std::string("\x01\x00", 2)),
       "v2 truncated TLV header"},
      {"v2 second tlv overruns", v2(0x21, 0x00, std::string("\x01\x00\x02h2\x02\x00\x01", 8)),
       "v2 TLV overruns the header"},
  };
}

TEST(ProxyRead, Malformed) {
  for (const auto& c : bad_cases()) {
    SCOPED_TRACE(c.name);
    ProxyHeader h;
    const auto r = parse_proxy_header(span_of(c.input), h);
    EXPECT_EQ(r.status, ProxyStatus::Malformed);
    EXPECT_EQ(std::string_view(r.why), c.why);
  }
}

TEST(ProxyRead, RefusedOnTheFirstImpossibleByte) {
  // The reader must not wait for a CRLF or a full v2 header once a byte rules it out.
  for (std::string_view s :
       {"X", "PROXZ", "PROXY TCP4 1.2.3.4 05", "PROXY TCP4 1.2.3.4 5.6.7.8 1 0", "PROXY TCP4 300",
        "PROXY TCP4 1.2.3.4 5.6.7.8 7000"}) {
    ProxyHeader h;
    const auto r = parse_proxy_header(span_of(s), h);
    if (s.ends_with(" 0") || s.ends_with("7000")) {
      EXPECT_EQ(r.status, ProxyStatus::NeedMore) << s;  // still a possible prefix
    } else {
      EXPECT_EQ(r.status, ProxyStatus::Malformed) << s;
    }
  }
  for (std::string_view s :
       {"PROXY TCP4 1.2.3.4 5.6.7.8 1 00", "PROXY TCP4 1.2.3.4 5.6.7.8 70000"}) {
    ProxyHeader h;
    EXPECT_EQ(parse_proxy_header(span_of(s), h).status, ProxyStatus::Malformed) << s;
  }
  const std::string tlv_overrun =
      v2(0x21, 0x11, std::string(12, '\0') + std::string("\x01\x01\x00", 3), 100);
  ProxyHeader h;
  // Only 31 of 131 bytes arrived, but the TLV already claims 256 bytes of a 115-byte area.
  EXPECT_EQ(parse_proxy_header(span_of(tlv_overrun), h).status, ProxyStatus::Malformed);
}

// --- round trips -------------------------------------------------------------------------

TEST(ProxyRoundTrip, WriterThenReader) {
  struct Pair {
    sockaddr_storage src, dst;
    std::string src_text, dst_text;
  };
  const std::vector<Pair> pairs = {
      {ip("192.0.2.1", 51234), ip("198.51.100.7", 443), "192.0.2.1:51234", "198.51.100.7:443"},
      {ip("2001:db8::1", 1), ip("2001:db8::2", 65535), "[2001:db8::1]:1", "[2001:db8::2]:65535"},
      {ip("::ffff:10.0.0.1", 0), ip("10.0.0.2", 80), "10.0.0.1:0", "10.0.0.2:80"},
      {ip("::ffff:10.0.0.1", 9), ip("::1", 80), "[::ffff:10.0.0.1]:9", "[::1]:80"},
      {ip("::", 9), ip("fe80::1:2:3:4", 80), "[::]:9", "[fe80::1:2:3:4]:80"},
  };
  const std::string_view host = "wiki.example.com";
  const Tlv tlvs[] = {{kTlvAuthority, span_of(host)}, {kTlvAlpn, span_of("http/1.1")}};
  for (const auto& p : pairs) {
    SCOPED_TRACE(p.src_text);
    uint8_t buf[512];
    size_t n = write_proxy_v1(p.src, p.dst, buf);
    ProxyHeader h;
    auto r = parse_proxy_header(std::span(buf, n), h);
    ASSERT_EQ(r.status, ProxyStatus::Done) << r.why;
    EXPECT_EQ(r.consumed, n);
    EXPECT_EQ(text(h.src), p.src_text);
    EXPECT_EQ(text(h.dst), p.dst_text);

    for (bool dgram : {false, true}) {
      n = write_proxy_v2(p.src, p.dst, dgram, tlvs, buf);
      r = parse_proxy_header(std::span(buf, n), h);
      ASSERT_EQ(r.status, ProxyStatus::Done) << r.why;
      EXPECT_EQ(r.consumed, n);
      EXPECT_FALSE(h.local);
      EXPECT_EQ(h.dgram, dgram);
      EXPECT_EQ(text(h.src), p.src_text);
      EXPECT_EQ(text(h.dst), p.dst_text);
      std::span<const uint8_t> v;
      ASSERT_TRUE(h.find_tlv(kTlvAuthority, v));
      EXPECT_EQ(string_of(v), host);
      ASSERT_TRUE(h.find_tlv(kTlvAlpn, v));
      EXPECT_EQ(string_of(v), "http/1.1");
    }
  }
}

TEST(ProxyRoundTrip, MixedFamiliesReadAsLocal) {
  uint8_t buf[128];
  ProxyHeader h;
  size_t n = write_proxy_v1(ip("192.0.2.1", 1), ip("::1", 2), buf);
  auto r = parse_proxy_header(std::span(buf, n), h);
  ASSERT_EQ(r.status, ProxyStatus::Done);
  EXPECT_TRUE(h.local);
  n = write_proxy_v2(ip("192.0.2.1", 1), ip("::1", 2), false, {}, buf);
  r = parse_proxy_header(std::span(buf, n), h);
  ASSERT_EQ(r.status, ProxyStatus::Done);
  EXPECT_TRUE(h.local);
  EXPECT_EQ(h.version, 2);
}

TEST(ProxyStatusNames, Names) {
  EXPECT_EQ(to_string(ProxyStatus::NeedMore), "need more");
  EXPECT_EQ(to_string(ProxyStatus::Done), "done");
  EXPECT_EQ(to_string(ProxyStatus::Malformed), "malformed");
}

}  // namespace
}  // namespace rf::proto
