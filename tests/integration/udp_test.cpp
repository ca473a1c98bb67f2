// Black-box tests of the UDP data path (SPEC §1, §3): the real daemon, real UDP sockets on
// 127.0.0.1, real peers (an echo server in the test, dnsmasq, iperf3). Every wait is bounded.
// UDP does not depend on the TCP dataplane choice, so these run once, with two workers (the
// kernel's SO_REUSEPORT hash spreads clients over both).
#include <arpa/inet.h>
#include <fcntl.h>
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/socket.h>
#include <sys/wait.h>
#include <unistd.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <stdexcept>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace rf::it {
namespace {

sockaddr_in loopback4(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

uint16_t local_port(int fd) {
  sockaddr_in a{};
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  return ntohs(a.sin_port);
}

// A client socket on 127.0.0.1 (ephemeral port) connect()ed to 127.0.0.1:port, so that it
// only hears datagrams from that port.
Fd udp_client(uint16_t port, const char* to = "127.0.0.1") {
  Fd s(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  if (!s) throw std::runtime_error(std::string("socket: ") + std::strerror(errno));
  auto a = loopback4(port);
  inet_pton(AF_INET, to, &a.sin_addr);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error(std::string("connect: ") + std::strerror(errno));
  return s;
}

// One datagram, or nullopt when none came within `timeout`.
std::optional<std::string> udp_recv(int fd, milliseconds timeout) {
  pollfd p{fd, POLLIN, 0};
  if (::poll(&p, 1, int(timeout.count())) <= 0) return std::nullopt;
  std::string buf(65536, '\0');
  ssize_t n = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
  if (n < 0) return std::nullopt;
  buf.resize(size_t(n));
  return buf;
}

bool udp_send(int fd, const std::string& msg) {
  return ::send(fd, msg.data(), msg.size(), 0) == ssize_t(msg.size());
}

// The PROXY v2 DGRAM header over IPv4 as the test expects it (HAProxy proxy-protocol.txt 2.2).
struct ParsedV2 {
  bool ok = false;
  std::string why;
  std::string src, dst;  // "a.b.c.d:port"
  size_t len = 0;
};
ParsedV2 parse_v2_inet_dgram(const std::string& d) {
  static const char kSig[12] = {0x0D, 0x0A, 0x0D, 0x0A, 0x00, 0x0D,
                                0x0A, 0x51, 0x55, 0x49, 0x54, 0x0A};
  ParsedV2 r;
  if (d.size() < 16 || std::memcmp(d.data(), kSig, 12) != 0) {
    r.why = "no v2 signature";
    return r;
  }
  const auto* u = reinterpret_cast<const uint8_t*>(d.data());
  if (u[12] != 0x21) {
    r.why = "version/command byte " + std::to_string(u[12]);
    return r;
  }
  if (u[13] != 0x12) {  // AF_INET << 4 | DGRAM
    r.why = "family/protocol byte " + std::to_string(u[13]) + " (want INET+DGRAM 0x12)";
    return r;
  }
  const size_t len = size_t(u[14]) << 8 | u[15];
  if (len < 12 || d.size() < 16 + len) {
    r.why = "bad length " + std::to_string(len);
    return r;
  }
  char a[INET_ADDRSTRLEN], b[INET_ADDRSTRLEN];
  inet_ntop(AF_INET, u + 16, a, sizeof a);
  inet_ntop(AF_INET, u + 20, b, sizeof b);
  r.src = std::string(a) + ":" + std::to_string(unsigned(u[24]) << 8 | u[25]);
  r.dst = std::string(b) + ":" + std::to_string(unsigned(u[26]) << 8 | u[27]);
  r.len = 16 + len;
  r.ok = true;
  return r;
}

// A UDP server on 127.0.0.1:port, one thread: echoes every datagram (or answers "port=N"),
// remembers the source ports it saw. In proxy mode it expects a PROXY v2 header on every
// datagram, records it, and echoes only the payload behind it.
class UdpServer {
 public:
  enum class Mode { Echo, ReplyPort, ProxyEcho };
  UdpServer(uint16_t port, Mode mode = Mode::Echo)
      : port_(port), mode_(mode), wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    sock_.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
    int big = 4 << 20;
    setsockopt(sock_.get(), SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
    auto a = loopback4(port);
    if (::bind(sock_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
      throw std::runtime_error("udp bind " + std::to_string(port) + ": " + std::strerror(errno));
    thread_ = std::thread([this] { loop(); });
  }
  ~UdpServer() {
    uint64_t one = 1;
    ssize_t w = ::write(wake_.get(), &one, sizeof one);
    (void)w;
    thread_.join();
  }
  UdpServer(const UdpServer&) = delete;
  UdpServer& operator=(const UdpServer&) = delete;

  uint16_t port() const { return port_; }
  std::set<uint16_t> source_ports() const {
    std::lock_guard lk(mu_);
    return sources_;
  }
  uint64_t datagrams() const {
    std::lock_guard lk(mu_);
    return datagrams_;
  }
  uint16_t last_source_port() const {
    std::lock_guard lk(mu_);
    return last_source_;
  }
  // Proxy mode: every header seen ("src -> dst"), and the first problem.
  std::vector<std::string> headers() const {
    std::lock_guard lk(mu_);
    return headers_;
  }
  std::string proxy_error() const {
    std::lock_guard lk(mu_);
    return proxy_error_;
  }
  uint64_t without_header() const {
    std::lock_guard lk(mu_);
    return without_header_;
  }

 private:
  void loop() {
    std::string buf(65536, '\0');
    for (;;) {
      pollfd p[2] = {{sock_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
      if (::poll(p, 2, 1000) <= 0) continue;
      if (p[1].revents) return;
      for (;;) {
        sockaddr_in from{};
        socklen_t fl = sizeof from;
        ssize_t n = ::recvfrom(sock_.get(), buf.data(), buf.size(), 0,
                               reinterpret_cast<sockaddr*>(&from), &fl);
        if (n < 0) break;
        std::string reply;
        {
          std::lock_guard lk(mu_);
          ++datagrams_;
          last_source_ = ntohs(from.sin_port);
          sources_.insert(last_source_);
          if (mode_ == Mode::ReplyPort) {
            reply = "port=" + std::to_string(port_) + "\n";
          } else if (mode_ == Mode::ProxyEcho) {
            std::string d(buf.data(), size_t(n));
            ParsedV2 h = parse_v2_inet_dgram(d);
            if (!h.ok) {
              ++without_header_;
              if (proxy_error_.empty()) proxy_error_ = h.why;
              continue;
            }
            headers_.push_back(h.src + " -> " + h.dst);
            reply = d.substr(h.len);
          } else {
            reply.assign(buf.data(), size_t(n));
          }
        }
        ::sendto(sock_.get(), reply.data(), reply.size(), 0, reinterpret_cast<sockaddr*>(&from),
                 fl);
      }
    }
  }

  uint16_t port_;
  Mode mode_;
  Fd sock_, wake_;
  mutable std::mutex mu_;
  std::set<uint16_t> sources_;
  uint16_t last_source_ = 0;
  uint64_t datagrams_ = 0;
  std::vector<std::string> headers_;
  std::string proxy_error_;
  uint64_t without_header_ = 0;
  std::thread thread_;
};


bool executable(const std::string& path) { return ::access(path.c_str(), X_OK) == 0; }

// True once something listens on TCP 127.0.0.1:port (read from /proc/net/tcp: no connection,
// which a one-client server would take for its client).
bool wait_tcp_listening(uint16_t port, milliseconds timeout) {
  char want[32];
  std::snprintf(want, sizeof want, "0100007F:%04X", unsigned(port));
  for (auto t0 = Clock::now(); Clock::now() - t0 < timeout;) {
    const std::string table = read_file("/proc/net/tcp");
    for (size_t at = table.find(want); at != std::string::npos; at = table.find(want, at + 1)) {
      // "local rem_address st": the state follows the remote address; 0A = LISTEN.
      const size_t st = table.find(' ', table.find(' ', at) + 1);
      if (st != std::string::npos && table.compare(st + 1, 2, "0A") == 0) return true;
    }
    std::this_thread::sleep_for(milliseconds(50));
  }
  return false;
}

std::string udp_route(const std::string& id, const std::string& listen_port, uint16_t target_port,
                      const std::string& protocol = "udp", const std::string& extra = "") {
  return R"({"id":")" + id + R"(","protocol":")" + protocol +
         R"(","listen":"127.0.0.1","listen_port":)" + listen_port +
         R"(,"target":{"host":"127.0.0.1","port":)" + std::to_string(target_port) + "}" + extra +
         "}";
}
std::string udp_route(const std::string& id, uint16_t listen_port, uint16_t target_port,
                      const std::string& protocol = "udp", const std::string& extra = "") {
  return udp_route(id, std::to_string(listen_port), target_port, protocol, extra);
}

class UdpForward : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { prepare_process(); }

  void TearDown() override {
    if (HasFailure() && !d_.log_path().empty())
      std::cerr << "--- daemon log ---\n" << d_.log_tail() << "--- end ---\n";
  }

  std::string config(const std::vector<std::string>& routes, const std::string& limits = "") const {
    std::string r;
    for (const auto& x : routes) r += (r.empty() ? "" : ",") + x;
    return R"({"role":"edge","dataplane":"auto","workers":2,"state_dir":")" + dir_.path() +
           R"(","limits":{)" + limits + R"(},"routes":[)" + r + "]}";
  }

  TempDir dir_;
  Daemon d_;
};


// 1000 datagrams of many sizes come back byte-identical; the counters count payload bytes.
TEST_F(UdpForward, EchoThousandDatagrams) {
  UdpServer echo(free_port());
  uint16_t lp = free_port();
  IT_START_DAEMON(config({udp_route("echo", lp, echo.port())}));

  Fd c = udp_client(lp);
  const size_t sizes[] = {1, 2, 17, 100, 512, 1200, 1400, 1472, 1473, 4096, 9000, 16384, 65000};
  uint64_t total = 0;
  for (int i = 0; i < 1000; ++i) {
    const size_t n = sizes[size_t(i) % (sizeof sizes / sizeof sizes[0])];
    std::string msg = pattern_string(uint64_t(1000 + i), n);
    ASSERT_TRUE(udp_send(c.get(), msg)) << "datagram " << i << ": " << std::strerror(errno);
    auto r = udp_recv(c.get(), milliseconds(2000));
    ASSERT_TRUE(r) << "datagram " << i << " (" << n << " bytes): no reply";
    ASSERT_EQ(r->size(), n) << "datagram " << i;
    ASSERT_TRUE(*r == msg) << "datagram " << i << " differs";
    total += n;
  }
  EXPECT_EQ(echo.source_ports().size(), 1u) << "one client is one flow: one upstream socket";
  auto s = d_.wait_stats(
      "echo", [&](const RouteStats& st) { return st.bytes_down == total; }, seconds(3));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->total, 1u) << s->str();
  EXPECT_EQ(s->active, 1u) << s->str();
  EXPECT_EQ(s->bytes_up, total) << s->str();
  EXPECT_EQ(s->bytes_down, total) << s->str();
}

