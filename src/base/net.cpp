#include "ringfwd/base/net.hpp"

#include <arpa/inet.h>
#include <netdb.h>

#include <cstdio>
#include <cstring>

namespace rf::net {

bool parse_ip(std::string_view ip, uint16_t port, sockaddr_storage& addr, socklen_t& len) {
  char buf[INET6_ADDRSTRLEN + 1];
  if (ip.size() >= sizeof buf) return false;
  std::memcpy(buf, ip.data(), ip.size());
  buf[ip.size()] = 0;
  std::memset(&addr, 0, sizeof addr);
  auto* a4 = reinterpret_cast<sockaddr_in*>(&addr);
  if (inet_pton(AF_INET, buf, &a4->sin_addr) == 1) {
    a4->sin_family = AF_INET;
    a4->sin_port = htons(port);
    len = sizeof(sockaddr_in);
    return true;
  }
  auto* a6 = reinterpret_cast<sockaddr_in6*>(&addr);
  if (inet_pton(AF_INET6, buf, &a6->sin6_addr) == 1) {
    a6->sin6_family = AF_INET6;
    a6->sin6_port = htons(port);
    len = sizeof(sockaddr_in6);
    return true;
  }
  return false;
}

Result<void> resolve(const std::string& host, uint16_t port, sockaddr_storage& addr,
                     socklen_t& len) {
  if (parse_ip(host, port, addr, len)) return {};
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  int rc = getaddrinfo(host.c_str(), nullptr, &hints, &res);
  if (rc != 0 || !res) {
    return Error::msg("cannot resolve " + host + ": " + gai_strerror(rc));
  }
  std::memcpy(&addr, res->ai_addr, res->ai_addrlen);
  len = res->ai_addrlen;
  freeaddrinfo(res);
  set_port(addr, port);
  return {};
}

void set_port(sockaddr_storage& addr, uint16_t port) {
  if (addr.ss_family == AF_INET6)
    reinterpret_cast<sockaddr_in6*>(&addr)->sin6_port = htons(port);
  else
    reinterpret_cast<sockaddr_in*>(&addr)->sin_port = htons(port);
}

uint16_t get_port(const sockaddr_storage& addr) {
  if (addr.ss_family == AF_INET6) return ntohs(reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_port);
  return ntohs(reinterpret_cast<const sockaddr_in*>(&addr)->sin_port);
}

const char* format(const sockaddr_storage& addr, char* buf, size_t len) {
  char ip[INET6_ADDRSTRLEN] = "?";
  if (addr.ss_family == AF_INET6) {
    inet_ntop(AF_INET6, &reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr, ip, sizeof ip);
    std::snprintf(buf, len, "[%s]:%u", ip, get_port(addr));
  } else if (addr.ss_family == AF_INET) {
    inet_ntop(AF_INET, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, ip, sizeof ip);
    std::snprintf(buf, len, "%s:%u", ip, get_port(addr));
  } else {
    std::snprintf(buf, len, "?");
  }
  return buf;
}

std::string to_string(const sockaddr_storage& addr) {
  char buf[64];
  return format(addr, buf, sizeof buf);
}

bool ip_bytes(const sockaddr_storage& addr, uint8_t out[16]) {
  std::memset(out, 0, 16);
  if (addr.ss_family == AF_INET) {
    std::memcpy(out, &reinterpret_cast<const sockaddr_in*>(&addr)->sin_addr, 4);
    return true;
  }
  if (addr.ss_family != AF_INET6) return false;
  const in6_addr& a = reinterpret_cast<const sockaddr_in6*>(&addr)->sin6_addr;
  if (IN6_IS_ADDR_V4MAPPED(&a)) {
    std::memcpy(out, a.s6_addr + 12, 4);
    return true;
  }
  std::memcpy(out, a.s6_addr, 16);
  return false;
}

}  // namespace rf::net
