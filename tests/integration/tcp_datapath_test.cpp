// Black-box tests of the TCP data path: the real daemon, real sockets on 127.0.0.1, real peers.
// Every test runs once per dataplane ("splice", "copy") with two workers.
#include <gtest/gtest.h>
#include <poll.h>
#include <signal.h>
#include <sys/socket.h>

#include <atomic>
#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <future>
#include <memory>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace rf::it {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;
constexpr uint64_t kHeader = sizeof(DuplexHeader);

// Size of the big bidirectional transfer; RINGFWD_IT_BIG_MIB shrinks it for quick local runs.
uint64_t big_transfer_bytes() {
  const char* v = std::getenv("RINGFWD_IT_BIG_MIB");
  uint64_t mib = v ? std::strtoull(v, nullptr, 10) : 1024;
  return (mib ? mib : 1024) * kMiB;
}

std::string route_json(const std::string& id, const std::string& listen_port, uint16_t target_port,
                       const std::string& extra = "") {
  return R"({"id":")" + id + R"(","protocol":"tcp","listen":"127.0.0.1","listen_port":)" +
         listen_port + R"(,"target":{"host":"127.0.0.1","port":)" + std::to_string(target_port) +
         "}" + extra + "}";
}
std::string route_json(const std::string& id, uint16_t listen_port, uint16_t target_port,
                       const std::string& extra = "") {
  return route_json(id, std::to_string(listen_port), target_port, extra);
}

bool closed_end(End e) { return e == End::Eof || e == End::Reset; }

class DataPath : public ::testing::TestWithParam<std::string> {
 protected:
  static void SetUpTestSuite() { prepare_process(); }
  void SetUp() override {
    if (GetParam() == "sockmap") {
      std::string why = sockmap_unavailable();
      if (!why.empty()) GTEST_SKIP() << why;
    }
  }

  void TearDown() override {
    if (HasFailure() && !d_.log_path().empty())
      std::cerr << "--- daemon log (" << GetParam() << ") ---\n"
                << d_.log_tail() << "--- end ---\n";
  }

  std::string config(const std::vector<std::string>& routes, const std::string& limits = "") const {
    std::string r;
    for (const auto& x : routes) r += (r.empty() ? "" : ",") + x;
    return R"({"role":"edge","dataplane":")" + GetParam() + R"(","workers":2,"state_dir":")" +
           dir_.path() + R"(","limits":{)" + limits + R"(},"routes":[)" + r + "]}";
  }

  // Opens n connections to port, each proven by one echo round trip.
  std::vector<Fd> open_echo_connections(uint16_t port, int n) {
    std::vector<Fd> fds;
    for (int i = 0; i < n; ++i) {
      auto c = connect_tcp(port);
      EXPECT_EQ(c.err, 0) << "connection " << i << ": " << std::strerror(c.err);
      if (c.err) break;
      std::string e = echo_roundtrip(c.fd.get(), "hello " + std::to_string(i), seconds(5));
      EXPECT_EQ(e, "") << "connection " << i;
      fds.push_back(std::move(c.fd));
    }
    return fds;
  }

  // What the ready line reports: "auto" resolves to the hybrid of copy and splice.
  std::string expected_mode() const { return GetParam() == "auto" ? "hybrid" : GetParam(); }

  // Rewrites the config file the daemon was started with and sends SIGHUP; true once the
  // daemon logs `verdict` one more time than before ("reloaded " or "reload refused").
  bool reload(const std::string& cfg, const std::string& verdict = "ringfwd[info]: reloaded ") {
    auto count = [&] {
      std::string log = d_.log();
      size_t n = 0;
      for (size_t at = log.find(verdict); at != std::string::npos; at = log.find(verdict, at + 1)) ++n;
      return n;
    };
    const size_t before = count();
    dir_.write_file("ringfwd.json", cfg);
    d_.signal(SIGHUP);
    const auto deadline = Clock::now() + seconds(5);
    while (Clock::now() < deadline) {
      if (count() > before) return true;
      std::this_thread::sleep_for(milliseconds(10));
    }
    return false;
  }

  // What a PortReplyServer behind `port` answers ("port=N\n"), or why nothing came.
  static std::string reply_via(uint16_t port) {
    auto c = connect_tcp(port, milliseconds(1000));
    if (c.err) return std::string("connect: ") + std::strerror(c.err);
    auto r = read_to_end(c.fd.get(), Clock::now() + seconds(3));
    return r.data.empty() ? std::string("no reply: ") + to_string(r.end) : r.data;
  }

  void check_max_connections(const std::string& route, uint16_t lp, EchoServer& echo);

  TempDir dir_;
  Daemon d_;
};

#define START_DAEMON(cfg)                                                        \
  do {                                                                           \
    std::string why_ = d_.start(dir_, (cfg));                                    \
    ASSERT_TRUE(why_.empty()) << "daemon start: " << why_;                       \
    ASSERT_NE(d_.log().find("dataplane=" + expected_mode() + " "), std::string::npos) \
        << "the ready line does not report the configured dataplane";            \
  } while (0)

// 1. Messages of many sizes come back unchanged; byte counters match exactly.
TEST_P(DataPath, EchoManySizes) {
  EchoServer echo(free_port());
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("echo", lp, echo.port())}));

  auto c = connect_tcp(lp);
  ASSERT_EQ(c.err, 0) << std::strerror(c.err);
  const size_t sizes[] = {1, 2, 7, 100, 1460, 4096, 16383, 65535, 65536, 65537, 200001, 1 << 20};
  uint64_t total = 0;
  uint64_t seed = 100;
  for (size_t n : sizes) {
    std::string msg = pattern_string(seed++, n);
    ASSERT_EQ(echo_roundtrip(c.fd.get(), msg, seconds(20)), "") << "size " << n;
    total += n;
  }
  for (int i = 0; i < 50; ++i) {  // many tiny ping-pongs on the same connection
    ASSERT_EQ(echo_roundtrip(c.fd.get(), std::string(1, char('a' + i % 26)), seconds(5)), "");
    total += 1;
  }
  c.fd.reset();

  auto s = d_.wait_stats(
      "echo", [&](const RouteStats& st) { return st.active == 0 && st.bytes_down >= total; },
      seconds(5));
  ASSERT_TRUE(s) << "no stats line for route echo";
  EXPECT_EQ(s->total, 1u) << s->str();
  EXPECT_EQ(s->active, 0u) << s->str();
  EXPECT_EQ(s->bytes_up, total) << s->str();
  EXPECT_EQ(s->bytes_down, total) << s->str();
  EXPECT_EQ(s->failed, 0u) << s->str();
}

