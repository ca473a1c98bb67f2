// Black-box tests of TLS on the data path: SNI routing (passthrough), TLS terminate, and the
// PROXY protocol in and out. Real clients (curl, openssl s_client), real TLS servers behind
// ringfwd (openssl s_server), certificates made at run time by the openssl CLI.
// Every test runs once per dataplane ("splice", "copy", "auto") with two workers.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <future>
#include <map>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace rf::it {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;

// ---------------------------------------------------------------------------------------------
// Tools and child processes.

std::string find_tool(const std::string& name) {
  const char* path = std::getenv("PATH");
  std::string dirs = path ? path : "/usr/bin:/bin";
  size_t at = 0;
  while (at <= dirs.size()) {
    size_t end = dirs.find(':', at);
    if (end == std::string::npos) end = dirs.size();
    std::string p = dirs.substr(at, end - at) + "/" + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
    at = end + 1;
  }
  return "/usr/bin/" + name;
}

const std::string& openssl_bin() {
  static const std::string p = find_tool("openssl");
  return p;
}
const std::string& curl_bin() {
  static const std::string p = find_tool("curl");
  return p;
}

std::string join(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "" : " ") + x;
  return s;
}

bool contains(const std::string& hay, const std::string& needle) {
  return hay.find(needle) != std::string::npos;
}

size_t count_of(const std::string& hay, const std::string& needle) {
  size_t n = 0;
  for (size_t at = hay.find(needle); at != std::string::npos; at = hay.find(needle, at + 1)) ++n;
  return n;
}

// ---------------------------------------------------------------------------------------------
// Certificates: a test CA and server certificates signed by it, made once per test suite.

struct Certs {
  TempDir dir;
  std::string error;  // why generation failed, "" when all is there
  std::string ca() const { return dir.path() + "/ca.pem"; }
  std::string pem(const std::string& n) const { return dir.path() + "/" + n + ".pem"; }
  std::string key(const std::string& n) const { return dir.path() + "/" + n + ".key"; }
};

std::string openssl_run(const std::vector<std::string>& args) {
  std::vector<std::string> argv{openssl_bin()};
  argv.insert(argv.end(), args.begin(), args.end());
  auto r = run_command(argv, seconds(60));
  if (r.exit_code != 0)
    return "`openssl " + join(args) + "` exited " + std::to_string(r.exit_code) + ": " + r.output;
  return "";
}

std::vector<std::string> new_key_args(bool rsa) {
  if (rsa) return {"-newkey", "rsa:2048"};
  return {"-newkey", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1"};
}

// name.pem/name.key: a server certificate for `dns` (subjectAltName), subject CN=cn.
std::string make_cert(const Certs& c, const std::string& name, const std::string& cn,
                      const std::string& dns, bool rsa, int serial) {
  std::vector<std::string> req{"req", "-new", "-nodes", "-keyout", c.key(name),
                               "-out", c.dir.path() + "/" + name + ".csr", "-subj", "/CN=" + cn};
  auto k = new_key_args(rsa);
  req.insert(req.begin() + 2, k.begin(), k.end());
  if (auto e = openssl_run(req); !e.empty()) return e;
  std::string ext = c.dir.write_file(name + ".ext", "subjectAltName=DNS:" + dns +
                                                        "\nbasicConstraints=CA:FALSE\n"
                                                        "extendedKeyUsage=serverAuth\n");
  return openssl_run({"x509", "-req", "-in", c.dir.path() + "/" + name + ".csr", "-CA", c.ca(),
                      "-CAkey", c.dir.path() + "/ca.key", "-set_serial", std::to_string(serial),
                      "-days", "30", "-out", c.pem(name), "-extfile", ext});
}

std::unique_ptr<Certs> make_certs() {
  auto c = std::make_unique<Certs>();
  std::vector<std::string> ca{"req", "-x509", "-new", "-nodes", "-keyout", c->dir.path() + "/ca.key",
                              "-out", c->ca(), "-days", "30", "-subj", "/CN=ringfwd test CA"};
  auto k = new_key_args(false);
  ca.insert(ca.begin() + 3, k.begin(), k.end());
  c->error = openssl_run(ca);
  struct Spec {
    const char *name, *cn, *dns;
    bool rsa;
    int serial;
  };
  // a/b/wild/default: held by the backend s_servers (the LAN devices), never by ringfwd.
  // wiki-*: held by ringfwd for terminate routes; wiki-new replaces wiki-ec on reload.
  const Spec specs[] = {
      {"a", "a.example.com", "a.example.com", false, 11},
      {"b", "b.example.com", "b.example.com", false, 12},
      {"wild", "wild-backend", "*.example.com", false, 13},
      {"default", "default-backend", "default-backend.test", false, 14},
      {"wiki-ec", "wiki.example.com", "wiki.example.com", false, 100},
      {"wiki-rsa", "wiki.example.com", "wiki.example.com", true, 101},
      {"wiki-new", "wiki.example.com", "wiki.example.com", false, 200},
  };
  for (const auto& s : specs) {
    if (!c->error.empty()) break;
    c->error = make_cert(*c, s.name, s.cn, s.dns, s.rsa, s.serial);
  }
  return c;
}

Certs* g_certs = nullptr;

// ---------------------------------------------------------------------------------------------
// Peers.

// `openssl s_server -www` with one of the certificates: a TLS device on the LAN.
class TlsBackend {
 public:
  TlsBackend(const TempDir& dir, const std::string& cert)
      : port_(free_port()),
        child_({openssl_bin(), "s_server", "-accept", "127.0.0.1:" + std::to_string(port_),
                "-cert", g_certs->pem(cert), "-key", g_certs->key(cert), "-www", "-alpn",
                "http/1.1"},
               dir.path() + "/s_server-" + cert + "-" + std::to_string(port_) + ".log") {}
  uint16_t port() const { return port_; }
  // True once s_server listens.
  bool wait_ready(milliseconds timeout = milliseconds(10000)) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (contains(child_.log(), "ACCEPT")) return true;
      if (!child_.running()) return false;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
  }
  std::string log() const { return child_.log(); }

 private:
  uint16_t port_;
  ChildProcess child_;
};

struct HttpRequest {
  std::string head;  // request line + headers
  std::string method, path;
  uint64_t content_length = 0;
  std::string body_start;  // body bytes that came with the head
};

// Reads one HTTP/1.1 request head (bounded); false on EOF/timeout.
bool read_request(int fd, HttpRequest& req, Clock::time_point deadline) {
  std::string buf;
  char tmp[4096];
  for (;;) {
    auto end = buf.find("\r\n\r\n");
    if (end != std::string::npos) {
      req.head = buf.substr(0, end + 4);
      req.body_start = buf.substr(end + 4);
      break;
    }
    if (buf.size() > 65536) return false;
    pollfd pf{fd, POLLIN, 0};
    if (Clock::now() >= deadline) return false;
    if (::poll(&pf, 1, 100) <= 0) continue;
    ssize_t n = ::recv(fd, tmp, sizeof tmp, 0);
    if (n <= 0) return false;
    buf.append(tmp, size_t(n));
  }
  auto sp1 = req.head.find(' ');
  auto sp2 = req.head.find(' ', sp1 + 1);
  req.method = req.head.substr(0, sp1);
  req.path = req.head.substr(sp1 + 1, sp2 - sp1 - 1);
  std::string lower = req.head;
  for (auto& ch : lower) ch = char(std::tolower(static_cast<unsigned char>(ch)));
  auto cl = lower.find("\r\ncontent-length:");
  if (cl != std::string::npos) req.content_length = std::strtoull(lower.c_str() + cl + 17, nullptr, 10);
  return true;
}

constexpr uint64_t kBigSeed = 4242;
constexpr uint64_t kUpSeed = 4343;

// The plain HTTP/1.1 service behind terminate routes:
//   GET /big?N   -> N bytes of pattern kBigSeed
//   POST ...     -> reads Content-Length bytes (checked against pattern kUpSeed),
//                   answers "count=N mismatch=M"
//   anything else -> "plain-backend"
class HttpBackend {
 public:
  HttpBackend() : server_(free_port(), [](int fd) { handle(fd); }) {}
  uint16_t port() const { return server_.port(); }
  uint64_t accepted() const { return server_.accepted(); }