// 50 clients at once on one port: every client hears only its own replies.
TEST_F(UdpForward, FiftyClientsGetOnlyTheirOwnReplies) {
  UdpServer echo(free_port());
  uint16_t lp = free_port();
  IT_START_DAEMON(config({udp_route("many", lp, echo.port())}));

  constexpr int kClients = 50, kRounds = 20;
  std::vector<Fd> clients;
  for (int i = 0; i < kClients; ++i) clients.push_back(udp_client(lp));
  for (int round = 0; round < kRounds; ++round) {
    for (int i = 0; i < kClients; ++i)
      ASSERT_TRUE(udp_send(clients[size_t(i)].get(),
                           "client=" + std::to_string(i) + " round=" + std::to_string(round)));
    for (int i = 0; i < kClients; ++i) {
      const std::string want = "client=" + std::to_string(i) + " round=" + std::to_string(round);
      auto r = udp_recv(clients[size_t(i)].get(), milliseconds(2000));
      ASSERT_TRUE(r) << want << ": no reply";
      ASSERT_EQ(*r, want);
    }
  }
  for (int i = 0; i < kClients; ++i)
    EXPECT_FALSE(udp_recv(clients[size_t(i)].get(), milliseconds(0)))
        << "extra datagram, client " << i;
  EXPECT_EQ(echo.source_ports().size(), size_t(kClients));
  auto s = d_.stats("many");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->total, uint64_t(kClients)) << s->str();
  EXPECT_EQ(s->active, uint64_t(kClients)) << s->str();
  EXPECT_EQ(s->refused, 0u) << s->str();
}

