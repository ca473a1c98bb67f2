#pragma once
// Socket address helpers shared by config, routing and the data path.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <string>
#include <string_view>

#include "ringfwd/base/result.hpp"

namespace rf::net {

// Parses an IPv4/IPv6 literal (no port) into addr with the given port.
bool parse_ip(std::string_view ip, uint16_t port, sockaddr_storage& addr, socklen_t& len);
// Resolves a host name or literal (getaddrinfo; blocking, control thread only).
Result<void> resolve(const std::string& host, uint16_t port, sockaddr_storage& addr, socklen_t& len);
void set_port(sockaddr_storage& addr, uint16_t port);
uint16_t get_port(const sockaddr_storage& addr);
// The address bytes: true with 4 bytes in out for IPv4 (also IPv4-mapped IPv6), false with 16
// for IPv6; other families give 16 zero bytes.
bool ip_bytes(const sockaddr_storage& addr, uint8_t out[16]);
// "1.2.3.4:80" / "[::1]:80" into a caller buffer (no allocation; hot-path logging).
const char* format(const sockaddr_storage& addr, char* buf, size_t len);
std::string to_string(const sockaddr_storage& addr);

}  // namespace rf::net
