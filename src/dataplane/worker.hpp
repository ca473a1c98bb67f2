#pragma once
// One worker: a thread, its io_uring, its listeners (SO_REUSEPORT shards) and its connections.
// Nothing here is shared with other workers except EngineShared's atomics and the route
// counters, so the hot path takes no lock.
#include <netinet/in.h>

#include <atomic>
#include <cerrno>
#include <chrono>
#include <condition_variable>
#include <cstdint>
#include <deque>
#include <future>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <thread>
#include <unordered_map>
#include <utility>
#include <vector>

#include "pipe_pool.hpp"
#include "udp.hpp"
#include "wol.hpp"
#include "ringfwd/base/log.hpp"
#include "ringfwd/base/unique_fd.hpp"
#include "ringfwd/dataplane/engine.hpp"
#include "ringfwd/routing/route_table.hpp"
#include "ringfwd/tls/terminator.hpp"
#include "ringfwd/uring/ring.hpp"

namespace rf::dataplane {

// Counts workers that still have to apply a change.
struct ChangeBarrier {
  std::mutex mu;
  std::condition_variable cv;
  unsigned pending = 0;
  void done() {
    std::lock_guard<std::mutex> lock(mu);
    if (pending && --pending == 0) cv.notify_all();
  }
  bool wait_for(std::chrono::milliseconds limit) {
    std::unique_lock<std::mutex> lock(mu);
    return cv.wait_for(lock, limit, [&] { return pending == 0; });
  }
};

enum Op : uint8_t {
  kAccept = 1,
  kConnect,
  kConnectTimeout,
  kPollIn,   // readiness of a direction's source (splice)
  kPollOut,  // writability of a direction's destination (splice)
  kRecv,     // copy
  kSend,     // copy
  kWake,
  kTick,
  kOverlapEnd,  // a dual-bind overlap is over: close the old listeners on time
  kIgnore,   // cancels and other completions nobody waits for
  kPreludeRecv,  // bytes before the route is known: a PROXY header, a ClientHello
  kWolRetry,     // Wake-on-LAN: the next connect attempt to a waking target
  kDrain,        // sockmap: has the kernel delivered what it redirected? (a timer)
  kKernelTick,   // sockmap: byte counts and slow-receiver checks (a timer)
};
static_assert(kPreludeRecv < kUdpOpFirst);
// The direction rides in the op's top bit: 0 = client -> target (up), 1 = target -> client.
constexpr uint8_t kDirBit = 0x80;

struct Listener {
  UniqueFd fd;
  const routing::TcpPort* tcp = nullptr;         // TCP: lives in tables_[table_slot]
  const routing::ResolvedRoute* udp = nullptr;   // UDP: handed to UdpPath
  uint16_t port = 0;
  std::string key;  // "addr:port"
  uint32_t table_slot = 0;
  bool armed = false;
  bool closing = false;
};

// Errors that mean the peer is gone abruptly (as opposed to a FIN): passed on as an RST.
inline bool is_reset(int err) {
  return err == ECONNRESET || err == EPIPE || err == ETIMEDOUT || err == EHOSTUNREACH ||
         err == ENETUNREACH || err == ECONNABORTED;
}

// One direction of a connection: src -> dst.
struct Flow {
  Pipe pipe;                 // splice: held only while bytes are in it
  uint32_t in_pipe = 0;      // splice: bytes waiting in the pipe
  int32_t send_bid = -1;     // copy: buffer being sent
  uint32_t send_off = 0;
  uint32_t send_len = 0;
  int32_t pending_bid = -1;  // copy: received, waiting for the send in flight
  uint32_t pending_len = 0;
  bool poll_in = false;      // splice: POLLIN armed on src
  bool poll_out = false;     // splice: POLLOUT armed on dst
  bool recv_inflight = false;
  bool send_inflight = false;
  bool drained = false;      // splice: last read was short, wait for readiness next
  bool spliced = false;      // hybrid: this direction is in its splice phase
  bool want_splice = false;  // hybrid: a full buffer was read; splice once the send is done
  bool src_eof = false;      // src sent FIN
  bool done = false;         // FIN forwarded to dst
  // sockmap: where this direction is (kernel.cpp). On: the verdict redirects, a poll on src
  // waits for its FIN; Draining: the FIN came, waiting until every byte before it was judged
  // and is in dst's send queue; Off: userspace reads (the FIN, or everything if the direction
  // was never linked); Tail: the FIN was read early, the kernel's counts are not complete yet.
  enum class Kernel : uint8_t { Off, On, Draining, Tail };
  Kernel kernel = Kernel::Off;
  bool k_linked = false;     // src is in the verdict map (for good: until it closes)
  bool k_fin = false;        // the poll saw src's FIN
  bool k_throttled = false;  // src's TCP window is clamped: dst is not keeping up
  uint8_t drain_ms = 0;      // Draining/Tail: next check's delay
  int k_clamp = 0;           // src's TCP_WINDOW_CLAMP before throttling
  uint64_t k_w0 = 0;         // written(dst) when the kernel took the direction
  uint64_t k_base = 0;       // bytes of src read by userspace before the link (a prelude)
  uint64_t k_counted = 0;    // redirected bytes already added to the route's counters
};

// Where a connection is in its life.
enum class Phase : uint8_t {
  Prelude,    // reading a PROXY header and/or a ClientHello to choose the route
  Handshake,  // TLS terminate: handshake with the client
  Connecting, // connecting to the target
  Prefix,     // sending what must precede the stream: a PROXY header, buffered bytes
  Flowing,    // splice / copy / hybrid, or the TLS pump
};

// Bytes a connection holds before and around its stream: read while choosing the route, and
// the PROXY header written in front of them. Pooled per worker.
inline constexpr uint32_t kHeadroom = 1024;  // room for a PROXY header before the data
inline constexpr uint32_t kStageBytes = kHeadroom + 16384 + 256;

struct Session {
  UniqueFd fd[2];  // 0 = client, 1 = target
  Flow flow[2];    // 0 = up (fd0 -> fd1), 1 = down (fd1 -> fd0)
  const routing::ResolvedRoute* route = nullptr;  // null until chosen (prelude)
  const routing::TcpPort* tport = nullptr;
  sockaddr_storage client{};  // the real client: the peer, or a PROXY header's source
  sockaddr_storage local{};   // the address it connected to (PROXY header's destination)
  uint8_t* stage = nullptr;   // kStageBytes, pooled; data starts at kHeadroom
  uint32_t stage_len = 0;     // bytes read into stage + kHeadroom
  uint32_t out_off = 0;       // Prefix: [out_off, out_end) of stage goes to the target first
  uint32_t out_end = 0;
  uint64_t deadline = 0;      // Prelude / Handshake: worker clock ms
  uint64_t wol_until = 0;     // Wake-on-LAN: retry connecting until then (0: not waking)
  std::unique_ptr<tls::Conn> tls;  // TLS terminate
  uint8_t* tls_buf[2] = {};   // TLS pump: plaintext per direction (stage is reused for up)
  uint32_t tls_off[2] = {};
  uint32_t tls_len[2] = {};
  Phase phase = Phase::Flowing;
  bool client_known = false;  // `client` is filled
  bool local_known = false;   // `local` is filled
  bool proxy_read = false;    // accept_proxy_protocol: the header was read
  sockaddr_storage target{};
  socklen_t target_len = 0;
  uint64_t cookie[2] = {};  // sockmap: SO_COOKIE of fd[0], fd[1]; 0 while not linked
  uint32_t gen = 0;
  uint32_t inflight = 0;    // requests whose completion is still due
  uint64_t last_active = 0; // worker clock, ms
  uint16_t listen_port = 0;
  uint32_t table_slot = 0;  // keeps the route table that `route` lives in alive
  bool in_use = false;
  bool connected = false;
  bool closing = false;
};

class Worker {
 public:
  // One step of a route change (Engine::apply), for this worker.
  struct Change {
    std::shared_ptr<const routing::RouteTable> table;
    std::vector<Listener> add;  // bound and listening; start accepting
    std::vector<std::pair<std::string, const routing::TcpPort*>> remap;  // same socket
    std::vector<std::pair<std::string, const routing::ResolvedRoute*>> remap_udp;
    std::vector<std::string> close_now;
    std::vector<std::string> close_later;  // after overlap_ms
    uint32_t overlap_ms = 0;
    std::vector<std::pair<std::string, uint32_t>> drain;  // removed route id, drain_timeout_s
    // Counted down once the worker has applied the change, so that a D-Bus call returns only
    // when removed ports really refuse and every listener points at its new route.
    std::shared_ptr<struct ChangeBarrier> applied;
  };