// A real DNS exchange: dig -> ringfwd -> dnsmasq.
TEST_F(UdpForward, DigThroughDnsmasq) {
  const std::string dnsmasq = "/usr/sbin/dnsmasq";
  const std::string dig = "/usr/bin/dig";
  if (!executable(dnsmasq)) GTEST_SKIP() << dnsmasq << " is not installed";
  if (!executable(dig)) GTEST_SKIP() << dig << " is not installed";
  const uint16_t dp = free_port(), lp = free_port();
  ChildProcess dns(
      {dnsmasq, "--no-daemon", "--port=" + std::to_string(dp), "--listen-address=127.0.0.1",
       "--bind-interfaces", "--no-resolv", "--no-hosts", "--address=/example.test/192.0.2.7",
       "--pid-file=" + dir_.path() + "/dnsmasq.pid", "--user=root"},
      dir_.path() + "/dnsmasq.log");
  auto ask = [&](uint16_t port) {
    return run_command({dig, "@127.0.0.1", "-p", std::to_string(port), "example.test", "A",
                        "+short", "+time=1", "+tries=1"},
                       seconds(5));
  };
  // dnsmasq is up once it answers directly.
  CommandResult direct;
  for (auto t0 = Clock::now(); Clock::now() - t0 < seconds(5);) {
    direct = ask(dp);
    if (direct.exit_code == 0 && direct.output.find("192.0.2.7") != std::string::npos) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  ASSERT_NE(direct.output.find("192.0.2.7"), std::string::npos)
      << "dnsmasq did not answer directly: " << direct.output << "\n"
      << read_file(dir_.path() + "/dnsmasq.log");

  IT_START_DAEMON(config({udp_route("dns", lp, dp)}));
  for (int i = 0; i < 3; ++i) {
    CommandResult r = ask(lp);
    EXPECT_EQ(r.exit_code, 0) << r.output;
    EXPECT_EQ(r.output, "192.0.2.7\n") << "query " << i;
  }
  auto s = d_.stats("dns");
  ASSERT_TRUE(s);
  EXPECT_GE(s->total, 3u) << s->str();  // dig uses a new source port per query
  EXPECT_GT(s->bytes_down, 0u) << s->str();
}

// listen_port "A-B": port A+i goes to target port + i.
TEST_F(UdpForward, PortRangeKeepsOffset) {
  const unsigned kN = 4;
  uint16_t lp = free_port_block(kN), tp = free_port_block(kN);
  std::vector<std::unique_ptr<UdpServer>> servers;
  for (unsigned i = 0; i < kN; ++i)
    servers.push_back(std::make_unique<UdpServer>(uint16_t(tp + i), UdpServer::Mode::ReplyPort));
  std::string range = "\"" + std::to_string(lp) + "-" + std::to_string(lp + kN - 1) + "\"";
  IT_START_DAEMON(config({udp_route("range", range, tp)}));

  for (int k = kN - 1; k >= 0; --k) {
    Fd c = udp_client(uint16_t(lp + k));
    ASSERT_TRUE(udp_send(c.get(), "which?"));
    auto r = udp_recv(c.get(), milliseconds(2000));
    ASSERT_TRUE(r) << "listen port " << lp + k << ": no reply";
    EXPECT_EQ(*r, "port=" + std::to_string(tp + k) + "\n") << "listen port " << lp + k;
  }
}

// protocol "tcp+udp": one route, one port, both protocols to the same target port.
TEST_F(UdpForward, TcpAndUdpOnOnePort) {
  uint16_t tp = free_port(), lp = free_port();
  EchoServer tcp_echo(tp);
  UdpServer udp_echo(tp);
  IT_START_DAEMON(config({udp_route("both", lp, tp, "tcp+udp")}));

  auto c = connect_tcp(lp);
  ASSERT_EQ(c.err, 0) << std::strerror(c.err);
  EXPECT_EQ(echo_roundtrip(c.fd.get(), "over tcp", seconds(5)), "");
  Fd u = udp_client(lp);
  ASSERT_TRUE(udp_send(u.get(), "over udp"));
  auto r = udp_recv(u.get(), milliseconds(2000));
  ASSERT_TRUE(r) << "no udp reply";
  EXPECT_EQ(*r, "over udp");
  EXPECT_EQ(tcp_echo.accepted(), 1u);
  EXPECT_EQ(udp_echo.datagrams(), 1u);
}

// udp_idle_timeout_s: an idle flow closes (its upstream socket with it); the client's next
// datagram opens a new flow from a new source port.
TEST_F(UdpForward, IdleFlowExpires) {
  UdpServer echo(free_port());
  uint16_t lp = free_port();
  IT_START_DAEMON(config({udp_route("idle", lp, echo.port())}, R"("udp_idle_timeout_s":1)"));

  Fd c = udp_client(lp);
  ASSERT_TRUE(udp_send(c.get(), "first"));
  ASSERT_TRUE(udp_recv(c.get(), milliseconds(2000)));
  const uint16_t first = echo.last_source_port();
  const auto t0 = Clock::now();
  auto s = d_.wait_stats(
      "idle", [](const RouteStats& st) { return st.total == 1 && st.active == 0; }, seconds(5));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->active, 0u) << "the idle flow did not close: " << s->str();
  EXPECT_GE(ms_since(t0), 500.0) << "closed long before udp_idle_timeout_s";
  std::this_thread::sleep_until(t0 + milliseconds(2500));

  ASSERT_TRUE(udp_send(c.get(), "second"));
  auto r = udp_recv(c.get(), milliseconds(2000));
  ASSERT_TRUE(r) << "no reply after the flow expired";
  EXPECT_EQ(*r, "second");
  EXPECT_NE(echo.last_source_port(), first) << "a new flow has a new upstream socket";
  s = d_.stats("idle");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->total, 2u) << s->str();
  EXPECT_EQ(s->active, 1u) << s->str();
}

