// The sockmap owner (src/bpf/sockmap.cpp) on real loopback sockets and the real kernel: the
// TCP accounting helpers need nothing; the BPF part needs root or CAP_BPF + CAP_NET_ADMIN and
// skips with the reason otherwise.
#include "ringfwd/bpf/sockmap.hpp"

#include <gtest/gtest.h>
#include <poll.h>
#include <sys/socket.h>

#include <string>
#include <thread>

#include "harness.hpp"

namespace rf::it {
namespace {

struct Pair {  // a connected loopback pair: `out` connected, `in` accepted
  Fd out, in;
};
Pair loopback_pair() {
  uint16_t port = free_port();
  Fd l = listen_tcp(port);
  auto c = connect_tcp(port);
  Pair p;
  p.out = std::move(c.fd);
  p.in = Fd(::accept(l.get(), nullptr, nullptr));
  return p;
}

void write_all(int fd, const std::string& s) {
  ASSERT_TRUE(send_all(fd, s.data(), s.size(), Clock::now() + seconds(10)));
}
std::string read_n(int fd, size_t n) {
  std::string s(n, '\0');
  if (!recv_exact(fd, s.data(), n, Clock::now() + seconds(10))) return "(short)";
  return s;
}

TEST(SockmapHelpers, WrittenReceivedConsumedAreExact) {
  Pair p = loopback_pair();
  ASSERT_TRUE(p.out && p.in);
  auto w0 = bpf::Sockmap::written(p.out.get());
  ASSERT_TRUE(w0);
  write_all(p.out.get(), std::string(100000, 'x'));
  std::this_thread::sleep_for(milliseconds(50));
  auto w1 = bpf::Sockmap::written(p.out.get());
  ASSERT_TRUE(w1);
  EXPECT_EQ(*w1 - *w0, 100000u);
  EXPECT_EQ(bpf::Sockmap::received(p.in.get()).value_or(0), 100000u);
  EXPECT_EQ(bpf::Sockmap::consumed(p.in.get()).value_or(1), 0u);
  EXPECT_EQ(read_n(p.in.get(), 30000).size(), 30000u);
  EXPECT_EQ(bpf::Sockmap::consumed(p.in.get()).value_or(0), 30000u);
  EXPECT_NE(bpf::Sockmap::cookie(p.in.get()), 0u);
  EXPECT_NE(bpf::Sockmap::cookie(p.in.get()), bpf::Sockmap::cookie(p.out.get()));
}

class SockmapKernel : public ::testing::Test {
 protected:
  void SetUp() override {
    std::string why = sockmap_unavailable();
    if (!why.empty()) GTEST_SKIP() << why;
    auto sm = bpf::Sockmap::open({});
    ASSERT_TRUE(sm) << sm.error().str();
    sm_ = std::move(sm.value());
  }
  std::unique_ptr<bpf::Sockmap> sm_;
};

// A proxy's two sockets (c: accepted from the client, t: connected to the target) linked in
// the kernel: bytes queued before the link and everything after come through, in order, and
// the flow counts say exactly how many.
TEST_F(SockmapKernel, LinkedPairForwardsBothWaysAndCounts) {
  Pair front = loopback_pair();  // client.out -> c (front.in)
  Pair back = loopback_pair();   // t (back.out) -> server (back.in)
  int client = front.out.get(), c = front.in.get(), t = back.out.get(), server = back.in.get();
  write_all(client, "early up");
  write_all(server, "early down");
  std::this_thread::sleep_for(milliseconds(20));
  const uint64_t kc = bpf::Sockmap::cookie(c), kt = bpf::Sockmap::cookie(t);
  auto linked = sm_->link(c, kc, t, kt);
  ASSERT_TRUE(linked) << linked.error().str();
  EXPECT_EQ(*linked, 3u);
  EXPECT_EQ(read_n(server, 8), "early up");
  EXPECT_EQ(read_n(client, 10), "early down");

  const std::string up = pattern_string(1, 3 << 20), down = pattern_string(2, 1 << 20);
  std::thread reader([&] { EXPECT_EQ(read_n(server, up.size()) == up, true); });
  write_all(client, up);
  reader.join();
  std::thread reader2([&] { EXPECT_EQ(read_n(client, down.size()) == down, true); });
  write_all(server, down);
  reader2.join();
  EXPECT_EQ(sm_->flow(kc).value_or(bpf::Sockmap::Flow{}).redirected, 8u + up.size());
  EXPECT_EQ(sm_->flow(kt).value_or(bpf::Sockmap::Flow{}).redirected, 10u + down.size());
  EXPECT_EQ(sm_->flows(), 2u);
  EXPECT_EQ(sm_->verdict_sockets(), 2u);
  auto ctr = sm_->counters();
  EXPECT_EQ(ctr.bytes, 18u + up.size() + down.size());  // zeroed after the self-test
  EXPECT_EQ(ctr.drops, 0u);

  // The FIN is not passed on by the kernel: poll reports it on the linked socket.
  ::shutdown(client, SHUT_WR);
  pollfd pf{c, POLLRDHUP, 0};
  ASSERT_EQ(::poll(&pf, 1, 2000), 1);
  EXPECT_TRUE(pf.revents & POLLRDHUP);

  // Nothing is left behind: flow entries by forget(), sockets by closing them.
  sm_->forget(kc);
  sm_->forget(kt);
  EXPECT_EQ(sm_->flows(), 0u);
  front.in.reset();
  back.out.reset();
  for (int i = 0; i < 50 && sm_->verdict_sockets() > 0; ++i)
    std::this_thread::sleep_for(milliseconds(20));
  EXPECT_EQ(sm_->verdict_sockets(), 0u);
}

// A target that closed before the link: nothing is handed over, the caller copies.
TEST_F(SockmapKernel, LinkRefusesASocketThatIsNoLongerEstablished) {
  Pair front = loopback_pair();
  Pair back = loopback_pair();
  back.in.reset();  // the target closes at once: t is in CLOSE_WAIT
  std::this_thread::sleep_for(milliseconds(50));
  const uint64_t kc = bpf::Sockmap::cookie(front.in.get()), kt = bpf::Sockmap::cookie(back.out.get());
  auto linked = sm_->link(front.in.get(), kc, back.out.get(), kt);
  ASSERT_FALSE(linked);
  EXPECT_EQ(linked.error().code.value(), EOPNOTSUPP) << linked.error().str();
  EXPECT_EQ(sm_->flows(), 0u);
  EXPECT_EQ(sm_->verdict_sockets(), 0u);
}

}  // namespace
}  // namespace rf::it
