// Route-change churn under load (SPEC §4, §5): the real daemon on a private dbus-daemon, driven
// by busctl, while short echo connections hammer a route that never changes and long
// byte-verified transfers run on another. Each of 50 rounds moves route "a" to a new port
// (UpdateRoute), switches route "b" to another target on the same port (UpdateRoute), removes
// and re-adds route "c", and applies a new full config (ApplyConfig); every fifth round also
// tries an ApplyConfig with one bad route, which must change nothing.
//
// Asserted: zero failed connections on the stable route, zero corrupted or truncated
// transfers, every new port serves as soon as the call returned, every old port still serves
// during the overlap and refuses once overlap_ms (+ margin) has passed, and a refused
// ApplyConfig leaves every route as it was. Runs once per dataplane; bounded in time.
#include <fcntl.h>
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/prctl.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <atomic>
#include <algorithm>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <vector>

#include "harness.hpp"

namespace rf::it {
namespace {

constexpr uint64_t kMiB = 1024 * 1024;
constexpr int kOverlapMs = 300;
constexpr int kRefuseMarginMs = 300;  // after overlap_ms, the old port must refuse
constexpr int kRounds = 50;
constexpr auto kChurnBudget = seconds(55);  // the rounds must finish within this

std::string find_program(const std::string& name) {
  for (const char* dir : {"/usr/bin", "/bin", "/usr/sbin", "/sbin", "/usr/local/bin"}) {
    std::string p = std::string(dir) + "/" + name;
    if (::access(p.c_str(), X_OK) == 0) return p;
  }
  return "";
}

// A child process (here: dbus-daemon) killed and reaped on destruction.
class Child {
 public:
  Child() = default;
  ~Child() { stop(); }
  Child(const Child&) = delete;
  Child& operator=(const Child&) = delete;
  void start(const std::vector<std::string>& argv, const std::string& log_path) {
    std::vector<char*> args;
    for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
    args.push_back(nullptr);
    int log = ::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
    pid_ = ::fork();
    if (pid_ == 0) {
      ::prctl(PR_SET_PDEATHSIG, SIGKILL);
      int devnull = ::open("/dev/null", O_RDONLY);
      ::dup2(devnull, 0);
      ::dup2(log, 1);
      ::dup2(log, 2);
      sigset_t none;
      sigemptyset(&none);
      ::sigprocmask(SIG_SETMASK, &none, nullptr);
      ::execv(args[0], args.data());
      ::_exit(127);
    }
    if (log >= 0) ::close(log);
  }
  void stop() {
    if (pid_ > 0) {
      ::kill(pid_, SIGKILL);
      int st = 0;
      ::waitpid(pid_, &st, 0);
      pid_ = -1;
    }
  }

 private:
  pid_t pid_ = -1;
};

std::string route_json(const std::string& id, uint16_t listen_port, uint16_t target_port) {
  return R"({"id":")" + id + R"(","protocol":"tcp","listen":"127.0.0.1","listen_port":)" +
         std::to_string(listen_port) + R"(,"target":{"host":"127.0.0.1","port":)" +
         std::to_string(target_port) + "}}";
}

// Failures seen by any thread: counted, the first few kept verbatim.
class Failures {
 public:
  void add(const std::string& what) {
    std::lock_guard lk(mu_);
    ++count_;
    if (kept_.size() < 25) kept_.push_back(what);
  }
  uint64_t count() const {
    std::lock_guard lk(mu_);
    return count_;
  }
  std::string str() const {
    std::lock_guard lk(mu_);
    std::string s;
    for (auto& k : kept_) s += "  " + k + "\n";
    if (count_ > kept_.size()) s += "  ... and " + std::to_string(count_ - kept_.size()) + " more\n";
    return s;
  }