// Bursts of equal-size datagrams (which the daemon may send on as one GSO train) arrive as
// the same datagrams: sizes, contents and count, with a shorter one closing each burst.
// Both ways: the echo's replies come back in bursts too, and on a wildcard listener they
// carry the source address (IP_PKTINFO) beside the segment size.
class UdpBursts : public UdpForward, public ::testing::WithParamInterface<std::string> {};

TEST_P(UdpBursts, ArriveAsTheSameDatagrams) {
  UdpServer echo(free_port());
  uint16_t lp = free_port();
  IT_START_DAEMON(config({R"({"id":"burst","protocol":"udp","listen":")" + GetParam() +
                          R"(","listen_port":)" + std::to_string(lp) +
                          R"(,"target":{"host":"127.0.0.1","port":)" +
                          std::to_string(echo.port()) + "}}"}));
  Fd c = udp_client(lp);
  int big = 8 << 20;
  setsockopt(c.get(), SOL_SOCKET, SO_RCVBUF, &big, sizeof big);
  ASSERT_TRUE(udp_send(c.get(), "warm-up"));
  ASSERT_TRUE(udp_recv(c.get(), milliseconds(2000)));
  constexpr int kBursts = 20, kPerBurst = 40;
  std::vector<std::string> sent;
  for (int b = 0; b < kBursts; ++b) {
    std::vector<std::string> msgs;
    const size_t size = b % 2 ? 1000 : 64;
    for (int i = 0; i < kPerBurst; ++i)
      msgs.push_back(pattern_string(uint64_t(b * 1000 + i), i + 1 == kPerBurst ? size / 2 : size));
    std::vector<mmsghdr> mm(msgs.size());
    std::vector<iovec> iov(msgs.size());
    for (size_t i = 0; i < msgs.size(); ++i) {
      iov[i] = iovec{msgs[i].data(), msgs[i].size()};
      mm[i].msg_hdr = msghdr{};
      mm[i].msg_hdr.msg_iov = &iov[i];
      mm[i].msg_hdr.msg_iovlen = 1;
    }
    ASSERT_EQ(::sendmmsg(c.get(), mm.data(), unsigned(mm.size()), 0), int(mm.size()));
    sent.insert(sent.end(), msgs.begin(), msgs.end());
    std::this_thread::sleep_for(milliseconds(5));  // bursts, not a flood: none may be lost
  }
  std::multiset<std::string> want(sent.begin(), sent.end()), got;
  while (got.size() < sent.size()) {
    auto r = udp_recv(c.get(), milliseconds(2000));
    if (!r) break;
    got.insert(*r);
  }
  EXPECT_EQ(got.size(), sent.size()) << "datagrams lost or merged";
  EXPECT_TRUE(got == want) << "a datagram came back with other bytes or another size";
}

