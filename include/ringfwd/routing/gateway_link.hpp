#pragma once
// What an edge knows about each gateway (SPEC §6): whether its sync session is alive, what it
// was sent and applied, what it could not bind. The sync server writes it, the data path reads
// `online` (one relaxed atomic load per new connection), the control plane reports the rest.
#include <atomic>
#include <cstdint>
#include <map>
#include <memory>
#include <mutex>
#include <string>
#include <vector>

namespace rf::routing {

struct GatewayStatus {
  bool online = false;
  std::string address;       // the session's peer, "" when offline
  int64_t since = 0;         // unix s: online/offline last changed (0: never online)
  int64_t last_seen = 0;     // unix s of its last message, 0 if never
  std::string hash_sent;     // route-set hash sent last
  std::string hash_applied;  // route-set hash it reported applied
  std::string last_error;    // its last refusal, or why its session ended
  std::vector<std::string> listening;
  std::vector<std::string> failures;  // "addr:port: why" it could not bind
};

class GatewayLink {
 public:
  explicit GatewayLink(std::string id) : id_(std::move(id)) {}
  const std::string& id() const { return id_; }
  bool online() const { return online_.load(std::memory_order_relaxed); }
  void set_online(bool on, const std::string& address, const std::string& why = {});
  // f(GatewayStatus&) under the lock.
  template <class F>
  void update(F&& f) {
    std::lock_guard lock(mu_);
    f(status_);
  }
  GatewayStatus status() const;

 private:
  const std::string id_;
  std::atomic<bool> online_{false};
  mutable std::mutex mu_;
  GatewayStatus status_;
};

// One link per gateway id for the life of the process, so that a route table rebuilt by a
// change keeps pointing at the state the sync server updates.
class GatewayLinks {
 public:
  std::shared_ptr<GatewayLink> get(const std::string& id);
  std::shared_ptr<GatewayLink> find(const std::string& id) const;
  void erase(const std::string& id);

 private:
  mutable std::mutex mu_;
  std::map<std::string, std::shared_ptr<GatewayLink>> links_;
};

}  // namespace rf::routing
