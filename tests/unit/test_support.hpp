#pragma once
// Shared by the unit tests: test TLS material and a temporary directory removed with its owner.
#include <stdlib.h>

#include <filesystem>
#include <fstream>
#include <stdexcept>
#include <string>

namespace rf::test {

// A self-signed P-256 certificate for wiki.example.com and its key (test material only).
inline constexpr const char* kCertPem = R"(-----BEGIN CERTIFICATE-----
MIIBjTCCATOgAwIBAgIUGRmobhYDylC730DoszIAqNqHNyUwCgYIKoZIzj0EAwIw
GzEZMBcGA1UEAwwQd2lraS5leGFtcGxlLmNvbTAgFw0yNjExMjEyMjU5MjBaGA8y
MTI2MTAyODIyNTkyMFowGzEZMBcGA1UEAwwQd2lraS5leGFtcGxlLmNvbTBZMBMG
ByqGSM49AgEGCCqGSM49AwEHA0IABH5jGDIXW61dw2A3Wqayw3R8rdBKlSUjMPsh
ooM+BHO5d6fKjiuCm04nwAI/7GBxxvfqpKWforyxpKryFFHH4YCjUzBRMB0GA1Ud
DgQWBBSh8/XH2WDMqCO4DWaZ9dDJnh/9aDAfBgNVHSMEGDAWgBSh8/XH2WDMqCO4
DWaZ9dDJnh/9aDAPBgNVHRMBAf8EBTADAQH/MAoGCCqGSM49BAMCA0gAMEUCIB9y
ACTpa4/NWFxjx3+HBANQe/Ul5IeeTNBn4QGlMfhHAiEA0UNw3gXXnTtNV6AEz0R/
/86Ol9qbGFNAmznXnlmH8CM=
-----END CERTIFICATE-----
)";
inline constexpr const char* kKeyPem = R"(-----BEGIN PRIVATE KEY-----
MIGHAgEAMBMGByqGSM49AgEGCCqGSM49AwEHBG0wawIBAQQgFkYM5WSch1nXNjQk
KuXokYeWtL9TL0Modai7LH7i5RChRANCAAR+YxgyF1utXcNgN1qmssN0fK3QSpUl
IzD7IaKDPgRzuXenyo4rgptOJ8ACP+xgccb36qSln6K8saSq8hRRx+GA
-----END PRIVATE KEY-----
)";

class TempDir {
 public:
  TempDir() {
    char tmpl[] = "/tmp/ringfwd-unit-XXXXXX";
    const char* p = ::mkdtemp(tmpl);
    if (!p) throw std::runtime_error("mkdtemp failed");
    path_ = p;
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path_, ec);
  }
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;

  const std::string& path() const { return path_; }
  std::string write(const std::string& name, const std::string& text) const {
    std::string file = path_ + "/" + name;
    std::ofstream(file, std::ios::binary) << text;
    return file;
  }

 private:
  std::string path_;
};

}  // namespace rf::test