 private:
  static void handle(int fd) {
    auto deadline = Clock::now() + seconds(120);
    HttpRequest req;
    if (!read_request(fd, req, deadline)) return;
    std::string body;
    if (req.method == "POST") {
      uint64_t got = req.body_start.size();
      int64_t bad = check_pattern(kUpSeed, 0, reinterpret_cast<const uint8_t*>(req.body_start.data()),
                                  req.body_start.size());
      std::vector<uint8_t> buf(256 * 1024);
      while (got < req.content_length && Clock::now() < deadline) {
        ssize_t n = ::recv(fd, buf.data(), buf.size(), 0);
        if (n <= 0) break;
        if (bad < 0) bad = check_pattern(kUpSeed, got, buf.data(), size_t(n));
        got += uint64_t(n);
      }
      body = "count=" + std::to_string(got) + " mismatch=" + std::to_string(bad);
    } else if (req.path.rfind("/big?", 0) == 0) {
      uint64_t n = std::strtoull(req.path.c_str() + 5, nullptr, 10);
      std::string head = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(n) +
                         "\r\nConnection: close\r\n\r\n";
      if (!send_all(fd, head, deadline)) return;
      std::vector<uint8_t> buf(256 * 1024);
      for (uint64_t off = 0; off < n;) {
        size_t k = size_t(std::min<uint64_t>(buf.size(), n - off));
        fill_pattern(kBigSeed, off, buf.data(), k);
        if (!send_all(fd, buf.data(), k, deadline)) return;
        off += k;
      }
      ::shutdown(fd, SHUT_WR);
      read_to_end(fd, Clock::now() + seconds(10));
      return;
    } else {
      body = "plain-backend";
    }
    std::string resp = "HTTP/1.1 200 OK\r\nContent-Length: " + std::to_string(body.size()) +
                       "\r\nConnection: close\r\n\r\n" + body;
    send_all(fd, resp, deadline);
    ::shutdown(fd, SHUT_WR);
    read_to_end(fd, Clock::now() + seconds(5));
  }
  ThreadServer server_;
};

// Records everything each connection sends until EOF (bounded), in order of completion.
class Recorder {
 public:
  Recorder() : server_(free_port(), [this](int fd) { handle(fd); }) {}
  uint16_t port() const { return server_.port(); }
  uint64_t accepted() const { return server_.accepted(); }
  // The n-th (0-based) recorded connection's bytes.
  std::optional<std::string> wait(size_t n, milliseconds timeout) {
    std::unique_lock lk(mu_);
    if (!cv_.wait_for(lk, timeout, [&] { return got_.size() > n; })) return std::nullopt;
    return got_[n];
  }

 private:
  void handle(int fd) {
    auto r = read_to_end(fd, Clock::now() + seconds(5));
    {
      std::lock_guard lk(mu_);
      got_.push_back(r.data);
    }
    cv_.notify_all();
  }
  std::mutex mu_;
  std::condition_variable cv_;
  std::vector<std::string> got_;
  ThreadServer server_;  // last: its threads use the members above
};

// A PROXY v2 header as a backend sees it.
struct ProxyV2 {
  uint8_t ver_cmd = 0, fam = 0;
  std::string src, dst;
  uint16_t sport = 0, dport = 0;
  std::map<uint8_t, std::string> tlvs;
  std::string error;
};

const std::string kV2Sig("\x0D\x0A\x0D\x0A\x00\x0D\x0A\x51\x55\x49\x54\x0A", 12);

ProxyV2 read_proxy_v2(int fd, Clock::time_point deadline) {
  ProxyV2 p;
  uint8_t h[16];
  if (!recv_exact(fd, h, sizeof h, deadline)) {
    p.error = "no 16-byte header";
    return p;
  }
  if (std::memcmp(h, kV2Sig.data(), 12) != 0) {
    p.error = "bad signature";
    return p;
  }
  p.ver_cmd = h[12];
  p.fam = h[13];
  size_t len = size_t(h[14]) << 8 | h[15];
  std::string rest(len, '\0');
  if (!recv_exact(fd, rest.data(), len, deadline)) {
    p.error = "short header body";
    return p;
  }
  size_t at = 0;
  if (p.fam == 0x11 && len >= 12) {
    char a[INET_ADDRSTRLEN];
    inet_ntop(AF_INET, rest.data(), a, sizeof a);
    p.src = a;
    inet_ntop(AF_INET, rest.data() + 4, a, sizeof a);
    p.dst = a;
    p.sport = uint16_t(uint8_t(rest[8]) << 8 | uint8_t(rest[9]));
    p.dport = uint16_t(uint8_t(rest[10]) << 8 | uint8_t(rest[11]));
    at = 12;
  }
  while (at + 3 <= len) {
    uint8_t type = uint8_t(rest[at]);
    size_t l = size_t(uint8_t(rest[at + 1])) << 8 | uint8_t(rest[at + 2]);
    if (at + 3 + l > len) {
      p.error = "TLV runs past the header";
      break;
    }
    p.tlvs[type] = rest.substr(at + 3, l);
    at += 3 + l;
  }
  return p;
}

std::string v2_header(uint8_t cmd, const char* src, const char* dst, uint16_t sport,
                      uint16_t dport) {
  std::string h = kV2Sig;
  h += char(0x20 | cmd);
  h += char(0x11);
  h += '\0';
  h += char(12);
  in_addr a{};
  inet_pton(AF_INET, src, &a);
  h.append(reinterpret_cast<const char*>(&a), 4);
  inet_pton(AF_INET, dst, &a);
  h.append(reinterpret_cast<const char*>(&a), 4);
  h += char(sport >> 8);
  h += char(sport & 0xff);
  h += char(dport >> 8);
  h += char(dport & 0xff);
  return h;
}

