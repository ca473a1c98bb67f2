// Placeholder until the UDP data path lands: accepts listeners and closes them.
#include "udp.hpp"

namespace rf::dataplane {

struct UdpPath::Impl {};

UdpPath::UdpPath(unsigned, uring::Ring&, EngineShared&, const EngineOptions&)
    : impl_(std::make_unique<Impl>()) {}
UdpPath::~UdpPath() = default;
void UdpPath::add_listener(UniqueFd, const routing::ResolvedRoute*, uint16_t, std::string,
                           std::shared_ptr<const routing::RouteTable>) {}
bool UdpPath::remap(const std::string&, const routing::ResolvedRoute*,
                    std::shared_ptr<const routing::RouteTable>) {
  return false;
}
bool UdpPath::close_now(const std::string&) { return false; }
bool UdpPath::close_at(const std::string&, uint64_t) { return false; }
void UdpPath::drain(const std::string&, uint64_t) {}
void UdpPath::stop_accepting() {}
void UdpPath::stop() {}
size_t UdpPath::open() const { return 0; }
void UdpPath::dispatch(const uring::Completion&, uint64_t) {}
void UdpPath::tick(uint64_t) {}

}  // namespace rf::dataplane
