// rf::tls: certificate loading and its error messages, reload detection, and real handshakes
// on loopback against `openssl s_client` and `curl` (both verify the chain), with the first
// bytes of the ClientHello handed over as the prefix, for an ECDSA and an RSA certificate.
// Garbage from a plain TCP client must end in Io::Error with a message, never a crash.
// The test material is generated at run time with the openssl command line.
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>
#include <string>
#include <vector>

#include "ringfwd/base/unique_fd.hpp"
#include "ringfwd/tls/terminator.hpp"
#include "test_support.hpp"

namespace rf::tls {
namespace {

using Clock = std::chrono::steady_clock;
constexpr int kWaitMs = 5000;  // bound for every single wait

std::string slurp(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  std::stringstream s;
  s << in.rdbuf();
  return s.str();
}

// ---- test material -------------------------------------------------------------------------

// Generated once per program: RSA keys take a moment.
class Material {
 public:
  static Material& get() {
    static Material m;
    return m;
  }
  std::string path(const std::string& name) const { return dir_.path() + "/" + name; }
  bool ok() const { return ok_; }

 private:
  Material() {
    ::signal(SIGPIPE, SIG_IGN);
    dir_.write("leaf.ext",
               "subjectAltName=DNS:wiki.example.com\n"
               "basicConstraints=CA:FALSE\n"
               "keyUsage=critical,digitalSignature,keyEncipherment\n"
               "extendedKeyUsage=serverAuth\n");
    const std::string d = dir_.path();
    const std::string q = " >>" + d + "/openssl.log 2>&1";
    const char* ca_ext =
        " -addext basicConstraints=critical,CA:TRUE -addext keyUsage=critical,keyCertSign,cRLSign";
    ok_ =
        // The test CA, and an unrelated one that the client must not accept.
        run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=ringfwd-test-ca -keyout " +
            d + "/ca.key -out " + d + "/ca.pem" + ca_ext + q) &&
        run("openssl req -x509 -newkey rsa:2048 -nodes -days 2 -subj /CN=other-ca -keyout " + d +
            "/other-ca.key -out " + d + "/other-ca.pem" + ca_ext + q) &&
        leaf("ec", "-newkey ec -pkeyopt ec_paramgen_curve:P-256", q) &&
        leaf("rsa", "-newkey rsa:2048", q) &&
        run("openssl genpkey -algorithm EC -pkeyopt ec_paramgen_curve:P-256 -out " + d +
            "/other.key" + q);
    if (!ok_) return;
    // The ECDSA file carries the chain (leaf then CA) to exercise chain loading; the client
    // trusts the CA anyway.
    std::ofstream(path("ec-chain.pem"), std::ios::binary)
        << slurp(path("ec.pem")) << slurp(path("ca.pem"));
    dir_.write("empty.pem", "");
    dir_.write("garbage.pem", "this is not PEM at all\n");
  }

  static bool run(const std::string& cmd) { return std::system(cmd.c_str()) == 0; }
  bool leaf(const std::string& name, const std::string& newkey, const std::string& q) {
    const std::string d = dir_.path() + "/";
    return run("openssl req " + newkey + " -nodes -subj /CN=wiki.example.com -keyout " + d + name +
               ".key -out " + d + name + ".csr" + q) &&
           run("openssl x509 -req -days 2 -set_serial " + std::to_string(++serial_) + " -in " + d +
               name + ".csr -CA " + d + "ca.pem -CAkey " + d + "ca.key -extfile " + d +
               "leaf.ext -out " + d + name + ".pem" + q);
  }

