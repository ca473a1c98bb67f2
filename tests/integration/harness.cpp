#include "harness.hpp"
#include "ringfwd_build_config.h"

#include <arpa/inet.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <signal.h>
#include <sys/epoll.h>
#include <sys/eventfd.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <random>
#include <sstream>
#include <stdexcept>
#include <unordered_map>

namespace rf::it {

// ---------------------------------------------------------------------------------------------
// Process-wide setup.

void prepare_process() {
  static std::once_flag once;
  std::call_once(once, [] {
    struct rlimit rl {};
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur < rl.rlim_max) {
      rl.rlim_cur = rl.rlim_max;
      setrlimit(RLIMIT_NOFILE, &rl);
    }
    ::signal(SIGPIPE, SIG_IGN);
  });
}

namespace {
[[maybe_unused]] const bool g_prepared = (prepare_process(), true);

std::string errstr(int e) { return std::string(std::strerror(e)); }

sockaddr_in loopback(uint16_t port) {
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  return a;
}

int remaining_ms(Clock::time_point deadline) {
  auto left = std::chrono::duration_cast<milliseconds>(deadline - Clock::now()).count();
  if (left <= 0) return 0;
  return static_cast<int>(std::min<long long>(left, 100));  // short slices
}

void set_nonblocking(int fd, bool on) {
  int fl = fcntl(fd, F_GETFL);
  fcntl(fd, F_SETFL, on ? (fl | O_NONBLOCK) : (fl & ~O_NONBLOCK));
}
}  // namespace

// ---------------------------------------------------------------------------------------------
// Fd, TempDir.


TempDir::TempDir() {
  char tmpl[] = "/tmp/ringfwd-it-XXXXXX";
  if (!mkdtemp(tmpl)) throw std::runtime_error("mkdtemp: " + errstr(errno));
  path_ = tmpl;
}

TempDir::~TempDir() {
  std::error_code ec;
  std::filesystem::remove_all(path_, ec);
}

std::string TempDir::write_file(const std::string& name, const std::string& content) const {
  std::string p = path_ + "/" + name;
  std::ofstream f(p, std::ios::binary | std::ios::trunc);
  f << content;
  f.close();
  if (!f) throw std::runtime_error("cannot write " + p);
  return p;
}

std::string read_file(const std::string& path) {
  std::ifstream f(path, std::ios::binary);
  std::ostringstream ss;
  ss << f.rdbuf();
  return ss.str();
}

// ---------------------------------------------------------------------------------------------
// Ports.

namespace {
std::mutex g_port_mu;
std::set<uint16_t> g_handed_out;

uint16_t ephemeral_low() {
  std::ifstream f("/proc/sys/net/ipv4/ip_local_port_range");
  unsigned lo = 32768, hi = 60999;
  f >> lo >> hi;
  return static_cast<uint16_t>(std::clamp(lo, 20000u, 65000u));
}

bool port_bindable(uint16_t port) {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) return false;
  auto a = loopback(port);
  return ::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
}

std::mt19937& rng() {
  static std::mt19937 r(static_cast<unsigned>(
      std::chrono::high_resolution_clock::now().time_since_epoch().count() ^ (getpid() << 16)));
  return r;
}
}  // namespace

uint16_t free_port() { return free_port_block(1); }

uint16_t free_port_block(unsigned count) {
  std::lock_guard lk(g_port_mu);
  const unsigned lo = 15000, hi = ephemeral_low() - count;  // block stays below the range
  std::uniform_int_distribution<unsigned> dist(lo, hi);
  for (int attempt = 0; attempt < 2000; ++attempt) {
    unsigned base = dist(rng());
    bool ok = true;
    for (unsigned i = 0; i < count && ok; ++i) {
      uint16_t p = static_cast<uint16_t>(base + i);
      ok = !g_handed_out.count(p) && port_bindable(p);
    }
    if (!ok) continue;
    for (unsigned i = 0; i < count; ++i) g_handed_out.insert(static_cast<uint16_t>(base + i));
    return static_cast<uint16_t>(base);
  }
  throw std::runtime_error("no free port block of " + std::to_string(count));
}

// ---------------------------------------------------------------------------------------------
// Sockets.

