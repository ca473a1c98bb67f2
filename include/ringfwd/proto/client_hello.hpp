#pragma once
// Reads the SNI (and ALPN) from the ClientHello at the start of a TLS stream without
// consuming it: the caller keeps every byte it received and forwards them unchanged.
//
// The parser is stateless: call it again with all bytes received so far each time more
// arrive (a ClientHello may come one byte per TCP segment and may span several TLS records).
// It never allocates; record payloads are reassembled into the caller's scratch buffer.
#include <cstddef>
#include <cstdint>
#include <span>
#include <string_view>

namespace rf::proto {

// More than this many stream bytes without a complete ClientHello: refused as too large.
// (Real hellos are 0.2-2 KiB; post-quantum key shares keep them well under this.)
inline constexpr size_t kMaxClientHelloBytes = 16384;

enum class HelloStatus {
  NeedMore,   // a valid prefix: wait for more bytes
  Done,       // the whole ClientHello was read; `out` is filled
  NotTls,     // the first bytes are not a TLS handshake record (e.g. plain HTTP)
  Malformed,  // a TLS record or ClientHello that breaks the format
  TooLarge,   // no complete ClientHello within kMaxClientHelloBytes
};
std::string_view to_string(HelloStatus);

struct ClientHello {
  // server_name (host_name type), lower-cased, trailing dot removed; empty when absent.
  char sni[256] = {};
  uint16_t sni_len = 0;
  // The ALPN extension's protocol_name_list as on the wire (each name 1-byte length
  // prefixed), truncated to whole names that fit; empty when absent.
  uint8_t alpn[256] = {};
  uint16_t alpn_len = 0;
  // Stream bytes (TLS records) that carried the ClientHello, from offset 0.
  size_t hello_bytes = 0;
  std::string_view server_name() const { return {sni, sni_len}; }
  // The first ALPN protocol the client offers ("h2"), empty when none.
  std::string_view first_alpn() const;
};

struct HelloResult {
  HelloStatus status = HelloStatus::NeedMore;
  const char* why = "";  // static text for the log when status is NotTls/Malformed/TooLarge
};

// scratch must hold at least kMaxClientHelloBytes bytes.
HelloResult parse_client_hello(std::span<const uint8_t> stream, std::span<uint8_t> scratch,
                               ClientHello& out);

}  // namespace rf::proto
