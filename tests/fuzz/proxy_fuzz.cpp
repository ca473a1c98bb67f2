// libFuzzer target: the PROXY header reader never reads outside its input, Done consumes at
// most the input, and the addresses it returns survive writing them back with either version.
#include <netinet/in.h>

#include <cstddef>
#include <cstdint>
#include <cstring>
#include <span>
#include <vector>

#include "ringfwd/proto/proxy_header.hpp"

namespace {

using rf::proto::ProxyHeader;
using rf::proto::ProxyStatus;

// The writers encode an IPv4 pair given as v4-mapped IPv6 as plain IPv4, so addresses are
// compared in their IPv6 form: a.b.c.d and ::ffff:a.b.c.d are the same endpoint.
struct Key {
  uint8_t addr[16] = {};
  uint16_t port = 0;
  bool operator==(const Key&) const = default;
};

Key key(const sockaddr_storage& ss) {
  Key k;
  if (ss.ss_family == AF_INET) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    k.addr[10] = k.addr[11] = 0xff;
    std::memcpy(k.addr + 12, &sin.sin_addr, 4);
    k.port = sin.sin_port;
  } else if (ss.ss_family == AF_INET6) {
    const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
    std::memcpy(k.addr, &sin6.sin6_addr, 16);
    k.port = sin6.sin6_port;
  } else {
    __builtin_trap();  // Done and not local: always an IP family
  }
  return k;
}

void reparse(std::span<const uint8_t> written, const ProxyHeader& first) {
  ProxyHeader again;
  const auto res = rf::proto::parse_proxy_header(written, again);
  if (res.status != ProxyStatus::Done || res.consumed != written.size() || again.local) {
    __builtin_trap();
  }
  if (!(key(again.src) == key(first.src)) || !(key(again.dst) == key(first.dst))) {
    __builtin_trap();
  }
}

}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  std::vector<uint8_t> input(data, data + size);  // exact size, so ASan sees any overread
  ProxyHeader h;
  const auto res = rf::proto::parse_proxy_header(input, h);
  if (res.why == nullptr) __builtin_trap();
  if (res.status != ProxyStatus::Done) return 0;
  if (res.consumed == 0 || res.consumed > size) __builtin_trap();
  if (h.version != 1 && h.version != 2) __builtin_trap();
  // The verdict depends on the header bytes only, not on what follows them.
  ProxyHeader cut;
  const auto res_cut = rf::proto::parse_proxy_header(std::span(input).first(res.consumed), cut);
  if (res_cut.status != ProxyStatus::Done || res_cut.consumed != res.consumed) __builtin_trap();

  std::span<const uint8_t> tlv;
  (void)h.find_tlv(rf::proto::kTlvAuthority, tlv);
  if (h.local) return 0;

  uint8_t v1[rf::proto::kMaxProxyV1Bytes];
  const size_t n1 = rf::proto::write_proxy_v1(h.src, h.dst, v1);
  if (n1 == 0) __builtin_trap();
  reparse(std::span(v1, n1), h);

  std::vector<uint8_t> v2(rf::proto::kMaxProxyV2Bytes);
  const rf::proto::Tlv tlvs[] = {{rf::proto::kTlvAuthority, tlv}};
  const size_t n2 = rf::proto::write_proxy_v2(h.src, h.dst, h.dgram, tlvs, v2);
  if (n2 == 0) __builtin_trap();
  v2.resize(n2);
  reparse(v2, h);
  return 0;
}