ConnectResult connect_tcp(uint16_t port, milliseconds timeout, const char* source) {
  ConnectResult r;
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC | SOCK_NONBLOCK, 0));
  if (!s) {
    r.err = errno;
    return r;
  }
  if (source) {
    sockaddr_in src{};
    src.sin_family = AF_INET;
    inet_pton(AF_INET, source, &src.sin_addr);
    if (::bind(s.get(), reinterpret_cast<sockaddr*>(&src), sizeof src) != 0) {
      r.err = errno;
      return r;
    }
  }
  auto a = loopback(port);
  if (::connect(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0) {
    if (errno != EINPROGRESS) {
      r.err = errno;
      return r;
    }
    auto deadline = Clock::now() + timeout;
    for (;;) {
      pollfd p{s.get(), POLLOUT, 0};
      int n = ::poll(&p, 1, remaining_ms(deadline));
      if (n > 0) break;
      if (n < 0 && errno != EINTR) {
        r.err = errno;
        return r;
      }
      if (Clock::now() >= deadline) {
        r.err = ETIMEDOUT;
        return r;
      }
    }
    int err = 0;
    socklen_t len = sizeof err;
    getsockopt(s.get(), SOL_SOCKET, SO_ERROR, &err, &len);
    if (err != 0) {
      r.err = err;
      return r;
    }
  }
  set_nonblocking(s.get(), false);
  r.fd = std::move(s);
  return r;
}

