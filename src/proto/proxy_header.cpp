// PROXY protocol v1/v2 (HAProxy proxy-protocol.txt, sections 2.1 and 2.2).
//
// The reader is strict on purpose: a PROXY header decides which client address the whole
// connection is attributed to, so anything a lax parser and a strict one could read
// differently is refused rather than guessed at.
#include "ringfwd/proto/proxy_header.hpp"

#include <arpa/inet.h>

#include <algorithm>
#include <cstdio>
#include <cstring>

namespace rf::proto {
namespace {

constexpr uint8_t kV2Signature[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                      0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
constexpr uint8_t kV2VersionProxy = 0x21;  // version 2, command PROXY
constexpr uint8_t kCmdLocal = 0x0;
constexpr uint8_t kCmdProxy = 0x1;
constexpr uint8_t kFamUnspec = 0x0, kFamInet = 0x1, kFamInet6 = 0x2, kFamUnix = 0x3;
constexpr uint8_t kProtoUnspec = 0x0, kProtoStream = 0x1, kProtoDgram = 0x2;
constexpr size_t kV2InetBytes = 12;
constexpr size_t kV2Inet6Bytes = 36;
constexpr size_t kV2UnixBytes = 216;
constexpr size_t kTlvHeaderBytes = 3;

// One side of a connection reduced to what both writers need.
struct Endpoint {
  int family = AF_UNSPEC;  // AF_INET or AF_INET6 after normalize(); AF_UNSPEC otherwise
  uint8_t addr[16] = {};   // 4 or 16 bytes, network order
  uint8_t port[2] = {};    // network order
};

bool is_v4_mapped(const in6_addr& a) {
  static constexpr uint8_t kPrefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  return std::memcmp(a.s6_addr, kPrefix, sizeof kPrefix) == 0;
}

Endpoint endpoint(const sockaddr_storage& ss, bool unmap) {
  Endpoint e;
  if (ss.ss_family == AF_INET) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    e.family = AF_INET;
    std::memcpy(e.addr, &sin.sin_addr, 4);
    std::memcpy(e.port, &sin.sin_port, 2);
  } else if (ss.ss_family == AF_INET6) {
    const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
    std::memcpy(e.port, &sin6.sin6_port, 2);
    if (unmap) {
      e.family = AF_INET;
      std::memcpy(e.addr, sin6.sin6_addr.s6_addr + 12, 4);
    } else {
      e.family = AF_INET6;
      std::memcpy(e.addr, sin6.sin6_addr.s6_addr, 16);
    }
  }
  return e;
}

// A dual-stack listener reports IPv4 clients as ::ffff:a.b.c.d; the target expects the same
// header it would get from an IPv4 listener, so a pair that is IPv4 on both ends (plain or
// mapped) is written as IPv4. A pair whose families still differ has no valid encoding.
bool normalize(const sockaddr_storage& src, const sockaddr_storage& dst, Endpoint& s, Endpoint& d) {
  auto v4ish = [](const sockaddr_storage& ss) {
    return ss.ss_family == AF_INET ||
           (ss.ss_family == AF_INET6 &&
            is_v4_mapped(reinterpret_cast<const sockaddr_in6&>(ss).sin6_addr));
  };
  const bool unmap = v4ish(src) && v4ish(dst);
  s = endpoint(src, unmap);
  d = endpoint(dst, unmap);
  return s.family != AF_UNSPEC && s.family == d.family;
}

void put_u16(uint8_t* p, size_t v) {
  p[0] = static_cast<uint8_t>(v >> 8);
  p[1] = static_cast<uint8_t>(v);
}

uint16_t port_of(const uint8_t p[2]) { return static_cast<uint16_t>(p[0] << 8 | p[1]); }

// Fills an AF_INET or AF_INET6 sockaddr from wire bytes (address and port in network order).
void set_sockaddr(sockaddr_storage& ss, int family, const uint8_t* addr, const uint8_t* port) {
  if (family == AF_INET) {
    auto& sin = reinterpret_cast<sockaddr_in&>(ss);
    sin.sin_family = AF_INET;
    std::memcpy(&sin.sin_addr, addr, 4);
    std::memcpy(&sin.sin_port, port, 2);
  } else {
    auto& sin6 = reinterpret_cast<sockaddr_in6&>(ss);
    sin6.sin6_family = AF_INET6;
    std::memcpy(&sin6.sin6_addr, addr, 16);
    std::memcpy(&sin6.sin6_port, port, 2);
  }
}

// --- v1 reader -------------------------------------------------------------------------

enum class Step { Ok, More, Bad };

bool is_digit(uint8_t c) { return c >= '0' && c <= '9'; }

// Each *_prefix check answers "can this still grow into a valid field?", which is what lets
// the reader refuse on the first impossible byte instead of waiting for the CRLF.
bool ipv4_prefix(std::string_view s) {
  // Matches inet_pton(AF_INET): four decimal octets, no leading zeros, each at most 255.
  int dots = 0, digits = 0, value = 0;
  for (const char c : s) {
    if (c == '.') {
      if (digits == 0 || dots == 3) return false;
      ++dots;
      digits = 0;
      value = 0;
    } else if (is_digit(static_cast<uint8_t>(c))) {
      if (digits == 1 && value == 0) return false;
      value = value * 10 + (c - '0');
      if (value > 255) return false;
      ++digits;
    } else {
      return false;
    }
  }
  return true;
}

bool ipv6_prefix(std::string_view s) {
  // The full grammar is left to inet_pton at the field's end; this only bounds the charset
  // and the length (INET6_ADDRSTRLEN - 1 covers the ::ffff:a.b.c.d form).
  if (s.size() > INET6_ADDRSTRLEN - 1) return false;
  return std::all_of(s.begin(), s.end(), [](char c) {
    return is_digit(static_cast<uint8_t>(c)) || (c >= 'a' && c <= 'f') || (c >= 'A' && c <= 'F') ||
           c == ':' || c == '.';
  });
}

bool port_prefix(std::string_view s) {
  if (s.size() > 1 && s[0] == '0') return false;  // a lone "0" is the only leading zero
  uint32_t value = 0;
  for (const char c : s) {
    if (!is_digit(static_cast<uint8_t>(c))) return false;
    value = value * 10 + static_cast<uint32_t>(c - '0');
    if (value > 65535) return false;
  }
  return true;
}

class V1Reader {
 public:
  explicit V1Reader(std::span<const uint8_t> data)
      : data_(data.first(std::min(data.size(), kMaxProxyV1Bytes))), full_(data.size()) {}

