#pragma once
// Hooks the TLS layer's certificate check into config validation (ringfwd --check, start,
// Reload, D-Bus changes, ringfwdctl check): a key that does not match its certificate is a
// config problem, not a start failure.
#include <string>

namespace rf::tls {

// "" when cert and key load and match, else the problem (naming the file).
std::string check_certificate(const std::string& cert, const std::string& key);
// config::set_certificate_check(check_certificate).
void install_certificate_check();

}  // namespace rf::tls
