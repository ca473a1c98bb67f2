// Placeholder: replaced by the real codec.
#include "ringfwd/proto/proxy_header.hpp"
namespace rf::proto {
size_t write_proxy_v1(const sockaddr_storage&, const sockaddr_storage&, std::span<uint8_t>) { return 0; }
size_t write_proxy_v2(const sockaddr_storage&, const sockaddr_storage&, bool, std::span<const Tlv>,
                      std::span<uint8_t>) { return 0; }
std::string_view to_string(ProxyStatus) { return "?"; }
bool ProxyHeader::find_tlv(uint8_t, std::span<const uint8_t>&) const { return false; }
ProxyResult parse_proxy_header(std::span<const uint8_t>, ProxyHeader&) {
  return {ProxyStatus::Malformed, 0, "not implemented"};
}
}  // namespace rf::proto