uint16_t local_port(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// ---------------------------------------------------------------------------------------------
// A relay between a real TLS client (openssl s_client) and ringfwd: the test holds the
// ClientHello in its hands and sends it however it likes.

struct Relay {
  Fd listener;
  uint16_t port = 0;
  std::future<CommandResult> client;
  Fd conn;                 // from s_client
  std::string hello;       // the stream bytes (TLS records) that carried the ClientHello
  std::string handshake;   // the ClientHello handshake message, reassembled
  std::string after;       // bytes s_client sent after the hello, if any
};

// Starts `openssl s_client -connect 127.0.0.1:RELAY extra...` and reads its ClientHello.
std::string start_relay(Relay& r, const std::vector<std::string>& extra) {
  r.port = free_port();
  r.listener = listen_tcp(r.port, 4);
  std::vector<std::string> argv{openssl_bin(), "s_client", "-connect",
                                "127.0.0.1:" + std::to_string(r.port)};
  argv.insert(argv.end(), extra.begin(), extra.end());
  r.client = std::async(std::launch::async, [argv] { return run_command(argv, seconds(15)); });
  pollfd pf{r.listener.get(), POLLIN, 0};
  if (::poll(&pf, 1, 10000) <= 0) return "s_client did not connect to the relay";
  r.conn = Fd(::accept4(r.listener.get(), nullptr, nullptr, SOCK_CLOEXEC));
  if (!r.conn) return "accept failed";
  std::string buf;
  auto deadline = Clock::now() + seconds(10);
  size_t off = 0;
  for (;;) {
    while (off + 5 <= buf.size()) {
      if (uint8_t(buf[off]) != 22) return "s_client sent a non-handshake record first";
      size_t len = size_t(uint8_t(buf[off + 3])) << 8 | uint8_t(buf[off + 4]);
      if (off + 5 + len > buf.size()) break;
      r.handshake += buf.substr(off + 5, len);
      off += 5 + len;
      if (r.handshake.size() >= 4) {
        size_t hl = size_t(uint8_t(r.handshake[1])) << 16 | size_t(uint8_t(r.handshake[2])) << 8 |
                    uint8_t(r.handshake[3]);
        if (r.handshake.size() >= 4 + hl) {
          r.hello = buf.substr(0, off);
          r.after = buf.substr(off);
          return "";
        }
      }
    }
    char tmp[4096];
    ssize_t n = 0;
    if (!recv_exact(r.conn.get(), tmp, 1, deadline)) return "no complete ClientHello from s_client";
    buf += tmp[0];
    n = ::recv(r.conn.get(), tmp, sizeof tmp, MSG_DONTWAIT);
    if (n > 0) buf.append(tmp, size_t(n));
  }
}

// Moves bytes both ways until both sides ended (or one failed, or the timeout).
void pump(int a, int b, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  bool open[2] = {true, true};  // a->b, b->a
  int fds[2] = {a, b};
  std::vector<char> buf(64 * 1024);
  while ((open[0] || open[1]) && Clock::now() < deadline) {
    pollfd pf[2] = {{a, short(open[0] ? POLLIN : 0), 0}, {b, short(open[1] ? POLLIN : 0), 0}};
    if (::poll(pf, 2, 100) <= 0) continue;
    for (int i = 0; i < 2; ++i) {
      if (!open[i] || !(pf[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      ssize_t n = ::recv(fds[i], buf.data(), buf.size(), MSG_DONTWAIT);
      if (n > 0) {
        if (!send_all(fds[1 - i], buf.data(), size_t(n), deadline)) return;
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) continue;
      if (n < 0) return;  // reset: the other side learns it when the fds close
      open[i] = false;
      ::shutdown(fds[1 - i], SHUT_WR);
    }
  }
}

void set_nodelay(int fd) {
  int one = 1;
  setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
}

// The TLS records of `handshake` re-framed into records of at most `size` bytes each.
std::string reframe(const std::string& handshake, size_t size) {
  std::string out;
  for (size_t at = 0; at < handshake.size(); at += size) {
    size_t n = std::min(size, handshake.size() - at);
    out += char(22);
    out += char(3);
    out += char(1);
    out += char(n >> 8);
    out += char(n & 0xff);
    out += handshake.substr(at, n);
  }
  return out;
}

// The ClientHello handshake message with a padding extension (type 21) of `pad` bytes added
// at the end of its extensions: a large but well-formed hello (the transcript changes, so the
// handshake itself cannot complete; the server's first answer proves where it went).
std::string pad_hello(const std::string& hs, size_t pad) {
  auto u16 = [&](size_t at) { return size_t(uint8_t(hs[at])) << 8 | uint8_t(hs[at + 1]); };
  size_t at = 4 + 2 + 32;                // type+len, version, random
  at += 1 + uint8_t(hs[at]);             // session id
  at += 2 + u16(at);                     // cipher suites
  at += 1 + uint8_t(hs[at]);             // compression methods
  const size_t ext_len_at = at;
  const size_t ext_len = u16(at) + 4 + pad;
  std::string out = hs;
  out += char(0);
  out += char(21);
  out += char(pad >> 8);
  out += char(pad & 0xff);
  out += std::string(pad, '\0');
  out[ext_len_at] = char(ext_len >> 8);
  out[ext_len_at + 1] = char(ext_len & 0xff);
  const size_t body = out.size() - 4;
  out[1] = char(body >> 16);
  out[2] = char((body >> 8) & 0xff);
  out[3] = char(body & 0xff);
  return out;
}

std::string json_list(const std::vector<std::string>& v) {
  std::string s;
  for (const auto& x : v) s += (s.empty() ? "\"" : ",\"") + x + "\"";
  return "[" + s + "]";
}

// ---------------------------------------------------------------------------------------------
// The fixture.

class Tls : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() {
    prepare_process();
    if (!g_certs) g_certs = make_certs().release();
  }
  static void TearDownTestSuite() {
    delete g_certs;  // removes the certificate directory
    g_certs = nullptr;
  }

  void SetUp() override {
    if (GetParam() == "sockmap") {
      std::string why = sockmap_unavailable();
      if (!why.empty()) GTEST_SKIP() << why;
    }
    ASSERT_TRUE(g_certs);
    ASSERT_EQ(g_certs->error, "") << "certificate generation failed";
  }

  void TearDown() override {
    if (HasFailure() && !d_.log_path().empty())
      std::cerr << "--- daemon log (" << GetParam() << ") ---\n"
                << d_.log_tail() << "--- end ---\n";
  }

  std::string config(const std::vector<std::string>& routes) const {
    std::string r;
    for (const auto& x : routes) r += (r.empty() ? "" : ",") + x;
    return R"({"role":"edge","dataplane":")" + GetParam() + R"(","workers":2,"state_dir":")" +
           dir_.path() + R"(","routes":[)" + r + "]}";
  }

  // A route on 127.0.0.1:port. tls: the "tls" object's members ("" = no tls object).
  static std::string route(const std::string& id, uint16_t port, uint16_t target,
                           const std::string& tls, const std::string& extra = "") {
    std::string r = R"({"id":")" + id + R"(","protocol":"tcp","listen":"127.0.0.1","listen_port":)" +
                    std::to_string(port) + R"(,"target":{"host":"127.0.0.1","port":)" +
                    std::to_string(target) + "}";
    if (!tls.empty()) r += R"(,"tls":{)" + tls + "}";
    return r + extra + "}";
  }
  static std::string passthrough(const std::vector<std::string>& domains,
                                 const std::string& more = "") {
    return R"("mode":"passthrough","domains":)" + json_list(domains) + more;
  }
  static std::string terminate_files(const std::vector<std::string>& domains,
                                     const std::string& cert, const std::string& key,
                                     const std::string& more = "") {
    return R"("mode":"terminate","domains":)" + json_list(domains) + R"(,"cert":")" + cert +
           R"(","key":")" + key + "\"" + more;
  }
  static std::string terminate(const std::vector<std::string>& domains, const std::string& name,
                               const std::string& more = "") {
    return terminate_files(domains, g_certs->pem(name), g_certs->key(name), more);
  }

  static CommandResult curl(const std::vector<std::string>& args,
                            milliseconds timeout = milliseconds(15000)) {
    std::vector<std::string> argv{curl_bin(), "-sS", "--http1.1", "--max-time",
                                  std::to_string(timeout.count() / 1000 - 2), "--cacert",
                                  g_certs->ca()};
    argv.insert(argv.end(), args.begin(), args.end());
    return run_command(argv, timeout);
  }
  static CommandResult curl_get(const std::string& host, uint16_t port,
                                const std::vector<std::string>& extra = {},
                                const std::string& path = "/") {
    std::vector<std::string> a{"--resolve", host + ":" + std::to_string(port) + ":127.0.0.1",
                               "https://" + host + ":" + std::to_string(port) + path};
    a.insert(a.end(), extra.begin(), extra.end());
    return curl(a);
  }
  static CommandResult s_client(uint16_t port, const std::string& name,
                                const std::vector<std::string>& extra = {}) {
    // name "": no SNI at all (-noservername).
    std::vector<std::string> argv{openssl_bin(), "s_client", "-connect",
                                  "127.0.0.1:" + std::to_string(port), "-CAfile", g_certs->ca()};
    if (name.empty())
      argv.push_back("-noservername");
    else
      argv.insert(argv.end(), {"-servername", name});
    argv.insert(argv.end(), extra.begin(), extra.end());
    return run_command(argv, seconds(10));
  }
  // The serial of the certificate the server at port shows for `name` ("serial=64").
  static std::string serial_of(uint16_t port, const std::string& name) {
    auto r = run_command({"/bin/sh", "-c",
                          openssl_bin() + " s_client -connect 127.0.0.1:" + std::to_string(port) +
                              " -servername " + name + " </dev/null 2>/dev/null | " +
                              openssl_bin() + " x509 -noout -serial"},
                         seconds(10));
    std::string s = r.output;
    while (!s.empty() && (s.back() == '\n' || s.back() == '\r')) s.pop_back();
    return s;
  }

  // A real ClientHello from s_client for `name` (the s_client connection is dropped).
  static std::string real_hello(const std::string& name, const std::vector<std::string>& extra = {}) {
    Relay r;
    std::vector<std::string> args{"-servername", name};
    args.insert(args.end(), extra.begin(), extra.end());
    std::string e = start_relay(r, args);
    EXPECT_EQ(e, "");
    r.conn.reset();
    if (r.client.valid()) r.client.wait_for(seconds(15));
    return r.hello;
  }

  // Connects, sends `bytes` (the send may fail once the daemon closed), waits until closed.
  struct Closed {
    CloseWait w;
    bool sent = false;
  };
  static Closed send_expect_close(uint16_t port, const std::string& bytes, bool shut_wr,
                                  milliseconds timeout) {
    Closed c;
    auto conn = connect_tcp(port);
    EXPECT_EQ(conn.err, 0) << std::strerror(conn.err);
    if (conn.err) return c;
    auto t0 = Clock::now();
    c.sent = send_all(conn.fd.get(), bytes, t0 + seconds(2));
    if (shut_wr) ::shutdown(conn.fd.get(), SHUT_WR);
    c.w = wait_closed(conn.fd.get(), t0, timeout);
    return c;
  }

  bool wait_log(const std::string& what, milliseconds timeout = milliseconds(3000)) {
    auto deadline = Clock::now() + timeout;
    while (Clock::now() < deadline) {
      if (contains(d_.log(), what)) return true;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
  }

  TempDir dir_;
  Daemon d_;
};


#define START_BACKEND(b) ASSERT_TRUE((b).wait_ready()) << "s_server did not start: " << (b).log()

bool closed_end(End e) { return e == End::Eof || e == End::Reset; }

// ---------------------------------------------------------------------------------------------
// 1. Passthrough and terminate side by side on one port, told apart by SNI.

TEST_P(Tls, PassthroughAndTerminateShareOnePort) {
  TlsBackend a(dir_, "a"), b(dir_, "b");
  START_BACKEND(a);
  START_BACKEND(b);
  HttpBackend plain;
  const uint16_t lp = free_port();
  IT_START_DAEMON(config({route("a", lp, a.port(), passthrough({"a.example.com"})),
                       route("b", lp, b.port(), passthrough({"b.example.com"})),
                       route("wiki", lp, plain.port(), terminate({"wiki.example.com"}, "wiki-ec"))}));

  // curl verifies the backend's own certificate and name: nothing was re-encrypted on the way.
  for (const char* host : {"a.example.com", "b.example.com"}) {
    auto r = curl_get(host, lp);
    EXPECT_EQ(r.exit_code, 0) << host << ": " << r.output;
    EXPECT_TRUE(contains(r.output, "s_server")) << host << ": " << r.output;
  }
  auto w = curl_get("wiki.example.com", lp);
  EXPECT_EQ(w.exit_code, 0) << w.output;
  EXPECT_EQ(w.output, "plain-backend");

  auto s = s_client(lp, "a.example.com",
                    {"-verify_hostname", "a.example.com", "-verify_return_error"});
  EXPECT_EQ(s.exit_code, 0) << s.output;
  EXPECT_TRUE(contains(s.output, "Verify return code: 0 (ok)")) << s.output;
  EXPECT_TRUE(contains(s.output, "CN = a.example.com")) << s.output;

  // A name no route serves: closed before any handshake byte comes back.
  std::string hello = real_hello("nobody.example.org");
  ASSERT_FALSE(hello.empty());
  auto c = send_expect_close(lp, hello, false, seconds(2));
  EXPECT_TRUE(closed_end(c.w.end)) << "not closed: " << to_string(c.w.end);
  EXPECT_EQ(c.w.bytes, 0u) << "the daemon answered a hello for a name no route serves";
  EXPECT_LT(c.w.ms, 1000);
  auto n = s_client(lp, "nobody.example.org");
  EXPECT_NE(n.exit_code, 0) << n.output;
  EXPECT_FALSE(contains(n.output, "Server certificate")) << n.output;
  EXPECT_TRUE(wait_log("closed: no route for (server name \"nobody.example.org\")")) << d_.log_tail();
  auto nosni = s_client(lp, "");
  EXPECT_NE(nosni.exit_code, 0) << nosni.output;
  EXPECT_FALSE(contains(nosni.output, "Server certificate")) << nosni.output;
  EXPECT_TRUE(wait_log("closed: no server name and no default route")) << d_.log_tail();
  EXPECT_TRUE(contains(d_.log(), "port=127.0.0.1:" + std::to_string(lp) + " client=127.0.0.1"))
      << d_.log_tail();
  EXPECT_TRUE(d_.running());
}