INSTANTIATE_TEST_SUITE_P(Listen, UdpBursts, ::testing::Values("127.0.0.1", "0.0.0.0"),
                         [](const auto& info) { return info.param == "0.0.0.0" ? "wildcard" : "loopback"; });

// SIGTERM: no new flows; a flow still carrying datagrams keeps working, quiet flows end
// after about 2 s, and the daemon then exits 0 by itself (not after udp_idle_timeout_s).
TEST_F(UdpForward, SigtermEndsQuietFlowsKeepsBusyOnes) {
  UdpServer echo(free_port());
  uint16_t lp = free_port();
  IT_START_DAEMON(config({udp_route("stop", lp, echo.port())},
                      R"("udp_idle_timeout_s":60,"drain_timeout_s":20)"));
  Fd quiet = udp_client(lp), busy = udp_client(lp);
  for (int fd : {quiet.get(), busy.get()}) {
    ASSERT_TRUE(udp_send(fd, "hello"));
    ASSERT_TRUE(udp_recv(fd, milliseconds(2000)));
  }
  const auto t0 = Clock::now();
  d_.signal(SIGTERM);
  // The busy flow goes on answering for 3 s (longer than the quiet limit).
  int answered = 0;
  while (Clock::now() - t0 < milliseconds(3000)) {
    ASSERT_TRUE(udp_send(busy.get(), "tick"));
    if (udp_recv(busy.get(), milliseconds(500))) answered++;
    std::this_thread::sleep_for(milliseconds(200));
  }
  EXPECT_GE(answered, 10) << "a busy flow was cut at SIGTERM";
  EXPECT_TRUE(d_.running()) << "exited while a flow was busy";
  // No new flows after SIGTERM: a new client gets no answer.
  Fd late = udp_client(lp);
  ASSERT_TRUE(udp_send(late.get(), "late"));
  EXPECT_FALSE(udp_recv(late.get(), milliseconds(500))) << "a new flow was served after SIGTERM";
  // Once the busy client stops too, the daemon exits within the quiet limit and a tick.
  auto code = d_.wait_exit(seconds(5));
  ASSERT_TRUE(code) << "still running 5 s after the last datagram: " << d_.log_tail();
  EXPECT_EQ(*code, 0);
}

