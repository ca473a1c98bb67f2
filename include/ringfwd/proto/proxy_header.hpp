#pragma once
// PROXY protocol v1 (text) and v2 (binary), as specified by HAProxy's proxy-protocol.txt:
// writing a header that tells the target the client's real address, and a strict reader for
// headers sent by a load balancer in front of ringfwd. No allocation.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace rf::proto {

// v2 TLV types used by ringfwd (PP2_TYPE_*; 0xE0-0xEF is the range reserved for applications).
inline constexpr uint8_t kTlvAlpn = 0x01;       // PP2_TYPE_ALPN
inline constexpr uint8_t kTlvAuthority = 0x02;  // PP2_TYPE_AUTHORITY (the SNI host name)
inline constexpr uint8_t kTlvRouteId = 0xE0;    // ringfwd: the route id (edge -> gateway hop)

inline constexpr size_t kMaxProxyV1Bytes = 107;  // the spec's bound, CRLF included
inline constexpr size_t kProxyV2HeaderBytes = 16;
// Largest v2 header the reader accepts (16 + addresses + TLVs); larger is refused.
inline constexpr size_t kMaxProxyV2Bytes = 16 + 536 + 1024;

struct Tlv {
  uint8_t type = 0;
  std::span<const uint8_t> value;
};

// Writes a v1 line ("PROXY TCP4 1.2.3.4 5.6.7.8 1234 443\r\n"; "PROXY UNKNOWN\r\n" when the
// families differ or are not IP). Returns the length, or 0 when out.size() < kMaxProxyV1Bytes.
size_t write_proxy_v1(const sockaddr_storage& src, const sockaddr_storage& dst,
                      std::span<uint8_t> out);
// Writes a v2 PROXY header (command PROXY, STREAM or DGRAM, INET or INET6; family UNSPEC with
// no addresses when the families differ or are not IP) followed by the TLVs in order. Returns
// the length, or 0 when it does not fit in out or a TLV value exceeds 65535 bytes.
size_t write_proxy_v2(const sockaddr_storage& src, const sockaddr_storage& dst, bool dgram,
                      std::span<const Tlv> tlvs, std::span<uint8_t> out);

enum class ProxyStatus {
  NeedMore,   // a valid prefix of a header: wait for more bytes
  Done,       // a complete header: `consumed` bytes belong to it, the rest is payload
  Malformed,  // not a PROXY header, or one that breaks the spec: close the connection
};
std::string_view to_string(ProxyStatus);

struct ProxyHeader {
  int version = 0;      // 1 or 2
  bool local = false;   // v2 LOCAL command or v1 UNKNOWN: no addresses, use the socket's
  bool dgram = false;   // v2 DGRAM
  sockaddr_storage src{};  // set unless local (family AF_INET/AF_INET6, port in network order)
  sockaddr_storage dst{};
  // v2 only: the TLV area, inside the parsed input (valid as long as the input is).
  std::span<const uint8_t> tlvs;
  // The first TLV of that type (its value inside the input), or nullopt-like empty span with
  // found=false.
  bool find_tlv(uint8_t type, std::span<const uint8_t>& value) const;
};

struct ProxyResult {
  ProxyStatus status = ProxyStatus::NeedMore;
  size_t consumed = 0;   // header length when Done
  const char* why = "";  // static text when Malformed
};

// Reads a v1 or v2 header at the start of data (a stream's first bytes or a datagram).
// Strict: v1 needs the exact grammar (single spaces, decimal ports without leading zeros,
// addresses matching the protocol, CRLF within 107 bytes); v2 needs the 12-byte signature,
// version 2, a known command, family and protocol, and a length that covers the addresses
// and whole TLVs.
ProxyResult parse_proxy_header(std::span<const uint8_t> data, ProxyHeader& out);

}  // namespace rf::proto
