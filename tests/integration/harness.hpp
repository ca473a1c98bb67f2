#pragma once
// Black-box harness for the integration tests: runs the real ringfwd binary, gives it a
// generated config, and talks to it over real loopback sockets. Nothing here links against
// the product; the daemon is only seen through its command line, its stderr and its sockets.
#include <sys/types.h>

#include <atomic>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <functional>
#include <map>
#include <memory>
#include <mutex>
#include <optional>
#include <set>
#include <string>
#include <thread>
#include <utility>
#include <vector>

#include "ringfwd/base/unique_fd.hpp"

namespace rf::it {

using Clock = std::chrono::steady_clock;
using std::chrono::milliseconds;
using std::chrono::seconds;

inline double ms_since(Clock::time_point t0) {
  return std::chrono::duration<double, std::milli>(Clock::now() - t0).count();
}

// ---------------------------------------------------------------------------------------------
// Process-wide setup.

// Raises RLIMIT_NOFILE's soft limit to the hard limit (the daemon inherits it) and ignores
// SIGPIPE in the test process. Idempotent; also runs at static-init time of harness.cpp.
void prepare_process();

// ---------------------------------------------------------------------------------------------
// File descriptors and temp dirs.

// The project's own fd owner: the tests hold client and server sockets the same way.
using Fd = rf::UniqueFd;

class TempDir {
 public:
  TempDir();
  ~TempDir();
  TempDir(const TempDir&) = delete;
  TempDir& operator=(const TempDir&) = delete;
  const std::string& path() const { return path_; }
  std::string write_file(const std::string& name, const std::string& content) const;

 private:
  std::string path_;
};

std::string read_file(const std::string& path);

// ---------------------------------------------------------------------------------------------
// Ports. Candidates are taken below the kernel's ephemeral range so that the many outgoing
// connections of a test (and of the daemon) never sit on a port we hand out; each candidate is
// checked by binding it on 127.0.0.1, and a port is never handed out twice in one process.

uint16_t free_port();
// First port of `count` contiguous free ports.
uint16_t free_port_block(unsigned count);

// ---------------------------------------------------------------------------------------------
// Sockets (all on 127.0.0.1, all operations bounded in time).

struct ConnectResult {
  Fd fd;
  int err = 0;  // 0 on success, errno otherwise (ETIMEDOUT when the deadline passed)
};
// `source`: the local address to connect from (e.g. "127.0.0.2"), default the kernel's choice.
ConnectResult connect_tcp(uint16_t port, milliseconds timeout = milliseconds(5000),
                          const char* source = nullptr);
// Listening socket on 127.0.0.1:port (SO_REUSEADDR, no SO_REUSEPORT). Throws on failure.
Fd listen_tcp(uint16_t port, int backlog = 1024);

bool send_all(int fd, const void* data, size_t len, Clock::time_point deadline);
inline bool send_all(int fd, const std::string& s, Clock::time_point deadline) {
  return send_all(fd, s.data(), s.size(), deadline);
}
// Reads exactly len bytes; false on EOF, error or deadline.
bool recv_exact(int fd, void* data, size_t len, Clock::time_point deadline);
// Sets SO_LINGER {1, 0} and closes: the peer gets an RST.
void close_with_rst(Fd& fd);

enum class End { Eof, Reset, Error, Timeout };
const char* to_string(End e);

struct ReadToEnd {
  End end = End::Timeout;
  int err = 0;
  std::string data;  // everything read (capped at `cap` bytes; the rest is counted only)
  uint64_t bytes = 0;
  double ms = 0;  // time until the end was seen
};
// Reads until EOF / error / deadline.
ReadToEnd read_to_end(int fd, Clock::time_point deadline, size_t cap = 1 << 20);

// Waits until the connection is closed by the peer (EOF or RST). Data that arrives is counted.
struct CloseWait {
  End end = End::Timeout;
  uint64_t bytes = 0;
  double ms = 0;  // since `since`
};
CloseWait wait_closed(int fd, Clock::time_point since, milliseconds timeout);

// True when the socket is still open and idle: no data, no EOF, no error right now.
bool still_open(int fd);

// One request/response on an echo connection: sends `msg` (from a helper thread, so that big
// messages cannot dead-lock on full buffers) while reading the same number of bytes back.
// Returns "" on success, a description of the failure otherwise.
std::string echo_roundtrip(int fd, const std::string& msg, milliseconds timeout);

// ---------------------------------------------------------------------------------------------
// Deterministic pseudo-random byte streams: byte k of stream `seed` is a pure function of
// (seed, k), so a receiver verifies every byte it gets (a checksum that also says where).

void fill_pattern(uint64_t seed, uint64_t offset, uint8_t* buf, size_t len);
// Index of the first byte that differs from the stream, or -1.
int64_t check_pattern(uint64_t seed, uint64_t offset, const uint8_t* buf, size_t len);
std::string pattern_string(uint64_t seed, size_t len);

// ---------------------------------------------------------------------------------------------
// The daemon.

struct RouteStats {
  std::string route;
  uint64_t total = 0, active = 0, refused = 0, failed = 0, bytes_up = 0, bytes_down = 0;
  std::string str() const;
};

struct CommandResult {
  int exit_code = -1;  // -1: timed out (process killed); 128+N: killed by signal N
  std::string output;  // stdout + stderr
};
// Runs a program to completion (killed after `timeout`).
CommandResult run_command(const std::vector<std::string>& argv, milliseconds timeout);

// Path of the ringfwd binary (environment variable RINGFWD).
std::string ringfwd_binary();
// Why the sockmap dataplane cannot be tested here ("" if it can): not built, or neither root nor
// CAP_BPF + CAP_NET_ADMIN. Tests of "sockmap" skip with this reason; CI runs them as root.
std::string sockmap_unavailable();

class Daemon {
 public:
  Daemon() = default;
  ~Daemon();  // SIGKILLs the daemon if it still runs
  Daemon(const Daemon&) = delete;
  Daemon& operator=(const Daemon&) = delete;

