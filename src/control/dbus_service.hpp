#pragma once
// io.ringfwd1 on D-Bus (SPEC §4): the generated adaptor, implemented by calls into the
// Controller. sdbus::Error is thrown here, at the bus edge, and nowhere in the engine.
#include <memory>
#include <string>

#include "ringfwd/base/result.hpp"
#include "ringfwd/control/controller.hpp"

namespace rf::control {

class DbusService {
 public:
  // bus: "system", "session" or a D-Bus address ("unix:path=/run/x"). Owns io.ringfwd1 at
  // /io/ringfwd1 and serves it from its own thread until destroyed.
  static Result<std::unique_ptr<DbusService>> start(const std::string& bus, Controller& controller);
  ~DbusService();
  DbusService(const DbusService&) = delete;
  DbusService& operator=(const DbusService&) = delete;

  // RoutesChanged, for changes that did not come over the bus (SIGHUP).
  void routes_changed();

 private:
  struct Impl;
  explicit DbusService(std::unique_ptr<Impl> impl);
  std::unique_ptr<Impl> impl_;
};

}  // namespace rf::control
