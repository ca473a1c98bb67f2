#include "dbus_service.hpp"

#include <sdbus-c++/sdbus-c++.h>

#include <atomic>
#include <thread>

#include "ringfwd/base/log.hpp"
#include "ringfwd1_adaptor.h"
#include "ringfwd_build_config.h"

namespace rf::control {

namespace {

constexpr const char* kBusName = "io.ringfwd1";
constexpr const char* kObjectPath = "/io/ringfwd1";

void raise(const MaybeError& e) {
  if (e) throw sdbus::Error(e->name, e->message);
}

class Manager final : public sdbus::AdaptorInterfaces<io::ringfwd1::Manager_adaptor> {
 public:
  Manager(sdbus::IConnection& connection, Controller& c)
      : AdaptorInterfaces(connection, kObjectPath), c_(c) {
    registerAdaptor();
  }
  ~Manager() { unregisterAdaptor(); }

  void changed() { emitRoutesChanged(); }

 private:
  std::string ListRoutes() override { return c_.list_routes(); }
  std::string GetRoute(const std::string& id) override {
    auto r = c_.get_route(id);
    if (!r) throw sdbus::Error(kErrNotFound, "no route \"" + id + "\"");
    return *r;
  }
  void AddRoute(const std::string& route) override { mutate(c_.add_route(route)); }
  void UpdateRoute(const std::string& route) override { mutate(c_.update_route(route)); }
  void RemoveRoute(const std::string& id) override { mutate(c_.remove_route(id)); }
  void ApplyConfig(const std::string& config) override { mutate(c_.apply_config(config)); }
  std::string GetStats() override { return c_.get_stats(); }
  void Reload() override { mutate(c_.reload()); }
  std::string ListGateways() override { return c_.list_gateways(); }
  std::string AddGateway(const std::string& gateway) override {
    std::string created;
    mutate(c_.add_gateway(gateway, &created));
    return created;
  }
  void RemoveGateway(const std::string& id) override { mutate(c_.remove_gateway(id)); }
  std::string Role() override { return c_.role(); }
  std::string Version() override { return RINGFWD_VERSION; }
  std::string Dataplane() override { return c_.dataplane(); }

  void mutate(const MaybeError& e) {
    raise(e);
    emitRoutesChanged();
  }

  Controller& c_;
};

}  // namespace

struct DbusService::Impl {
  std::unique_ptr<sdbus::IConnection> connection;
  std::unique_ptr<Manager> manager;
  // Our own loop thread rather than enterEventLoopAsync(): sdbus-c++ 1.2 throws from its loop
  // when the bus goes away (a dbus-daemon restart), and an exception on its thread would end
  // the process. Forwarding must not depend on the control bus.
  std::thread loop;
  std::atomic<bool> lost{false};
};

Result<std::unique_ptr<DbusService>> DbusService::start(const std::string& bus,
                                                        Controller& controller) {
  auto impl = std::make_unique<Impl>();
  try {
    if (bus == "system")
      impl->connection = sdbus::createSystemBusConnection();
    else if (bus == "session")
      impl->connection = sdbus::createSessionBusConnection();
    else
      impl->connection = sdbus::createSessionBusConnectionWithAddress(bus);
    impl->manager = std::make_unique<Manager>(*impl->connection, controller);
    impl->connection->requestName(kBusName);
    Impl* p = impl.get();
    impl->loop = std::thread([p, bus] {
      try {
        p->connection->enterEventLoop();
      } catch (const std::exception& e) {
        p->lost = true;
        RF_ERROR("D-Bus (%s): connection lost: %s; forwarding goes on, the control API is gone "
                 "until ringfwd restarts",
                 bus.c_str(), e.what());
      }
    });
  } catch (const sdbus::Error& e) {
    return Error::msg("D-Bus (" + bus + "): " + e.getName() + ": " + e.getMessage());
  } catch (const std::exception& e) {
    return Error::msg("D-Bus (" + bus + "): " + e.what());
  }
  RF_INFO("D-Bus: %s at %s on the %s bus", kBusName, kObjectPath, bus.c_str());
  return std::unique_ptr<DbusService>(new DbusService(std::move(impl)));
}

DbusService::DbusService(std::unique_ptr<Impl> impl) : impl_(std::move(impl)) {}

DbusService::~DbusService() {
  if (!impl_) return;
  try {
    impl_->connection->leaveEventLoop();
  } catch (...) {
    // Shutting down: the bus may be gone already.
  }
  if (impl_->loop.joinable()) impl_->loop.join();
  try {
    impl_->manager.reset();
    if (!impl_->lost) impl_->connection->releaseName(kBusName);
  } catch (...) {
  }
}

void DbusService::routes_changed() {
  if (impl_->lost) return;
  try {
    impl_->manager->changed();
  } catch (const std::exception& e) {
    RF_WARN("D-Bus: RoutesChanged not sent: %s", e.what());
  }
}

}  // namespace rf::control
