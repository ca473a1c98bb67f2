// TLS ClientHello reader (RFC 8446 §4.1.2 / §5.1, RFC 6066 §3 server_name, RFC 7301 ALPN).
//
// Stateless by design: every call walks the stream from offset 0. A hello is at most a few
// records and kMaxClientHelloBytes bounds the walk, so re-walking is cheaper than keeping
// per-connection parser state and keeps the caller's side trivial.
#include "ringfwd/proto/client_hello.hpp"

#include <algorithm>
#include <bitset>
#include <cstring>

namespace rf::proto {
namespace {

constexpr uint8_t kContentHandshake = 22;
constexpr uint8_t kHandshakeClientHello = 1;
constexpr size_t kRecordHeaderBytes = 5;
constexpr size_t kHandshakeHeaderBytes = 4;
// TLSPlaintext may not exceed 2^14, but the record layer grants 2^14 + 256 to compressed or
// padded records; accepting the larger bound costs nothing and avoids refusing odd stacks.
constexpr size_t kMaxRecordBody = 16384 + 256;
constexpr uint16_t kExtServerName = 0;
constexpr uint16_t kExtAlpn = 16;
constexpr uint8_t kNameTypeHostName = 0;

constexpr HelloResult kNeedMore{HelloStatus::NeedMore, ""};

constexpr HelloResult malformed(const char* why) { return {HelloStatus::Malformed, why}; }
constexpr HelloResult too_large(const char* why) { return {HelloStatus::TooLarge, why}; }

// Bounds-checked cursor over the reassembled hello: every read says whether it fit, so the
// parsing code below cannot index past the end whatever the length fields claim.
class Reader {
 public:
  explicit Reader(std::span<const uint8_t> bytes) : bytes_(bytes) {}
  size_t left() const { return bytes_.size() - at_; }
  bool u8(uint8_t& v) {
    if (left() < 1) return false;
    v = bytes_[at_++];
    return true;
  }
  bool u16(uint16_t& v) {
    if (left() < 2) return false;
    v = static_cast<uint16_t>(bytes_[at_] << 8 | bytes_[at_ + 1]);
    at_ += 2;
    return true;
  }
  bool take(size_t n, std::span<const uint8_t>& v) {
    if (left() < n) return false;
    v = bytes_.subspan(at_, n);
    at_ += n;
    return true;
  }
  bool skip(size_t n) {
    std::span<const uint8_t> ignored;
    return take(n, ignored);
  }

