#pragma once
// Wake-on-LAN (SPEC §6): the magic packet (6 x 0xFF, then the MAC 16 times) to UDP port 9 of
// the LAN's broadcast address. One sender per worker, at most one packet per MAC per second
// (many clients of a sleeping machine wake it once).
#include <cstdint>
#include <unordered_map>

#include "ringfwd/base/unique_fd.hpp"
#include "ringfwd/routing/route_table.hpp"

namespace rf::dataplane {

class WolSender {
 public:
  // Sends the route's magic packet unless one left for that MAC within the last second.
  // True when a packet left now. A failure is logged (rate-limited by the caller's clock).
  bool wake(const routing::ResolvedRoute& r, uint64_t now_ms);

 private:
  UniqueFd fd_;
  std::unordered_map<uint64_t, uint64_t> last_ms_;  // MAC (48 bits) -> when its packet left
  uint64_t last_error_ms_ = 0;
};

}  // namespace rf::dataplane