// 2. A large transfer in both directions at once on one connection, verified byte by byte.
TEST_P(DataPath, BigTransferBothWaysAtOnce) {
  DuplexServer srv(free_port());
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("bulk", lp, srv.port())}));

  const uint64_t n = big_transfer_bytes();
  DuplexClientOptions o;
  o.id = 1;
  o.len_up = n;
  o.len_down = n;
  o.timeout = seconds(120);
  auto r = run_duplex(lp, o);
  std::cerr << "[ info ] " << GetParam() << ": " << 2 * n / kMiB << " MiB in " << r.ms
            << " ms = " << (2.0 * n / kMiB) / (r.ms / 1000.0) << " MiB/s total\n";
  EXPECT_EQ(r.connect_err, 0) << r.str();
  EXPECT_EQ(r.up_err, 0) << r.str();
  EXPECT_EQ(r.up_sent, n) << r.str();
  EXPECT_EQ(r.down_end, End::Eof) << r.str();
  EXPECT_EQ(r.down_bytes, n) << r.str();
  EXPECT_EQ(r.down_mismatch, -1) << r.str();

  auto sr = srv.wait_result(1, seconds(10));
  ASSERT_TRUE(sr) << "server saw no complete exchange; " << r.str();
  EXPECT_EQ(sr->up_end, End::Eof) << sr->str();
  EXPECT_EQ(sr->up_bytes, n) << sr->str();
  EXPECT_EQ(sr->up_mismatch, -1) << sr->str();
  EXPECT_EQ(sr->down_sent, n) << sr->str();
  EXPECT_EQ(sr->down_err, 0) << sr->str();

  auto s = d_.wait_stats(
      "bulk", [&](const RouteStats& st) { return st.active == 0 && st.bytes_up >= n + kHeader; },
      seconds(5));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->bytes_up, n + kHeader) << s->str();
  EXPECT_EQ(s->bytes_down, n) << s->str();
  EXPECT_EQ(s->active, 0u) << s->str();
}

// 3. Client half-closes; the target sees EOF, then still sends 4 MiB that all arrive, then EOF.
TEST_P(DataPath, HalfCloseFromClient) {
  DuplexServer srv(free_port());
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("half", lp, srv.port())}));

  DuplexClientOptions o;
  o.id = 7;
  o.len_up = 64 * 1024;
  o.len_down = 4 * kMiB;
  o.flags = kSendAfterEof;
  o.timeout = seconds(30);
  auto r = run_duplex(lp, o);
  EXPECT_EQ(r.up_err, 0) << r.str();
  EXPECT_EQ(r.down_end, End::Eof) << r.str();
  EXPECT_EQ(r.down_bytes, 4 * kMiB) << r.str();
  EXPECT_EQ(r.down_mismatch, -1) << r.str();

  auto sr = srv.wait_result(7, seconds(5));
  ASSERT_TRUE(sr) << "the target never saw the client's EOF; " << r.str();
  EXPECT_TRUE(sr->eof_before_send) << sr->str();
  EXPECT_EQ(sr->up_bytes, 64u * 1024) << sr->str();
  EXPECT_EQ(sr->up_mismatch, -1) << sr->str();
  EXPECT_EQ(sr->down_sent, 4 * kMiB) << sr->str();
}

// 3b. The other way round: the target sends FIN at once; the client keeps uploading afterwards.
TEST_P(DataPath, HalfCloseFromTarget) {
  DuplexServer srv(free_port());
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("half", lp, srv.port())}));

  DuplexClientOptions o;
  o.id = 8;
  o.len_up = 4 * kMiB;
  o.len_down = 0;  // the server shuts its side at once
  o.chunk = 256 * 1024;
  o.chunk_delay = milliseconds(10);  // keep uploading well after the EOF arrived
  o.timeout = seconds(30);
  auto r = run_duplex(lp, o);
  EXPECT_EQ(r.down_end, End::Eof) << r.str();
  EXPECT_EQ(r.down_bytes, 0u) << r.str();
  EXPECT_EQ(r.up_err, 0) << r.str();
  EXPECT_EQ(r.up_sent, 4 * kMiB) << r.str();

  auto sr = srv.wait_result(8, seconds(5));
  ASSERT_TRUE(sr) << r.str();
  EXPECT_EQ(sr->up_end, End::Eof) << sr->str();
  EXPECT_EQ(sr->up_bytes, 4 * kMiB) << sr->str();
  EXPECT_EQ(sr->up_mismatch, -1) << sr->str();
}

// 3c. The client sends and closes at once, likely before the target connection is even up:
// every byte still reaches the target, followed by EOF.
TEST_P(DataPath, ClientSendsAndClosesAtOnce) {
  DuplexServer srv(free_port());
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("early", lp, srv.port())}));

  const size_t kBody = 32 * 1024;
  for (uint64_t id = 1; id <= 20; ++id) {
    auto c = connect_tcp(lp);
    ASSERT_EQ(c.err, 0);
    DuplexHeader h;
    h.id = id;
    h.seed_up = 1000 + id;
    std::string body = pattern_string(h.seed_up, kBody);
    ASSERT_TRUE(send_all(c.fd.get(), &h, sizeof h, Clock::now() + seconds(2)));
    ASSERT_TRUE(send_all(c.fd.get(), body, Clock::now() + seconds(2)));
    c.fd.reset();  // plain close: FIN right behind the data
  }
  for (uint64_t id = 1; id <= 20; ++id) {
    auto sr = srv.wait_result(id, seconds(5));
    ASSERT_TRUE(sr) << "connection " << id << " never completed at the target";
    EXPECT_EQ(sr->up_end, End::Eof) << sr->str();
    EXPECT_EQ(sr->up_bytes, kBody) << sr->str();
    EXPECT_EQ(sr->up_mismatch, -1) << sr->str();
  }
}

// 3d. A target that does not read: the daemon applies back-pressure instead of buffering
// without bound, and delivers everything intact once the target reads again.
TEST_P(DataPath, BackPressureBoundsBuffering) {
  std::atomic<bool> release{false};
  std::promise<std::pair<uint64_t, int64_t>> got;  // bytes, first mismatch
  const uint64_t seed = 77;
  ThreadServer target(free_port(), [&](int fd) {
    for (int i = 0; i < 3000 && !release; ++i) std::this_thread::sleep_for(milliseconds(10));
    std::vector<uint8_t> buf(256 * 1024);
    uint64_t n = 0;
    int64_t bad = -1;
    auto deadline = Clock::now() + seconds(30);
    for (;;) {
      ssize_t k = ::recv(fd, buf.data(), buf.size(), 0);
      if (k <= 0 || Clock::now() >= deadline) break;
      if (bad < 0) bad = check_pattern(seed, n, buf.data(), static_cast<size_t>(k));
      n += static_cast<uint64_t>(k);
    }
    got.set_value({n, bad});
  });
  struct Release {  // lets the target go on any early exit, so that its thread ends
    std::atomic<bool>& flag;
    ~Release() { flag = true; }
  } release_on_exit{release};
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("slow-reader", lp, target.port())}));
  const uint64_t rss0 = d_.rss_kib();

  auto c = connect_tcp(lp);
  ASSERT_EQ(c.err, 0);
  int fd = c.fd.get();
  std::vector<uint8_t> buf(256 * 1024);
  uint64_t sent = 0;
  auto push_for = [&](milliseconds how_long, uint64_t cap) {
    auto until = Clock::now() + how_long;
    while (Clock::now() < until && sent < cap) {
      size_t len = static_cast<size_t>(std::min<uint64_t>(buf.size(), cap - sent));
      fill_pattern(seed, sent, buf.data(), len);
      ssize_t k = ::send(fd, buf.data(), len, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (k > 0) {
        sent += static_cast<uint64_t>(k);
        continue;
      }
      if (k < 0 && errno != EAGAIN) return false;
      pollfd pf{fd, POLLOUT, 0};
      ::poll(&pf, 1, 50);
    }
    return true;
  };
  ASSERT_TRUE(push_for(milliseconds(1500), 1ull << 40));
  const uint64_t stuck = sent;
  const uint64_t rss1 = d_.rss_kib();
  std::cerr << "[ info ] " << GetParam() << ": " << stuck / 1024 << " KiB in flight to a target "
            << "that does not read; daemon RSS " << rss0 << " -> " << rss1 << " KiB\n";
  // sockmap: the kernel's redirect queue has no limit of its own; the daemon narrows the
  // client's window past 16 MiB queued and resets past 256 MiB (README "sockmap"). The daemon's
  // own memory must not grow in any mode.
  const uint64_t bound = GetParam() == "sockmap" ? 256 * kMiB : 64 * kMiB;
  EXPECT_LT(stuck, bound) << "the daemon keeps accepting data its target does not read";
  EXPECT_LT(rss1, rss0 + 32 * 1024) << "daemon memory grows with unread data";

  release = true;
  ASSERT_TRUE(push_for(seconds(20), stuck + 8 * kMiB));
  ASSERT_EQ(sent, stuck + 8 * kMiB);
  ::shutdown(fd, SHUT_WR);
  auto f = got.get_future();
  ASSERT_EQ(f.wait_for(seconds(20)), std::future_status::ready) << "target never saw EOF";
  auto [n, bad] = f.get();
  EXPECT_EQ(n, sent);
  EXPECT_EQ(bad, -1);
}

