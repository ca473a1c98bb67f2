#include "ringfwd/routing/gateway_link.hpp"

#include <ctime>

namespace rf::routing {

void GatewayLink::set_online(bool on, const std::string& address, const std::string& why) {
  std::lock_guard lock(mu_);
  if (status_.online != on) status_.since = ::time(nullptr);
  status_.online = on;
  status_.address = on ? address : std::string();
  if (!why.empty()) status_.last_error = why;
  if (on) status_.last_seen = ::time(nullptr);
  online_.store(on, std::memory_order_relaxed);
}

GatewayStatus GatewayLink::status() const {
  std::lock_guard lock(mu_);
  return status_;
}

std::shared_ptr<GatewayLink> GatewayLinks::get(const std::string& id) {
  std::lock_guard lock(mu_);
  auto& l = links_[id];
  if (!l) l = std::make_shared<GatewayLink>(id);
  return l;
}

std::shared_ptr<GatewayLink> GatewayLinks::find(const std::string& id) const {
  std::lock_guard lock(mu_);
  auto it = links_.find(id);
  return it == links_.end() ? nullptr : it->second;
}

void GatewayLinks::erase(const std::string& id) {
  std::lock_guard lock(mu_);
  links_.erase(id);
}

}  // namespace rf::routing