// 2. Exact names win over a wildcard; a wildcard matches one label; the default takes the rest.
TEST_P(Tls, WildcardExactAndDefault) {
  TlsBackend a(dir_, "a"), wild(dir_, "wild"), def(dir_, "default");
  START_BACKEND(a);
  START_BACKEND(wild);
  START_BACKEND(def);
  const uint16_t lp = free_port();
  IT_START_DAEMON(config({route("wild", lp, wild.port(), passthrough({"*.example.com"})),
                       route("exact", lp, a.port(), passthrough({"a.example.com"})),
                       route("fallback", lp, def.port(), R"("mode":"passthrough","default":true)")}));

  const std::pair<const char*, const char*> cases[] = {
      {"x.example.com", "CN = wild-backend"},
      {"a.example.com", "CN = a.example.com"},
      {"x.y.example.com", "CN = default-backend"},
      {"other.test", "CN = default-backend"},
      {"example.com", "CN = default-backend"},
  };
  for (auto [name, subject] : cases) {
    auto r = s_client(lp, name);
    EXPECT_TRUE(contains(r.output, "subject=" + std::string(subject))) << name << ":\n" << r.output;
  }
  // Names are case-insensitive and may end with a dot; no SNI at all goes to the default.
  const std::pair<const char*, const char*> spellings[] = {
      {"A.Example.COM", "CN = a.example.com"},
      {"a.example.com.", "CN = a.example.com"},
      {"X.EXAMPLE.com", "CN = wild-backend"},
  };
  for (auto [name, subject] : spellings) {
    auto r = s_client(lp, name);
    EXPECT_TRUE(contains(r.output, "subject=" + std::string(subject))) << name << ":\n" << r.output;
  }
  auto nosni = s_client(lp, "");
  EXPECT_TRUE(contains(nosni.output, "subject=CN = default-backend")) << nosni.output;

  // The wildcard backend's certificate really is for *.example.com: verification by name works.
  auto v = s_client(lp, "x.example.com", {"-verify_hostname", "x.example.com", "-verify_return_error"});
  EXPECT_EQ(v.exit_code, 0) << v.output;
  EXPECT_TRUE(contains(v.output, "Verify return code: 0 (ok)")) << v.output;
}

// 3. A ClientHello one byte per TCP segment, and one re-framed into many small TLS records.
TEST_P(Tls, ClientHelloSplitAnyWay) {
  TlsBackend a(dir_, "a"), b(dir_, "b");
  START_BACKEND(a);
  START_BACKEND(b);
  const uint16_t lp = free_port();
  // b takes what does not say a.example.com: a hello read wrong goes there and fails to verify.
  IT_START_DAEMON(config({route("b", lp, b.port(), R"("mode":"passthrough","default":true)"),
                       route("a", lp, a.port(), passthrough({"a.example.com"}))}));
  const std::vector<std::string> args{"-servername", "a.example.com", "-CAfile", g_certs->ca(),
                                      "-verify_return_error", "-verify_hostname", "a.example.com"};
  {
    Relay r;
    ASSERT_EQ(start_relay(r, args), "");
    auto up = connect_tcp(lp);
    ASSERT_EQ(up.err, 0);
    set_nodelay(up.fd.get());
    auto t0 = Clock::now();
    for (char ch : r.hello + r.after) {
      ASSERT_EQ(::send(up.fd.get(), &ch, 1, MSG_NOSIGNAL), 1) << "the daemon closed mid-hello";
      std::this_thread::sleep_for(milliseconds(1));
    }
    std::cerr << "[ info ] " << r.hello.size() << "-byte ClientHello sent one byte per segment in "
              << ms_since(t0) << " ms\n";
    pump(r.conn.get(), up.fd.get(), seconds(10));
    ASSERT_EQ(r.client.wait_for(seconds(15)), std::future_status::ready);
    auto res = r.client.get();
    EXPECT_EQ(res.exit_code, 0) << res.output;
    EXPECT_TRUE(contains(res.output, "Verify return code: 0 (ok)")) << res.output;
  }
  {
    Relay r;
    ASSERT_EQ(start_relay(r, args), "");
    std::string framed = reframe(r.handshake, 50);
    ASSERT_GT(framed.size(), r.hello.size() + 5 * 4) << "the hello should need several records";
    auto up = connect_tcp(lp);
    ASSERT_EQ(up.err, 0);
    ASSERT_TRUE(send_all(up.fd.get(), framed + r.after, Clock::now() + seconds(2)));
    // Same handshake bytes, new record boundaries: the transcript is unchanged, so the
    // backend's handshake with s_client completes.
    pump(r.conn.get(), up.fd.get(), seconds(10));
    ASSERT_EQ(r.client.wait_for(seconds(15)), std::future_status::ready);
    auto res = r.client.get();
    EXPECT_EQ(res.exit_code, 0) << res.output;
    EXPECT_TRUE(contains(res.output, "Verify return code: 0 (ok)")) << res.output;
  }
}

// 3b. Large hellos (post-quantum key shares make them several KiB): up to the 16 KiB bound
// they are routed by their SNI whatever the record framing; the backend answers them.
TEST_P(Tls, LargeClientHelloIsRouted) {
  TlsBackend a(dir_, "a");
  START_BACKEND(a);
  const uint16_t lp = free_port();
  IT_START_DAEMON(config({route("a", lp, a.port(), passthrough({"a.example.com"}))}));
  Relay r;
  ASSERT_EQ(start_relay(r, {"-servername", "a.example.com"}), "");
  r.conn.reset();
  for (auto [pad, record] : {std::pair<size_t, size_t>{4000, 16384}, {9000, 4096}, {15000, 16384},
                             {15800, 1000}, {16200, 1000}}) {
    const std::string hs = pad_hello(r.handshake, pad);
    const std::string framed = reframe(hs, record);
    auto c = connect_tcp(lp);
    ASSERT_EQ(c.err, 0);
    ASSERT_TRUE(send_all(c.fd.get(), framed, Clock::now() + seconds(2)));
    uint8_t first[5] = {};
    const bool answered = recv_exact(c.fd.get(), first, sizeof first, Clock::now() + seconds(3));
    if (framed.size() <= 16384) {
      EXPECT_TRUE(answered) << framed.size() << "-byte hello (" << record
                            << "-byte records): no answer from the backend";
      EXPECT_EQ(first[0], 22) << "the backend's first record should be its ServerHello";
    } else {
      // Over the daemon's bound: refused, but it must say so in the log, not hang.
      EXPECT_FALSE(answered) << framed.size() << "-byte hello was forwarded";
      EXPECT_TRUE(wait_log("too large")) << d_.log_tail();
    }
  }
  if (r.client.valid()) r.client.wait_for(seconds(15));
}

