// Placeholder: replaced by the wolfSSL implementation.
#include "ringfwd/tls/terminator.hpp"
namespace rf::tls {
void global_init() {}
Result<std::shared_ptr<ServerContext>> ServerContext::load(const std::string&, const std::string&,
                                                           const std::vector<std::string>&) {
  return Error::msg("TLS terminate is not implemented yet");
}
ServerContext::~ServerContext() = default;
bool ServerContext::files_changed() const { return false; }
Result<std::unique_ptr<Conn>> Conn::create(std::shared_ptr<ServerContext>, int, std::span<const uint8_t>) {
  return Error::msg("TLS terminate is not implemented yet");
}
Conn::~Conn() = default;
Conn::Io Conn::handshake() { return Io::Error; }
Conn::Io Conn::read(uint8_t*, size_t, size_t&) { return Io::Error; }
Conn::Io Conn::write(const uint8_t*, size_t, size_t&) { return Io::Error; }
void Conn::shutdown() {}
bool Conn::pending() const { return false; }
std::string_view Conn::alpn() const { return {}; }
std::string_view Conn::version() const { return {}; }
std::string_view Conn::cipher() const { return {}; }
}  // namespace rf::tls
