#pragma once
// UDP flows for one worker (SPEC §1, §3): a flow per client address and route, each with its
// own connected upstream socket; replies leave from the listening port to the right client.
// Lives inside a Worker and shares its io_uring; nothing here is shared with other workers
// except EngineShared's atomics and the route counters.
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>

#include "ringfwd/base/log.hpp"
#include "ringfwd/base/unique_fd.hpp"
#include "ringfwd/dataplane/engine.hpp"
#include "ringfwd/routing/route_table.hpp"
#include "ringfwd/uring/ring.hpp"

namespace rf::dataplane {

// user_data ops 0x40-0x4f belong to UdpPath (Worker::dispatch hands them over).
inline constexpr uint8_t kUdpOpFirst = 0x40;
inline constexpr uint8_t kUdpOpLast = 0x4f;

class WolSender;

class UdpPath {
 public:
  UdpPath(unsigned worker_id, uring::Ring& ring, EngineShared& shared, const EngineOptions& opts);
  ~UdpPath();
  UdpPath(const UdpPath&) = delete;
  UdpPath& operator=(const UdpPath&) = delete;

  // Route changes, in the order Worker::apply runs a Change. `key` is "addr:port/udp".
  // `table` keeps `route` alive for as long as the listener (and its flows) use it.
  void add_listener(UniqueFd fd, const routing::ResolvedRoute* route, uint16_t port,
                    std::string key, std::shared_ptr<const routing::RouteTable> table);
  // Same socket, new route (target change): new flows take the new target at once; existing
  // flows keep their upstream. False when no listener has that key.
  bool remap(const std::string& key, const routing::ResolvedRoute* route,
             std::shared_ptr<const routing::RouteTable> table);
  // Closes the listener and its flows now. False when no listener has that key.
  bool close_now(const std::string& key);
  // Dual-bind overlap: the listener keeps serving (new flows too) until at_ms, then closes.
  // The key is free for a new listener at once. False when no listener has that key.
  bool close_at(const std::string& key, uint64_t at_ms);
  // A removed route: its flows (on listeners still open during an overlap) end by until_ms.
  void drain(const std::string& route_id, uint64_t until_ms);

  // Wake-on-LAN for routes that have it: a magic packet when a flow starts (a sleeping target
  // cannot answer the first datagram) and when the target is unreachable or refuses.
  void set_waker(WolSender* w);

  // SIGTERM: no new flows; existing flows go on until idle (or stop()).
  void stop_accepting();
  // Closes every listener and flow; open() reaches 0 once their completions are reaped.
  void stop();
  size_t open() const;

  // A completion whose op is in [kUdpOpFirst, kUdpOpLast]. now_ms: CLOCK_MONOTONIC ms.
  void dispatch(const uring::Completion& c, uint64_t now_ms);
  // Every 250 ms: idle flows (udp_idle_timeout_s), overlap ends, drain deadlines.
  void tick(uint64_t now_ms);

 private:
  struct Impl;
  std::unique_ptr<Impl> impl_;
};

}  // namespace rf::dataplane