// 4. Nothing listens on the target port: the client is closed within 100 ms; `failed` rises.
TEST_P(DataPath, TargetDownClosesClientAtOnce) {
  uint16_t dead = free_port();  // kept free: nothing listens there
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("down", lp, dead)}));

  const int kTries = 3;
  for (int i = 0; i < kTries; ++i) {
    auto t0 = Clock::now();
    auto c = connect_tcp(lp);
    ASSERT_EQ(c.err, 0) << std::strerror(c.err);
    auto w = wait_closed(c.fd.get(), t0, seconds(3));
    EXPECT_TRUE(closed_end(w.end)) << "try " << i << ": " << to_string(w.end);
    EXPECT_LT(w.ms, 100.0) << "try " << i << ": closed after " << w.ms << " ms";
    EXPECT_EQ(w.bytes, 0u);
  }
  auto s = d_.wait_stats(
      "down", [&](const RouteStats& st) { return st.failed >= kTries && st.active == 0; },
      seconds(5));
  ASSERT_TRUE(s);
  EXPECT_GE(s->failed, uint64_t(kTries)) << s->str();
  EXPECT_EQ(s->active, 0u) << s->str();
}

// 5. The target drops SYNs (full backlog, never accepts): closed after connect_timeout_ms.
TEST_P(DataPath, ConnectTimeout) {
  BlackholeListener hole(free_port());
  ASSERT_TRUE(hole.verified()) << "could not build a SYN-dropping listener on loopback";
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("slow", lp, hole.port())}, R"("connect_timeout_ms":300)"));

  auto t0 = Clock::now();
  auto c = connect_tcp(lp);
  ASSERT_EQ(c.err, 0) << std::strerror(c.err);
  auto w = wait_closed(c.fd.get(), t0, seconds(5));
  EXPECT_TRUE(closed_end(w.end)) << to_string(w.end) << " after " << w.ms << " ms";
  EXPECT_GE(w.ms, 250.0);
  EXPECT_LE(w.ms, 2000.0);
  auto s = d_.wait_stats(
      "slow", [](const RouteStats& st) { return st.failed >= 1 && st.active == 0; }, seconds(5));
  ASSERT_TRUE(s);
  EXPECT_GE(s->failed, 1u) << s->str();
  EXPECT_EQ(s->active, 0u) << s->str();
}

// 5b. A route's own timeouts override the global limits.
TEST_P(DataPath, RouteConnectTimeoutOverridesLimits) {
  BlackholeListener hole(free_port());
  ASSERT_TRUE(hole.verified()) << "could not build a SYN-dropping listener on loopback";
  uint16_t lp = free_port();
  START_DAEMON(
      config({route_json("slow", lp, hole.port(), R"(,"timeouts":{"connect_timeout_ms":300})")},
             R"("connect_timeout_ms":10000)"));
  auto t0 = Clock::now();
  auto c = connect_tcp(lp);
  ASSERT_EQ(c.err, 0) << std::strerror(c.err);
  auto w = wait_closed(c.fd.get(), t0, seconds(5));
  EXPECT_TRUE(closed_end(w.end)) << to_string(w.end) << " after " << w.ms << " ms";
  EXPECT_GE(w.ms, 250.0);
  EXPECT_LE(w.ms, 2000.0);
}

// 6. A listen range keeps the offset: P+i goes to T+i.
TEST_P(DataPath, PortRangeKeepsOffset) {
  const unsigned kN = 5;
  uint16_t lp = free_port_block(kN), tp = free_port_block(kN);
  std::vector<std::unique_ptr<PortReplyServer>> servers;
  for (unsigned i = 0; i < kN; ++i)
    servers.push_back(std::make_unique<PortReplyServer>(static_cast<uint16_t>(tp + i)));
  std::string range = "\"" + std::to_string(lp) + "-" + std::to_string(lp + kN - 1) + "\"";
  START_DAEMON(config({route_json("range", range, tp)}));

  for (int round = 0; round < 2; ++round) {
    for (int k = kN - 1; k >= 0; --k) {  // reverse order: not an accident of ordering
      uint16_t p = static_cast<uint16_t>(lp + k);
      auto c = connect_tcp(p);
      ASSERT_EQ(c.err, 0) << "port " << p << ": " << std::strerror(c.err);
      auto r = read_to_end(c.fd.get(), Clock::now() + seconds(5));
      EXPECT_EQ(r.data, "port=" + std::to_string(tp + k) + "\n") << "listen port " << p;
      EXPECT_EQ(r.end, End::Eof) << "listen port " << p;
    }
  }
  auto s = d_.wait_stats(
      "range", [&](const RouteStats& st) { return st.total >= 2 * kN && st.active == 0; },
      seconds(5));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->total, 2u * kN) << s->str();
}