 private:
  mutable std::mutex mu_;
  uint64_t count_ = 0;
  std::vector<std::string> kept_;
};

// "" when a short echo round trip through `port` works, else why not.
std::string echo_via(uint16_t port, const std::string& msg, milliseconds timeout = milliseconds(2000)) {
  auto deadline = Clock::now() + timeout;
  auto c = connect_tcp(port, timeout);
  if (c.err) return std::string("connect: ") + std::strerror(c.err);
  if (!send_all(c.fd.get(), msg, deadline)) return "send failed: " + std::string(std::strerror(errno));
  std::string back(msg.size(), '\0');
  if (!recv_exact(c.fd.get(), back.data(), back.size(), deadline)) {
    auto r = read_to_end(c.fd.get(), Clock::now() + milliseconds(10));
    return std::string("echo truncated/failed (") + to_string(r.end) + ")";
  }
  if (back != msg) return "wrong echo";
  return "";
}

// True when a connect to `port` is refused (nobody listens).
std::string expect_refused(uint16_t port) {
  auto c = connect_tcp(port, milliseconds(1000));
  if (c.err == ECONNREFUSED) return "";
  if (c.err == 0) return "connection accepted";
  return std::string("connect: ") + std::strerror(c.err);
}

std::string reply_via(uint16_t port) {
  auto c = connect_tcp(port, milliseconds(2000));
  if (c.err) return std::string("connect: ") + std::strerror(c.err);
  auto r = read_to_end(c.fd.get(), Clock::now() + seconds(3));
  return r.data.empty() ? std::string("no reply: ") + to_string(r.end) : r.data;
}

class Churn : public ::testing::TestWithParam<std::string> {
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
      std::cerr << "--- daemon log (" << GetParam() << ") ---\n" << d_.log_tail() << "--- end ---\n";
  }

  // busctl call on the private bus; "" on success, its output otherwise.
  std::string call(const std::string& method, const std::string& arg, bool* ok = nullptr) {
    std::vector<std::string> argv = {busctl_, "--address=" + bus_, "--timeout=10", "call",
                                     "io.ringfwd1", "/io/ringfwd1", "io.ringfwd1.Manager", method};
    if (!arg.empty() || method != "ListRoutes") {
      argv.push_back("s");
      argv.push_back(arg);
    }
    auto r = run_command(argv, seconds(15));
    if (ok) *ok = r.exit_code == 0;
    if (r.exit_code == 0) return "";
    return "exit " + std::to_string(r.exit_code) + ": " + r.output;
  }