// udp_flows_per_client: one address holds at most that many flows (across workers); the
// others are refused, never by evicting a live flow; once flows expire the address may open
// new ones.
TEST_F(UdpForward, PerClientFlowCap) {
  UdpServer echo(free_port());
  uint16_t lp = free_port();
  IT_START_DAEMON(config({udp_route("cap", lp, echo.port())},
                      R"("udp_idle_timeout_s":2,"udp_flows_per_client":4)"));

  constexpr int kSockets = 10;
  std::vector<Fd> clients;
  for (int i = 0; i < kSockets; ++i) clients.push_back(udp_client(lp));
  for (int i = 0; i < kSockets; ++i)
    ASSERT_TRUE(udp_send(clients[size_t(i)].get(), "hello " + std::to_string(i)));
  // Everything below runs well within the 2 s idle timeout, so no admitted flow expires and
  // makes room before the checks are done.
  std::this_thread::sleep_for(milliseconds(300));
  std::vector<int> answered, refused;
  for (int i = 0; i < kSockets; ++i) {
    auto r = udp_recv(clients[size_t(i)].get(), milliseconds(0));
    if (r) {
      EXPECT_EQ(*r, "hello " + std::to_string(i));
      answered.push_back(i);
    } else {
      refused.push_back(i);
    }
  }
  EXPECT_EQ(answered.size(), 4u);
  // Live flows stay: a refused client retrying does not push them out.
  for (int k = 0; k < 3; ++k)
    for (int i : refused) udp_send(clients[size_t(i)].get(), "again");
  for (int i : answered) {
    ASSERT_TRUE(udp_send(clients[size_t(i)].get(), "still here"));
    auto r = udp_recv(clients[size_t(i)].get(), milliseconds(2000));
    EXPECT_TRUE(r && *r == "still here") << "flow of socket " << i << " was disturbed";
  }
  auto s = d_.stats("cap");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->total, 4u) << s->str();
  EXPECT_GE(s->refused, 6u) << s->str();
  ASSERT_FALSE(refused.empty());

  s = d_.wait_stats(
      "cap", [](const RouteStats& st) { return st.active == 0; }, seconds(6));
  ASSERT_TRUE(s);
  ASSERT_EQ(s->active, 0u) << "flows did not expire: " << s->str();
  for (int i : refused) {
    while (udp_recv(clients[size_t(i)].get(), milliseconds(0))) {
    }
  }
  Fd& fifth = clients[size_t(refused.front())];
  ASSERT_TRUE(udp_send(fifth.get(), "now?"));
  auto r = udp_recv(fifth.get(), milliseconds(2000));
  ASSERT_TRUE(r) << "a refused client could not open a flow after the others expired";
  EXPECT_EQ(*r, "now?");
}