Fd listen_tcp(uint16_t port, int backlog) {
  Fd s(::socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!s) throw std::runtime_error("socket: " + errstr(errno));
  int one = 1;
  setsockopt(s.get(), SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  auto a = loopback(port);
  if (::bind(s.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) != 0)
    throw std::runtime_error("bind 127.0.0.1:" + std::to_string(port) + ": " + errstr(errno));
  if (::listen(s.get(), backlog) != 0) throw std::runtime_error("listen: " + errstr(errno));
  return s;
}

bool send_all(int fd, const void* data, size_t len, Clock::time_point deadline) {
  const char* p = static_cast<const char*>(data);
  while (len > 0) {
    ssize_t n = ::send(fd, p, len, MSG_NOSIGNAL | MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      len -= static_cast<size_t>(n);
      continue;
    }
    if (n < 0 && errno != EAGAIN && errno != EINTR) return false;
    if (Clock::now() >= deadline) return false;
    pollfd pf{fd, POLLOUT, 0};
    ::poll(&pf, 1, remaining_ms(deadline));
  }
  return true;
}

bool recv_exact(int fd, void* data, size_t len, Clock::time_point deadline) {
  char* p = static_cast<char*>(data);
  while (len > 0) {
    ssize_t n = ::recv(fd, p, len, MSG_DONTWAIT);
    if (n > 0) {
      p += n;
      len -= static_cast<size_t>(n);
      continue;
    }
    if (n == 0) return false;
    if (errno != EAGAIN && errno != EINTR) return false;
    if (Clock::now() >= deadline) return false;
    pollfd pf{fd, POLLIN, 0};
    ::poll(&pf, 1, remaining_ms(deadline));
  }
  return true;
}

void close_with_rst(Fd& fd) {
  linger l{1, 0};
  setsockopt(fd.get(), SOL_SOCKET, SO_LINGER, &l, sizeof l);
  fd.reset();
}

const char* to_string(End e) {
  switch (e) {
    case End::Eof:
      return "EOF";
    case End::Reset:
      return "RST";
    case End::Error:
      return "error";
    case End::Timeout:
      return "timeout";
  }
  return "?";
}

namespace {
// One non-blocking read attempt classified: >0 bytes, or an end, or "nothing yet".
struct ReadStep {
  ssize_t n = 0;
  std::optional<End> end;
  int err = 0;
};
ReadStep read_step(int fd, char* buf, size_t len) {
  ReadStep s;
  s.n = ::recv(fd, buf, len, MSG_DONTWAIT);
  if (s.n > 0) return s;
  if (s.n == 0) {
    s.end = End::Eof;
    return s;
  }
  s.err = errno;
  s.n = 0;
  if (s.err == EAGAIN || s.err == EINTR) return s;
  s.end = (s.err == ECONNRESET || s.err == EPIPE) ? End::Reset : End::Error;
  return s;
}
}  // namespace

ReadToEnd read_to_end(int fd, Clock::time_point deadline, size_t cap) {
  ReadToEnd r;
  auto t0 = Clock::now();
  std::vector<char> buf(256 * 1024);
  for (;;) {
    ReadStep s = read_step(fd, buf.data(), buf.size());
    if (s.n > 0) {
      r.bytes += static_cast<uint64_t>(s.n);
      size_t room = cap > r.data.size() ? cap - r.data.size() : 0;
      r.data.append(buf.data(), std::min(room, static_cast<size_t>(s.n)));
      continue;
    }
    if (s.end) {
      r.end = *s.end;
      r.err = s.err;
      break;
    }
    if (Clock::now() >= deadline) {
      r.end = End::Timeout;
      break;
    }
    pollfd pf{fd, POLLIN, 0};
    ::poll(&pf, 1, remaining_ms(deadline));
  }
  r.ms = ms_since(t0);
  return r;
}

CloseWait wait_closed(int fd, Clock::time_point since, milliseconds timeout) {
  CloseWait w;
  auto deadline = Clock::now() + timeout;
  std::vector<char> buf(64 * 1024);
  for (;;) {
    ReadStep s = read_step(fd, buf.data(), buf.size());
    if (s.n > 0) {
      w.bytes += static_cast<uint64_t>(s.n);
      continue;
    }
    if (s.end) {
      w.end = *s.end;
      break;
    }
    if (Clock::now() >= deadline) break;
    pollfd pf{fd, POLLIN, 0};
    ::poll(&pf, 1, remaining_ms(deadline));
  }
  w.ms = ms_since(since);
  return w;
}

bool still_open(int fd) {
  pollfd pf{fd, POLLIN, 0};
  int n = ::poll(&pf, 1, 0);
  if (n == 0) return true;
  if (pf.revents & (POLLERR | POLLHUP)) return false;
  char c;
  ssize_t r = ::recv(fd, &c, 1, MSG_PEEK | MSG_DONTWAIT);
  if (r > 0) return true;
  if (r < 0 && (errno == EAGAIN || errno == EINTR)) return true;
  return false;
}

std::string echo_roundtrip(int fd, const std::string& msg, milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::atomic<bool> sent_ok{false};
  std::thread sender([&] { sent_ok = send_all(fd, msg, deadline); });
  std::string back(msg.size(), '\0');
  size_t got = 0;
  std::string err;
  while (got < back.size()) {
    ReadStep s = read_step(fd, back.data() + got, back.size() - got);
    if (s.n > 0) {
      got += static_cast<size_t>(s.n);
      continue;
    }
    if (s.end) {
      err = std::string("connection ended (") + to_string(*s.end) + ")";
      break;
    }
    if (Clock::now() >= deadline) {
      err = "timed out";
      break;
    }
    pollfd pf{fd, POLLIN, 0};
    ::poll(&pf, 1, remaining_ms(deadline));
  }
  sender.join();
  if (!err.empty() || got != msg.size())
    return "echo of " + std::to_string(msg.size()) + " bytes: got " + std::to_string(got) + ", " +
           (err.empty() ? "short" : err) + (sent_ok ? "" : ", send failed");
  if (!sent_ok) return "send failed";
  if (back != msg) {
    size_t i = 0;
    while (i < msg.size() && back[i] == msg[i]) ++i;
    return "echo of " + std::to_string(msg.size()) + " bytes differs at offset " +
           std::to_string(i);
  }
  return "";
}

// ---------------------------------------------------------------------------------------------
// Pattern streams.

namespace {
inline uint64_t pattern_word(uint64_t seed, uint64_t index) {
  uint64_t z = seed * 0x9E3779B97F4A7C15ull + index + 0x632BE59BD9B4E019ull;
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
}  // namespace

void fill_pattern(uint64_t seed, uint64_t offset, uint8_t* buf, size_t len) {
  size_t i = 0;
  while (i < len && (offset + i) % 8 != 0) {
    uint64_t k = offset + i;
    buf[i++] = static_cast<uint8_t>(pattern_word(seed, k / 8) >> (8 * (k % 8)));
  }
  while (len - i >= 8) {
    uint64_t w = pattern_word(seed, (offset + i) / 8);
    std::memcpy(buf + i, &w, 8);  // little-endian host: byte k%8 = bits 8*(k%8)
    i += 8;
  }
  while (i < len) {
    uint64_t k = offset + i;
    buf[i++] = static_cast<uint8_t>(pattern_word(seed, k / 8) >> (8 * (k % 8)));
  }
}

int64_t check_pattern(uint64_t seed, uint64_t offset, const uint8_t* buf, size_t len) {
  thread_local std::vector<uint8_t> expect(64 * 1024);
  size_t done = 0;
  while (done < len) {
    size_t n = std::min(expect.size(), len - done);
    fill_pattern(seed, offset + done, expect.data(), n);
    if (std::memcmp(expect.data(), buf + done, n) != 0) {
      for (size_t i = 0; i < n; ++i)
        if (expect[i] != buf[done + i]) return static_cast<int64_t>(offset + done + i);
    }
    done += n;
  }
  return -1;
}

std::string pattern_string(uint64_t seed, size_t len) {
  std::string s(len, '\0');
  fill_pattern(seed, 0, reinterpret_cast<uint8_t*>(s.data()), len);
  return s;
}

// ---------------------------------------------------------------------------------------------
// Processes.

std::string sockmap_unavailable() {
#if !RINGFWD_HAVE_BPF
  return "sockmap dataplane not built (libbpf, clang or bpftool missing at configure time)";
#else
  std::string status = read_file("/proc/self/status");
  size_t at = status.find("CapEff:");
  uint64_t caps = at == std::string::npos ? 0 : std::strtoull(status.c_str() + at + 7, nullptr, 16);
  const uint64_t need = (1ull << 39) | (1ull << 12);  // CAP_BPF, CAP_NET_ADMIN
  if ((caps & need) != need) return "sockmap needs root or CAP_BPF + CAP_NET_ADMIN";
  return "";
#endif
}

std::string ringfwd_binary() {
  const char* p = std::getenv("RINGFWD");
  return p ? p : "";
}

std::string RouteStats::str() const {
  std::ostringstream s;
  s << "route=" << route << " total=" << total << " active=" << active << " refused=" << refused
    << " failed=" << failed << " bytes_up=" << bytes_up << " bytes_down=" << bytes_down;
  return s.str();
}

namespace {
// fork/exec with stdout+stderr into `log_path`. Only async-signal-safe calls in the child.
pid_t spawn_process(const std::vector<std::string>& argv, const std::string& log_path) {
  Fd log(::open(log_path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_APPEND | O_CLOEXEC, 0644));
  if (!log) throw std::runtime_error("open " + log_path + ": " + errstr(errno));
  Fd devnull(::open("/dev/null", O_RDONLY | O_CLOEXEC));
  std::vector<char*> args;
  for (auto& a : argv) args.push_back(const_cast<char*>(a.c_str()));
  args.push_back(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error("fork: " + errstr(errno));
  if (pid == 0) {
    ::prctl(PR_SET_PDEATHSIG, SIGKILL);  // never outlive the test
    ::dup2(devnull.get(), 0);
    ::dup2(log.get(), 1);
    ::dup2(log.get(), 2);
    struct sigaction sa {};
    sa.sa_handler = SIG_DFL;
    for (int sig : {SIGPIPE, SIGTERM, SIGINT, SIGUSR1, SIGHUP}) ::sigaction(sig, &sa, nullptr);
    sigset_t none;
    sigemptyset(&none);
    ::sigprocmask(SIG_SETMASK, &none, nullptr);
    ::execv(args[0], args.data());
    const char msg[] = "harness: execv failed\n";
    ssize_t w = ::write(2, msg, sizeof msg - 1);
    (void)w;
    ::_exit(127);
  }
  return pid;
}

int decode_status(int status) {
  if (WIFEXITED(status)) return WEXITSTATUS(status);
  if (WIFSIGNALED(status)) return 128 + WTERMSIG(status);
  return -1;
}
}  // namespace

ChildProcess::ChildProcess(const std::vector<std::string>& argv, const std::string& log_path)
    : pid_(spawn_process(argv, log_path)), log_(log_path) {}

ChildProcess::~ChildProcess() {
  if (pid_ <= 0) return;
  ::kill(pid_, SIGKILL);
  int st = 0;
  ::waitpid(pid_, &st, 0);
}

std::string ChildProcess::log() const { return read_file(log_); }

bool ChildProcess::running() {
  int st = 0;
  return pid_ > 0 && ::waitpid(pid_, &st, WNOHANG) == 0;
}

CommandResult run_command(const std::vector<std::string>& argv, milliseconds timeout) {
  TempDir dir;
  std::string out = dir.path() + "/output";
  pid_t pid = spawn_process(argv, out);
  CommandResult r;
  auto deadline = Clock::now() + timeout;
  for (;;) {
    int status = 0;
    pid_t w = ::waitpid(pid, &status, WNOHANG);
    if (w == pid) {
      r.exit_code = decode_status(status);
      break;
    }
    if (Clock::now() >= deadline) {
      ::kill(pid, SIGKILL);
      ::waitpid(pid, &status, 0);
      r.exit_code = -1;
      break;
    }
    std::this_thread::sleep_for(milliseconds(5));
  }
  r.output = read_file(out);
  return r;
}

Daemon::~Daemon() { kill_now(); }

void Daemon::kill_now() {
  if (pid_ > 0 && !exit_code_) {
    ::kill(pid_, SIGKILL);
    int status = 0;
    if (::waitpid(pid_, &status, 0) == pid_) exit_code_ = decode_status(status);
  }
}

void Daemon::spawn(const std::vector<std::string>& args, const std::string& log_path) {
  spawn_wrapped({}, args, log_path);
}

void Daemon::spawn_wrapped(const std::vector<std::string>& wrapper,
                           const std::vector<std::string>& args, const std::string& log_path) {
  log_path_ = log_path;
  exit_code_.reset();
  std::vector<std::string> argv = wrapper;
  argv.push_back(ringfwd_binary());
  argv.insert(argv.end(), args.begin(), args.end());
  pid_ = spawn_process(argv, log_path);
}

std::string Daemon::start(const TempDir& dir, const std::string& config_json,
                          milliseconds ready_timeout) {
  if (ringfwd_binary().empty()) return "environment variable RINGFWD is not set";
  std::string cfg = dir.write_file("ringfwd.json", config_json);
  spawn({"--config", cfg, "--bus", "none"}, dir.path() + "/ringfwd.log");
  if (wait_ready(ready_timeout)) return "";
  std::string why =
      running() ? "no 'ready:' line within " + std::to_string(ready_timeout.count()) + " ms"
                : "daemon exited with code " + std::to_string(*exit_code_) + " before 'ready:'";
  return why + "\nconfig: " + config_json + "\n--- daemon log ---\n" + log_tail();
}

bool Daemon::wait_ready(milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (log().find("ringfwd[info]: ready:") != std::string::npos) return true;
    if (!running() || Clock::now() >= deadline) return false;
    std::this_thread::sleep_for(milliseconds(10));
  }
}

bool Daemon::running() {
  if (pid_ <= 0 || exit_code_) return false;
  int status = 0;
  pid_t w = ::waitpid(pid_, &status, WNOHANG);
  if (w == pid_) {
    exit_code_ = decode_status(status);
    return false;
  }
  return true;
}

void Daemon::signal(int sig) {
  if (running()) ::kill(pid_, sig);
}

std::optional<int> Daemon::wait_exit(milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  for (;;) {
    if (!running()) return exit_code_;
    if (Clock::now() >= deadline) return std::nullopt;
    std::this_thread::sleep_for(milliseconds(5));
  }
}

uint64_t Daemon::rss_kib() const {
  if (pid_ <= 0) return 0;
  std::ifstream f("/proc/" + std::to_string(pid_) + "/status");
  std::string line;
  while (std::getline(f, line))
    if (line.rfind("VmRSS:", 0) == 0) return std::strtoull(line.c_str() + 6, nullptr, 10);
  return 0;
}

std::string Daemon::log() const { return log_path_.empty() ? "" : read_file(log_path_); }

std::string Daemon::log_tail(size_t max_bytes) const {
  std::string l = log();
  if (l.size() <= max_bytes) return l;
  return "[...]\n" + l.substr(l.size() - max_bytes);
}

namespace {
std::optional<RouteStats> parse_stats_line(const std::string& line) {
  auto at = line.find("stats ");
  if (at == std::string::npos) return std::nullopt;
  RouteStats s;
  std::istringstream in(line.substr(at + 6));
  std::string tok;
  bool have_route = false;
  while (in >> tok) {
    auto eq = tok.find('=');
    if (eq == std::string::npos) continue;
    std::string k = tok.substr(0, eq), v = tok.substr(eq + 1);
    if (k == "route") {
      s.route = v;
      have_route = true;
      continue;
    }
    uint64_t n = std::strtoull(v.c_str(), nullptr, 10);
    if (k == "total")
      s.total = n;
    else if (k == "active")
      s.active = n;
    else if (k == "refused")
      s.refused = n;
    else if (k == "failed")
      s.failed = n;
    else if (k == "bytes_up")
      s.bytes_up = n;
    else if (k == "bytes_down")
      s.bytes_down = n;
  }
  if (!have_route) return std::nullopt;
  return s;
}
}  // namespace

std::optional<RouteStats> Daemon::stats(const std::string& route) {
  size_t from = log().size();
  signal(SIGUSR1);
  auto deadline = Clock::now() + milliseconds(3000);
  const std::string key = "stats route=" + route + " ";
  while (Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
    std::string l = log();
    if (l.size() <= from) continue;
    auto at = l.find(key, from);
    if (at == std::string::npos) continue;
    auto bol = l.rfind('\n', at);
    auto eol = l.find('\n', at);
    if (eol == std::string::npos) continue;  // line not complete yet
    bol = (bol == std::string::npos || bol < from) ? from : bol + 1;
    return parse_stats_line(l.substr(bol, eol - bol));
  }
  return std::nullopt;
}

std::map<std::string, uint64_t> Daemon::sockmap_stats() {
  std::map<std::string, uint64_t> out;
  size_t from = log().size();
  signal(SIGUSR1);
  auto deadline = Clock::now() + milliseconds(3000);
  const std::string key = "stats sockmap ";
  while (Clock::now() < deadline) {
    std::this_thread::sleep_for(milliseconds(10));
    std::string l = log();
    auto at = l.size() > from ? l.find(key, from) : std::string::npos;
    if (at == std::string::npos) continue;
    auto eol = l.find('\n', at);
    if (eol == std::string::npos) continue;
    std::istringstream in(l.substr(at + key.size(), eol - at - key.size()));
    std::string kv;
    while (in >> kv) {
      auto eq = kv.find('=');
      if (eq != std::string::npos) out[kv.substr(0, eq)] = std::strtoull(kv.c_str() + eq + 1, nullptr, 10);
    }
    return out;
  }
  return out;
}

std::optional<RouteStats> Daemon::wait_stats(const std::string& route,
                                             const std::function<bool(const RouteStats&)>& pred,
                                             milliseconds timeout) {
  auto deadline = Clock::now() + timeout;
  std::optional<RouteStats> last;
  for (;;) {
    auto s = stats(route);
    if (s) {
      last = s;
      if (pred(*s)) return last;
    }
    if (Clock::now() >= deadline || !running()) return last;
    std::this_thread::sleep_for(milliseconds(50));
  }
}

// ---------------------------------------------------------------------------------------------
// ThreadServer.

ThreadServer::ThreadServer(uint16_t port, Handler handler)
    : port_(port),
      handler_(std::move(handler)),
      listener_(listen_tcp(port)),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  acceptor_ = std::thread([this] { accept_loop(); });
}

ThreadServer::~ThreadServer() { stop(); }

void ThreadServer::accept_loop() {
  while (!stopping_) {
    pollfd p[2] = {{listener_.get(), POLLIN, 0}, {wake_.get(), POLLIN, 0}};
    if (::poll(p, 2, 1000) <= 0) continue;
    if (p[1].revents) break;
    int fd = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC);
    if (fd < 0) continue;
    std::lock_guard lk(mu_);
    if (stopping_) {
      ::close(fd);
      break;
    }
    ++accepted_;
    ++open_;
    live_fds_.insert(fd);
    conns_.emplace_back([this, fd] {
      handler_(fd);
      {
        std::lock_guard lk2(mu_);
        live_fds_.erase(fd);
      }
      ::close(fd);
      --open_;
    });
  }
}