// 7. 2000 connections open at once, each echoing; then all closed and nothing leaks.
TEST_P(DataPath, TwoThousandConcurrentConnections) {
  const int kConns = 2000;
  EchoServer echo(free_port());
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("many", lp, echo.port())}));

  auto t0 = Clock::now();
  std::vector<Fd> fds;
  fds.reserve(kConns);
  for (int i = 0; i < kConns; ++i) {
    auto c = connect_tcp(lp, seconds(10));
    ASSERT_EQ(c.err, 0) << "connection " << i << ": " << std::strerror(c.err);
    fds.push_back(std::move(c.fd));
  }
  auto deadline = Clock::now() + seconds(30);
  for (int i = 0; i < kConns; ++i)
    ASSERT_TRUE(send_all(fds[i].get(), "hello " + std::to_string(i) + "\n", deadline)) << i;
  int bad = 0;
  std::string first_bad;
  for (int i = 0; i < kConns; ++i) {
    std::string want = "hello " + std::to_string(i) + "\n";
    std::string got(want.size(), '\0');
    if (!recv_exact(fds[i].get(), got.data(), got.size(), deadline) || got != want) {
      if (!bad++) first_bad = "connection " + std::to_string(i);
    }
  }
  EXPECT_EQ(bad, 0) << "first failing: " << first_bad;
  std::cerr << "[ info ] " << kConns << " connections opened and echoed in " << ms_since(t0)
            << " ms\n";

  auto held = d_.wait_stats(
      "many", [&](const RouteStats& st) { return st.active == uint64_t(kConns); }, seconds(10));
  ASSERT_TRUE(held);
  EXPECT_EQ(held->active, uint64_t(kConns)) << held->str();
  EXPECT_EQ(echo.open_now(), uint64_t(kConns));
  for (int i = 0; i < kConns; ++i) EXPECT_TRUE(still_open(fds[i].get())) << i;
  if (GetParam() == "sockmap") {
    // Every connection is in the kernel's maps: two sockets, two flows.
    auto m = d_.sockmap_stats();
    EXPECT_EQ(m["flows"], 2u * kConns);
    EXPECT_EQ(m["sockets"], 2u * kConns);
    EXPECT_GE(m["redirected_bytes"], 2u * 8 * kConns);  // "hello N\n" both ways
  }

  fds.clear();
  auto s = d_.wait_stats(
      "many", [](const RouteStats& st) { return st.active == 0; }, seconds(20));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->active, 0u) << s->str();
  EXPECT_EQ(s->total, uint64_t(kConns)) << s->str();
  EXPECT_EQ(s->failed, 0u) << s->str();
  for (int i = 0; i < 200 && echo.open_now() > 0; ++i)
    std::this_thread::sleep_for(milliseconds(50));
  EXPECT_EQ(echo.open_now(), 0u) << "target-side connections left open by the daemon";
  if (GetParam() == "sockmap") {
    // Nothing left behind in the kernel: closed sockets left the sockhash, flows were deleted.
    std::map<std::string, uint64_t> m;
    for (int i = 0; i < 50; ++i) {
      m = d_.sockmap_stats();
      if (m["flows"] == 0 && m["sockets"] == 0) break;
      std::this_thread::sleep_for(milliseconds(100));
    }
    EXPECT_EQ(m["flows"], 0u) << "flow entries leaked";
    EXPECT_EQ(m["sockets"], 0u) << "sockets left in the verdict map";
    EXPECT_EQ(m["drops"], 0u);
  }
}

// 8. max_connections: 10 work, the 11th is closed at once and never reaches the target.
void DataPath::check_max_connections(const std::string& route, uint16_t lp, EchoServer& echo) {
  auto fds = open_echo_connections(lp, 10);
  ASSERT_EQ(fds.size(), 10u);
  for (int i = 0; i < 40 && echo.accepted() < 10; ++i)
    std::this_thread::sleep_for(milliseconds(50));
  ASSERT_EQ(echo.accepted(), 10u);

  auto t0 = Clock::now();
  auto extra = connect_tcp(lp);
  ASSERT_EQ(extra.err, 0) << "the 11th should be accepted then closed: "
                          << std::strerror(extra.err);
  auto w = wait_closed(extra.fd.get(), t0, seconds(3));
  EXPECT_TRUE(closed_end(w.end)) << "11th connection: " << to_string(w.end);
  EXPECT_LT(w.ms, 500.0) << "11th connection closed only after " << w.ms << " ms";
  EXPECT_EQ(w.bytes, 0u);
  std::this_thread::sleep_for(milliseconds(200));
  EXPECT_EQ(echo.accepted(), 10u) << "the refused connection reached the target";

  auto s = d_.wait_stats(
      route, [](const RouteStats& st) { return st.refused >= 1; }, seconds(5));
  ASSERT_TRUE(s);
  EXPECT_GE(s->refused, 1u) << s->str();
  EXPECT_EQ(s->active, 10u) << s->str();

  for (size_t i = 0; i < fds.size(); ++i)  // the ten still work
    EXPECT_EQ(echo_roundtrip(fds[i].get(), "again " + std::to_string(i), seconds(5)), "") << i;

  fds[0].reset();
  auto s9 = d_.wait_stats(
      route, [](const RouteStats& st) { return st.active == 9; }, seconds(5));
  ASSERT_TRUE(s9);
  EXPECT_EQ(s9->active, 9u) << s9->str();
  auto again = connect_tcp(lp);
  ASSERT_EQ(again.err, 0);
  EXPECT_EQ(echo_roundtrip(again.fd.get(), "room again", seconds(5)), "");
  EXPECT_EQ(echo.accepted(), 11u);
}

TEST_P(DataPath, GlobalMaxConnections) {
  EchoServer echo(free_port());
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("capped", lp, echo.port())}, R"("max_connections":10)"));
  check_max_connections("capped", lp, echo);
}

TEST_P(DataPath, RouteMaxConnections) {
  EchoServer echo(free_port());
  uint16_t lp = free_port(), other = free_port();
  START_DAEMON(config({route_json("capped", lp, echo.port(), R"(,"max_connections":10)"),
                       route_json("free", other, echo.port())}));
  check_max_connections("capped", lp, echo);
  if (HasFatalFailure()) return;
  // The cap is the route's own: another route still takes connections.
  auto more = open_echo_connections(other, 3);
  EXPECT_EQ(more.size(), 3u);
  auto s = d_.stats("free");
  ASSERT_TRUE(s);
  EXPECT_EQ(s->refused, 0u) << s->str();
  EXPECT_EQ(s->active, 3u) << s->str();
}

// allow: only clients inside the route's CIDR list reach the target; others are closed at
// once and counted as refused. 127.0.0.2 and 127.0.0.1 are two distinct loopback sources.
TEST_P(DataPath, AllowListRefusesOtherClients) {
  EchoServer echo(free_port());
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("allowed", lp, echo.port(), R"(,"allow":["127.0.0.2/32"])")}));

  auto in = connect_tcp(lp, milliseconds(5000), "127.0.0.2");
  ASSERT_EQ(in.err, 0) << std::strerror(in.err);
  EXPECT_EQ(echo_roundtrip(in.fd.get(), "inside", seconds(5)), "");

  auto out = connect_tcp(lp, milliseconds(5000), "127.0.0.1");
  ASSERT_EQ(out.err, 0) << std::strerror(out.err);
  auto w = wait_closed(out.fd.get(), Clock::now(), milliseconds(1000));
  EXPECT_TRUE(closed_end(w.end)) << "a client outside the allow list was not closed";
  EXPECT_EQ(w.bytes, 0u);
  EXPECT_EQ(echo.accepted(), 1u) << "the refused client reached the target";

  auto st = d_.wait_stats("allowed", [](const RouteStats& x) { return x.refused >= 1; },
                          seconds(5));
  ASSERT_TRUE(st);
  EXPECT_EQ(st->refused, 1u) << st->str();
  EXPECT_EQ(st->total, 1u) << st->str();
  EXPECT_NE(d_.log().find("client=127.0.0.1:"), std::string::npos)
      << "the refusal is not logged with the client address";
}