// proxy_protocol "v2" on a udp route: every datagram carries a PROXY v2 DGRAM header with the
// client's address and port and the listener's address.
TEST_F(UdpForward, ProxyV2OnEveryDatagram) {
  UdpServer echo(free_port(), UdpServer::Mode::ProxyEcho);
  uint16_t lp = free_port();
  IT_START_DAEMON(config({udp_route("pp", lp, echo.port(), "udp", R"(,"proxy_protocol":"v2")")}));

  Fd c = udp_client(lp);
  const std::string me = "127.0.0.1:" + std::to_string(local_port(c.get()));
  const std::string listener = "127.0.0.1:" + std::to_string(lp);
  constexpr int kN = 20;
  for (int i = 0; i < kN; ++i) {
    const std::string msg = "datagram " + std::to_string(i);
    ASSERT_TRUE(udp_send(c.get(), msg));
    auto r = udp_recv(c.get(), milliseconds(2000));
    if (!r && echo.without_header() > 0 &&
        d_.log().find("could not write a PROXY v2 header") != std::string::npos)
      GTEST_SKIP() << "write_proxy_v2 is still a stub: datagrams go without a header";
    ASSERT_TRUE(r) << msg << ": no reply (" << echo.proxy_error() << ")";
    EXPECT_EQ(*r, msg) << "the payload behind the header differs";
  }
  EXPECT_EQ(echo.without_header(), 0u) << echo.proxy_error();
  auto headers = echo.headers();
  ASSERT_EQ(headers.size(), size_t(kN));
  for (const auto& h : headers) EXPECT_EQ(h, me + " -> " + listener);
  auto s = d_.stats("pp");
  ASSERT_TRUE(s);
  uint64_t payload = 0;
  for (int i = 0; i < kN; ++i) payload += ("datagram " + std::to_string(i)).size();
  EXPECT_EQ(s->bytes_up, payload) << "bytes_up counts payload only: " << s->str();
}