void ThreadServer::stop() {
  if (stopping_.exchange(true)) return;
  uint64_t one = 1;
  ssize_t w = ::write(wake_.get(), &one, sizeof one);
  (void)w;
  if (acceptor_.joinable()) acceptor_.join();
  listener_.reset();
  std::vector<std::thread> threads;
  {
    std::lock_guard lk(mu_);
    for (int fd : live_fds_) ::shutdown(fd, SHUT_RDWR);
    threads.swap(conns_);
  }
  for (auto& t : threads) t.join();
}

// ---------------------------------------------------------------------------------------------
// EchoServer.

namespace {
struct EchoConn {
  Fd fd;
  std::string out;
  size_t off = 0;
  bool eof = false;
};
}  // namespace

EchoServer::EchoServer(uint16_t port)
    : port_(port),
      listener_(listen_tcp(port, 4096)),
      epoll_(::epoll_create1(EPOLL_CLOEXEC)),
      wake_(::eventfd(0, EFD_CLOEXEC | EFD_NONBLOCK)) {
  set_nonblocking(listener_.get(), true);
  epoll_event ev{};
  ev.events = EPOLLIN;
  ev.data.fd = listener_.get();
  epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, listener_.get(), &ev);
  ev.data.fd = wake_.get();
  epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, wake_.get(), &ev);
  thread_ = std::thread([this] { loop(); });
}

