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

// The certificate files of terminate routes, written once per test program: wiki.pem/.key and
// other.pem/.key (the same test pair).
inline const TempDir& tls_dir() {
  static const TempDir dir;
  static const bool written = [] {
    for (const char* name : {"wiki", "other"}) {
      dir.write(std::string(name) + ".pem", kCertPem);
      dir.write(std::string(name) + ".key", kKeyPem);
    }
    return true;
  }();
  (void)written;
  return dir;
}

// Replaces @DIR@ with the certificate directory, so that cases can name real files.
inline std::string with_dir(std::string s) {
  for (size_t at; (at = s.find("@DIR@")) != s.npos;) s.replace(at, 5, tls_dir().path());
  return s;
}

// The SPEC §3 edge example; @DIR@ stands for the directory holding wiki.pem / wiki.key.
inline constexpr const char* kSpecEdgeExample = R"({
  "role": "edge",
  "dataplane": "auto",
  "workers": 0,
  "state_dir": "/var/lib/ringfwd",
  "blocked_ports": [22, 53, 51820],
  "limits": { "max_connections": 100000, "connect_timeout_ms": 5000,
              "idle_timeout_s": 3600, "udp_idle_timeout_s": 30,
              "overlap_ms": 10000, "drain_timeout_s": 300 },
  "gateways": [ { "id": "home", "tunnel_ip": "10.8.0.2", "token_file": "/etc/ringfwd/home.token" } ],
  "sync": { "listen": "10.8.0.1:7946" },
  "routes": [
    { "id": "rdp", "protocol": "tcp", "listen_port": 3389,
      "target": { "gateway": "home", "lan_host": "192.168.2.100", "lan_port": 3389 },
      "wol": { "mac": "aa:bb:cc:dd:ee:ff" } },
    { "id": "ssh-box", "protocol": "tcp", "listen_port": 2222,
      "target": { "gateway": "home", "lan_host": "192.168.2.10", "lan_port": 22 } },
    { "id": "nas", "protocol": "tcp", "listen_port": 443,
      "tls": { "mode": "passthrough", "domains": ["nas.example.com"] },
      "target": { "gateway": "home", "lan_host": "192.168.2.20", "lan_port": 443 } },
    { "id": "wiki", "protocol": "tcp", "listen_port": 443,
      "tls": { "mode": "terminate", "domains": ["wiki.example.com"],
               "cert": "@DIR@/wiki.pem", "key": "@DIR@/wiki.key" },
      "target": { "host": "127.0.0.1", "port": 8080 } },
    { "id": "games", "protocol": "udp", "listen_port": "27015-27020",
      "target": { "gateway": "home", "lan_host": "192.168.2.50", "lan_port": 27015 } },
    { "id": "dns", "protocol": "tcp+udp", "listen": "0.0.0.0", "listen_port": 5353,
      "target": { "host": "192.0.2.53", "port": 53 } }
  ]
})";

}  // namespace rf::test
