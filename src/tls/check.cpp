#include "ringfwd/tls/check.hpp"

#include "ringfwd/config/config.hpp"
#include "ringfwd/tls/terminator.hpp"

namespace rf::tls {

std::string check_certificate(const std::string& cert, const std::string& key) {
  global_init();
  auto ctx = ServerContext::load(cert, key, {});
  return ctx ? std::string() : ctx.error().str();
}

void install_certificate_check() { config::set_certificate_check(&check_certificate); }

}  // namespace rf::tls