// Running out of fds: new connections are refused with a log line, established ones keep
// working, and once fds are free again new connections are served. The daemon runs with a
// 64-fd limit it cannot raise (CAP_SYS_RESOURCE dropped from its bounding set).
TEST_P(DataPath, OutOfFdsRefusesThenRecovers) {
  if (geteuid() != 0) GTEST_SKIP() << "needs root (setpriv drops CAP_SYS_RESOURCE)";
  EchoServer echo(free_port());
  uint16_t lp = free_port();
  std::string cfg = dir_.write_file("ringfwd.json", config({route_json("fds", lp, echo.port())}));
  d_.spawn_wrapped({"/usr/bin/prlimit", "--nofile=64:64", "--", "/usr/bin/setpriv",
                    "--bounding-set=-sys_resource", "--"},
                   {"--config", cfg, "--bus", "none"}, dir_.path() + "/ringfwd.log");
  ASSERT_TRUE(d_.wait_ready(milliseconds(10000))) << d_.log_tail();

  std::vector<Fd> held;
  int ok = 0, failed = 0;
  for (int i = 0; i < 50; ++i) {
    auto c = connect_tcp(lp, milliseconds(1000));
    if (c.err) {
      ++failed;
      continue;
    }
    if (echo_roundtrip(c.fd.get(), "fd " + std::to_string(i), milliseconds(300)).empty())
      ++ok;
    else
      ++failed;
    held.push_back(std::move(c.fd));
  }
  EXPECT_GT(ok, 5) << "no connection was served at all";
  EXPECT_GT(failed, 0) << "64 fds were enough for 50 proxied connections: the limit did not apply";
  EXPECT_NE(d_.log().find("Too many open files"), std::string::npos)
      << "running out of fds left no log line";
  EXPECT_TRUE(d_.running());
  // The first connections, served before the limit was hit, still work.
  EXPECT_EQ(echo_roundtrip(held[0].get(), "still here", seconds(5)), "");

  held.clear();
  std::string last_err = "never tried";
  auto deadline = Clock::now() + seconds(5);
  while (Clock::now() < deadline) {
    auto c = connect_tcp(lp, milliseconds(1000));
    if (!c.err && (last_err = echo_roundtrip(c.fd.get(), "again", milliseconds(500))).empty()) break;
    std::this_thread::sleep_for(milliseconds(100));
  }
  EXPECT_EQ(last_err, "") << "no new connection served after fds were freed";
}

// 9a. SIGTERM: listeners close at once, a running transfer finishes intact, exit 0.
TEST_P(DataPath, SigtermDrainsTransfers) {
  DuplexServer srv(free_port());
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("drain", lp, srv.port())}));

  DuplexClientOptions o;
  o.id = 3;
  o.len_up = 32 * kMiB;
  o.chunk = 1 * kMiB;
  o.chunk_delay = milliseconds(60);  // ~2 s of upload
  o.len_down = 16 * kMiB;            // sent back after the upload: during the drain
  o.flags = kSendAfterEof;
  o.timeout = seconds(60);
  std::promise<void> started;
  o.on_started = [&] { started.set_value(); };
  auto fut = std::async(std::launch::async, [&] { return run_duplex(lp, o); });
  ASSERT_EQ(started.get_future().wait_for(seconds(10)), std::future_status::ready);
  std::this_thread::sleep_for(milliseconds(200));

  auto t_sig = Clock::now();
  d_.signal(SIGTERM);
  int refused_after_ms = -1;
  std::vector<Fd> raced;  // connections that got in before the listener closed
  while (ms_since(t_sig) < 2000) {
    auto c = connect_tcp(lp, milliseconds(500));
    if (c.err == ECONNREFUSED) {
      refused_after_ms = static_cast<int>(ms_since(t_sig));
      break;
    }
    if (c.fd) raced.push_back(std::move(c.fd));
    std::this_thread::sleep_for(milliseconds(5));
  }
  EXPECT_GE(refused_after_ms, 0) << "new connections still accepted 2 s after SIGTERM";
  EXPECT_LT(refused_after_ms, 500) << "listener closed only after " << refused_after_ms << " ms";
  raced.clear();
  EXPECT_TRUE(d_.running()) << "the daemon exited while a transfer was in progress";

  auto r = fut.get();
  EXPECT_EQ(r.up_err, 0) << r.str();
  EXPECT_EQ(r.up_sent, o.len_up) << r.str();
  EXPECT_EQ(r.down_end, End::Eof) << r.str();
  EXPECT_EQ(r.down_bytes, o.len_down) << r.str();
  EXPECT_EQ(r.down_mismatch, -1) << r.str();
  auto sr = srv.wait_result(3, seconds(5));
  ASSERT_TRUE(sr) << r.str();
  EXPECT_EQ(sr->up_bytes, o.len_up) << sr->str();
  EXPECT_EQ(sr->up_mismatch, -1) << sr->str();
  EXPECT_TRUE(sr->eof_before_send) << sr->str();
  EXPECT_GT(ms_since(t_sig), 1000.0) << "the transfer was meant to outlast the signal";

  auto t_done = Clock::now();
  auto code = d_.wait_exit(seconds(5));
  ASSERT_TRUE(code) << "daemon still running 5 s after its last connection ended";
  EXPECT_EQ(*code, 0);
  EXPECT_LT(ms_since(t_done), 3000.0);
}

// 9b. SIGTERM with an idle connection held open: the drain timeout ends it.
TEST_P(DataPath, SigtermDrainTimeout) {
  EchoServer echo(free_port());
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("idle", lp, echo.port())}, R"("drain_timeout_s":1)"));

  auto held = open_echo_connections(lp, 1);
  ASSERT_EQ(held.size(), 1u);
  auto t_sig = Clock::now();
  d_.signal(SIGTERM);
  std::this_thread::sleep_for(milliseconds(300));
  // Established connections keep working during the drain.
  EXPECT_EQ(echo_roundtrip(held[0].get(), "still here", seconds(2)), "");

  auto code = d_.wait_exit(seconds(6));
  double took = ms_since(t_sig);
  ASSERT_TRUE(code) << "still running " << took << " ms after SIGTERM with drain_timeout_s 1";
  EXPECT_EQ(*code, 0);
  EXPECT_GE(took, 800.0) << "exited before the drain timeout";
  EXPECT_LE(took, 3500.0);
  auto w = wait_closed(held[0].get(), Clock::now(), seconds(2));
  EXPECT_TRUE(closed_end(w.end)) << "held connection not closed after the daemon exited";
}

// 9c. SIGINT with nothing in flight: exit 0 at once.
TEST_P(DataPath, SigintIdleExitsAtOnce) {
  EchoServer echo(free_port());
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("x", lp, echo.port())}));
  auto t0 = Clock::now();
  d_.signal(SIGINT);
  auto code = d_.wait_exit(seconds(5));
  ASSERT_TRUE(code);
  EXPECT_EQ(*code, 0);
  EXPECT_LT(ms_since(t0), 1500.0);
  EXPECT_EQ(connect_tcp(lp).err, ECONNREFUSED);
}

