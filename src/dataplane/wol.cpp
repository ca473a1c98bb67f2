#include "wol.hpp"

#include <netinet/in.h>
#include <sys/socket.h>

#include <cerrno>
#include <cstring>

#include "ringfwd/base/log.hpp"
#include "ringfwd/base/net.hpp"

namespace rf::dataplane {

bool WolSender::wake(const routing::ResolvedRoute& r, uint64_t now_ms) {
  uint64_t mac = 0;
  for (uint8_t b : r.wol_mac) mac = (mac << 8) | b;
  auto [it, fresh] = last_ms_.try_emplace(mac, 0);
  if (!fresh && now_ms - it->second < 1000) return false;
  if (!fd_) {
    fd_.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    int one = 1;
    if (fd_) setsockopt(fd_.get(), SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
  }
  uint8_t packet[102];
  std::memset(packet, 0xff, 6);
  for (int i = 0; i < 16; ++i) std::memcpy(packet + 6 + 6 * i, r.wol_mac, 6);
  const ssize_t n =
      fd_ ? ::sendto(fd_.get(), packet, sizeof packet, 0,
                     reinterpret_cast<const sockaddr*>(&r.wol_to), sizeof r.wol_to)
          : -1;
  if (n != ssize_t(sizeof packet)) {
    if (now_ms - last_error_ms_ >= 10000) {
      char to[64];
      sockaddr_storage ss{};
      std::memcpy(&ss, &r.wol_to, sizeof r.wol_to);
      RF_WARN("route=%s: Wake-on-LAN packet to %s: %s", r.route.id.c_str(),
              net::format(ss, to, sizeof to), std::strerror(errno));
      last_error_ms_ = now_ms;
    }
    return false;
  }
  it->second = now_ms;
  return true;
}

}  // namespace rf::dataplane