EchoServer::~EchoServer() {
  uint64_t one = 1;
  ssize_t w = ::write(wake_.get(), &one, sizeof one);
  (void)w;
  if (thread_.joinable()) thread_.join();
}

void EchoServer::loop() {
  std::unordered_map<int, EchoConn> conns;
  std::vector<char> buf(256 * 1024);
  epoll_event evs[256];
  auto set_events = [&](int fd, uint32_t events) {
    epoll_event ev{};
    ev.events = events;
    ev.data.fd = fd;
    epoll_ctl(epoll_.get(), EPOLL_CTL_MOD, fd, &ev);
  };
  auto drop = [&](int fd) {
    epoll_ctl(epoll_.get(), EPOLL_CTL_DEL, fd, nullptr);
    conns.erase(fd);
    --open_;
  };
  // Flushes pending output; returns false when the connection was dropped.
  auto flush = [&](EchoConn& c) -> bool {
    int fd = c.fd.get();
    while (c.off < c.out.size()) {
      ssize_t n =
          ::send(fd, c.out.data() + c.off, c.out.size() - c.off, MSG_NOSIGNAL | MSG_DONTWAIT);
      if (n > 0) {
        c.off += static_cast<size_t>(n);
        continue;
      }
      if (n < 0 && (errno == EAGAIN || errno == EINTR)) {
        set_events(fd, EPOLLOUT);
        return true;
      }
      drop(fd);
      return false;
    }
    c.out.clear();
    c.off = 0;
    if (c.eof) {
      drop(fd);
      return false;
    }
    set_events(fd, EPOLLIN | EPOLLRDHUP);
    return true;
  };
  for (;;) {
    int n = ::epoll_wait(epoll_.get(), evs, 256, 1000);
    for (int i = 0; i < n; ++i) {
      int fd = evs[i].data.fd;
      if (fd == wake_.get()) {
        open_ -= conns.size();
        return;  // conns' Fds close here
      }
      if (fd == listener_.get()) {
        for (;;) {
          int c = ::accept4(listener_.get(), nullptr, nullptr, SOCK_CLOEXEC | SOCK_NONBLOCK);
          if (c < 0) break;
          ++accepted_;
          ++open_;
          conns[c].fd = Fd(c);
          epoll_event ev{};
          ev.events = EPOLLIN | EPOLLRDHUP;
          ev.data.fd = c;
          epoll_ctl(epoll_.get(), EPOLL_CTL_ADD, c, &ev);
        }
        continue;
      }
      auto it = conns.find(fd);
      if (it == conns.end()) continue;
      EchoConn& c = it->second;
      if (!c.out.empty()) {  // waiting for EPOLLOUT
        flush(c);
        continue;
      }
      ssize_t r = ::recv(fd, buf.data(), buf.size(), MSG_DONTWAIT);
      if (r > 0) {
        c.out.assign(buf.data(), static_cast<size_t>(r));
        c.off = 0;
        flush(c);
      } else if (r == 0) {
        c.eof = true;
        drop(fd);
      } else if (errno != EAGAIN && errno != EINTR) {
        drop(fd);
      }
    }
  }
}