// 10. idle_timeout_s: an idle connection is closed after ~1-3 s; a busy one is not. The idle
// connections start 250 ms apart, so a timer that rounds to whole seconds shows up every run,
// not only when the clock happens to sit just before a second boundary.
TEST_P(DataPath, IdleTimeout) {
  EchoServer echo(free_port());
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("idle", lp, echo.port())}, R"("idle_timeout_s":1)"));

  // Busy connections: a round trip every 200 ms, and every 600 ms (still well under 1 s).
  auto busy_conn = open_echo_connections(lp, 2);
  ASSERT_EQ(busy_conn.size(), 2u);
  std::string busy_err[2];
  std::vector<std::thread> busy;
  for (int b = 0; b < 2; ++b) {
    busy.emplace_back([&, b] {
      const auto gap = milliseconds(b == 0 ? 200 : 600);
      auto until = Clock::now() + milliseconds(4200);
      for (int i = 0; Clock::now() < until && busy_err[b].empty(); ++i) {
        std::this_thread::sleep_for(gap);
        busy_err[b] = echo_roundtrip(busy_conn[b].get(), "tick " + std::to_string(i), seconds(2));
        if (!busy_err[b].empty())
          busy_err[b] = "round " + std::to_string(i) + " (every " + std::to_string(gap.count()) +
                        " ms): " + busy_err[b];
      }
    });
  }

  const int kIdle = 4;
  std::vector<Fd> idle;
  std::vector<CloseWait> waits(kIdle);
  std::vector<std::thread> watchers;
  for (int i = 0; i < kIdle; ++i) {
    if (i) std::this_thread::sleep_for(milliseconds(250));
    auto c = open_echo_connections(lp, 1);  // its last activity is this round trip
    auto t_last = Clock::now();
    if (c.size() != 1) break;
    idle.push_back(std::move(c[0]));
    int fd = idle.back().get();
    watchers.emplace_back(
        [&waits, i, fd, t_last] { waits[i] = wait_closed(fd, t_last, seconds(6)); });
  }
  for (auto& t : watchers) t.join();
  for (auto& t : busy) t.join();
  ASSERT_EQ(idle.size(), size_t(kIdle));
  for (int i = 0; i < kIdle; ++i) {
    EXPECT_TRUE(closed_end(waits[i].end))
        << "idle connection " << i << " still open after " << waits[i].ms << " ms";
    EXPECT_GE(waits[i].ms, 900.0) << "idle connection " << i << " closed early";
    EXPECT_LE(waits[i].ms, 3500.0) << "idle connection " << i;
  }
  for (int b = 0; b < 2; ++b) {
    EXPECT_EQ(busy_err[b], "") << "busy connection " << b << " was closed as idle";
    EXPECT_TRUE(still_open(busy_conn[b].get())) << "busy connection " << b;
  }
}

// 11. Misbehaving clients do not disturb a transfer or the daemon.
TEST_P(DataPath, BadClientsDoNotDisturbOthers) {
  DuplexServer srv(free_port());
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("mixed", lp, srv.port())}));

  DuplexClientOptions o;
  o.id = 1;
  o.len_up = 64 * kMiB;
  o.chunk = 1 * kMiB;
  o.chunk_delay = milliseconds(30);  // >= 2 s, so the bad clients overlap it
  o.len_down = 64 * kMiB;
  o.timeout = seconds(60);
  std::promise<void> started;
  o.on_started = [&] { started.set_value(); };
  auto fut = std::async(std::launch::async, [&] { return run_duplex(lp, o); });
  ASSERT_EQ(started.get_future().wait_for(seconds(10)), std::future_status::ready);

  std::vector<Fd> silent;
  int connect_failures = 0;
  for (int i = 0; i < 20; ++i) {  // connect and send nothing
    auto c = connect_tcp(lp);
    if (c.err)
      ++connect_failures;
    else
      silent.push_back(std::move(c.fd));
  }
  for (int i = 0; i < 50; ++i) {  // start a duplex exchange, then RST mid-stream
    auto c = connect_tcp(lp);
    if (c.err) {
      ++connect_failures;
      continue;
    }
    DuplexHeader h;
    h.id = 1000 + i;
    h.len_down = 1 * kMiB;
    std::string body = pattern_string(h.seed_up, 100 * 1024);
    send_all(c.fd.get(), &h, sizeof h, Clock::now() + seconds(2));
    send_all(c.fd.get(), body, Clock::now() + seconds(2));
    char buf[4096];
    recv_exact(c.fd.get(), buf, sizeof buf, Clock::now() + milliseconds(200));
    close_with_rst(c.fd);
  }
  for (int i = 0; i < 200; ++i) {  // connect and close at once
    auto c = connect_tcp(lp);
    if (c.err) ++connect_failures;
    if (i % 4 == 3) close_with_rst(c.fd);
  }
  EXPECT_EQ(connect_failures, 0);
  EXPECT_NE(fut.wait_for(milliseconds(0)), std::future_status::ready)
      << "the transfer ended before the bad clients were done (test lost its overlap)";

  auto r = fut.get();
  EXPECT_EQ(r.up_err, 0) << r.str();
  EXPECT_EQ(r.up_sent, o.len_up) << r.str();
  EXPECT_EQ(r.down_end, End::Eof) << r.str();
  EXPECT_EQ(r.down_bytes, o.len_down) << r.str();
  EXPECT_EQ(r.down_mismatch, -1) << r.str();
  auto sr = srv.wait_result(1, seconds(5));
  ASSERT_TRUE(sr);
  EXPECT_EQ(sr->up_end, End::Eof) << sr->str();
  EXPECT_EQ(sr->up_bytes, o.len_up) << sr->str();
  EXPECT_EQ(sr->up_mismatch, -1) << sr->str();

  ASSERT_TRUE(d_.running());
  DuplexClientOptions o2;
  o2.id = 2;
  o2.len_up = 1 * kMiB;
  o2.len_down = 1 * kMiB;
  o2.timeout = seconds(20);
  auto r2 = run_duplex(lp, o2);
  EXPECT_EQ(r2.down_end, End::Eof) << r2.str();
  EXPECT_EQ(r2.down_bytes, 1 * kMiB) << r2.str();
  EXPECT_EQ(r2.down_mismatch, -1) << r2.str();
  auto sr2 = srv.wait_result(2, seconds(5));
  ASSERT_TRUE(sr2);
  EXPECT_EQ(sr2->up_bytes, 1 * kMiB) << sr2->str();

  for (size_t i = 0; i < silent.size(); ++i) EXPECT_TRUE(still_open(silent[i].get())) << i;
  auto s = d_.wait_stats(
      "mixed", [&](const RouteStats& st) { return st.active == silent.size(); }, seconds(5));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->active, silent.size())
      << "only the silent clients should still be open; " << s->str();
}

// 12a. The target RSTs mid-stream: the client learns promptly.
TEST_P(DataPath, TargetResetReachesClient) {
  DuplexServer srv(free_port());
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("rst", lp, srv.port())}));

  auto c = connect_tcp(lp);
  ASSERT_EQ(c.err, 0);
  DuplexHeader h;
  h.id = 5;
  h.len_down = 1 * kMiB;
  h.flags = kRstAfterSend;
  ASSERT_TRUE(send_all(c.fd.get(), &h, sizeof h, Clock::now() + seconds(2)));
  auto r = read_to_end(c.fd.get(), Clock::now() + seconds(5), 2 * kMiB);
  auto t_end = Clock::now();
  auto sr = srv.wait_result(5, seconds(2));
  ASSERT_TRUE(sr);
  EXPECT_TRUE(closed_end(r.end)) << to_string(r.end) << " after " << r.bytes << " bytes";
  double lag = std::chrono::duration<double, std::milli>(t_end - sr->rst_time).count();
  EXPECT_LT(lag, 1000.0) << "client learned of the target's RST only after " << lag << " ms";
  EXPECT_LE(r.bytes, 1 * kMiB);
  EXPECT_EQ(
      check_pattern(h.seed_down, 0, reinterpret_cast<const uint8_t*>(r.data.data()), r.data.size()),
      -1);
}