  Step literal(std::string_view lit) {
    for (const char c : lit) {
      if (at_ == data_.size()) return out_of_input();
      if (data_[at_] != static_cast<uint8_t>(c)) return bad("v1 header does not match the grammar");
      ++at_;
    }
    return Step::Ok;
  }

  // Reads one of `choices` (all distinct at their first differing byte).
  Step one_of(std::span<const std::string_view> choices, size_t& which) {
    const size_t start = at_;
    for (size_t i = 0; i < choices.size(); ++i) {
      at_ = start;
      const Step s = literal(choices[i]);
      if (s == Step::Ok) {
        which = i;
        return s;
      }
      // A prefix of a choice that is cut by the end of input may still become that choice.
      if (s == Step::More) return s;
    }
    at_ = start;
    return bad("v1 protocol is not TCP4, TCP6 or UNKNOWN");
  }

  // A non-empty field ending at `term`; `prefix_ok` vets every byte as it arrives.
  Step field(char term, bool (*prefix_ok)(std::string_view), const char* what,
             std::string_view& value) {
    const size_t start = at_;
    for (;;) {
      if (at_ == data_.size()) return out_of_input();
      const char c = static_cast<char>(data_[at_]);
      if (c == term) break;
      ++at_;
      if (!prefix_ok(text(start, at_))) return bad(what);
    }
    value = text(start, at_);
    ++at_;
    if (value.empty()) return bad("v1 empty field (double space?)");
    return Step::Ok;
  }

