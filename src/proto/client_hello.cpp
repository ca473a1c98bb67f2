// Placeholder: replaced by the real parser.
#include "ringfwd/proto/client_hello.hpp"
namespace rf::proto {
std::string_view to_string(HelloStatus s) {
  switch (s) {
    case HelloStatus::NeedMore: return "need more";
    case HelloStatus::Done: return "done";
    case HelloStatus::NotTls: return "not TLS";
    case HelloStatus::Malformed: return "malformed";
    case HelloStatus::TooLarge: return "too large";
  }
  return "?";
}
std::string_view ClientHello::first_alpn() const { return {}; }
HelloResult parse_client_hello(std::span<const uint8_t>, std::span<uint8_t>, ClientHello&) {
  return {HelloStatus::Malformed, "not implemented"};
}
}  // namespace rf::proto