// ---------------------------------------------------------------------------------------------
// PortReplyServer, BlackholeListener.

PortReplyServer::PortReplyServer(uint16_t port)
    : server_(port, [port](int fd) {
        std::string msg = "port=" + std::to_string(port) + "\n";
        send_all(fd, msg, Clock::now() + seconds(5));
        ::shutdown(fd, SHUT_WR);
        // Wait for the peer's FIN so that the reply is never cut by an RST of unread data.
        read_to_end(fd, Clock::now() + seconds(5));
      }) {}

BlackholeListener::BlackholeListener(uint16_t port) : port_(port), listener_(listen_tcp(port, 0)) {
  // Backlog 0 still queues one connection; fill the queue until a connect stays pending.
  for (int i = 0; i < 32; ++i) {
    auto c = connect_tcp(port, milliseconds(300));
    if (c.err == ETIMEDOUT) {
      verified_ = true;
      break;
    }
    if (c.err != 0) break;
    fillers_.push_back(std::move(c.fd));
  }
}

// ---------------------------------------------------------------------------------------------
// Duplex.

std::string DuplexServerResult::str() const {
  std::ostringstream s;
  s << "server[id=" << id << " up_bytes=" << up_bytes << " up_mismatch=" << up_mismatch
    << " up_end=" << to_string(up_end) << " down_sent=" << down_sent << " down_err=" << down_err
    << " eof_before_send=" << eof_before_send << "]";
  return s.str();
}