  // The rest of an UNKNOWN line: anything up to the first CRLF.
  Step until_crlf() {
    for (; at_ + 1 < data_.size(); ++at_) {
      if (data_[at_] == '\r' && data_[at_ + 1] == '\n') {
        at_ += 2;
        return Step::Ok;
      }
    }
    return out_of_input();
  }

  size_t at() const { return at_; }
  const char* why() const { return why_; }

 private:
  std::string_view text(size_t from, size_t to) const {
    return {reinterpret_cast<const char*>(data_.data()) + from, to - from};
  }
  // Input ran out: either more may come, or the 107-byte budget is spent.
  Step out_of_input() {
    if (full_ >= kMaxProxyV1Bytes) return bad("v1 header without CRLF within 107 bytes");
    return Step::More;
  }
  Step bad(const char* why) {
    why_ = why;
    return Step::Bad;
  }

  std::span<const uint8_t> data_;
  size_t full_;
  size_t at_ = 0;
  const char* why_ = "";
};

bool to_sockaddr(int family, std::string_view addr, std::string_view port, sockaddr_storage& ss) {
  char buf[INET6_ADDRSTRLEN] = {};
  if (addr.size() >= sizeof buf) return false;
  std::memcpy(buf, addr.data(), addr.size());
  uint32_t p = 0;
  for (const char c : port) p = p * 10 + static_cast<uint32_t>(c - '0');
  ss = {};
  if (family == AF_INET) {
    auto& sin = reinterpret_cast<sockaddr_in&>(ss);
    sin.sin_family = AF_INET;
    sin.sin_port = htons(static_cast<uint16_t>(p));
    return inet_pton(AF_INET, buf, &sin.sin_addr) == 1;
  }
  auto& sin6 = reinterpret_cast<sockaddr_in6&>(ss);
  sin6.sin6_family = AF_INET6;
  sin6.sin6_port = htons(static_cast<uint16_t>(p));
  return inet_pton(AF_INET6, buf, &sin6.sin6_addr) == 1;
}

ProxyResult parse_v1(std::span<const uint8_t> data, ProxyHeader& out) {
  V1Reader r(data);
  auto fail = [&](Step s) {
    return s == Step::More ? ProxyResult{ProxyStatus::NeedMore, 0, ""}
                           : ProxyResult{ProxyStatus::Malformed, 0, r.why()};
  };
  static constexpr std::string_view kProtocols[] = {"TCP4 ", "TCP6 ", "UNKNOWN"};
  size_t proto = 0;
  if (Step s = r.literal("PROXY "); s != Step::Ok) return fail(s);
  if (Step s = r.one_of(kProtocols, proto); s != Step::Ok) return fail(s);
  if (proto == 2) {
    if (Step s = r.until_crlf(); s != Step::Ok) return fail(s);
    out.version = 1;
    out.local = true;
    return {ProxyStatus::Done, r.at(), ""};
  }
  const bool v4 = proto == 0;
  const auto addr_ok = v4 ? ipv4_prefix : ipv6_prefix;
  std::string_view src, dst, sport, dport;
  if (Step s = r.field(' ', addr_ok, "v1 bad source address", src); s != Step::Ok) return fail(s);
  if (Step s = r.field(' ', addr_ok, "v1 bad destination address", dst); s != Step::Ok) {
    return fail(s);
  }
  if (Step s = r.field(' ', port_prefix, "v1 bad source port", sport); s != Step::Ok) {
    return fail(s);
  }
  if (Step s = r.field('\r', port_prefix, "v1 bad destination port", dport); s != Step::Ok) {
    return fail(s);
  }
  if (Step s = r.literal("\n"); s != Step::Ok) return fail(s);
  const int family = v4 ? AF_INET : AF_INET6;
  if (!to_sockaddr(family, src, sport, out.src)) {
    return {ProxyStatus::Malformed, 0, "v1 bad source address"};
  }
  if (!to_sockaddr(family, dst, dport, out.dst)) {
    return {ProxyStatus::Malformed, 0, "v1 bad destination address"};
  }
  out.version = 1;
  return {ProxyStatus::Done, r.at(), ""};
}

// --- v2 reader -------------------------------------------------------------------------

ProxyResult parse_v2(std::span<const uint8_t> data, ProxyHeader& out) {
  constexpr ProxyResult kMore{ProxyStatus::NeedMore, 0, ""};
  auto bad = [](const char* why) { return ProxyResult{ProxyStatus::Malformed, 0, why}; };

  const size_t sig_have = std::min(data.size(), sizeof kV2Signature);
  if (std::memcmp(data.data(), kV2Signature, sig_have) != 0) return bad("v2 bad signature");
  if (data.size() < 13) return kMore;
  const uint8_t ver_cmd = data[12];
  if (ver_cmd >> 4 != 2) return bad("v2 version is not 2");
  const uint8_t cmd = ver_cmd & 0x0F;
  if (cmd != kCmdLocal && cmd != kCmdProxy) return bad("v2 unknown command");
  if (data.size() < 14) return kMore;
  const uint8_t fam = data[13] >> 4, proto = data[13] & 0x0F;
  size_t addr_bytes = 0;
  switch (fam) {
    case kFamUnspec:
      addr_bytes = 0;
      break;
    case kFamInet:
      addr_bytes = kV2InetBytes;
      break;
    case kFamInet6:
      addr_bytes = kV2Inet6Bytes;
      break;
    case kFamUnix:
      addr_bytes = kV2UnixBytes;
      break;
    default:
      return bad("v2 unknown address family");
  }
  const bool proto_ok =
      fam == kFamUnspec ? proto == kProtoUnspec : (proto == kProtoStream || proto == kProtoDgram);
  if (!proto_ok) return bad("v2 unknown transport protocol");
  if (data.size() < kProxyV2HeaderBytes) return kMore;
  const size_t len = size_t{data[14]} << 8 | data[15];
  const size_t total = kProxyV2HeaderBytes + len;
  if (total > kMaxProxyV2Bytes) return bad("v2 header longer than the accepted maximum");
  if (len < addr_bytes) return bad("v2 length too small for the addresses");

  // TLVs are checked over whatever has arrived, so a TLV overrunning the header is refused
  // before the rest of it comes in.
  const size_t tlv_start = kProxyV2HeaderBytes + addr_bytes;
  const size_t have = std::min(data.size(), total);
  size_t at = tlv_start;
  while (at < total) {
    if (total - at < kTlvHeaderBytes) return bad("v2 truncated TLV header");
    if (have < at + kTlvHeaderBytes) return kMore;
    const size_t vlen = size_t{data[at + 1]} << 8 | data[at + 2];
    if (vlen > total - at - kTlvHeaderBytes) return bad("v2 TLV overruns the header");
    at += kTlvHeaderBytes + vlen;
  }
  if (data.size() < total) return kMore;

  out.version = 2;
  out.dgram = proto == kProtoDgram;
  // LOCAL means "use the socket's endpoints"; UNSPEC under PROXY and AF_UNIX carry nothing a
  // TCP/UDP forwarder can use, so they are treated the same way.
  out.local = cmd == kCmdLocal || fam == kFamUnspec || fam == kFamUnix;
  out.tlvs = data.subspan(tlv_start, total - tlv_start);
  if (!out.local) {
    const uint8_t* a = data.data() + kProxyV2HeaderBytes;
    const size_t alen = fam == kFamInet ? 4 : 16;
    const int family = fam == kFamInet ? AF_INET : AF_INET6;
    set_sockaddr(out.src, family, a, a + 2 * alen);
    set_sockaddr(out.dst, family, a + alen, a + 2 * alen + 2);
  }
  return {ProxyStatus::Done, total, ""};
}

}  // namespace

size_t write_proxy_v1(const sockaddr_storage& src, const sockaddr_storage& dst,
                      std::span<uint8_t> out) {
  if (out.size() < kMaxProxyV1Bytes) return 0;
  char* p = reinterpret_cast<char*>(out.data());
  Endpoint s, d;
  if (!normalize(src, dst, s, d)) {
    static constexpr std::string_view kUnknown = "PROXY UNKNOWN\r\n";
    std::memcpy(p, kUnknown.data(), kUnknown.size());
    return kUnknown.size();
  }
  char sa[INET6_ADDRSTRLEN], da[INET6_ADDRSTRLEN];
  inet_ntop(s.family, s.addr, sa, sizeof sa);
  inet_ntop(d.family, d.addr, da, sizeof da);
  // Bounded by the sizes above: "PROXY TCP6 " + 2 * 45 + 2 * 5 + 3 spaces + CRLF would exceed
  // 107 only for forms inet_ntop never produces for a pair of the same family.
  char line[160];
  const int n = std::snprintf(line, sizeof line, "PROXY %s %s %s %u %u\r\n",
                              s.family == AF_INET ? "TCP4" : "TCP6", sa, da, port_of(s.port),
                              port_of(d.port));
  if (n <= 0 || static_cast<size_t>(n) > kMaxProxyV1Bytes) return 0;
  std::memcpy(p, line, static_cast<size_t>(n));
  return static_cast<size_t>(n);
}

size_t write_proxy_v2(const sockaddr_storage& src, const sockaddr_storage& dst, bool dgram,
                      std::span<const Tlv> tlvs, std::span<uint8_t> out) {
  Endpoint s, d;
  const bool ip = normalize(src, dst, s, d);
  const size_t addr_bytes = !ip ? 0 : s.family == AF_INET ? kV2InetBytes : kV2Inet6Bytes;
  size_t body = addr_bytes;
  for (const Tlv& t : tlvs) {
    if (t.value.size() > 0xFFFF) return 0;
    body += kTlvHeaderBytes + t.value.size();
  }
  if (body > 0xFFFF || out.size() < kProxyV2HeaderBytes + body) return 0;

  uint8_t* p = out.data();
  std::memcpy(p, kV2Signature, sizeof kV2Signature);
  p[12] = kV2VersionProxy;
  const uint8_t proto = dgram ? kProtoDgram : kProtoStream;
  p[13] = !ip                   ? 0x00
          : s.family == AF_INET ? static_cast<uint8_t>(kFamInet << 4 | proto)
                                : static_cast<uint8_t>(kFamInet6 << 4 | proto);
  put_u16(p + 14, body);
  p += kProxyV2HeaderBytes;
  if (ip) {
    const size_t alen = s.family == AF_INET ? 4 : 16;
    std::memcpy(p, s.addr, alen);
    std::memcpy(p + alen, d.addr, alen);
    std::memcpy(p + 2 * alen, s.port, 2);
    std::memcpy(p + 2 * alen + 2, d.port, 2);
    p += addr_bytes;
  }
  for (const Tlv& t : tlvs) {
    p[0] = t.type;
    put_u16(p + 1, t.value.size());
    if (!t.value.empty()) std::memcpy(p + kTlvHeaderBytes, t.value.data(), t.value.size());
    p += kTlvHeaderBytes + t.value.size();
  }
  return kProxyV2HeaderBytes + body;
}

std::string_view to_string(ProxyStatus s) {
  switch (s) {
    case ProxyStatus::NeedMore:
      return "need more";
    case ProxyStatus::Done:
      return "done";
    case ProxyStatus::Malformed:
      return "malformed";
  }
  return "?";
}

bool ProxyHeader::find_tlv(uint8_t type, std::span<const uint8_t>& value) const {
  size_t at = 0;
  while (tlvs.size() - at >= kTlvHeaderBytes) {
    const size_t len = size_t{tlvs[at + 1]} << 8 | tlvs[at + 2];
    if (len > tlvs.size() - at - kTlvHeaderBytes) return false;  // only if built by hand
    if (tlvs[at] == type) {
      value = tlvs.subspan(at + kTlvHeaderBytes, len);
      return true;
    }
    at += kTlvHeaderBytes + len;
  }
  return false;
}

ProxyResult parse_proxy_header(std::span<const uint8_t> data, ProxyHeader& out) {
  out = ProxyHeader{};
  if (data.empty()) return {ProxyStatus::NeedMore, 0, ""};
  if (data[0] == 'P') return parse_v1(data, out);
  if (data[0] == kV2Signature[0]) return parse_v2(data, out);
  return {ProxyStatus::Malformed, 0, "not a PROXY protocol header"};
}

}  // namespace rf::proto
