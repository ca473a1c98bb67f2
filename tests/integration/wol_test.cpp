// Wake-on-LAN (SPEC §6) against the real daemon in the gateway role on loopback: a "sleeping"
// host in the test listens only after it receives a valid magic packet for its MAC (UDP port 9,
// sent to the broadcast address of the route), and a client's single connect succeeds.
// Port 9 needs root: without it the tests skip.
#include <gtest/gtest.h>
#include <netinet/in.h>
#include <poll.h>
#include <sys/eventfd.h>
#include <sys/socket.h>
#include <unistd.h>

#include <atomic>
#include <cstring>
#include <memory>
#include <mutex>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace rf::it {
namespace {

constexpr const char* kMac = "02:00:00:aa:bb:cc";
const uint8_t kMacBytes[6] = {0x02, 0x00, 0x00, 0xaa, 0xbb, 0xcc};

// A machine that sleeps: nothing listens on its service port until a magic packet for its MAC
// arrives on UDP port 9; then, after `boot` (a machine takes a while to come up), an echo
// server starts there.
class Sleeper {
 public:
  Sleeper(uint16_t service_port, milliseconds boot)
      : port_(service_port), boot_(boot), wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
    sock_.reset(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
    int one = 1;
    setsockopt(sock_.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    setsockopt(sock_.get(), SOL_SOCKET, SO_BROADCAST, &one, sizeof one);
    sockaddr_in a{};
    a.sin_family = AF_INET;
    a.sin_port = htons(9);
    a.sin_addr.s_addr = htonl(INADDR_ANY);  // broadcasts arrive here too
    bound_ = ::bind(sock_.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
    bind_errno_ = errno;
    if (bound_) thread_ = std::thread([this] { loop(); });
  }
  ~Sleeper() {
    uint64_t one = 1;
    ssize_t w = ::write(wake_.get(), &one, sizeof one);
    (void)w;
    if (thread_.joinable()) thread_.join();
  }
  bool bound() const { return bound_; }
  int bind_errno() const { return bind_errno_; }
  int valid_packets() const { return valid_.load(); }
  int other_packets() const { return other_.load(); }
  bool awake() {
    std::lock_guard lk(mu_);
    return echo_ != nullptr;
  }

 private:
  void loop() {
    uint8_t want[102];
    std::memset(want, 0xff, 6);
    for (int i = 0; i < 16; ++i) std::memcpy(want + 6 + 6 * i, kMacBytes, 6);
    Clock::time_point wake_at{};
    for (;;) {
      pollfd p[2] = {{sock_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
      ::poll(p, 2, 20);
      if (p[1].revents) return;
      if (p[0].revents & POLLIN) {
        uint8_t buf[512];
        ssize_t n = ::recv(sock_.get(), buf, sizeof buf, MSG_DONTWAIT);
        if (n == 102 && std::memcmp(buf, want, 102) == 0) {
          if (valid_++ == 0) wake_at = Clock::now() + boot_;
        } else if (n >= 0) {
          other_++;
        }
      }
      if (valid_ > 0 && Clock::now() >= wake_at) {
        std::lock_guard lk(mu_);
        if (!echo_) echo_ = std::make_unique<EchoServer>(port_);
      }
    }
  }
  uint16_t port_;
  milliseconds boot_;
  Fd sock_, wake_;
  bool bound_ = false;
  int bind_errno_ = 0;
  std::atomic<int> valid_{0}, other_{0};
  std::mutex mu_;
  std::unique_ptr<EchoServer> echo_;
  std::thread thread_;
};

class Wol : public ::testing::Test {
 protected:
  static void SetUpTestSuite() { prepare_process(); }
  void TearDown() override {
    if (HasFailure() && !d_.log_path().empty())
      std::cerr << "--- daemon log ---\n" << d_.log_tail() << "--- end ---\n";
  }
  // A gateway with one route to the LAN device 127.0.0.1:target, waking it by `kMac`.
  std::string config(uint16_t lp, uint16_t target, unsigned wait_s,
                     const std::string& protocol = "tcp") const {
    return R"({"role":"gateway","gateway_id":"home","tunnel_ip":"127.0.0.1","workers":2,)"
           R"("state_dir":")" + dir_.path() + R"(","limits":{"connect_timeout_ms":3000},)"
           R"("routes":[{"id":"pc","protocol":")" + protocol + R"(","listen":"127.0.0.1",)"
           R"("listen_port":)" + std::to_string(lp) +
           R"(,"target":{"lan_host":"127.0.0.1","lan_port":)" + std::to_string(target) +
           R"(},"wol":{"mac":")" + kMac + R"(","broadcast":"127.255.255.255","wait_s":)" +
           std::to_string(wait_s) + "}}]}";
  }
  TempDir dir_;
  Daemon d_;
};

#define NEED_PORT_9(s) \
  if (!(s).bound()) GTEST_SKIP() << "cannot bind UDP port 9: " << std::strerror((s).bind_errno())

// The client's one connect succeeds: the gateway wakes the machine and holds the connection
// until the service listens (here 1.5 s after the packet).
TEST_F(Wol, FirstConnectSucceedsWhileTheTargetWakes) {
  const uint16_t tp = free_port(), lp = free_port();
  Sleeper pc(tp, milliseconds(1500));
  NEED_PORT_9(pc);
  IT_START_DAEMON(config(lp, tp, 20));
  const auto t0 = Clock::now();
  auto c = connect_tcp(lp);
  ASSERT_EQ(c.err, 0) << std::strerror(c.err);
  std::string e = echo_roundtrip(c.fd.get(), "are you awake?", seconds(15));
  const double ms = ms_since(t0);
  EXPECT_EQ(e, "") << "the first connection failed";
  EXPECT_TRUE(pc.awake());
  EXPECT_GE(pc.valid_packets(), 1);
  EXPECT_GE(ms, 1400) << "answered before the machine was up?";
  EXPECT_LT(ms, 5000) << "retries every 500 ms should find the service soon after it is up";
  RecordProperty("connect_to_first_byte_ms", std::to_string(int(ms)));
  std::cout << "connect to first byte through a waking target: " << int(ms) << " ms (boot 1500 ms)\n";
  EXPECT_NE(d_.log().find("Wake-on-LAN for 02:00:00:aa:bb:cc"), std::string::npos) << d_.log_tail();
  // Awake now: the next client connects at once, without another packet.
  const int packets = pc.valid_packets();
  auto c2 = connect_tcp(lp);
  ASSERT_EQ(c2.err, 0);
  EXPECT_EQ(echo_roundtrip(c2.fd.get(), "again", seconds(5)), "");
  EXPECT_EQ(pc.valid_packets(), packets);
}

// Many clients of a sleeping machine: each gets through, and the packets are rate-limited
// (at most one per MAC per second per worker), not one per client and retry.
TEST_F(Wol, ManyClientsOnePacketPerSecond) {
  const uint16_t tp = free_port(), lp = free_port();
  Sleeper pc(tp, milliseconds(2500));
  NEED_PORT_9(pc);
  IT_START_DAEMON(config(lp, tp, 20));
  std::vector<std::thread> clients;
  std::atomic<int> ok{0};
  const auto t0 = Clock::now();
  for (int i = 0; i < 8; ++i)
    clients.emplace_back([&, i] {
      auto c = connect_tcp(lp);
      if (c.err == 0 && echo_roundtrip(c.fd.get(), "client " + std::to_string(i), seconds(15)) == "")
        ok++;
    });
  for (auto& t : clients) t.join();
  const double secs = ms_since(t0) / 1000;
  EXPECT_EQ(ok.load(), 8);
  // 8 clients retrying every 500 ms for ~2.5 s would be ~40 packets without the limit.
  EXPECT_LE(pc.valid_packets(), int(2 * (secs + 1))) << "over " << secs << " s";
  EXPECT_EQ(pc.other_packets(), 0) << "a malformed magic packet was sent";
}

// A machine that never wakes: the client waits wol.wait_s, then is closed; counted as failed.
TEST_F(Wol, GivesUpAfterWaitS) {
  const uint16_t tp = free_port(), lp = free_port();
  Sleeper pc(free_port(), milliseconds(0));  // wakes on another port: tp stays closed
  NEED_PORT_9(pc);
  IT_START_DAEMON(config(lp, tp, 2));
  auto c = connect_tcp(lp);
  ASSERT_EQ(c.err, 0);
  auto w = wait_closed(c.fd.get(), Clock::now(), seconds(8));
  EXPECT_NE(w.end, End::Timeout) << "the client was never closed";
  EXPECT_GE(w.ms, 1800);
  EXPECT_LE(w.ms, 4500);
  EXPECT_GE(pc.valid_packets(), 2) << "one packet per second while waiting";
  auto s = d_.stats("pc");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->failed, 1u) << s->str();
  EXPECT_NE(d_.log().find("did not wake within wol.wait_s"), std::string::npos);
}

// UDP routes wake too: a flow to a sleeping machine sends the packet.
TEST_F(Wol, UdpFlowWakesTheTarget) {
  const uint16_t tp = free_port(), lp = free_port();
  Sleeper pc(free_port(), milliseconds(0));
  NEED_PORT_9(pc);
  IT_START_DAEMON(config(lp, tp, 20, "udp"));
  Fd u(::socket(AF_INET, SOCK_DGRAM | SOCK_CLOEXEC, 0));
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(lp);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  ASSERT_EQ(::sendto(u.get(), "ping", 4, 0, reinterpret_cast<sockaddr*>(&a), sizeof a), 4);
  for (auto t0 = Clock::now(); pc.valid_packets() == 0 && Clock::now() - t0 < seconds(3);)
    std::this_thread::sleep_for(milliseconds(20));
  EXPECT_GE(pc.valid_packets(), 1);
}

}  // namespace
}  // namespace rf::it