 private:
  std::span<const uint8_t> bytes_;
  size_t at_ = 0;
};

// Checks as much of a record header as has arrived (1..5 bytes), so that a stream that is not
// TLS is refused on its first byte rather than after five.
HelloResult check_record_header(std::span<const uint8_t> h, bool first_record) {
  if (h[0] != kContentHandshake) {
    return first_record ? HelloResult{HelloStatus::NotTls, "not a TLS handshake record"}
                        : malformed("non-handshake record before the ClientHello ended");
  }
  if (h.size() > 1 && h[1] != 3) return malformed("record version is not TLS 1.x");
  if (h.size() > 2 && (h[2] < 1 || h[2] > 4)) return malformed("record version is not TLS 1.x");
  if (h.size() == kRecordHeaderBytes) {
    const size_t len = size_t{h[3]} << 8 | h[4];
    if (len == 0) return malformed("record length 0");
    if (len > kMaxRecordBody) return malformed("record length over 2^14+256");
  }
  return kNeedMore;
}

bool host_name_char(uint8_t c) {
  return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') || (c >= '0' && c <= '9') || c == '-' ||
         c == '.' || c == '_';
}

HelloResult parse_server_name(std::span<const uint8_t> ext, ClientHello& out) {
  Reader r(ext);
  uint16_t list_len = 0;
  if (!r.u16(list_len) || list_len != r.left())
    return malformed("server_name list length mismatch");
  // RFC 6066 gives the list a minimum of one entry; an empty one is a broken client.
  if (list_len == 0) return malformed("server_name list empty");
  bool taken = false;
  while (r.left() > 0) {
    uint8_t type = 0;
    uint16_t len = 0;
    std::span<const uint8_t> name;
    if (!r.u8(type) || !r.u16(len) || !r.take(len, name)) {
      return malformed("server_name entry overruns its list");
    }
    // Only host_name exists today; unknown name types must be skipped, not refused, and only
    // the first host_name counts (RFC 6066 forbids a second one of the same type).
    if (type != kNameTypeHostName || taken) continue;
    if (name.empty() || name.size() > 255) return malformed("server_name length not 1..255");
    if (!std::all_of(name.begin(), name.end(), host_name_char)) {
      return malformed("server_name has a character not allowed in a host name");
    }
    size_t n = name.size();
    if (name[n - 1] == '.') --n;  // "example.com." names the same host as "example.com"
    if (n == 0) return malformed("server_name is only a dot");
    for (size_t i = 0; i < n; ++i) {
      const uint8_t c = name[i];
      out.sni[i] = static_cast<char>(c >= 'A' && c <= 'Z' ? c - 'A' + 'a' : c);
    }
    out.sni_len = static_cast<uint16_t>(n);
    taken = true;
  }
  return kNeedMore;
}

HelloResult parse_alpn(std::span<const uint8_t> ext, ClientHello& out) {
  Reader r(ext);
  uint16_t list_len = 0;
  if (!r.u16(list_len) || list_len != r.left()) return malformed("ALPN list length mismatch");
  if (list_len == 0) return malformed("ALPN list empty");
  // Names are kept as a prefix of the wire list so that the copy stays a valid list even when
  // an absurdly long offer is cut: a gap would change the client's preference order.
  bool full = false;
  while (r.left() > 0) {
    uint8_t len = 0;
    std::span<const uint8_t> name;
    if (!r.u8(len)) return malformed("ALPN list truncated");
    if (len == 0) return malformed("ALPN protocol name empty");
    if (!r.take(len, name)) return malformed("ALPN protocol name overruns its list");
    if (full || out.alpn_len + 1u + len > sizeof out.alpn) {
      full = true;
      continue;
    }
    out.alpn[out.alpn_len] = len;
    std::memcpy(out.alpn + out.alpn_len + 1, name.data(), len);
    out.alpn_len = static_cast<uint16_t>(out.alpn_len + 1 + len);
  }
  return kNeedMore;
}

// Parses the ClientHello body (after the 4-byte handshake header). Returns NeedMore as "ok".
HelloResult parse_body(std::span<const uint8_t> body, ClientHello& out) {
  Reader r(body);
  uint8_t major = 0, minor = 0;
  if (!r.u8(major) || !r.u8(minor)) return malformed("ClientHello truncated in legacy_version");
  if (major != 3) return malformed("ClientHello legacy_version is not 3.x");
  if (!r.skip(32)) return malformed("ClientHello truncated in random");
  uint8_t sid_len = 0;
  if (!r.u8(sid_len)) return malformed("ClientHello truncated before session_id");
  if (sid_len > 32) return malformed("session_id longer than 32 bytes");
  if (!r.skip(sid_len)) return malformed("session_id overruns the ClientHello");
  uint16_t suites_len = 0;
  if (!r.u16(suites_len)) return malformed("ClientHello truncated before cipher_suites");
  if (suites_len < 2 || suites_len % 2 != 0) return malformed("cipher_suites length odd or zero");
  if (!r.skip(suites_len)) return malformed("cipher_suites overrun the ClientHello");
  uint8_t comp_len = 0;
  if (!r.u8(comp_len)) return malformed("ClientHello truncated before compression_methods");
  if (comp_len < 1) return malformed("compression_methods empty");
  if (!r.skip(comp_len)) return malformed("compression_methods overrun the ClientHello");
  if (r.left() == 0) return kNeedMore;  // pre-TLS-1.2 clients may omit the extensions block

  uint16_t ext_total = 0;
  if (!r.u16(ext_total)) return malformed("extensions length truncated");
  if (ext_total != r.left()) return malformed("extensions length mismatch");
  // 8 KiB of stack instead of a quadratic scan: a hello can hold ~4000 empty extensions.
  std::bitset<65536> seen;
  while (r.left() > 0) {
    uint16_t type = 0, len = 0;
    std::span<const uint8_t> ext;
    if (!r.u16(type) || !r.u16(len)) return malformed("extension header truncated");
    if (!r.take(len, ext)) return malformed("extension length overruns the extensions block");
    // RFC 8446 §4.2: a repeated extension type is an illegal_parameter; a parser that took the
    // first and a server that took the last could be made to disagree on the route.
    if (seen.test(type)) return malformed("duplicate extension");
    seen.set(type);
    HelloResult res = kNeedMore;
    if (type == kExtServerName) res = parse_server_name(ext, out);
    if (type == kExtAlpn) res = parse_alpn(ext, out);
    if (res.status != HelloStatus::NeedMore) return res;
  }
  return kNeedMore;
}

}  // namespace

std::string_view to_string(HelloStatus s) {
  switch (s) {
    case HelloStatus::NeedMore:
      return "need more";
    case HelloStatus::Done:
      return "done";
    case HelloStatus::NotTls:
      return "not TLS";
    case HelloStatus::Malformed:
      return "malformed";
    case HelloStatus::TooLarge:
      return "too large";
  }
  return "?";
}

std::string_view ClientHello::first_alpn() const {
  if (alpn_len < 2 || alpn[0] == 0 || size_t{alpn[0]} + 1 > alpn_len) return {};
  return {reinterpret_cast<const char*>(alpn + 1), alpn[0]};
}

HelloResult parse_client_hello(std::span<const uint8_t> stream, std::span<uint8_t> scratch,
                               ClientHello& out) {
  // The handshake header is kept apart from the body so that a full kMaxClientHelloBytes body
  // fits the scratch buffer the header promises.
  uint8_t hs_header[kHandshakeHeaderBytes] = {};
  size_t hs_have = 0;   // handshake bytes collected so far, header included
  size_t hs_total = 0;  // header + declared body length, once the header is complete
  size_t pos = 0;       // start of the current record in the stream

  for (;;) {
    const size_t avail = stream.size() - pos;
    if (avail == 0) return kNeedMore;
    // Every TooLarge verdict is one that more bytes could not change (the hello can no longer
    // end within the first kMaxClientHelloBytes), and the bound is checked before anything the
    // following bytes could refuse, so that a longer prefix never gets a different verdict.
    if (pos + kRecordHeaderBytes + 1 > kMaxClientHelloBytes) {
      return too_large("no ClientHello within 16 KiB");
    }
    const auto header = stream.subspan(pos, std::min(avail, kRecordHeaderBytes));
    if (auto res = check_record_header(header, pos == 0); res.status != HelloStatus::NeedMore) {
      return res;
    }
    if (header.size() < kRecordHeaderBytes) return kNeedMore;
    const size_t rec_len = size_t{header[3]} << 8 | header[4];
    if (pos + kRecordHeaderBytes + rec_len > kMaxClientHelloBytes) {
      return too_large("no ClientHello within 16 KiB");
    }
    const auto payload =
        stream.subspan(pos + kRecordHeaderBytes, std::min(rec_len, avail - kRecordHeaderBytes));

    size_t used = 0;
    while (hs_have < kHandshakeHeaderBytes && used < payload.size()) {
      hs_header[hs_have++] = payload[used++];
    }
    if (hs_have >= 1 && hs_header[0] != kHandshakeClientHello) {
      return malformed("handshake is not a ClientHello");
    }
    if (hs_have == kHandshakeHeaderBytes && hs_total == 0) {
      const size_t body_len = size_t{hs_header[1]} << 16 | size_t{hs_header[2]} << 8 | hs_header[3];
      // The smallest framing (one record) must still end within the stream bound.
      if (body_len + kHandshakeHeaderBytes + kRecordHeaderBytes > kMaxClientHelloBytes) {
        return too_large("ClientHello length over 16 KiB");
      }
      if (body_len > scratch.size()) return too_large("ClientHello larger than the scratch buffer");
      hs_total = kHandshakeHeaderBytes + body_len;
    }
    if (hs_total != 0) {
      // Bytes after the hello's end inside its last record belong to a later message: ignored.
      const size_t n = std::min(payload.size() - used, hs_total - hs_have);
      std::memcpy(scratch.data() + (hs_have - kHandshakeHeaderBytes), payload.data() + used, n);
      hs_have += n;
    }
    // Done is only reported once the record holding the last byte is whole, so that
    // hello_bytes never points past what the caller has.
    if (payload.size() < rec_len) return kNeedMore;
    pos += kRecordHeaderBytes + rec_len;
    if (hs_total != 0 && hs_have == hs_total) break;
  }

  out = ClientHello{};
  const auto res =
      parse_body(std::span<const uint8_t>(scratch.data(), hs_total - kHandshakeHeaderBytes), out);
  if (res.status != HelloStatus::NeedMore) {
    out = ClientHello{};
    return res;
  }
  out.hello_bytes = pos;
  return {HelloStatus::Done, ""};
}

}  // namespace rf::proto