// 4. What is not a usable ClientHello is closed, quickly, with a reason in the log.
TEST_P(Tls, BadHellosAreClosed) {
  TlsBackend a(dir_, "a");
  START_BACKEND(a);
  const uint16_t lp = free_port();
  IT_START_DAEMON(config({route("a", lp, a.port(),
                             passthrough({"a.example.com"}, R"(,"hello_timeout_ms":500)"))}));
  const std::string hello = real_hello("a.example.com");
  ASSERT_GT(hello.size(), 120u);

  auto http = send_expect_close(lp, "GET / HTTP/1.1\r\n\r\n", false, seconds(2));
  EXPECT_TRUE(closed_end(http.w.end)) << "HTTP: " << to_string(http.w.end);
  EXPECT_LT(http.w.ms, 1000) << "HTTP";
  EXPECT_EQ(http.w.bytes, 0u);

  auto trunc = send_expect_close(lp, hello.substr(0, 40), true, seconds(2));
  EXPECT_TRUE(closed_end(trunc.w.end)) << "truncated: " << to_string(trunc.w.end);
  EXPECT_LT(trunc.w.ms, 1000) << "truncated";

  auto silent = send_expect_close(lp, hello.substr(0, 100), false, seconds(3));
  EXPECT_TRUE(closed_end(silent.w.end)) << "silent: " << to_string(silent.w.end);
  EXPECT_GE(silent.w.ms, 400) << "closed before tls.hello_timeout_ms";
  EXPECT_LE(silent.w.ms, 2000) << "tls.hello_timeout_ms 500 not enforced";

  // Handshake length 0xffff, 20 KiB of it: more than any real hello.
  std::string big;
  const size_t total = 20 * 1024;
  std::string hs = std::string("\x01\x00\xff\xff", 4) + std::string(total - 4, '\0');
  for (size_t i = 4; i < hs.size(); ++i) hs[i] = char(i * 7);
  for (size_t at = 0; at < hs.size(); at += 16384) {
    size_t n = std::min<size_t>(16384, hs.size() - at);
    big += std::string("\x16\x03\x01", 3) + char(n >> 8) + char(n & 0xff) + hs.substr(at, n);
  }
  auto over = send_expect_close(lp, big, false, seconds(3));
  EXPECT_TRUE(closed_end(over.w.end)) << "oversized: " << to_string(over.w.end);
  EXPECT_LT(over.w.ms, 1000) << "oversized hello: should not need the hello timeout";

  std::string garbage = pattern_string(99, 4096);
  garbage[0] = '\x8f';  // not a handshake record, whatever the seed
  auto junk = send_expect_close(lp, garbage, false, seconds(2));
  EXPECT_TRUE(closed_end(junk.w.end)) << "garbage: " << to_string(junk.w.end);
  EXPECT_LT(junk.w.ms, 1000) << "garbage";
  EXPECT_EQ(junk.w.bytes, 0u);

  ASSERT_TRUE(d_.running());
  auto r = curl_get("a.example.com", lp);
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_TRUE(contains(r.output, "s_server")) << r.output;

  const std::string log = d_.log();
  const std::string port = "port=127.0.0.1:" + std::to_string(lp) + " ";
  EXPECT_GE(count_of(log, port), 5u) << log;
  EXPECT_TRUE(contains(log, "closed: not TLS")) << log;
  EXPECT_TRUE(contains(log, "closed: client closed before the route was known")) << log;
  EXPECT_TRUE(contains(log, "tls.hello_timeout_ms")) << log;
  EXPECT_TRUE(contains(log, "too large")) << log;

  // Counted too: the five bad clients (the good curl is not) in the unrouted counter.
  const size_t lines = count_of(d_.log(), "stats unrouted rejected=");
  d_.signal(SIGUSR1);
  for (auto t0 = Clock::now(); Clock::now() - t0 < seconds(3);) {
    if (count_of(d_.log(), "stats unrouted rejected=") > lines) break;
    std::this_thread::sleep_for(milliseconds(20));
  }
  const std::string after = d_.log();
  const size_t at = after.rfind("stats unrouted rejected=");
  ASSERT_NE(at, std::string::npos) << after;
  EXPECT_EQ(std::stoul(after.substr(at + std::strlen("stats unrouted rejected="))), 5u) << after;
}

// 5. PROXY headers out, checked byte for byte.
TEST_P(Tls, ProxyProtocolOut) {
  Recorder rec;
  const uint16_t p1 = free_port(), p2 = free_port();
  IT_START_DAEMON(config({route("v1", p1, rec.port(), "", R"(,"proxy_protocol":"v1")"),
                       route("v2", p2, rec.port(), "", R"(,"proxy_protocol":"v2")")}));
  auto exchange = [&](uint16_t port, uint16_t& client_port) {
    auto c = connect_tcp(port);
    EXPECT_EQ(c.err, 0);
    if (c.err) return;
    client_port = local_port(c.fd.get());
    EXPECT_TRUE(send_all(c.fd.get(), "hello", Clock::now() + seconds(2)));
    ::shutdown(c.fd.get(), SHUT_WR);
    read_to_end(c.fd.get(), Clock::now() + seconds(5));
  };
  uint16_t cp = 0;
  exchange(p1, cp);
  auto got = rec.wait(0, seconds(5));
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, "PROXY TCP4 127.0.0.1 127.0.0.1 " + std::to_string(cp) + " " +
                      std::to_string(p1) + "\r\nhello");

  exchange(p2, cp);
  got = rec.wait(1, seconds(5));
  ASSERT_TRUE(got);
  std::string want = v2_header(1, "127.0.0.1", "127.0.0.1", cp, p2) + "hello";
  EXPECT_EQ(*got, want) << "v2 header differs (size " << got->size() << " vs " << want.size() << ")";
}

TEST_P(Tls, ProxyProtocolV2TlvsPassthroughAndTerminate) {
  std::mutex mu;
  std::vector<ProxyV2> seen;
  // Passthrough: the backend reads the header only, then closes (the handshake never ends).
  ThreadServer header_only(free_port(), [&](int fd) {
    auto p = read_proxy_v2(fd, Clock::now() + seconds(5));
    std::lock_guard lk(mu);
    seen.push_back(p);
  });
  // Terminate: the backend answers with the ALPN it was told.
  ThreadServer alpn_echo(free_port(), [&](int fd) {
    auto p = read_proxy_v2(fd, Clock::now() + seconds(5));
    {
      std::lock_guard lk(mu);
      seen.push_back(p);
    }
    send_all(fd, "alpn=" + p.tlvs[0x01] + "\n", Clock::now() + seconds(5));
    ::shutdown(fd, SHUT_WR);
    read_to_end(fd, Clock::now() + seconds(5));
  });
  const uint16_t lp = free_port();
  IT_START_DAEMON(config(
      {route("a", lp, header_only.port(), passthrough({"a.example.com"}), R"(,"proxy_protocol":"v2")"),
       route("wiki", lp, alpn_echo.port(),
             terminate({"wiki.example.com"}, "wiki-ec", R"(,"alpn":["h2","http/1.1"])"),
             R"(,"proxy_protocol":"v2")")}));

  s_client(lp, "a.example.com", {"-alpn", "h2,http/1.1"});
  ProxyV2 p;
  {
    auto deadline = Clock::now() + seconds(5);
    while (Clock::now() < deadline) {
      {
        std::lock_guard lk(mu);
        if (!seen.empty()) break;
      }
      std::this_thread::sleep_for(milliseconds(10));
    }
    std::lock_guard lk(mu);
    ASSERT_EQ(seen.size(), 1u) << "the passthrough backend got no PROXY header";
    p = seen[0];
  }
  EXPECT_EQ(p.error, "");
  EXPECT_EQ(p.ver_cmd, 0x21);
  EXPECT_EQ(p.fam, 0x11);
  EXPECT_EQ(p.src, "127.0.0.1");
  EXPECT_EQ(p.dst, "127.0.0.1");
  EXPECT_EQ(p.dport, lp);
  EXPECT_EQ(p.tlvs[0x02], "a.example.com");
  EXPECT_EQ(p.tlvs[0x01], "h2") << "PP2_TYPE_ALPN: the client's first offered protocol";

  auto r = s_client(lp, "wiki.example.com",
                    {"-alpn", "h2", "-quiet", "-verify_return_error", "-verify_hostname",
                     "wiki.example.com"});
  EXPECT_TRUE(contains(r.output, "alpn=h2\n")) << r.output;
  std::lock_guard lk(mu);
  ASSERT_EQ(seen.size(), 2u);
  EXPECT_EQ(seen[1].error, "");
  EXPECT_EQ(seen[1].tlvs[0x02], "wiki.example.com");
  EXPECT_EQ(seen[1].tlvs[0x01], "h2");
  EXPECT_EQ(seen[1].dport, lp);
}