std::string DuplexClientResult::str() const {
  std::ostringstream s;
  s << "client[connect_err=" << connect_err << " up_sent=" << up_sent << " up_err=" << up_err
    << " down_bytes=" << down_bytes << " down_mismatch=" << down_mismatch
    << " down_end=" << to_string(down_end) << " down_errno=" << down_errno << " ms=" << ms << "]";
  return s.str();
}

DuplexServer::DuplexServer(uint16_t port) : server_(port, [this](int fd) { handle(fd); }) {}

namespace {
constexpr auto kServerPatience = std::chrono::minutes(10);  // the destructor cuts it short

// Reads to the end, verifying against the pattern; fills the up_* fields.
void server_read_upload(int fd, uint64_t seed, DuplexServerResult& r) {
  std::vector<uint8_t> buf(256 * 1024);
  auto deadline = Clock::now() + kServerPatience;
  for (;;) {
    ReadStep s = read_step(fd, reinterpret_cast<char*>(buf.data()), buf.size());
    if (s.n > 0) {
      if (r.up_mismatch < 0) r.up_mismatch = check_pattern(seed, r.up_bytes, buf.data(), s.n);
      r.up_bytes += static_cast<uint64_t>(s.n);
      continue;
    }
    if (s.end) {
      r.up_end = *s.end;
      break;
    }
    if (Clock::now() >= deadline) {
      r.up_end = End::Timeout;
      break;
    }
    pollfd pf{fd, POLLIN, 0};
    ::poll(&pf, 1, 100);
  }
  r.up_end_time = Clock::now();
}

// Sends len bytes of the pattern; returns errno of a failure or 0.
int send_pattern(int fd, uint64_t seed, uint64_t len, uint64_t* sent, Clock::time_point deadline) {
  std::vector<uint8_t> buf(256 * 1024);
  *sent = 0;
  while (*sent < len) {
    size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), len - *sent));
    fill_pattern(seed, *sent, buf.data(), n);
    errno = 0;
    if (!send_all(fd, buf.data(), n, deadline)) return errno ? errno : ETIMEDOUT;
    *sent += n;
  }
  return 0;
}
}  // namespace

