#pragma once
// The two ends of route sync (SPEC §6, README "The sync protocol"), each on its own thread:
// the edge's server serves every gateway the routes that target it and tracks its health;
// the gateway's client keeps one session to the edge and applies what it receives.
#include <sys/socket.h>

#include <functional>
#include <memory>
#include <string>

#include "ringfwd/base/result.hpp"
#include "ringfwd/config/config.hpp"
#include "ringfwd/control/controller.hpp"
#include "ringfwd/routing/gateway_link.hpp"

namespace rf::sync {

class Server {
 public:
  // Listens on `listen` ("IP:port"; binds even before the tunnel address exists, and retries
  // while the port is taken). Reads routes and tokens from controller.running().
  static Result<std::unique_ptr<Server>> start(control::Controller& controller,
                                               std::shared_ptr<routing::GatewayLinks> links,
                                               const std::string& listen);
  ~Server();
  // The routes or gateways changed: push new sets within one loop turn. Any thread; never
  // blocks (an eventfd write).
  void notify();

  struct Impl;

 private:
  explicit Server(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

class Client {
 public:
  // `file`: the gateway's own config (gateway_id, sync.edge, sync.token_file).
  // on_applied runs on the client's thread after a set was applied (RoutesChanged).
  static Result<std::unique_ptr<Client>> start(control::Controller& controller,
                                               const config::Config& file,
                                               std::function<void()> on_applied);
  ~Client();
  std::string status_json() const;  // GetStats "sync"

  struct Impl;

 private:
  explicit Client(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

// "IP:port" / "[v6]:port" into an address (no name lookups).
bool parse_endpoint(const std::string& text, sockaddr_storage& addr, socklen_t& len);

}  // namespace rf::sync