// 6. PROXY headers in: the load balancer's word is the client's address.
TEST_P(Tls, ProxyProtocolIn) {
  Recorder rec, allowed_rec;
  TlsBackend a(dir_, "a");
  START_BACKEND(a);
  // Terminate behind a load balancer: answers "src=ADDR PORT" from the v1 header it gets.
  ThreadServer who(free_port(), [](int fd) {
    std::string line;
    char ch;
    auto deadline = Clock::now() + seconds(5);
    while (line.size() < 200 && recv_exact(fd, &ch, 1, deadline) && ch != '\n') line += ch;
    std::vector<std::string> f;
    for (size_t at = 0; at <= line.size();) {
      size_t sp = line.find(' ', at);
      if (sp == std::string::npos) sp = line.size();
      f.push_back(line.substr(at, sp - at));
      at = sp + 1;
    }
    std::string reply = f.size() == 6 ? "src=" + f[2] + " " + f[4] + "\n" : "bad header\n";
    send_all(fd, reply, deadline);
    ::shutdown(fd, SHUT_WR);
    read_to_end(fd, Clock::now() + seconds(5));
  });
  const uint16_t p = free_port(), pa = free_port(), pt = free_port(), pw = free_port();
  IT_START_DAEMON(config(
      {route("in", p, rec.port(), "", R"(,"accept_proxy_protocol":true,"proxy_protocol":"v1")"),
       route("allow", pa, allowed_rec.port(), "",
             R"(,"accept_proxy_protocol":true,"allow":["203.0.113.0/24"])"),
       route("a", pt, a.port(), passthrough({"a.example.com"}), R"(,"accept_proxy_protocol":true)"),
       route("wiki", pw, who.port(), terminate({"wiki.example.com"}, "wiki-ec"),
             R"(,"accept_proxy_protocol":true,"proxy_protocol":"v1")")}));
  auto send_close = [](uint16_t port, const std::string& bytes) {
    auto c = connect_tcp(port);
    EXPECT_EQ(c.err, 0);
    if (c.err) return CloseWait{};
    auto t0 = Clock::now();
    send_all(c.fd.get(), bytes, t0 + seconds(2));
    ::shutdown(c.fd.get(), SHUT_WR);
    return wait_closed(c.fd.get(), t0, seconds(5));
  };
  const std::string ps = std::to_string(p);
  size_t next_rec = 2;  // the first two are read below by index
  auto rec_index = [&] { return next_rec++; };

  send_close(p, "PROXY TCP4 203.0.113.9 127.0.0.1 5555 " + ps + "\r\nhello");
  auto got = rec.wait(0, seconds(5));
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, "PROXY TCP4 203.0.113.9 127.0.0.1 5555 " + ps + "\r\nhello");

  send_close(p, v2_header(1, "198.51.100.7", "127.0.0.1", 4242, p) + "hello");
  got = rec.wait(1, seconds(5));
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, "PROXY TCP4 198.51.100.7 127.0.0.1 4242 " + ps + "\r\nhello");

  // v2 with TLVs of its own (a cloud load balancer adds some): skipped, not forwarded.
  {
    std::string h = v2_header(1, "198.51.100.8", "127.0.0.1", 4243, p);
    const std::string tlv("\x04\x00\x05" "zzzzz" "\xEA\x00\x03" "abc", 14);  // NOOP, AWS VPCE id
    h[15] = char(12 + tlv.size());
    h += tlv;
    send_close(p, h + "hello");
    got = rec.wait(rec_index(), seconds(5));
    ASSERT_TRUE(got);
    EXPECT_EQ(*got, "PROXY TCP4 198.51.100.8 127.0.0.1 4243 " + ps + "\r\nhello");
  }
  // IPv6 in, v1 out: TCP6 with both addresses from the header.
  {
    std::string h = kV2Sig + "\x21\x21" + std::string("\x00\x24", 2);
    in6_addr a6{};
    inet_pton(AF_INET6, "2001:db8::7", &a6);
    h.append(reinterpret_cast<const char*>(&a6), 16);
    inet_pton(AF_INET6, "2001:db8::1", &a6);
    h.append(reinterpret_cast<const char*>(&a6), 16);
    h += std::string("\x10\x92", 2);  // 4242
    h += char(p >> 8);
    h += char(p & 0xff);
    send_close(p, h + "hello");
    got = rec.wait(rec_index(), seconds(5));
    ASSERT_TRUE(got);
    EXPECT_EQ(*got, "PROXY TCP6 2001:db8::7 2001:db8::1 4242 " + ps + "\r\nhello");
    send_close(p, "PROXY TCP6 2001:db8::9 2001:db8::1 5555 " + ps + "\r\nhello");
    got = rec.wait(rec_index(), seconds(5));
    ASSERT_TRUE(got);
    EXPECT_EQ(*got, "PROXY TCP6 2001:db8::9 2001:db8::1 5555 " + ps + "\r\nhello");
  }

  // LOCAL (v2 command 0) and "PROXY UNKNOWN" (v1): the connection's own addresses count.
  auto own = [&](const std::string& header) {
    auto c = connect_tcp(p);
    EXPECT_EQ(c.err, 0);
    if (c.err) return uint16_t(0);
    uint16_t cp = local_port(c.fd.get());
    send_all(c.fd.get(), header + "hello", Clock::now() + seconds(2));
    ::shutdown(c.fd.get(), SHUT_WR);
    wait_closed(c.fd.get(), Clock::now(), seconds(5));
    return cp;
  };
  uint16_t cp = own(v2_header(0, "198.51.100.7", "127.0.0.1", 4242, p));
  got = rec.wait(rec_index(), seconds(5));
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, "PROXY TCP4 127.0.0.1 127.0.0.1 " + std::to_string(cp) + " " + ps + "\r\nhello")
      << "v2 LOCAL";
  cp = own("PROXY UNKNOWN\r\n");
  got = rec.wait(rec_index(), seconds(5));
  ASSERT_TRUE(got);
  EXPECT_EQ(*got, "PROXY TCP4 127.0.0.1 127.0.0.1 " + std::to_string(cp) + " " + ps + "\r\nhello")
      << "v1 UNKNOWN";

  // A header that trickles in one byte per segment.
  {
    auto c = connect_tcp(p);
    ASSERT_EQ(c.err, 0);
    set_nodelay(c.fd.get());
    for (char ch : "PROXY TCP4 203.0.113.5 127.0.0.1 7777 " + ps + "\r\n") {
      ASSERT_EQ(::send(c.fd.get(), &ch, 1, MSG_NOSIGNAL), 1);
      std::this_thread::sleep_for(milliseconds(2));
    }
    send_all(c.fd.get(), "hello", Clock::now() + seconds(2));
    ::shutdown(c.fd.get(), SHUT_WR);
    wait_closed(c.fd.get(), Clock::now(), seconds(5));
    got = rec.wait(rec_index(), seconds(5));
    ASSERT_TRUE(got);
    EXPECT_EQ(*got, "PROXY TCP4 203.0.113.5 127.0.0.1 7777 " + ps + "\r\nhello");
  }

  // Allow list: judged on the address the header names, not on 127.0.0.1.
  const std::string pas = std::to_string(pa);
  send_close(pa, "PROXY TCP4 203.0.113.9 127.0.0.1 5555 " + pas + "\r\nhello");
  got = allowed_rec.wait(0, seconds(5));
  ASSERT_TRUE(got) << "a client in the allow list was not served";
  EXPECT_EQ(*got, "hello");
  auto refused = send_close(pa, "PROXY TCP4 198.51.100.7 127.0.0.1 5555 " + pas + "\r\nhello");
  EXPECT_TRUE(closed_end(refused.end));
  EXPECT_LT(refused.ms, 1000);
  auto st = d_.wait_stats("allow", [](const RouteStats& s) { return s.refused >= 1; }, seconds(3));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->refused, 1u) << st->str();
  EXPECT_EQ(st->total, 1u) << st->str();
  EXPECT_EQ(allowed_rec.accepted(), 1u) << "the refused client reached the target";
  EXPECT_TRUE(contains(d_.log(), "client=198.51.100.7")) << d_.log_tail();

  // Malformed headers: closed at once, nothing reaches the target.
  const uint64_t before = rec.accepted();
  std::string bad_sig = v2_header(1, "198.51.100.7", "127.0.0.1", 4242, p);
  bad_sig[10] = 'X';
  const std::string bad[] = {
      "PROXY TCP4 1.2.3.4  5.6.7.8 1 2\r\nhello",
      "PROXY TCP4 1.2.3.4 5.6.7.8 01 2\r\nhello",
      bad_sig + "hello",
  };
  for (const auto& h : bad) {
    auto c = connect_tcp(p);
    ASSERT_EQ(c.err, 0);
    auto t0 = Clock::now();
    send_all(c.fd.get(), h, t0 + seconds(2));  // no FIN: the daemon must decide by itself
    auto w = wait_closed(c.fd.get(), t0, seconds(2));
    EXPECT_TRUE(closed_end(w.end)) << "not closed: " << testing::PrintToString(h);
    EXPECT_LT(w.ms, 1000) << testing::PrintToString(h);
  }
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(rec.accepted(), before) << "a malformed header reached the target";
  EXPECT_GE(count_of(d_.log(), "closed: bad PROXY header"), 3u) << d_.log_tail();

  // PROXY in, TLS terminate, PROXY out: the header the target gets names the client the load
  // balancer named, and the plain bytes follow it.
  {
    Relay r;
    ASSERT_EQ(start_relay(r, {"-servername", "wiki.example.com", "-CAfile", g_certs->ca(),
                              "-verify_return_error", "-quiet"}),
              "");
    auto up = connect_tcp(pw);
    ASSERT_EQ(up.err, 0);
    // Header and ClientHello in one segment: the hello starts right after the header.
    ASSERT_TRUE(send_all(up.fd.get(),
                         "PROXY TCP4 203.0.113.77 127.0.0.1 6000 " + std::to_string(pw) + "\r\n" +
                             r.hello + r.after,
                         Clock::now() + seconds(2)));
    pump(r.conn.get(), up.fd.get(), seconds(10));
    ASSERT_EQ(r.client.wait_for(seconds(15)), std::future_status::ready);
    auto res = r.client.get();
    EXPECT_TRUE(contains(res.output, "src=203.0.113.77 6000\n")) << res.output;
  }

  // A PROXY header, then a real ClientHello: SNI routing still works behind a load balancer.
  Relay r;
  ASSERT_EQ(start_relay(r, {"-servername", "a.example.com", "-CAfile", g_certs->ca(),
                            "-verify_return_error", "-verify_hostname", "a.example.com"}),
            "");
  auto up = connect_tcp(pt);
  ASSERT_EQ(up.err, 0);
  ASSERT_TRUE(send_all(up.fd.get(),
                       "PROXY TCP4 203.0.113.9 127.0.0.1 5555 " + std::to_string(pt) + "\r\n",
                       Clock::now() + seconds(2)));
  std::this_thread::sleep_for(milliseconds(20));  // header and hello in separate segments
  ASSERT_TRUE(send_all(up.fd.get(), r.hello + r.after, Clock::now() + seconds(2)));
  pump(r.conn.get(), up.fd.get(), seconds(10));
  ASSERT_EQ(r.client.wait_for(seconds(15)), std::future_status::ready);
  auto res = r.client.get();
  EXPECT_EQ(res.exit_code, 0) << res.output;
  EXPECT_TRUE(contains(res.output, "Verify return code: 0 (ok)")) << res.output;
}