void DuplexServer::handle(int fd) {
  DuplexHeader h;
  if (!recv_exact(fd, &h, sizeof h, Clock::now() + kServerPatience)) return;
  if (h.magic != DuplexHeader{}.magic) return;
  DuplexServerResult r;
  r.id = h.id;
  auto deadline = Clock::now() + kServerPatience;
  if (h.flags & kRstAfterSend) {
    r.down_err = send_pattern(fd, h.seed_down, h.len_down, &r.down_sent, deadline);
    linger l{1, 0};
    setsockopt(fd, SOL_SOCKET, SO_LINGER, &l, sizeof l);
    r.rst_time = Clock::now();  // the wrapper closes right after we return
  } else if (h.flags & kSendAfterEof) {
    server_read_upload(fd, h.seed_up, r);
    r.eof_before_send = r.up_end == End::Eof;
    r.down_err = send_pattern(fd, h.seed_down, h.len_down, &r.down_sent, deadline);
    if (!(h.flags & kNoShutdown)) ::shutdown(fd, SHUT_WR);
  } else {
    std::thread writer([&] {
      r.down_err = send_pattern(fd, h.seed_down, h.len_down, &r.down_sent, deadline);
      if (!(h.flags & kNoShutdown)) ::shutdown(fd, SHUT_WR);
    });
    server_read_upload(fd, h.seed_up, r);
    writer.join();
  }
  {
    std::lock_guard lk(mu_);
    results_[r.id] = r;
  }
  cv_.notify_all();
}

std::optional<DuplexServerResult> DuplexServer::wait_result(uint64_t id, milliseconds timeout) {
  std::unique_lock lk(mu_);
  if (!cv_.wait_for(lk, timeout, [&] { return results_.count(id) > 0; })) return std::nullopt;
  return results_[id];
}

DuplexClientResult run_duplex(uint16_t port, const DuplexClientOptions& o) {
  auto c = connect_tcp(port);
  if (c.err) {
    DuplexClientResult r;
    r.connect_err = c.err;
    return r;
  }
  return run_duplex(c.fd.get(), o);
}

DuplexClientResult run_duplex(int fd, const DuplexClientOptions& o) {
  DuplexClientResult r;
  auto t0 = Clock::now();
  const auto deadline = t0 + o.timeout;
  std::atomic<int64_t> last_progress{t0.time_since_epoch().count()};
  std::atomic<bool> abort{false};
  auto progressed = [&] { last_progress = Clock::now().time_since_epoch().count(); };
  auto stalled = [&] {
    return Clock::now().time_since_epoch().count() - last_progress.load() >
           std::chrono::duration_cast<Clock::duration>(o.stall).count();
  };

  std::thread sender([&] {
    DuplexHeader h;
    h.id = o.id;
    h.seed_up = o.seed_up;
    h.seed_down = o.seed_down;
    h.len_down = o.len_down;
    h.flags = o.flags;
    if (!send_all(fd, &h, sizeof h, deadline)) {
      r.up_err = errno ? errno : ETIMEDOUT;
      return;
    }
    std::vector<uint8_t> buf(std::max<size_t>(o.chunk, 1));
    bool announced = false;
    while (r.up_sent < o.len_up && !abort) {
      size_t n = static_cast<size_t>(std::min<uint64_t>(buf.size(), o.len_up - r.up_sent));
      fill_pattern(o.seed_up, r.up_sent, buf.data(), n);
      const uint8_t* p = buf.data();
      size_t left = n;
      while (left > 0 && !abort) {
        ssize_t k = ::send(fd, p, left, MSG_NOSIGNAL | MSG_DONTWAIT);
        if (k > 0) {
          p += k;
          left -= static_cast<size_t>(k);
          r.up_sent += static_cast<uint64_t>(k);
          progressed();
          continue;
        }
        if (k < 0 && errno != EAGAIN && errno != EINTR) {
          r.up_err = errno;
          return;
        }
        if (Clock::now() >= deadline || stalled()) {
          r.up_err = ETIMEDOUT;
          return;
        }
        pollfd pf{fd, POLLOUT, 0};
        ::poll(&pf, 1, 100);
      }
      if (!announced) {
        announced = true;
        if (o.on_started) o.on_started();
      }
      if (o.chunk_delay.count() > 0) std::this_thread::sleep_for(o.chunk_delay);
    }
    if (!announced && o.on_started) o.on_started();
    if (!abort) ::shutdown(fd, SHUT_WR);
  });

  std::vector<uint8_t> buf(256 * 1024);
  for (;;) {
    ReadStep s = read_step(fd, reinterpret_cast<char*>(buf.data()), buf.size());
    if (s.n > 0) {
      if (r.down_mismatch < 0)
        r.down_mismatch = check_pattern(o.seed_down, r.down_bytes, buf.data(), s.n);
      r.down_bytes += static_cast<uint64_t>(s.n);
      progressed();
      continue;
    }
    if (s.end) {
      r.down_end = *s.end;
      r.down_errno = s.err;
      break;
    }
    if (Clock::now() >= deadline || stalled()) {
      r.down_end = End::Timeout;
      break;
    }
    pollfd pf{fd, POLLIN, 0};
    ::poll(&pf, 1, 100);
  }
  if (r.down_end != End::Eof) abort = true;  // the connection is gone: stop uploading
  sender.join();
  r.ms = ms_since(t0);
  return r;
}

}  // namespace rf::it