// 12b. The client RSTs while the target is still sending: the target's side is closed promptly.
TEST_P(DataPath, ClientResetReachesTarget) {
  DuplexServer srv(free_port());
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("rst", lp, srv.port())}));

  auto c = connect_tcp(lp);
  ASSERT_EQ(c.err, 0);
  DuplexHeader h;
  h.id = 6;
  // Far more than the buffers hold: the target blocks sending. sockmap's kernel queue holds
  // up to 64 MiB before the window narrows (README "The sockmap dataplane").
  h.len_down = (GetParam() == "sockmap" ? 1024 : 64) * kMiB;
  h.flags = kNoShutdown;
  std::string body = pattern_string(h.seed_up, 256 * 1024);
  ASSERT_TRUE(send_all(c.fd.get(), &h, sizeof h, Clock::now() + seconds(2)));
  ASSERT_TRUE(send_all(c.fd.get(), body, Clock::now() + seconds(5)));
  std::this_thread::sleep_for(milliseconds(200));
  auto t_rst = Clock::now();
  close_with_rst(c.fd);

  auto sr = srv.wait_result(6, seconds(3));
  ASSERT_TRUE(sr) << "the target's connection was not closed within 3 s of the client's RST";
  EXPECT_TRUE(closed_end(sr->up_end)) << sr->str();
  double lag = std::chrono::duration<double, std::milli>(sr->up_end_time - t_rst).count();
  EXPECT_LT(lag, 1000.0) << "the target saw the close only after " << lag << " ms";
  EXPECT_EQ(sr->up_bytes, body.size()) << sr->str();
  EXPECT_EQ(sr->up_mismatch, -1) << sr->str();
  EXPECT_NE(sr->down_err, 0) << "the target's sends should fail once its peer is gone; "
                             << sr->str();
}

// 12c. The target half-closes, then vanishes with an RST; the client then uploads and
// half-closes too. Nothing can reach the target any more: the client's connection must end
// promptly, not wait for a delivery that cannot happen (sockmap once waited here forever).
TEST_P(DataPath, TargetGoneAfterHalfCloseEndsClient) {
  ThreadServer target(free_port(), [](int fd) {
    ::shutdown(fd, SHUT_WR);  // FIN at once
    std::this_thread::sleep_for(milliseconds(300));
    linger l{1, 0};  // then close with an RST
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
  });
  uint16_t lp = free_port();
  START_DAEMON(config({route_json("gone", lp, target.port())}));

  auto c = connect_tcp(lp);
  ASSERT_EQ(c.err, 0) << std::strerror(c.err);
  auto r = read_to_end(c.fd.get(), Clock::now() + seconds(3));
  EXPECT_EQ(r.end, End::Eof) << "the target's FIN did not arrive: " << to_string(r.end);
  std::this_thread::sleep_for(milliseconds(600));  // the target is gone by now
  const std::string body = pattern_string(12, 4 * kMiB);
  (void)send_all(c.fd.get(), body.data(), body.size(), Clock::now() + seconds(3));  // may fail
  ::shutdown(c.fd.get(), SHUT_WR);
  auto t0 = Clock::now();
  auto w = wait_closed(c.fd.get(), t0, seconds(5));
  EXPECT_TRUE(closed_end(w.end)) << "client connection still open: " << to_string(w.end);
  EXPECT_LT(w.ms, 3000.0);
  auto s = d_.wait_stats("gone", [](const RouteStats& st) { return st.active == 0; }, seconds(5));
  ASSERT_TRUE(s);
  EXPECT_EQ(s->active, 0u) << s->str();
}

// A bad config: exit 1, the problem named, nothing listening.
TEST_P(DataPath, BadConfigExits1WithoutListening) {
  uint16_t lp = free_port();
  std::string cfg = config({route_json("good", lp, 9), route_json("bad", "70000", 9)});
  std::string path = dir_.write_file("bad.json", cfg);
  d_.spawn({"--config", path, "--bus", "none"}, dir_.path() + "/ringfwd.log");
  auto code = d_.wait_exit(seconds(10));
  ASSERT_TRUE(code) << "daemon with an invalid config did not exit";
  EXPECT_EQ(*code, 1);
  std::string log = d_.log();
  EXPECT_NE(log.find("routes[1].listen_port"), std::string::npos) << log;
  EXPECT_EQ(log.find("ready:"), std::string::npos) << log;
  EXPECT_EQ(connect_tcp(lp).err, ECONNREFUSED);
}

// A port that cannot be bound: exit 3, the message names the route and the address.
TEST_P(DataPath, PortInUseExits3) {
  uint16_t lp = free_port();
  Fd squatter = listen_tcp(lp);
  std::string path = dir_.write_file("cfg.json", config({route_json("squatted", lp, 9)}));
  d_.spawn({"--config", path, "--bus", "none"}, dir_.path() + "/ringfwd.log");
  auto code = d_.wait_exit(seconds(10));
  ASSERT_TRUE(code) << "daemon did not exit although its port is taken";
  EXPECT_EQ(*code, 3);
  std::string log = d_.log();
  EXPECT_NE(log.find("squatted"), std::string::npos) << log;
  EXPECT_NE(log.find(std::to_string(lp)), std::string::npos) << log;
  EXPECT_EQ(log.find("ready:"), std::string::npos) << log;
}

// ---------------------------------------------------------------------------------------------
// Live route changes (SIGHUP reload; the D-Bus calls use the same change plan).

std::string port_text(uint16_t p) { return "port=" + std::to_string(p) + "\n"; }

// A listen port change binds the new port first; the old one keeps accepting for overlap_ms,
// then closes. A transfer running on the old port is not touched.
TEST_P(DataPath, ReloadPortChangeOverlapsThenClosesOldPort) {
  PortReplyServer target(free_port());
  DuplexServer srv(free_port());
  uint16_t p1 = free_port(), p2 = free_port(), pt = free_port();
  const std::string limits = R"("overlap_ms":1500)";
  START_DAEMON(config({route_json("web", p1, target.port()), route_json("bulk", pt, srv.port())},
                      limits));
  ASSERT_EQ(reply_via(p1), port_text(target.port()));

  DuplexClientOptions o;
  o.id = 7;
  o.len_up = 16 * kMiB;
  o.chunk = 1 * kMiB;
  o.chunk_delay = milliseconds(100);  // ~1.6 s: spans the change
  o.len_down = 16 * kMiB;
  o.timeout = seconds(60);
  auto fut = std::async(std::launch::async, [&] { return run_duplex(pt, o); });

  ASSERT_TRUE(reload(config({route_json("web", p2, target.port()),
                             route_json("bulk", pt, srv.port())}, limits)))
      << d_.log_tail();
  EXPECT_EQ(reply_via(p2), port_text(target.port())) << "the new port does not serve at once";
  EXPECT_EQ(reply_via(p1), port_text(target.port())) << "the old port stopped before overlap_ms";
  std::this_thread::sleep_for(milliseconds(2200));
  auto c = connect_tcp(p1, milliseconds(1000));
  EXPECT_EQ(c.err, ECONNREFUSED) << "the old port still accepts after overlap_ms";
  EXPECT_EQ(reply_via(p2), port_text(target.port()));

  auto r = fut.get();
  EXPECT_EQ(r.up_err, 0) << r.str();
  EXPECT_EQ(r.up_sent, o.len_up) << r.str();
  EXPECT_EQ(r.down_bytes, o.len_down) << r.str();
  EXPECT_EQ(r.down_mismatch, -1) << r.str();
  auto st = d_.stats("web");
  ASSERT_TRUE(st);
  EXPECT_EQ(st->total, 4u) << "counters must survive the change: " << st->str();
}