  Worker(unsigned id, const EngineOptions& opts, EngineShared& shared,
         std::shared_ptr<const routing::RouteTable> table);
  ~Worker();
  // Hands a change to the worker thread (control thread; the worker applies it at once).
  void post(Change&& c);
  // Starts the thread; the future reports whether the ring and buffers came up.
  std::future<Result<void>> start();
  void stop_accepting();
  void stop();  // close every connection, then end the thread
  void join();

 private:
  void run(std::promise<Result<void>> started);
  Result<void> init();
  void dispatch(const uring::Completion& c);
  void wake();

  // listeners and route changes
  void arm_accept(uint32_t li);
  void on_accept(uint32_t li, const uring::Completion& c);
  void close_listeners();
  void close_listener(uint32_t li);
  void listener_closed(uint32_t li);
  void apply_changes();
  void apply(Change& c);
  uint32_t hold_table(std::shared_ptr<const routing::RouteTable> t);
  void ref_table(uint32_t slot) { tables_[slot].refs++; }
  void unref_table(uint32_t slot);

  // sessions
  uint32_t alloc_session();
  uint64_t ud(uint8_t op, uint32_t idx) const;
  void on_connect(Session& s, uint32_t idx, int res);
  // prelude (prelude.cpp): PROXY header in, ClientHello, route choice, PROXY header out
  void start_prelude(Session& s, uint32_t idx);
  void post_prelude_recv(Session& s, uint32_t idx);
  void on_prelude_recv(Session& s, uint32_t idx, int res);
  void reject(Session& s, uint32_t idx, const char* what, const char* detail);
  bool admit(Session& s, uint32_t idx, const routing::ResolvedRoute* route);
  void connect_target(Session& s, uint32_t idx);
  // The target refused or did not answer: wake it and retry (true) or give up (false).
  bool try_wake(Session& s, uint32_t idx, int res);
  void after_connect(Session& s, uint32_t idx);
  void send_prefix(Session& s, uint32_t idx);
  bool ensure_client(Session& s);
  uint8_t* take_stage();
  void give_stage(uint8_t*& p);
  // TLS terminate (tls_pump.cpp)
  void start_tls(Session& s, uint32_t idx);
  void continue_handshake(Session& s, uint32_t idx);
  void pump_tls(Session& s, uint32_t idx, int d);
  void start_flows(Session& s, uint32_t idx);
  void finish_flow(Session& s, uint32_t idx, int d);
  void close_session(Session& s, uint32_t idx, bool reset, const char* why);
  void maybe_free(Session& s, uint32_t idx);
  void on_tick();
  void close_due_listeners();
  const char* client_str(const Session& s, char* buf, size_t len) const;