  TempDir dir_;
  Child bus_daemon_;
  Daemon d_;
  std::string bus_, busctl_;
};

TEST_P(Churn, RouteChangesUnderLoad) {
  busctl_ = find_program("busctl");
  std::string dbus_daemon = find_program("dbus-daemon");
  if (busctl_.empty() || dbus_daemon.empty()) GTEST_SKIP() << "busctl or dbus-daemon missing";
  const auto t_start = Clock::now();

  // --- the private bus
  const std::string sock = dir_.path() + "/bus";
  bus_ = "unix:path=" + sock;
  std::string conf = dir_.write_file("bus.conf", R"(<!DOCTYPE busconfig PUBLIC "-//freedesktop//DTD D-Bus Bus Configuration 1.0//EN"
 "http://www.freedesktop.org/standards/dbus/1.0/busconfig.dtd">
<busconfig>
  <type>session</type>
  <listen>)" + bus_ + R"(</listen>
  <auth>EXTERNAL</auth>
  <policy context="default">
    <allow send_destination="*" eavesdrop="true"/>
    <allow eavesdrop="true"/>
    <allow own="*"/>
  </policy>
</busconfig>
)");
  bus_daemon_.start({dbus_daemon, "--config-file=" + conf, "--nofork", "--nopidfile"},
                    dir_.path() + "/bus.log");
  {
    auto deadline = Clock::now() + seconds(5);
    struct stat st {};
    while (::stat(sock.c_str(), &st) != 0 && Clock::now() < deadline)
      std::this_thread::sleep_for(milliseconds(20));
    ASSERT_EQ(::stat(sock.c_str(), &st), 0) << "dbus-daemon did not create " << sock << "\n"
                                            << read_file(dir_.path() + "/bus.log");
  }

  // --- peers and ports
  EchoServer echo(free_port());
  DuplexServer duplex(free_port());
  PortReplyServer b_targets[3] = {PortReplyServer(free_port()), PortReplyServer(free_port()),
                                  PortReplyServer(free_port())};
  const uint16_t p_stable = free_port(), p_bulk = free_port(), p_b = free_port(),
                 p_c = free_port(), p_d = free_port(), p_blocked = free_port();
  uint16_t p_a = free_port();
  const uint16_t p_held = free_port();
  Fd held = listen_tcp(p_held);  // "another program" holding a port

  auto config = [&](const std::vector<std::string>& routes) {
    std::string r;
    for (const auto& x : routes) r += (r.empty() ? "" : ",") + x;
    return R"({"role":"edge","dataplane":")" + GetParam() + R"(","workers":2,"state_dir":")" +
           dir_.path() + R"(","blocked_ports":[)" + std::to_string(p_blocked) +
           R"(],"limits":{"overlap_ms":)" + std::to_string(kOverlapMs) +
           R"(,"drain_timeout_s":30},"routes":[)" + r + "]}";
  };
  int b_target = 0;
  bool d_present = false;
  auto current_routes = [&] {
    std::vector<std::string> v = {route_json("stable", p_stable, echo.port()),
                                  route_json("bulk", p_bulk, duplex.port()),
                                  route_json("a", p_a, echo.port()),
                                  route_json("b", p_b, b_targets[b_target].port()),
                                  route_json("c", p_c, echo.port())};
    if (d_present) v.push_back(route_json("d", p_d, echo.port()));
    return v;
  };

  // --- the daemon on the private bus
  std::string cfg = dir_.write_file("ringfwd.json", config(current_routes()));
  d_.spawn({"--config", cfg, "--bus", bus_}, dir_.path() + "/ringfwd.log");
  ASSERT_TRUE(d_.wait_ready(seconds(10))) << "no ready line\n" << d_.log_tail();
  {
    auto deadline = Clock::now() + seconds(10);
    bool on_bus = false;
    while (!on_bus && Clock::now() < deadline) {
      auto r = run_command({busctl_, "--address=" + bus_, "get-property", "io.ringfwd1",
                            "/io/ringfwd1", "io.ringfwd1.Manager", "Role"},
                           seconds(5));
      on_bus = r.exit_code == 0;
      if (!on_bus) std::this_thread::sleep_for(milliseconds(50));
    }
    ASSERT_TRUE(on_bus) << "the daemon never answered on " << bus_;
  }
  ASSERT_EQ(echo_via(p_stable, "hello"), "");
  ASSERT_EQ(echo_via(p_a, "hello"), "");
  ASSERT_EQ(reply_via(p_b), "port=" + std::to_string(b_targets[0].port()) + "\n");

  Failures stable_fail, transfer_fail, change_fail;
  std::atomic<bool> churning{true};

  // (a) the load loop on the stable route: short echo connections, every failure counted.
  std::atomic<uint64_t> load_ok{0};
  std::vector<std::thread> load;
  for (int t = 0; t < 2; ++t)
    load.emplace_back([&, t] {
      uint64_t n = 0;
      while (churning.load()) {
        ++n;
        std::string msg = "load " + std::to_string(t) + " #" + std::to_string(n) + " " +
                          std::string(48, char('a' + n % 26));
        std::string e = echo_via(p_stable, msg, milliseconds(3000));
        if (e.empty())
          ++load_ok;
        else
          stable_fail.add("stable route, " + msg.substr(0, 16) + ": " + e);
        std::this_thread::sleep_for(milliseconds(1));  // ~1k conn/s: no ephemeral exhaustion
      }
    });