  // Writes the config into `dir`, starts `ringfwd --config FILE --bus none`, waits for the
  // `ready:` line (10 s). Returns "" on success, otherwise why (with the log).
  std::string start(const TempDir& dir, const std::string& config_json,
                    milliseconds ready_timeout = milliseconds(10000));
  // Starts without waiting for readiness.
  void spawn(const std::vector<std::string>& args, const std::string& log_path);
  // The same, run under a wrapper command (e.g. prlimit): wrapper + ringfwd + args.
  void spawn_wrapped(const std::vector<std::string>& wrapper, const std::vector<std::string>& args,
                     const std::string& log_path);
  bool wait_ready(milliseconds timeout);

  pid_t pid() const { return pid_; }
  bool running();
  void signal(int sig);
  // Exit code (128+N when killed by signal N), or nullopt when still running at the timeout.
  std::optional<int> wait_exit(milliseconds timeout);
  void kill_now();

  // Resident memory of the daemon (VmRSS), in KiB; 0 if unknown.
  uint64_t rss_kib() const;

  std::string log() const;
  std::string log_tail(size_t max_bytes = 16384) const;
  const std::string& log_path() const { return log_path_; }

  // SIGUSR1 and waits (up to 3 s) for the stats line of `route` that it produced.
  std::optional<RouteStats> stats(const std::string& route);
  // The "stats sockmap ..." line's numbers (flows, sockets, redirected_bytes, ...), empty if
  // the daemon printed none.
  std::map<std::string, uint64_t> sockmap_stats();
  // Repeats stats() until `pred` holds or `timeout` passes; returns the last stats seen.
  std::optional<RouteStats> wait_stats(const std::string& route,
                                       const std::function<bool(const RouteStats&)>& pred,
                                       milliseconds timeout);

 private:
  pid_t pid_ = -1;
  std::optional<int> exit_code_;
  std::string log_path_;
};

// In a fixture with members `dir_` (TempDir) and `d_` (Daemon): start the daemon with `cfg`
// or fail the test with why.
#define IT_START_DAEMON(cfg)                               \
  do {                                                     \
    std::string why_ = d_.start(dir_, (cfg));              \
    ASSERT_TRUE(why_.empty()) << "daemon start: " << why_; \
  } while (0)

// A long-running helper program (openssl s_server, dnsmasq, iperf3 -s): stdin /dev/null,
// stdout and stderr into a log file; SIGKILLed and reaped by the destructor, and never
// outlives the test process.
class ChildProcess {
 public:
  ChildProcess(const std::vector<std::string>& argv, const std::string& log_path);
  ~ChildProcess();
  ChildProcess(const ChildProcess&) = delete;
  ChildProcess& operator=(const ChildProcess&) = delete;
  std::string log() const;
  bool running();

 private:
  pid_t pid_ = -1;
  std::string log_;
};

// ---------------------------------------------------------------------------------------------
// Test servers. Each owns its listening socket and threads; the destructor stops them
// (shutting down every open connection) and joins.

// A listener plus one thread per accepted connection running `handler(fd)`.
class ThreadServer {
 public:
  using Handler = std::function<void(int fd)>;
  ThreadServer(uint16_t port, Handler handler);
  ~ThreadServer();
  ThreadServer(const ThreadServer&) = delete;
  ThreadServer& operator=(const ThreadServer&) = delete;
  uint16_t port() const { return port_; }
  uint64_t accepted() const { return accepted_.load(); }
  uint64_t open_now() const { return open_.load(); }
  void stop();