// 7. TLS terminate: key types, versions, ALPN, bulk both ways, bad clients, certificate reload.
TEST_P(Tls, TerminateDetails) {
  HttpBackend http;
  const uint16_t pe = free_port(), pr = free_port(), pl = free_port(), ps = free_port();
  // The reloadable route's certificate files live in this test's own directory.
  const std::string cert = dir_.write_file("live.pem", read_file(g_certs->pem("wiki-ec")));
  const std::string key = dir_.write_file("live.key", read_file(g_certs->key("wiki-ec")));
  IT_START_DAEMON(config(
      {route("ec", pe, http.port(),
             terminate({"wiki.example.com"}, "wiki-ec", R"(,"alpn":["h2","http/1.1"])")),
       route("rsa", pr, http.port(), terminate({"wiki.example.com"}, "wiki-rsa")),
       route("live", pl, http.port(), terminate_files({"wiki.example.com"}, cert, key)),
       route("stall", ps, http.port(),
             terminate({"wiki.example.com"}, "wiki-ec", R"(,"hello_timeout_ms":500)"))}));

  for (auto [port, bits] : {std::pair{pe, "256 bit"}, std::pair{pr, "2048 bit"}}) {
    for (const std::vector<std::string>& ver :
         {std::vector<std::string>{"--tlsv1.2", "--tls-max", "1.2"},
          std::vector<std::string>{"--tlsv1.3"}}) {
      auto r = curl_get("wiki.example.com", port, ver);
      EXPECT_EQ(r.exit_code, 0) << "port " << port << " " << join(ver) << ": " << r.output;
      EXPECT_EQ(r.output, "plain-backend") << "port " << port << " " << join(ver);
    }
    auto s = s_client(port, "wiki.example.com", {"-verify_return_error"});
    EXPECT_TRUE(contains(s.output, "Server public key is " + std::string(bits))) << s.output;
  }

  auto alpn = s_client(pe, "wiki.example.com", {"-alpn", "h2"});
  EXPECT_TRUE(contains(alpn.output, "ALPN protocol: h2")) << alpn.output;
  auto none = s_client(pr, "wiki.example.com", {"-alpn", "h2"});
  EXPECT_TRUE(contains(none.output, "No ALPN negotiated")) << none.output;

  // 50 MiB down, verified byte by byte.
  {
    const uint64_t n = 50 * kMiB;
    const std::string out = dir_.path() + "/down.bin";
    auto t0 = Clock::now();
    auto r = curl_get("wiki.example.com", pe, {"-o", out}, "/big?" + std::to_string(n));
    std::cerr << "[ info ] " << GetParam() << ": 50 MiB through TLS terminate in " << ms_since(t0)
              << " ms\n";
    EXPECT_EQ(r.exit_code, 0) << r.output;
    std::string body = read_file(out);
    EXPECT_EQ(body.size(), n);
    EXPECT_EQ(check_pattern(kBigSeed, 0, reinterpret_cast<const uint8_t*>(body.data()), body.size()),
              -1);
    std::filesystem::remove(out);
  }
  // 20 MiB up, counted and verified by the backend.
  {
    const uint64_t n = 20 * kMiB;
    const std::string in = dir_.write_file("up.bin", pattern_string(kUpSeed, n));
    auto r = curl({"--resolve", "wiki.example.com:" + std::to_string(pe) + ":127.0.0.1",
                   "-H", "Expect:", "--data-binary", "@" + in,
                   "https://wiki.example.com:" + std::to_string(pe) + "/up"});
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output, "count=" + std::to_string(n) + " mismatch=-1");
    std::filesystem::remove(in);
  }

  // A valid hello, then garbage instead of the rest of the handshake.
  {
    auto before = d_.stats("rsa");
    ASSERT_TRUE(before);
    std::string hello = real_hello("wiki.example.com");
    ASSERT_FALSE(hello.empty());
    std::string junk = pattern_string(5, 4096);
    junk[0] = '\x17';  // an application data record type, with nonsense after it
    auto c = send_expect_close(pr, hello + junk, false, seconds(3));
    EXPECT_TRUE(closed_end(c.w.end)) << to_string(c.w.end);
    EXPECT_LT(c.w.ms, 1000);
    EXPECT_TRUE(wait_log("closed: TLS handshake failed")) << d_.log_tail();
    auto after = d_.stats("rsa");
    ASSERT_TRUE(after);
    EXPECT_EQ(after->total, before->total + 1) << after->str();
    EXPECT_EQ(after->active, 0u) << after->str();
  }

  // A client that sends its hello and then never answers the server's flight: the handshake
  // is bounded by tls.hello_timeout_ms too, and the target never hears of it.
  {
    const uint64_t accepted = http.accepted();
    std::string hello = real_hello("wiki.example.com");
    ASSERT_FALSE(hello.empty());
    auto c = send_expect_close(ps, hello, false, seconds(3));
    EXPECT_TRUE(closed_end(c.w.end)) << to_string(c.w.end);
    EXPECT_GT(c.w.bytes, 0u) << "no ServerHello came back";
    EXPECT_GE(c.w.ms, 400) << "closed before tls.hello_timeout_ms";
    EXPECT_LE(c.w.ms, 2000) << "tls.hello_timeout_ms 500 does not bound the handshake";
    EXPECT_TRUE(wait_log("closed: TLS handshake not finished")) << d_.log_tail();
    EXPECT_EQ(http.accepted(), accepted);
  }

  // Certificate reload: new connections get the new certificate, an open one goes on.
  EXPECT_EQ(serial_of(pl, "wiki.example.com"), "serial=64");
  const uint64_t n = 6 * kMiB;
  const std::string out = dir_.path() + "/slow.bin";
  auto slow = std::async(std::launch::async, [&] {
    return curl_get("wiki.example.com", pl, {"--limit-rate", "2M", "-o", out},
                    "/big?" + std::to_string(n));
  });
  auto st = d_.wait_stats("live", [](const RouteStats& s) { return s.active >= 1 && s.bytes_down > 0; },
                          seconds(5));
  ASSERT_TRUE(st && st->active >= 1) << "the slow download did not start";
  dir_.write_file("live.pem", read_file(g_certs->pem("wiki-new")));
  dir_.write_file("live.key", read_file(g_certs->key("wiki-new")));
  const size_t reloads = count_of(d_.log(), "reloaded ");
  d_.signal(SIGHUP);
  auto deadline = Clock::now() + seconds(5);
  while (Clock::now() < deadline && count_of(d_.log(), "reloaded ") == reloads)
    std::this_thread::sleep_for(milliseconds(10));
  EXPECT_GT(count_of(d_.log(), "reloaded "), reloads) << d_.log_tail();
  EXPECT_EQ(serial_of(pl, "wiki.example.com"), "serial=C8") << "the new certificate is not served";
  st = d_.stats("live");
  ASSERT_TRUE(st);
  EXPECT_GE(st->active, 1u) << "the slow download ended before the reload; " << st->str();
  ASSERT_EQ(slow.wait_for(seconds(20)), std::future_status::ready);
  auto r = slow.get();
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::string body = read_file(out);
  EXPECT_EQ(body.size(), n);
  EXPECT_EQ(check_pattern(kBigSeed, 0, reinterpret_cast<const uint8_t*>(body.data()), body.size()), -1);

  // A reload with a key that does not match: refused as a whole, the running certificate stays.
  dir_.write_file("live.key", read_file(g_certs->key("wiki-rsa")));
  const size_t refusals = count_of(d_.log(), "reload refused");
  d_.signal(SIGHUP);
  deadline = Clock::now() + seconds(5);
  while (Clock::now() < deadline && count_of(d_.log(), "reload refused") == refusals)
    std::this_thread::sleep_for(milliseconds(10));
  EXPECT_GT(count_of(d_.log(), "reload refused"), refusals) << d_.log_tail();
  EXPECT_TRUE(contains(d_.log(), key)) << "the refusal does not name the key file";
  ASSERT_TRUE(d_.running());
  EXPECT_EQ(serial_of(pl, "wiki.example.com"), "serial=C8");
  auto after = curl_get("wiki.example.com", pl);
  EXPECT_EQ(after.exit_code, 0) << after.output;
  EXPECT_EQ(after.output, "plain-backend");

  // Renewed on disk without a signal (what certbot does): the daemon sees the files change
  // and serves the new certificate within a few seconds. The key already is wiki-rsa's.
  const size_t watched = count_of(d_.log(), "certificate reloaded from");
  dir_.write_file("live.pem", read_file(g_certs->pem("wiki-rsa")));
  deadline = Clock::now() + seconds(8);
  while (Clock::now() < deadline && count_of(d_.log(), "certificate reloaded from") == watched)
    std::this_thread::sleep_for(milliseconds(50));
  EXPECT_GT(count_of(d_.log(), "certificate reloaded from"), watched) << d_.log_tail();
  EXPECT_EQ(serial_of(pl, "wiki.example.com"), "serial=65") << "the renewed file is not served";
  after = curl_get("wiki.example.com", pl);
  EXPECT_EQ(after.exit_code, 0) << after.output;
}