  // splice pump
  void pump(Session& s, uint32_t idx, int d);
  void on_poll(Session& s, uint32_t idx, int d, bool out, int res);
  void arm_poll_in(Session& s, uint32_t idx, int d);
  // Waits for the direction's source: a POLLIN (splice) or a buffered recv (hybrid).
  void wait_source(Session& s, uint32_t idx, int d);

  // sockmap (kernel.cpp)
  bool start_kernel(Session& s, uint32_t idx);
  void kernel_arm(Session& s, uint32_t idx, int d);
  void on_kernel_tick();
  void kernel_check(Session& s, uint32_t idx);
  void on_kernel_event(Session& s, uint32_t idx, int d, int res);
  std::optional<bool> kernel_done(Session& s, int d);
  bool kernel_eof(Session& s, uint32_t idx, int d);
  void kernel_wait(Session& s, uint32_t idx, int d, Flow::Kernel state);
  std::optional<uint64_t> kernel_backlog(Session& s, int d);
  void on_drain(Session& s, uint32_t idx, int d);
  void account_kernel(Session& s);
  void kernel_refresh_activity(Session& s);
  void unlink_kernel(Session& s);

  // copy pump
  void post_recv(Session& s, uint32_t idx, int d);
  void post_send(Session& s, uint32_t idx, int d, int bid, uint32_t len);
  void on_recv(Session& s, uint32_t idx, int d, const uring::Completion& c);
  void on_send(Session& s, uint32_t idx, int d, int res);
  void recycle(int bid);

  unsigned id_;
  EngineOptions opts_;
  EngineShared& shared_;
  // Route tables still referenced by a listener or a session; current_ is the one served.
  struct TableRef {
    std::shared_ptr<const routing::RouteTable> table;
    uint32_t refs = 0;
  };
  std::vector<TableRef> tables_;
  uint32_t current_ = 0;
  std::vector<Listener> listeners_;
  std::vector<uint32_t> free_listeners_;
  std::unordered_map<std::string, uint32_t> listener_by_key_;  // open listeners only
  struct PendingClose {
    uint32_t li;
    uint64_t at_ms;
  };
  std::vector<PendingClose> pending_closes_;
  struct Draining {
    std::string route_id;
    uint64_t until_ms;
  };
  std::vector<Draining> draining_;
  std::mutex mailbox_mu_;
  std::vector<Change> mailbox_;
  std::unique_ptr<uring::Ring> ring_;
  std::unique_ptr<uring::BufferRing> bufs_;
  std::unique_ptr<UdpPath> udp_;
  WolSender wol_;
  std::vector<uint8_t*> stages_;  // free stage buffers
  std::unique_ptr<uint8_t[]> hello_scratch_;  // ClientHello reassembly (parsing is synchronous)
  PipePool pipes_;
  std::deque<Session> sessions_;
  std::vector<uint32_t> free_;
  struct Starved {
    uint32_t idx, gen;
    int d;
  };
  std::vector<Starved> starved_;  // copy: recv that found no free buffer
  uint32_t account_cursor_ = 0;  // sockmap: next session whose kernel byte counts are read
  UniqueFd wake_fd_;
  uint64_t wake_buf_ = 0;
  uint64_t now_ = 0;  // CLOCK_MONOTONIC, ms; read once per completion batch
  log::RateLimit warn_limit_{20};  // events clients can trigger: failed connects, no fds
  uint64_t open_sessions_ = 0;
  bool accept_stalled_ = false;
  std::atomic<bool> stop_accepting_{false};
  std::atomic<bool> stop_{false};
  bool accepting_closed_ = false;
  bool stopping_ = false;
  std::thread thread_;
};

}  // namespace rf::dataplane