  test::TempDir dir_;
  bool ok_ = false;
  int serial_ = 1;
};

// ---- sockets and child processes -----------------------------------------------------------

bool wait_for(int fd, short events, int ms = kWaitMs) {
  pollfd p{fd, events, 0};
  int r;
  do r = ::poll(&p, 1, ms);
  while (r < 0 && errno == EINTR);
  return r > 0;
}

struct Listener {
  UniqueFd fd;
  uint16_t port = 0;
};

Listener listen_loopback() {
  Listener l;
  l.fd.reset(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  EXPECT_EQ(::bind(l.fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  EXPECT_EQ(::listen(l.fd.get(), 8), 0);
  socklen_t len = sizeof a;
  EXPECT_EQ(::getsockname(l.fd.get(), reinterpret_cast<sockaddr*>(&a), &len), 0);
  l.port = ntohs(a.sin_port);
  return l;
}

// Accepts one connection (non-blocking) and reads at most `limit` bytes of whatever arrives
// first: the part of the ClientHello a router would have peeked at.
UniqueFd accept_with_prefix(int lfd, std::vector<uint8_t>& prefix, size_t limit = 65536) {
  if (!wait_for(lfd, POLLIN)) return UniqueFd();
  UniqueFd fd(::accept4(lfd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC));
  if (!fd || !wait_for(fd.get(), POLLIN)) return UniqueFd();
  prefix.resize(limit);
  ssize_t n = ::recv(fd.get(), prefix.data(), prefix.size(), 0);
  prefix.resize(n > 0 ? size_t(n) : 0);
  return fd;
}

// A child with stdin/stdout on pipes; killed and reaped on destruction whatever happened.
class Child {
 public:
  explicit Child(const std::vector<std::string>& argv, const std::string& stderr_file) {
    int in[2], out[2];
    if (::pipe2(in, O_CLOEXEC) != 0 || ::pipe2(out, O_CLOEXEC) != 0) return;
    pid_ = ::fork();
    if (pid_ == 0) {
      ::dup2(in[0], 0);
      ::dup2(out[1], 1);
      int err = ::open(stderr_file.c_str(), O_WRONLY | O_CREAT | O_APPEND, 0600);
      if (err >= 0) ::dup2(err, 2);
      std::vector<char*> args;
      for (const auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
      args.push_back(nullptr);
      ::execvp(args[0], args.data());
      ::_exit(127);
    }
    ::close(in[0]);
    ::close(out[1]);
    stdin_.reset(in[1]);
    stdout_.reset(out[0]);
  }
  ~Child() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      ::waitpid(pid_, nullptr, 0);
    }
  }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;

  bool started() const { return pid_ > 0; }
  int stdout_fd() const { return stdout_.get(); }
  void send(const std::string& s) { (void)!::write(stdin_.get(), s.data(), s.size()); }
  void close_stdin() { stdin_.reset(); }
  // Reads stdout until it contains `want` or EOF or the deadline.
  std::string read_until(const std::string& want, int ms = kWaitMs) {
    const auto end = Clock::now() + std::chrono::milliseconds(ms);
    while (out_.find(want) == std::string::npos) {
      auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
      if (left.count() <= 0 || !wait_for(stdout_.get(), POLLIN, int(left.count()))) break;
      char buf[4096];
      ssize_t n = ::read(stdout_.get(), buf, sizeof buf);
      if (n <= 0) break;
      out_.append(buf, size_t(n));
    }
    return out_;
  }
  // Waits (bounded) for the exit status; -1 when it had to be killed.
  int wait_exit(int ms = kWaitMs) {
    const auto end = Clock::now() + std::chrono::milliseconds(ms);
    while (Clock::now() < end) {
      int st = 0;
      if (::waitpid(pid_, &st, WNOHANG) == pid_) {
        pid_ = -1;
        return WIFEXITED(st) ? WEXITSTATUS(st) : -1;
      }
      ::usleep(10000);
    }
    return -1;
  }

 private:
  pid_t pid_ = -1;
  UniqueFd stdin_, stdout_;
  std::string out_;
};

// ---- driving a Conn ------------------------------------------------------------------------

// Runs op until it is not WantRead/WantWrite, waiting on the socket in between.
template <class Op>
Conn::Io drive(int fd, Op&& op) {
  const auto end = Clock::now() + std::chrono::milliseconds(kWaitMs);
  for (;;) {
    Conn::Io io = op();
    if (io != Conn::Io::WantRead && io != Conn::Io::WantWrite) return io;
    auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - Clock::now());
    if (left.count() <= 0) return io;
    wait_for(fd, io == Conn::Io::WantRead ? POLLIN : POLLOUT, int(left.count()));
  }
}

Conn::Io handshake(Conn& c, int fd) {
  return drive(fd, [&] { return c.handshake(); });
}

// Reads until `until` is in the collected text (or close/error/timeout).
std::string read_text(Conn& c, int fd, const std::string& until, Conn::Io* last = nullptr) {
  std::string got;
  Conn::Io io = Conn::Io::Ok;
  while (got.find(until) == std::string::npos) {
    uint8_t buf[2048];
    size_t n = 0;
    io = drive(fd, [&] { return c.read(buf, sizeof buf, n); });
    if (io != Conn::Io::Ok) break;
    got.append(reinterpret_cast<char*>(buf), n);
  }
  if (last) *last = io;
  return got;
}

bool write_text(Conn& c, int fd, const std::string& s) {
  size_t off = 0;
  while (off < s.size()) {
    size_t n = 0;
    auto* p = reinterpret_cast<const uint8_t*>(s.data()) + off;
    const size_t len = s.size() - off;
    if (drive(fd, [&] { return c.write(p, len, n); }) != Conn::Io::Ok) return false;
    off += n;
  }
  return true;
}

std::shared_ptr<ServerContext> load_ok(const std::string& cert, const std::string& key,
                                       const std::vector<std::string>& alpn) {
  auto r = ServerContext::load(cert, key, alpn);
  EXPECT_TRUE(r.ok()) << (r.ok() ? "" : r.error().str());
  return r.ok() ? *r : nullptr;
}

class Tls : public ::testing::Test {
 protected:
  void SetUp() override {
    global_init();
    ASSERT_TRUE(m.ok()) << "openssl could not generate the test material, see "
                        << m.path("openssl.log");
  }
  Material& m = Material::get();
};

// ---- loading ---------------------------------------------------------------------------------

TEST_F(Tls, LoadsEcdsaChainAndRsa) {
  auto ec = load_ok(m.path("ec-chain.pem"), m.path("ec.key"), {"h2", "http/1.1"});
  ASSERT_TRUE(ec);
  EXPECT_EQ(ec->subject(), "wiki.example.com");
  EXPECT_EQ(ec->cert_file(), m.path("ec-chain.pem"));
  EXPECT_EQ(ec->key_file(), m.path("ec.key"));
  auto rsa = load_ok(m.path("rsa.pem"), m.path("rsa.key"), {});
  ASSERT_TRUE(rsa);
  EXPECT_EQ(rsa->subject(), "wiki.example.com");
}

void expect_load_error(const std::string& cert, const std::string& key, const std::string& names,
                       const std::string& says) {
  auto r = ServerContext::load(cert, key, {});
  ASSERT_FALSE(r.ok()) << cert << " / " << key;
  const std::string msg = r.error().str();
  EXPECT_NE(msg.find(names), std::string::npos) << msg;
  EXPECT_NE(msg.find(says), std::string::npos) << msg;
  std::printf("    load(%s, %s): %s\n", cert.substr(cert.rfind('/') + 1).c_str(),
              key.substr(key.rfind('/') + 1).c_str(), msg.c_str());
}

TEST_F(Tls, LoadErrorsNameTheFile) {
  expect_load_error(m.path("missing.pem"), m.path("ec.key"), m.path("missing.pem"),
                    "No such file or directory");
  expect_load_error(m.path("ec.pem"), m.path("missing.key"), m.path("missing.key"),
                    "No such file or directory");
  expect_load_error(m.path("empty.pem"), m.path("ec.key"), m.path("empty.pem"),
                    "no PEM certificate");
  expect_load_error(m.path("garbage.pem"), m.path("ec.key"), m.path("garbage.pem"),
                    "no PEM certificate");
  // A key file that holds a certificate, or nothing usable.
  expect_load_error(m.path("ec.pem"), m.path("ca.pem"), m.path("ca.pem"), "no PEM private key");
  expect_load_error(m.path("ec.pem"), m.path("garbage.pem"), m.path("garbage.pem"),
                    "no PEM private key");
  expect_load_error(m.path("ec.pem"), m.path("empty.pem"), m.path("empty.pem"),
                    "no PEM private key");
  // Well-formed key, wrong certificate: both files are named.
  expect_load_error(m.path("ec.pem"), m.path("other.key"),
                    m.path("other.key") + " does not match the certificate in " + m.path("ec.pem"),
                    "");
  expect_load_error(m.path("rsa.pem"), m.path("ec.key"), m.path("ec.key"), "does not match");
  // Unreadable (permissions); root reads anything, so only checked when not root.
  if (::geteuid() != 0) {
    std::string locked = m.path("locked.key");
    std::ofstream(locked) << slurp(m.path("ec.key"));
    ::chmod(locked.c_str(), 0);
    expect_load_error(m.path("ec.pem"), locked, locked, "Permission denied");
  }
  auto bad_alpn = ServerContext::load(m.path("ec.pem"), m.path("ec.key"), {""});
  EXPECT_FALSE(bad_alpn.ok());
}

TEST_F(Tls, FilesChanged) {
  test::TempDir d;
  const std::string cert = d.write("wiki.pem", slurp(m.path("ec.pem")));
  const std::string key = d.write("wiki.key", slurp(m.path("ec.key")));
  auto ctx = load_ok(cert, key, {});
  ASSERT_TRUE(ctx);
  EXPECT_FALSE(ctx->files_changed());

  // Same content, newer mtime (a renewal that happened to produce identical bytes).
  timespec times[2] = {{0, UTIME_OMIT}, {0, 0}};
  ::clock_gettime(CLOCK_REALTIME, &times[1]);
  times[1].tv_sec += 10;
  ASSERT_EQ(::utimensat(AT_FDCWD, cert.c_str(), times, 0), 0);
  EXPECT_TRUE(ctx->files_changed());

  ctx = load_ok(cert, key, {});
  ASSERT_TRUE(ctx);
  EXPECT_FALSE(ctx->files_changed());
  // Replaced by rename (how certbot and atomic writers do it): a new inode.
  d.write("wiki.key.new", slurp(m.path("ec.key")));
  ASSERT_EQ(::rename((key + ".new").c_str(), key.c_str()), 0);
  EXPECT_TRUE(ctx->files_changed());

  ctx = load_ok(cert, key, {});
  ASSERT_TRUE(ctx);
  ASSERT_EQ(::unlink(cert.c_str()), 0);
  EXPECT_TRUE(ctx->files_changed());  // gone counts as changed: the reload will say why
}

// ---- handshakes with openssl s_client ------------------------------------------------------

struct Case {
  std::string cert, key;
  std::string tls_flag;  // -tls1_3 / -tls1_2
  std::vector<std::string> server_alpn;
  std::string client_alpn;  // empty: the client offers none
  std::string want_version, want_alpn;
  size_t prefix_limit = 65536;
};

void echo_with_s_client(Material& m, const Case& k) {
  auto ctx = load_ok(m.path(k.cert), m.path(k.key), k.server_alpn);
  ASSERT_TRUE(ctx);
  Listener l = listen_loopback();
  std::vector<std::string> argv = {
      "openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(l.port), "-servername",
      "wiki.example.com", "-CAfile", m.path("ca.pem"), "-verify_return_error", "-verify_hostname",
      "wiki.example.com",
      // -quiet implies -ign_eof; undo that so stdin EOF ends the session.
      "-quiet", "-no_ign_eof", k.tls_flag};
  if (!k.client_alpn.empty()) {
    argv.push_back("-alpn");
    argv.push_back(k.client_alpn);
  }
  Child client(argv, m.path("s_client.log"));
  ASSERT_TRUE(client.started());
  client.send("ping from client\n");

  std::vector<uint8_t> prefix;
  UniqueFd fd = accept_with_prefix(l.fd.get(), prefix, k.prefix_limit);
  ASSERT_TRUE(fd);
  ASSERT_FALSE(prefix.empty());
  EXPECT_EQ(prefix[0], 0x16) << "a TLS handshake record";

  auto conn = Conn::create(ctx, fd.get(), prefix);
  ASSERT_TRUE(conn.ok()) << conn.error().str();
  Conn& c = **conn;
  ASSERT_EQ(handshake(c, fd.get()), Conn::Io::Ok)
      << c.error() << "; s_client said: " << slurp(m.path("s_client.log"));
  EXPECT_EQ(c.version(), k.want_version);
  EXPECT_EQ(c.alpn(), k.want_alpn);
  EXPECT_FALSE(c.cipher().empty());
  std::printf("    %s %s %s alpn=\"%s\" prefix=%zu bytes\n", k.cert.c_str(),
              std::string(c.version()).c_str(), std::string(c.cipher()).c_str(),
              std::string(c.alpn()).c_str(), prefix.size());

  EXPECT_NE(read_text(c, fd.get(), "\n").find("ping from client\n"), std::string::npos);
  ASSERT_TRUE(write_text(c, fd.get(), "pong from server\n")) << c.error();
  EXPECT_NE(client.read_until("pong from server\n").find("pong from server\n"), std::string::npos);

  // The client ends the session: its stdin EOF makes it send close_notify (or just FIN).
  client.close_stdin();
  Conn::Io last = Conn::Io::Ok;
  std::string rest = read_text(c, fd.get(), "never", &last);
  EXPECT_TRUE(rest.empty()) << rest;
  EXPECT_EQ(last, Conn::Io::Closed) << c.error();
  c.shutdown();
  c.shutdown();  // idempotent
}

TEST_F(Tls, EcdsaTls13AlpnH2) {
  echo_with_s_client(
      m, {"ec-chain.pem", "ec.key", "-tls1_3", {"h2", "http/1.1"}, "h2,http/1.1", "TLSv1.3", "h2"});
}
TEST_F(Tls, EcdsaTls12AlpnH2) {
  echo_with_s_client(
      m, {"ec-chain.pem", "ec.key", "-tls1_2", {"h2", "http/1.1"}, "h2,http/1.1", "TLSv1.2", "h2"});
}
TEST_F(Tls, RsaTls13AlpnH2) {
  echo_with_s_client(
      m, {"rsa.pem", "rsa.key", "-tls1_3", {"h2", "http/1.1"}, "h2,http/1.1", "TLSv1.3", "h2"});
}
TEST_F(Tls, RsaTls12AlpnH2) {
  echo_with_s_client(
      m, {"rsa.pem", "rsa.key", "-tls1_2", {"h2", "http/1.1"}, "h2,http/1.1", "TLSv1.2", "h2"});
}
TEST_F(Tls, ServerPreferenceWins) {
  echo_with_s_client(
      m, {"ec.pem", "ec.key", "-tls1_3", {"http/1.1", "h2"}, "h2,http/1.1", "TLSv1.3", "http/1.1"});
}
TEST_F(Tls, NoServerAlpnMeansNone) {
  echo_with_s_client(m, {"ec.pem", "ec.key", "-tls1_3", {}, "h2,http/1.1", "TLSv1.3", ""});
}
TEST_F(Tls, AlpnMismatchContinuesWithoutAlpn) {
  echo_with_s_client(m, {"rsa.pem", "rsa.key", "-tls1_2", {"h2"}, "http/1.1", "TLSv1.2", ""});
}
TEST_F(Tls, ClientWithoutAlpn) {
  echo_with_s_client(m, {"ec.pem", "ec.key", "-tls1_3", {"h2"}, "", "TLSv1.3", ""});
}
// Only the first 10 bytes come from the prefix: the rest of the ClientHello must be read from
// the socket, mid-record.
TEST_F(Tls, PrefixSplitMidRecord) {
  echo_with_s_client(m, {"ec.pem", "ec.key", "-tls1_3", {"h2"}, "h2", "TLSv1.3", "h2", 10});
}
TEST_F(Tls, PrefixIsJustTheRecordHeader) {
  echo_with_s_client(m, {"rsa.pem", "rsa.key", "-tls1_2", {"h2"}, "h2", "TLSv1.2", "h2", 5});
}

// A client that does not trust the server's CA aborts; the server sees a failed handshake.
TEST_F(Tls, UntrustedCertificateFailsTheHandshake) {
  auto ctx = load_ok(m.path("ec.pem"), m.path("ec.key"), {});
  ASSERT_TRUE(ctx);
  Listener l = listen_loopback();
  Child client({"openssl", "s_client", "-connect", "127.0.0.1:" + std::to_string(l.port),
                "-servername", "wiki.example.com", "-CAfile", m.path("other-ca.pem"),
                "-verify_return_error", "-quiet", "-tls1_3"},
               m.path("s_client.log"));
  ASSERT_TRUE(client.started());
  std::vector<uint8_t> prefix;
  UniqueFd fd = accept_with_prefix(l.fd.get(), prefix);
  ASSERT_TRUE(fd);
  auto conn = Conn::create(ctx, fd.get(), prefix);
  ASSERT_TRUE(conn.ok());
  Conn::Io io = handshake(**conn, fd.get());
  // TLS 1.3: the client checks the chain after the server's Finished, so the server may
  // already count the handshake as done; the client's alert then shows up on the next read.
  if (io == Conn::Io::Ok) {
    uint8_t buf[64];
    size_t n = 0;
    io = drive(fd.get(), [&] { return (*conn)->read(buf, sizeof buf, n); });
  }
  EXPECT_TRUE(io == Conn::Io::Error || io == Conn::Io::Closed) << int(io);
  if (io == Conn::Io::Error) std::printf("    server: %s\n", (*conn)->error().c_str());
  EXPECT_NE(client.wait_exit(), 0);
}

// Starts s_client against a fresh listener and returns the server side after the handshake.
struct Session {
  std::shared_ptr<ServerContext> ctx;
  Listener l;
  std::unique_ptr<Child> client;
  UniqueFd fd;
  std::unique_ptr<Conn> conn;
};

void start_session(Material& m, Session& s, const std::string& input) {
  s.ctx = load_ok(m.path("ec.pem"), m.path("ec.key"), {});
  ASSERT_TRUE(s.ctx);
  s.l = listen_loopback();
  s.client = std::make_unique<Child>(
      std::vector<std::string>{"openssl", "s_client", "-connect",
                               "127.0.0.1:" + std::to_string(s.l.port), "-servername",
                               "wiki.example.com", "-CAfile", m.path("ca.pem"),
                               "-verify_return_error", "-quiet", "-no_ign_eof", "-tls1_3"},
      m.path("s_client.log"));
  ASSERT_TRUE(s.client->started());
  if (!input.empty()) s.client->send(input);
  std::vector<uint8_t> prefix;
  s.fd = accept_with_prefix(s.l.fd.get(), prefix);
  ASSERT_TRUE(s.fd);
  auto conn = Conn::create(s.ctx, s.fd.get(), prefix);
  ASSERT_TRUE(conn.ok());
  s.conn = std::move(*conn);
  ASSERT_EQ(handshake(*s.conn, s.fd.get()), Conn::Io::Ok) << s.conn->error();
}

// A record larger than the read buffer stays decrypted inside TLS: pending() must say so,
// because the socket will not become readable again for those bytes.
TEST_F(Tls, PendingAfterShortRead) {
  Session s;
  const std::string line(100, 'x');
  start_session(m, s, line + "\n");
  uint8_t buf[10];
  size_t n = 0;
  ASSERT_EQ(drive(s.fd.get(), [&] { return s.conn->read(buf, sizeof buf, n); }), Conn::Io::Ok)
      << s.conn->error();
  EXPECT_EQ(n, sizeof buf);
  EXPECT_TRUE(s.conn->pending());
  std::string got(reinterpret_cast<char*>(buf), n);
  while (s.conn->pending()) {  // no poll: the bytes are already here
    ASSERT_EQ(s.conn->read(buf, sizeof buf, n), Conn::Io::Ok);
    got.append(reinterpret_cast<char*>(buf), n);
  }
  EXPECT_EQ(got, line + "\n");
}

// A small send buffer and a client that is slow to be read force WANT_WRITE in the middle of
// a multi-record write; retrying with the same buffer must deliver every byte once, in order.
TEST_F(Tls, LargeWriteUnderBackpressure) {
  Session s;
  start_session(m, s, "");
  int small = 4096;
  ASSERT_EQ(::setsockopt(s.fd.get(), SOL_SOCKET, SO_SNDBUF, &small, sizeof small), 0);
  std::string data(1 << 20, '\0');
  for (size_t i = 0; i < data.size(); ++i) data[i] = char('a' + (i * 7 + i / 251) % 26);

  std::string received;
  size_t off = 0, want_writes = 0;
  const auto end = Clock::now() + std::chrono::seconds(10);
  while ((off < data.size() || received.size() < data.size()) && Clock::now() < end) {
    if (off < data.size()) {
      size_t n = 0;
      Conn::Io io =
          s.conn->write(reinterpret_cast<const uint8_t*>(data.data()) + off, data.size() - off, n);
      ASSERT_TRUE(io == Conn::Io::Ok || io == Conn::Io::WantWrite) << s.conn->error();
      if (io == Conn::Io::Ok)
        off += n;
      else
        ++want_writes;
    }
    // Drain what the client printed, so that it keeps reading the socket.
    pollfd p[2] = {{s.client->stdout_fd(), POLLIN, 0},
                   {s.fd.get(), short(off < data.size() ? POLLOUT : 0), 0}};
    if (::poll(p, 2, 1000) <= 0) continue;
    if (p[0].revents & (POLLIN | POLLHUP)) {
      char buf[65536];
      ssize_t n = ::read(s.client->stdout_fd(), buf, sizeof buf);
      if (n <= 0) break;
      received.append(buf, size_t(n));
    }
  }
  EXPECT_GT(want_writes, 0u) << "the test did not exercise WANT_WRITE";
  EXPECT_EQ(off, data.size());
  ASSERT_EQ(received.size(), data.size());
  EXPECT_TRUE(received == data);
}

// ---- curl over a tiny HTTP responder -------------------------------------------------------

void curl_get(Material& m, const std::string& cert, const std::string& key) {
  auto ctx = load_ok(m.path(cert), m.path(key), {"http/1.1"});
  ASSERT_TRUE(ctx);
  Listener l = listen_loopback();
  const std::string port = std::to_string(l.port);
  Child curl({"curl", "-sS", "--noproxy", "*", "--max-time", "5", "--cacert", m.path("ca.pem"),
              "--resolve", "wiki.example.com:" + port + ":127.0.0.1",
              "https://wiki.example.com:" + port + "/"},
             m.path("curl.log"));
  ASSERT_TRUE(curl.started());
  std::vector<uint8_t> prefix;
  UniqueFd fd = accept_with_prefix(l.fd.get(), prefix);
  ASSERT_TRUE(fd);
  auto conn = Conn::create(ctx, fd.get(), prefix);
  ASSERT_TRUE(conn.ok());
  Conn& c = **conn;
  ASSERT_EQ(handshake(c, fd.get()), Conn::Io::Ok)
      << c.error() << "; curl said: " << slurp(m.path("curl.log"));
  EXPECT_EQ(c.alpn(), "http/1.1");
  std::string request = read_text(c, fd.get(), "\r\n\r\n");
  EXPECT_EQ(request.rfind("GET / HTTP/1.1\r\n", 0), 0u) << request;
  ASSERT_TRUE(write_text(c, fd.get(),
                         "HTTP/1.1 200 OK\r\nContent-Length: 2\r\nConnection: close\r\n\r\nok"))
      << c.error();
  c.shutdown();
  EXPECT_EQ(curl.read_until("\n", 5000), "ok");
  EXPECT_EQ(curl.wait_exit(), 0) << slurp(m.path("curl.log"));
}

TEST_F(Tls, CurlEcdsa) { curl_get(m, "ec-chain.pem", "ec.key"); }
TEST_F(Tls, CurlRsa) { curl_get(m, "rsa.pem", "rsa.key"); }

// ---- hostile clients -----------------------------------------------------------------------

// A plain TCP client sends `bytes` (then keeps the socket open unless close_after).
void garbage(Material& m, const std::string& bytes, bool close_after, bool want_error) {
  auto ctx = load_ok(m.path("rsa.pem"), m.path("rsa.key"), {"h2"});
  ASSERT_TRUE(ctx);
  Listener l = listen_loopback();
  UniqueFd client(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  a.sin_port = htons(l.port);
  ASSERT_EQ(::connect(client.get(), reinterpret_cast<sockaddr*>(&a), sizeof a), 0);
  ASSERT_EQ(::send(client.get(), bytes.data(), bytes.size(), MSG_NOSIGNAL), ssize_t(bytes.size()));
  if (close_after) ::shutdown(client.get(), SHUT_WR);

  std::vector<uint8_t> prefix;
  UniqueFd fd = accept_with_prefix(l.fd.get(), prefix, 8);  // the rest comes from the socket
  ASSERT_TRUE(fd);
  auto conn = Conn::create(ctx, fd.get(), prefix);
  ASSERT_TRUE(conn.ok());
  Conn::Io io = handshake(**conn, fd.get());
  if (want_error) {
    EXPECT_EQ(io, Conn::Io::Error);
    EXPECT_NE((*conn)->error().find("handshake: "), std::string::npos) << (*conn)->error();
    EXPECT_GT((*conn)->error().size(), std::strlen("handshake: "));
    std::printf("    %s\n", (*conn)->error().c_str());
  } else {
    // A FIN in the middle of the ClientHello is the client going away, not an attack.
    EXPECT_EQ(io, Conn::Io::Closed) << (*conn)->error();
  }
  (*conn)->shutdown();
}

TEST_F(Tls, GarbageHttpRequest) {
  garbage(m, "GET / HTTP/1.1\r\nHost: wiki.example.com\r\n\r\n", false, true);
}
TEST_F(Tls, GarbageHandshakeRecord) {
  // A handshake record header announcing 5 bytes that are not a ClientHello.
  garbage(m, std::string("\x16\x03\x01\x00\x05hello", 10), false, true);
}
TEST_F(Tls, GarbageRandomBytes) {
  std::string junk;
  uint32_t x = 12345;
  for (int i = 0; i < 3000; ++i) {
    x = x * 1103515245 + 12345;
    junk.push_back(char(x >> 16));
  }
  junk[0] = 0x16;  // past the first check, into the parser
  junk[1] = 0x03;
  junk[2] = 0x03;
  garbage(m, junk, false, true);
}
TEST_F(Tls, TruncatedClientHelloThenFin) {
  // A handshake record that promises 512 bytes, then FIN after 10.
  garbage(m, std::string("\x16\x03\x01\x02\x00\x01\x00\x01\xfc\x03", 10), true, false);
}

}  // namespace
}  // namespace rf::tls