  // (b) 3 long byte-verified transfers on the bulk route, repeated while the churn runs.
  const uint64_t kLen = 64 * kMiB;
  std::atomic<uint64_t> transfers_ok{0}, transfers_bad{0};
  std::vector<std::thread> bulk;
  for (int t = 0; t < 3; ++t)
    bulk.emplace_back([&, t] {
      for (uint64_t k = 0; k == 0 || churning.load(); ++k) {
        if (Clock::now() - t_start > seconds(70)) break;
        DuplexClientOptions o;
        o.id = 1000 * (t + 1) + k;
        o.len_up = kLen;
        o.len_down = kLen;
        o.seed_up = 7 + o.id;
        o.seed_down = 9001 + o.id;
        o.chunk = 512 * 1024;
        o.chunk_delay = milliseconds(40);  // 64 MiB paced over ~5 s
        o.timeout = milliseconds(40000);
        o.stall = milliseconds(10000);
        auto r = run_duplex(p_bulk, o);
        auto s = duplex.wait_result(o.id, seconds(10));
        bool good = r.connect_err == 0 && r.up_err == 0 && r.up_sent == kLen &&
                    r.down_bytes == kLen && r.down_mismatch == -1 && r.down_end == End::Eof &&
                    s && s->up_bytes == kLen && s->up_mismatch == -1 && s->up_end == End::Eof;
        if (good) {
          ++transfers_ok;
        } else {
          ++transfers_bad;
          transfer_fail.add("transfer " + std::to_string(o.id) + ": client " + r.str() +
                            " server " + (s ? s->str() : std::string("no result")));
        }
      }
    });

  // Old ports whose overlap must end: checked off the churn thread at their due time.
  struct Due {
    uint16_t port;
    Clock::time_point at;
    std::string what;
  };
  std::mutex due_mu;
  std::deque<Due> due;
  std::atomic<bool> checker_stop{false};
  std::atomic<uint64_t> refusals_checked{0};
  std::thread checker([&] {
    for (;;) {
      std::optional<Due> next;
      {
        std::lock_guard lk(due_mu);
        if (!due.empty() && due.front().at <= Clock::now()) {
          next = due.front();
          due.pop_front();
        } else if (due.empty() && checker_stop.load()) {
          return;
        }
      }
      if (!next) {
        std::this_thread::sleep_for(milliseconds(5));
        continue;
      }
      auto late = ms_since(next->at);
      std::string e = expect_refused(next->port);
      ++refusals_checked;
      if (!e.empty()) {
        // For the report: how long until the old port did refuse (give up after 5 s).
        auto t_ret = next->at - milliseconds(kOverlapMs + kRefuseMarginMs);
        std::string closed = "still open after 5 s";
        while (ms_since(t_ret) < 5000) {
          if (expect_refused(next->port).empty()) {
            closed = "refused from " + std::to_string(int(ms_since(t_ret))) + " ms";
            break;
          }
          std::this_thread::sleep_for(milliseconds(20));
        }
        change_fail.add(next->what + ": old port " + std::to_string(next->port) + " " + e + " " +
                        std::to_string(kOverlapMs + kRefuseMarginMs + int(late)) +
                        " ms after the call returned (" + closed + ")");
      }
    }
  });

  // A change of a's port just returned at `t_ret`: the new one serves now, the old one
  // still serves while in the overlap, and must refuse after it.
  auto check_moved = [&](const std::string& what, uint16_t old_port, uint16_t new_port,
                         Clock::time_point t_ret) {
    std::string e = echo_via(new_port, "new port " + what);
    if (!e.empty())
      change_fail.add(what + ": new port " + std::to_string(new_port) + " right after the call: " + e);
    if (ms_since(t_ret) < kOverlapMs - 150) {
      e = echo_via(old_port, "old port " + what, milliseconds(1000));
      if (!e.empty() && ms_since(t_ret) < kOverlapMs - 50)
        change_fail.add(what + ": old port " + std::to_string(old_port) +
                        " during the overlap: " + e);
    }
    std::lock_guard lk(due_mu);
    due.push_back({old_port, t_ret + milliseconds(kOverlapMs + kRefuseMarginMs), what});
  };