// A target change on the same port: new connections go to the new target at once, on the same
// listening socket; a connection opened before keeps its old target.
TEST_P(DataPath, ReloadTargetChangeKeepsSocketAndOldConnections) {
  PortReplyServer t1(free_port()), t2(free_port());
  EchoServer echo1(free_port());
  uint16_t lp = free_port(), le = free_port();
  START_DAEMON(config({route_json("svc", lp, t1.port()), route_json("echo", le, echo1.port())}));
  ASSERT_EQ(reply_via(lp), port_text(t1.port()));
  auto held = connect_tcp(le);
  ASSERT_EQ(held.err, 0);
  ASSERT_EQ(echo_roundtrip(held.fd.get(), "before", seconds(5)), "");

  EchoServer echo2(free_port());
  ASSERT_TRUE(reload(config({route_json("svc", lp, t2.port()), route_json("echo", le, echo2.port())})))
      << d_.log_tail();
  EXPECT_EQ(reply_via(lp), port_text(t2.port())) << "new connections still reach the old target";
  EXPECT_EQ(echo_roundtrip(held.fd.get(), "after", seconds(5)), "")
      << "an established connection was cut by a target change";
  EXPECT_EQ(echo1.open_now(), 1u);
  EXPECT_EQ(echo2.accepted(), 0u);
  EXPECT_EQ(d_.log().find("bind"), std::string::npos) << "a target change re-bound the port";
}

// Removing a route closes its listener; its established connections drain and are closed when
// drain_timeout_s has passed. Other routes are not touched.
TEST_P(DataPath, ReloadRemovalDrainsThenCloses) {
  EchoServer echo(free_port());
  uint16_t lr = free_port(), lk = free_port();
  const std::string gone = route_json("gone", lr, echo.port(), R"(,"timeouts":{"drain_timeout_s":1})");
  START_DAEMON(config({gone, route_json("kept", lk, echo.port())}));
  auto held = connect_tcp(lr);
  ASSERT_EQ(held.err, 0);
  ASSERT_EQ(echo_roundtrip(held.fd.get(), "hello", seconds(5)), "");
  auto other = connect_tcp(lk);
  ASSERT_EQ(other.err, 0);
  ASSERT_EQ(echo_roundtrip(other.fd.get(), "hello", seconds(5)), "");

  auto t0 = Clock::now();
  ASSERT_TRUE(reload(config({route_json("kept", lk, echo.port())}))) << d_.log_tail();
  EXPECT_EQ(connect_tcp(lr, milliseconds(1000)).err, ECONNREFUSED) << "removed route still listens";
  EXPECT_EQ(echo_roundtrip(held.fd.get(), "draining", seconds(5)), "")
      << "the removed route's connection was cut before drain_timeout_s";
  auto w = wait_closed(held.fd.get(), t0, milliseconds(4000));
  EXPECT_TRUE(closed_end(w.end)) << "not closed after drain_timeout_s";
  EXPECT_GE(w.ms, 900);
  EXPECT_EQ(echo_roundtrip(other.fd.get(), "still", seconds(5)), "") << "another route was touched";
}

// All or nothing: a file with a problem, or a change whose bind fails, changes nothing.
TEST_P(DataPath, ReloadThatFailsChangesNothing) {
  PortReplyServer target(free_port());
  uint16_t lp = free_port(), fresh = free_port(), taken = free_port();
  START_DAEMON(config({route_json("web", lp, target.port())}));

  ASSERT_TRUE(reload(R"({"role":"edge","routes":[{"id":"web","listen_port":"x"}]})",
                     "reload refused"))
      << d_.log_tail();
  EXPECT_EQ(reply_via(lp), port_text(target.port()));

  Fd blocker = listen_tcp(taken);  // another program holds this port (no SO_REUSEPORT)
  ASSERT_TRUE(reload(config({route_json("web", lp, target.port()),
                             route_json("fresh", fresh, target.port()),
                             route_json("clash", taken, target.port())}),
                     "reload refused"))
      << d_.log_tail();
  EXPECT_NE(d_.log().find("route clash: bind 127.0.0.1:" + std::to_string(taken)),
            std::string::npos) << "the error does not name the route and address";
  EXPECT_EQ(connect_tcp(fresh, milliseconds(1000)).err, ECONNREFUSED)
      << "half of a failed change was applied";
  EXPECT_EQ(reply_via(lp), port_text(target.port()));
  EXPECT_TRUE(d_.running());
}

INSTANTIATE_TEST_SUITE_P(Dataplanes, DataPath, ::testing::Values("splice", "copy", "auto", "sockmap"),
                         [](const ::testing::TestParamInfo<std::string>& i) { return i.param; });

// ---------------------------------------------------------------------------------------------
// `ringfwd --check` and usage, offline.

TEST(Cli, CheckGoodFileExits0) {
  TempDir dir;
  std::string path =
      dir.write_file("ok.json", R"({"role":"edge","dataplane":"splice","workers":2,"routes":[)" +
                                    route_json("ok", 20001, 20002) + "]}");
  auto r = run_command({ringfwd_binary(), "--check", path}, seconds(10));
  EXPECT_EQ(r.exit_code, 0) << r.output;
}

TEST(Cli, CheckBadFileNamesEveryProblem) {
  TempDir dir;
  std::string bad_protocol = R"({"id":"two","protocol":"sctp","listen":"127.0.0.1",)"
                             R"("listen_port":20004,"target":{"host":"127.0.0.1","port":1}})";
  std::string path =
      dir.write_file("bad.json", R"({"role":"edge","frobnicate":1,"routes":[)" +
                                     route_json("one", "70000", 1) + "," + bad_protocol + "]}");
  auto r = run_command({ringfwd_binary(), "--check", path}, seconds(10));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("routes[0].listen_port:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("routes[1].protocol:"), std::string::npos) << r.output;
  EXPECT_NE(r.output.find("frobnicate"), std::string::npos) << r.output;
}

TEST(Cli, CheckMissingFileExits1) {
  auto r = run_command({ringfwd_binary(), "--check", "/nonexistent/ringfwd.json"}, seconds(10));
  EXPECT_EQ(r.exit_code, 1) << r.output;
  EXPECT_NE(r.output.find("/nonexistent/ringfwd.json"), std::string::npos) << r.output;
}

TEST(Cli, UsageErrorExits2) {
  auto r = run_command({ringfwd_binary(), "--no-such-option"}, seconds(10));
  EXPECT_EQ(r.exit_code, 2) << r.output;
}

}  // namespace
}  // namespace rf::it
