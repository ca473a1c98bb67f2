#pragma once
// The data path: one worker thread and io_uring per core, listeners shared with SO_REUSEPORT.
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

#include "ringfwd/base/result.hpp"
#include "ringfwd/bpf/sockmap.hpp"
#include "ringfwd/config/config.hpp"
#include "ringfwd/routing/route_table.hpp"

namespace rf::dataplane {

// How bytes move between the two sockets of a connection.
// Hybrid ("auto"): each direction starts on copy (cheapest for small messages) and switches
// to splice while it carries bulk data (a recv that fills a whole buffer), back when drained.
// Sockmap: once the route is chosen and any prefix sent, the kernel redirects each direction
// (bpf/redirect.bpf.c); userspace takes a direction back for a FIN, for backpressure and where
// bytes must be seen (TLS terminate), and hands it back when the source is drained.
enum class Mode { Splice, Copy, Hybrid, Sockmap };
std::string_view to_string(Mode);

struct ModeChoice {
  Mode mode = Mode::Hybrid;
  std::string why;                        // for the log: what was chosen and why
  std::shared_ptr<bpf::Sockmap> sockmap;  // Mode::Sockmap: the loaded program
};
// Picks the concrete mode for a configured dataplane, probing sockmap where it may be used.
// "sockmap" that cannot work is an error naming the reason; "auto" then falls back.
Result<ModeChoice> choose_mode(config::Dataplane wanted, uint64_t max_connections);

struct EngineOptions {
  Mode mode = Mode::Splice;
  unsigned workers = 0;                 // 0 = one per online core
  uint64_t max_connections = 100000;    // global, across workers
  uint32_t pipe_size = 1u << 20;        // splice: bytes per pipe (F_SETPIPE_SZ)
  uint32_t pipe_pool_max = 64;          // splice: idle pipes kept per worker
  uint32_t buffer_count = 256;          // copy: provided buffers per worker (power of 2)
  uint32_t buffer_size = 64u << 10;     // copy: bytes per buffer (cache-friendly)
  std::shared_ptr<bpf::Sockmap> sockmap;  // Mode::Sockmap
};

// Shared by all workers; only atomics.
struct EngineShared {
  std::atomic<uint64_t> active{0};
  std::atomic<uint64_t> max_connections{0};
  // Connections closed before a route was chosen: a bad or late PROXY header or ClientHello,
  // or a server name no route serves.
  std::atomic<uint64_t> rejected{0};
};

class Worker;

class Engine {
 public:
  // Binds every listener (a failure names the route and address) and starts the workers.
  static Result<std::unique_ptr<Engine>> start(std::shared_ptr<const routing::RouteTable> table,
                                               const EngineOptions& opts);
  ~Engine();
  Engine(const Engine&) = delete;
  Engine& operator=(const Engine&) = delete;

  // Serves `next` instead of the current table (SPEC §5), all or nothing: every new listener is
  // bound before anything changes; if one bind fails, the error names the route and address
  // and the running routes stay as they were. Then, per listen address:port,
  //  - kept (same address and port): the same socket serves the new route at once;
  //  - new: starts accepting now;
  //  - dropped while its route lives on (a port change): keeps accepting for overlap_ms;
  //  - dropped with its route: closes now; that route's connections drain for up to its
  //    drain_timeout_s.
  // Control thread only.
  Result<void> apply(std::shared_ptr<const routing::RouteTable> next, uint32_t overlap_ms);

  size_t listener_count() const { return listeners_.size() * workers_.size(); }
  unsigned worker_count() const { return unsigned(workers_.size()); }
  Mode mode() const { return opts_.mode; }
  // The sockmap program's counters and map sizes (null unless Mode::Sockmap). Any thread.
  const bpf::Sockmap* sockmap() const { return opts_.sockmap.get(); }
  // What ListRoutes shows (control thread): the addresses a route listens on, those it still
  // accepts on during a dual-bind overlap, and removed routes whose connections drain.
  std::vector<std::string> listening(std::string_view route_id) const;
  std::vector<std::string> overlapping(std::string_view route_id) const;
  struct Draining {
    std::string route_id;
    std::shared_ptr<routing::RouteCounters> counters;
    double until_s;  // CLOCK_MONOTONIC seconds
  };
  std::vector<Draining> draining() const;

  // The table being served. Any thread (stats logging reads it while the bus thread applies).
  std::shared_ptr<const routing::RouteTable> table() const {
    std::lock_guard<std::mutex> lock(table_mu_);
    return table_;
  }
  uint64_t active_connections() const { return shared_.active.load(std::memory_order_relaxed); }
  uint64_t rejected_connections() const { return shared_.rejected.load(std::memory_order_relaxed); }
  void set_max_connections(uint64_t n) { shared_.max_connections.store(n); }

  // Closes every listener: new connections are refused, established ones go on.
  void stop_accepting();
  // Closes every connection and joins the workers.
  void stop();

 private:
  Engine() = default;
  EngineOptions opts_;
  mutable std::mutex table_mu_;  // guards table_ only; changes themselves are serialized
  std::shared_ptr<const routing::RouteTable> table_;  // by the Controller
  EngineShared shared_;
  std::vector<std::unique_ptr<Worker>> workers_;
  // "addr:port" (TCP) or "addr:port/udp" -> ids of the routes it serves (several TLS routes
  // may share one TCP port).
  std::map<std::string, std::vector<std::string>> listeners_;
  struct Overlap {
    std::vector<std::string> route_ids;
    double until_s;
  };
  std::map<std::string, Overlap> overlaps_;  // old "addr:port" still accepting after a move
  std::vector<Draining> draining_;
  bool stopped_ = false;
};

}  // namespace rf::dataplane