  std::vector<double> call_ms;
  int rounds_done = 0, bad_applies = 0;
  const auto churn_deadline = Clock::now() + kChurnBudget;
  for (int round = 0; round < kRounds && Clock::now() < churn_deadline; ++round) {
    const std::string tag = "round " + std::to_string(round) + " ";
    auto timed_call = [&](const std::string& m, const std::string& arg) {
      auto t0 = Clock::now();
      std::string e = call(m, arg);
      call_ms.push_back(ms_since(t0));
      if (!e.empty()) change_fail.add(tag + m + " failed: " + e);
      return e.empty();
    };

    // 1. UpdateRoute a: new listen port.
    uint16_t old_a = p_a, new_a = free_port();
    if (timed_call("UpdateRoute", route_json("a", new_a, echo.port()))) {
      auto t_ret = Clock::now();
      p_a = new_a;
      check_moved(tag + "UpdateRoute a", old_a, new_a, t_ret);
    }

    // 2. UpdateRoute b: another target, same port.
    int nb = (b_target + 1) % 2;
    if (timed_call("UpdateRoute", route_json("b", p_b, b_targets[nb].port()))) {
      b_target = nb;
      std::string want = "port=" + std::to_string(b_targets[nb].port()) + "\n";
      std::string got = reply_via(p_b);
      if (got != want) change_fail.add(tag + "UpdateRoute b: new connection got '" + got + "'");
    }

    // 3. RemoveRoute c, then AddRoute c.
    if (timed_call("RemoveRoute", "c")) {
      std::string e = expect_refused(p_c);
      if (!e.empty()) change_fail.add(tag + "RemoveRoute c: port " + std::to_string(p_c) + " " + e);
    }
    if (timed_call("AddRoute", route_json("c", p_c, echo.port()))) {
      std::string e = echo_via(p_c, "c is back");
      if (!e.empty()) change_fail.add(tag + "AddRoute c: " + e);
    }

    // 4. ApplyConfig: a moves again, b switches back, d appears or goes; stable routes kept.
    old_a = p_a;
    new_a = free_port();
    const uint16_t saved_a = p_a;
    const int saved_b = b_target;
    const bool saved_d = d_present;
    p_a = new_a;
    b_target = (b_target + 1) % 2;
    d_present = !d_present;
    if (timed_call("ApplyConfig", config(current_routes()))) {
      auto t_ret = Clock::now();
      check_moved(tag + "ApplyConfig a", old_a, new_a, t_ret);
      std::string want = "port=" + std::to_string(b_targets[b_target].port()) + "\n";
      std::string got = reply_via(p_b);
      if (got != want) change_fail.add(tag + "ApplyConfig b: new connection got '" + got + "'");
      std::string e = d_present ? echo_via(p_d, "d") : expect_refused(p_d);
      if (!e.empty())
        change_fail.add(tag + "ApplyConfig d " + (d_present ? "added" : "removed") + ": " + e);
    } else {
      p_a = saved_a;
      b_target = saved_b;
      d_present = saved_d;
    }

    // 5. Every fifth round: an ApplyConfig with one bad route must change nothing.
    if (round % 5 == 4) {
      ++bad_applies;
      const bool use_blocked = (round / 5) % 2 == 1;
      const uint16_t bad_port = use_blocked ? p_blocked : p_held;
      const uint16_t would_be_a = free_port();
      std::vector<std::string> v = {route_json("stable", p_stable, echo.port()),
                                    route_json("bulk", p_bulk, duplex.port()),
                                    route_json("a", would_be_a, echo.port()),
                                    route_json("b", p_b, b_targets[2].port()),
                                    route_json("c", p_c, echo.port()),
                                    route_json("bad", bad_port, echo.port())};
      if (!d_present) v.push_back(route_json("d", p_d, echo.port()));
      const std::string what = tag + "bad ApplyConfig (" +
                               (use_blocked ? "blocked port " : "port held by another program ") +
                               std::to_string(bad_port) + ")";
      bool ok = true;
      std::string out = call("ApplyConfig", config(v), &ok);
      if (ok) change_fail.add(what + " was accepted");
      if (round < 10) std::cout << "[churn " << GetParam() << "] " << what << " -> " << out;
      std::string e = echo_via(p_a, "a unchanged");
      if (!e.empty()) change_fail.add(what + ": a's port " + std::to_string(p_a) + ": " + e);
      e = expect_refused(would_be_a);
      if (!e.empty()) change_fail.add(what + ": a's would-be port " + std::to_string(would_be_a) + ": " + e);
      std::string want = "port=" + std::to_string(b_targets[b_target].port()) + "\n";
      std::string got = reply_via(p_b);
      if (got != want) change_fail.add(what + ": b now answers '" + got + "'");
      e = d_present ? echo_via(p_d, "d kept") : expect_refused(p_d);
      if (!e.empty()) change_fail.add(what + ": d changed: " + e);
      if (use_blocked) {
        e = expect_refused(p_blocked);
        if (!e.empty()) change_fail.add(what + ": the blocked port " + e);
      }
      e = echo_via(p_c, "c kept");
      if (!e.empty()) change_fail.add(what + ": c: " + e);
    }
    ++rounds_done;
  }
  const double churn_s = ms_since(t_start) / 1000.0;
  churning = false;
  for (auto& t : load) t.join();
  for (auto& t : bulk) t.join();
  checker_stop = true;
  checker.join();