 private:
  void accept_loop();
  uint16_t port_;
  Handler handler_;
  Fd listener_;
  Fd wake_;  // eventfd that stops accept_loop
  std::thread acceptor_;
  std::mutex mu_;
  std::set<int> live_fds_;
  std::vector<std::thread> conns_;
  std::atomic<bool> stopping_{false};
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> open_{0};
};

// An epoll echo server on one thread: scales to thousands of connections. A connection's
// output backlog pauses its reading (back-pressure); EOF from the peer closes after flushing.
class EchoServer {
 public:
  explicit EchoServer(uint16_t port);
  ~EchoServer();
  EchoServer(const EchoServer&) = delete;
  EchoServer& operator=(const EchoServer&) = delete;
  uint16_t port() const { return port_; }
  uint64_t accepted() const { return accepted_.load(); }
  uint64_t open_now() const { return open_.load(); }

 private:
  void loop();
  uint16_t port_;
  Fd listener_, epoll_, wake_;
  std::thread thread_;
  std::atomic<uint64_t> accepted_{0};
  std::atomic<uint64_t> open_{0};
};

// Replies "port=N\n" (its own port) to every connection, then closes.
class PortReplyServer {
 public:
  explicit PortReplyServer(uint16_t port);
  uint16_t port() const { return server_.port(); }

 private:
  ThreadServer server_;
};

// A loopback listener whose accept queue is full and that never accepts: further SYNs are
// dropped, so a connect to it hangs until the connector gives up.
class BlackholeListener {
 public:
  explicit BlackholeListener(uint16_t port);
  uint16_t port() const { return port_; }
  // True when a probe connect did not complete within 300 ms (i.e. the trap works).
  bool verified() const { return verified_; }

 private:
  uint16_t port_;
  Fd listener_;
  std::vector<Fd> fillers_;
  bool verified_ = false;
};

// ---------------------------------------------------------------------------------------------
// The "duplex" protocol: a client sends a fixed header, then its upload; the server verifies
// the upload against the pattern and sends its own pattern stream back, as the header asks.

enum DuplexFlags : uint64_t {
  kSendAfterEof = 1,  // server: read the whole upload first, then send, then close
  kRstAfterSend = 2,  // server: send len_down, then close with RST (no FIN, nothing read)
  kNoShutdown = 4,    // server: after sending, do not SHUT_WR (keep the connection half-open)
};

struct DuplexHeader {
  uint64_t magic = 0x52464957'54455354ull;  // "RFIWTEST"
  uint64_t id = 0;
  uint64_t seed_up = 0;
  uint64_t seed_down = 0;
  uint64_t len_down = 0;
  uint64_t flags = 0;
};

struct DuplexServerResult {
  uint64_t id = 0;
  uint64_t up_bytes = 0;          // upload bytes after the header
  int64_t up_mismatch = -1;       // first bad upload offset, or -1
  End up_end = End::Error;        // how the upload ended
  Clock::time_point up_end_time;  // when the server saw it end
  uint64_t down_sent = 0;
  int down_err = 0;              // errno of a failed send, 0 if all was sent
  Clock::time_point rst_time;    // kRstAfterSend: when the RST close happened
  bool eof_before_send = false;  // kSendAfterEof: upload EOF was seen before sending
  std::string str() const;
};

class DuplexServer {
 public:
  explicit DuplexServer(uint16_t port);
  uint16_t port() const { return server_.port(); }
  uint64_t accepted() const { return server_.accepted(); }
  std::optional<DuplexServerResult> wait_result(uint64_t id, milliseconds timeout);

 private:
  void handle(int fd);
  std::mutex mu_;
  std::condition_variable cv_;
  std::map<uint64_t, DuplexServerResult> results_;
  ThreadServer server_;  // last: its threads use the members above
};

struct DuplexClientOptions {
  uint64_t id = 1;
  uint64_t len_up = 0;
  uint64_t seed_up = 11;
  uint64_t len_down = 0;
  uint64_t seed_down = 22;
  uint64_t flags = 0;
  milliseconds timeout{60000};  // whole exchange
  milliseconds stall{15000};    // no progress in either direction for this long -> fail
  // Upload throttling: sleep this long after each `chunk` bytes (0 = full speed).
  size_t chunk = 256 * 1024;
  milliseconds chunk_delay{0};
  // Called (from the sending thread) once the first chunk is out.
  std::function<void()> on_started;
};

struct DuplexClientResult {
  int connect_err = 0;
  uint64_t up_sent = 0;
  int up_err = 0;
  uint64_t down_bytes = 0;
  int64_t down_mismatch = -1;
  End down_end = End::Timeout;
  int down_errno = 0;
  double ms = 0;
  std::string str() const;
};

// Runs a whole duplex exchange on an already connected fd (upload then SHUT_WR, while reading
// the download to its end). Does not close fd.
DuplexClientResult run_duplex(int fd, const DuplexClientOptions& o);
DuplexClientResult run_duplex(uint16_t port, const DuplexClientOptions& o);

}  // namespace rf::it