// A listener on 0.0.0.0 answers from the address the client sent to (a client that connect()s
// its socket drops anything else), and the PROXY header names that address, not 0.0.0.0.
TEST_F(UdpForward, WildcardListenerAnswersFromTheAddressUsed) {
  UdpServer echo(free_port(), UdpServer::Mode::ProxyEcho);
  uint16_t lp = free_port();
  std::string route = udp_route("any", lp, echo.port(), "udp", R"(,"proxy_protocol":"v2")");
  const std::string from = R"("listen":"127.0.0.1")";
  route.replace(route.find(from), from.size(), R"("listen":"0.0.0.0")");
  IT_START_DAEMON(config({route}));

  for (const char* to : {"127.0.0.2", "127.0.0.3", "127.0.0.1"}) {
    Fd c = udp_client(lp, to);
    const std::string me = "127.0.0.1:" + std::to_string(local_port(c.get()));
    ASSERT_TRUE(udp_send(c.get(), std::string("to ") + to));
    auto r = udp_recv(c.get(), milliseconds(2000));
    ASSERT_TRUE(r) << "no reply from " << to << " (" << echo.proxy_error() << ")";
    EXPECT_EQ(*r, std::string("to ") + to);
    auto headers = echo.headers();
    ASSERT_FALSE(headers.empty());
    EXPECT_EQ(headers.back(), me + " -> " + to + ":" + std::to_string(lp));
  }
}

// iperf3 -u through a tcp+udp route: TCP control and UDP data on the same port.
TEST_F(UdpForward, Iperf3UdpThroughTcpUdpRoute) {
  const std::string iperf3 = "/usr/bin/iperf3";
  if (!executable(iperf3)) GTEST_SKIP() << iperf3 << " is not installed";
  uint16_t sp = free_port(), lp = free_port();
  ChildProcess server({iperf3, "-s", "-B", "127.0.0.1", "-p", std::to_string(sp)},
                    dir_.path() + "/iperf3-server.log");
  IT_START_DAEMON(config({udp_route("iperf", lp, sp, "tcp+udp")}));
  // The server is up once its port listens (a probe connection would count as a test run).
  ASSERT_TRUE(wait_tcp_listening(sp, seconds(5))) << read_file(dir_.path() + "/iperf3-server.log");
  CommandResult r = run_command({iperf3, "-c", "127.0.0.1", "-p", std::to_string(lp), "-u", "-b",
                                 "200M", "-t", "3", "-l", "1400", "--json"},
                                seconds(20));
  ASSERT_EQ(r.exit_code, 0) << r.output << "\n--- server ---\n"
                            << read_file(dir_.path() + "/iperf3-server.log");
  // end.sum.lost_percent: the stream summary after "end" (the per-interval ones come before).
  const size_t end = r.output.find("\"end\":");
  ASSERT_NE(end, std::string::npos) << r.output;
  const size_t sum = r.output.find("\"sum\":", end);
  ASSERT_NE(sum, std::string::npos) << r.output;
  const size_t lost = r.output.find("\"lost_percent\":", sum);
  ASSERT_NE(lost, std::string::npos) << r.output;
  const double pct = std::strtod(r.output.c_str() + lost + 15, nullptr);
  const size_t packets = r.output.find("\"packets\":", sum);
  std::cerr << "iperf3 -u 200M through ringfwd: lost_percent=" << pct << " packets="
            << (packets == std::string::npos ? -1 : std::atoll(r.output.c_str() + packets + 10))
            << "\n";
  EXPECT_LT(pct, 5.0) << r.output;
  auto s = d_.stats("iperf");
  ASSERT_TRUE(s);
  EXPECT_GT(s->bytes_up, 50u * 1000 * 1000) << s->str();  // 200 Mbit/s for 3 s: 75 MB
}

}  // namespace
}  // namespace rf::it