  std::sort(call_ms.begin(), call_ms.end());
  auto pct = [&](double p) {
    return call_ms.empty() ? 0.0 : call_ms[std::min(call_ms.size() - 1, size_t(p * call_ms.size()))];
  };
  std::cout << "[churn " << GetParam() << "] rounds=" << rounds_done << " calls=" << call_ms.size()
            << " busctl call ms median=" << pct(0.5) << " p99=" << pct(0.99)
            << " bad_applies=" << bad_applies << " stable ok=" << load_ok.load()
            << " fail=" << stable_fail.count() << " transfers ok=" << transfers_ok.load()
            << " bad=" << transfers_bad.load() << " old-port refusals checked="
            << refusals_checked.load() << " change failures=" << change_fail.count()
            << " elapsed=" << ms_since(t_start) / 1000.0 << " s (churn ended at " << churn_s
            << " s)\n";

  EXPECT_EQ(rounds_done, kRounds) << "the rounds did not finish within " << kChurnBudget.count() << " s";
  EXPECT_EQ(stable_fail.count(), 0u) << "failed connections on the stable route:\n" << stable_fail.str();
  EXPECT_GT(load_ok.load(), 1000u) << "the load loop hardly ran";
  EXPECT_EQ(transfers_bad.load(), 0u) << "corrupted/truncated transfers:\n" << transfer_fail.str();
  EXPECT_GE(transfers_ok.load(), 3u);
  EXPECT_EQ(change_fail.count(), 0u) << "route changes misbehaved:\n" << change_fail.str();
  EXPECT_EQ(refusals_checked.load(), uint64_t(2 * rounds_done));
  EXPECT_TRUE(d_.running()) << "the daemon died";
  EXPECT_LT(ms_since(t_start), 90000.0) << "over the 90 s budget";
}

INSTANTIATE_TEST_SUITE_P(Dataplanes, Churn, ::testing::Values("splice", "copy", "auto", "sockmap"),
                         [](const auto& info) { return info.param; });

}  // namespace
}  // namespace rf::it