// 7b. Many clients at once on one SNI port: terminate and passthrough side by side, every
// download verified.
TEST_P(Tls, ManyClientsAtOnce) {
  TlsBackend a(dir_, "a");
  START_BACKEND(a);
  HttpBackend http;
  const uint16_t lp = free_port();
  IT_START_DAEMON(config({route("a", lp, a.port(), passthrough({"a.example.com"})),
                       route("wiki", lp, http.port(), terminate({"wiki.example.com"}, "wiki-ec"))}));
  const int kTerm = 16, kPass = 4;
  const uint64_t n = 2 * kMiB;
  std::vector<std::future<CommandResult>> jobs;
  for (int i = 0; i < kTerm; ++i)
    jobs.push_back(std::async(std::launch::async, [&, i] {
      return curl_get("wiki.example.com", lp,
                      {"-o", dir_.path() + "/many" + std::to_string(i) + ".bin"},
                      "/big?" + std::to_string(n));
    }));
  for (int i = 0; i < kPass; ++i)
    jobs.push_back(std::async(std::launch::async, [&] { return curl_get("a.example.com", lp); }));
  for (size_t i = 0; i < jobs.size(); ++i) {
    ASSERT_EQ(jobs[i].wait_for(seconds(30)), std::future_status::ready) << "job " << i;
    auto r = jobs[i].get();
    EXPECT_EQ(r.exit_code, 0) << "job " << i << ": " << r.output;
    if (i >= size_t(kTerm)) {
      EXPECT_TRUE(contains(r.output, "s_server")) << r.output;
    }
  }
  for (int i = 0; i < kTerm; ++i) {
    std::string body = read_file(dir_.path() + "/many" + std::to_string(i) + ".bin");
    EXPECT_EQ(body.size(), n) << "download " << i;
    EXPECT_EQ(check_pattern(kBigSeed, 0, reinterpret_cast<const uint8_t*>(body.data()), body.size()),
              -1)
        << "download " << i;
  }
  auto st = d_.wait_stats("wiki", [](const RouteStats& s) { return s.active == 0; }, seconds(5));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->total, uint64_t(kTerm)) << st->str();
  EXPECT_EQ(st->active, 0u) << st->str();
  EXPECT_GE(st->bytes_down, kTerm * n) << st->str();
}

// 7c. Bulk through passthrough: a passthrough port in front of a terminate port of the same
// daemon, so that the TLS stream crosses the splice/copy path untouched both ways.
TEST_P(Tls, PassthroughBulkBothWays) {
  HttpBackend http;
  const uint16_t front = free_port(), back = free_port();
  IT_START_DAEMON(config({route("front", front, back, passthrough({"wiki.example.com"})),
                       route("wiki", back, http.port(), terminate({"wiki.example.com"}, "wiki-rsa"))}));
  const uint64_t n = 50 * kMiB;
  const std::string out = dir_.path() + "/down.bin";
  auto t0 = Clock::now();
  auto r = curl_get("wiki.example.com", front, {"-o", out}, "/big?" + std::to_string(n));
  std::cerr << "[ info ] " << GetParam() << ": 50 MiB through passthrough + terminate in "
            << ms_since(t0) << " ms\n";
  EXPECT_EQ(r.exit_code, 0) << r.output;
  std::string body = read_file(out);
  EXPECT_EQ(body.size(), n);
  EXPECT_EQ(check_pattern(kBigSeed, 0, reinterpret_cast<const uint8_t*>(body.data()), body.size()),
            -1);
  body.clear();
  std::filesystem::remove(out);

  const uint64_t up = 20 * kMiB;
  const std::string in = dir_.write_file("up.bin", pattern_string(kUpSeed, up));
  r = curl({"--resolve", "wiki.example.com:" + std::to_string(front) + ":127.0.0.1", "-H",
            "Expect:", "--data-binary", "@" + in,
            "https://wiki.example.com:" + std::to_string(front) + "/up"});
  EXPECT_EQ(r.exit_code, 0) << r.output;
  EXPECT_EQ(r.output, "count=" + std::to_string(up) + " mismatch=-1");

  auto st = d_.wait_stats("front", [](const RouteStats& s) { return s.active == 0; }, seconds(5));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->total, 2u) << st->str();
  EXPECT_GT(st->bytes_down, n) << st->str();
  EXPECT_GT(st->bytes_up, up) << st->str();
  auto wst = d_.stats("wiki");
  ASSERT_TRUE(wst);
  // Plain bytes at the terminate route: the response bodies plus HTTP heads, no TLS overhead.
  EXPECT_GE(wst->bytes_down, n) << wst->str();
  EXPECT_LT(wst->bytes_down, n + 4096) << wst->str();
  EXPECT_GE(wst->bytes_up, up) << wst->str();
  EXPECT_LT(wst->bytes_up, up + 4096) << wst->str();
}

// 7d. A target that refuses: the client is closed at once (passthrough: before any answer;
// terminate: after the handshake, before any data), and the route counts a failure.
TEST_P(Tls, TargetDownClosesAndCounts) {
  const uint16_t dead = free_port();  // nothing listens here
  const uint16_t lp = free_port();
  IT_START_DAEMON(config({route("a", lp, dead, passthrough({"a.example.com"})),
                       route("wiki", lp, dead, terminate({"wiki.example.com"}, "wiki-ec"))}));
  std::string hello = real_hello("a.example.com");
  ASSERT_FALSE(hello.empty());
  auto c = send_expect_close(lp, hello, false, seconds(3));
  EXPECT_TRUE(closed_end(c.w.end)) << to_string(c.w.end);
  EXPECT_EQ(c.w.bytes, 0u);
  EXPECT_LT(c.w.ms, 1000);
  auto t0 = Clock::now();
  auto r = curl_get("wiki.example.com", lp);
  EXPECT_NE(r.exit_code, 0) << r.output;
  EXPECT_NE(r.exit_code, -1) << "curl hung";
  EXPECT_LT(ms_since(t0), 3000);
  for (const char* id : {"a", "wiki"}) {
    auto st = d_.wait_stats(id, [](const RouteStats& s) { return s.failed >= 1 && s.active == 0; },
                            seconds(3));
    ASSERT_TRUE(st) << id;
    EXPECT_EQ(st->failed, 1u) << st->str();
    EXPECT_EQ(st->active, 0u) << st->str();
  }
  EXPECT_TRUE(d_.running());
}

// 8. Certificates that cannot work are configuration errors, before anything starts.
TEST_P(Tls, CertificateProblemsAreConfigErrors) {
  HttpBackend http;
  const uint16_t lp = free_port();
  const std::string missing = dir_.path() + "/no-such-cert.pem";
  struct Case {
    const char* what;
    std::string cert, key, named;
  };
  const Case cases[] = {
      {"missing cert", missing, g_certs->key("wiki-ec"), missing},
      {"key does not match", g_certs->pem("wiki-ec"), g_certs->key("wiki-rsa"),
       g_certs->key("wiki-rsa")},
  };
  // TLS routes on one port must agree on accept_proxy_protocol: the PROXY header is read
  // before the SNI that would tell them apart.
  {
    const std::string path = dir_.write_file(
        "mixed.json",
        config({route("x", lp, http.port(), passthrough({"x.example.com"}),
                      R"(,"accept_proxy_protocol":true)"),
                route("y", lp, http.port(), passthrough({"y.example.com"}))}));
    auto r = run_command({ringfwd_binary(), "--check", path}, seconds(10));
    EXPECT_EQ(r.exit_code, 1) << r.output;
    EXPECT_TRUE(contains(r.output, "accept_proxy_protocol")) << r.output;
  }
  for (const auto& c : cases) {
    const std::string cfg = config({route("wiki", lp, http.port(),
                                          terminate_files({"wiki.example.com"}, c.cert, c.key))});
    const std::string path = dir_.write_file("bad.json", cfg);
    auto r = run_command({ringfwd_binary(), "--check", path}, seconds(10));
    EXPECT_EQ(r.exit_code, 1) << c.what << ": " << r.output;
    EXPECT_TRUE(contains(r.output, c.named)) << c.what << ": " << r.output;

    Daemon d;
    const std::string log = dir_.path() + "/bad.log";
    d.spawn({"--config", path, "--bus", "none"}, log);
    auto code = d.wait_exit(seconds(10));
    ASSERT_TRUE(code) << c.what << ": the daemon runs with a broken certificate";
    EXPECT_EQ(*code, 1) << c.what << ": " << read_file(log);
    EXPECT_TRUE(contains(read_file(log), c.named)) << c.what << ": " << read_file(log);
  }
}

INSTANTIATE_TEST_SUITE_P(Dataplanes, Tls, ::testing::Values("splice", "copy", "auto", "sockmap"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

}  // namespace
}  // namespace rf::it
