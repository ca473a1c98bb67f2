#pragma once
// The control plane's one door into the engine: every change (D-Bus call, SIGHUP, later sync)
// is validated with the config file's rules, applied all or nothing through Engine::apply, and
// persisted atomically before it is acknowledged (SPEC §4, §5, §7). Thread-safe: the bus
// thread and the main thread may call it at once; the data path never waits on it.
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "ringfwd/config/config.hpp"
#include "ringfwd/dataplane/engine.hpp"

namespace rf::control {

// A refusal with its D-Bus error name (io.ringfwd1.Error.*) and a precise message.
struct ControlError {
  std::string name;
  std::string message;
};
using MaybeError = std::optional<ControlError>;

inline constexpr const char* kErrInvalidRoute = "io.ringfwd1.Error.InvalidRoute";
inline constexpr const char* kErrPortConflict = "io.ringfwd1.Error.PortConflict";
inline constexpr const char* kErrBlockedPort = "io.ringfwd1.Error.BlockedPort";
inline constexpr const char* kErrNotFound = "io.ringfwd1.Error.NotFound";
inline constexpr const char* kErrExists = "io.ringfwd1.Error.Exists";
inline constexpr const char* kErrInvalidConfig = "io.ringfwd1.Error.InvalidConfig";
inline constexpr const char* kErrFailed = "org.freedesktop.DBus.Error.Failed";

class Controller {
 public:
  Controller(std::string config_path, config::Config running, dataplane::Engine& engine);

  MaybeError add_route(std::string_view route_json);
  MaybeError update_route(std::string_view route_json);
  MaybeError remove_route(std::string_view id);
  MaybeError apply_config(std::string_view config_json);
  // Re-reads the config file (SIGHUP, D-Bus Reload); nothing changes if it has a problem.
  MaybeError reload();

  // Terminate routes whose certificate or key file changed on disk (certbot renewed it) get a
  // new certificate for new connections; established ones keep theirs. A file that does not
  // load yet (half written) is retried at the next call and reported once. Main thread, every
  // few seconds.
  void reload_changed_certificates();

  std::string list_routes();                                    // JSON array
  std::optional<std::string> get_route(std::string_view id);    // JSON object, nullopt: none
  std::string get_stats();                                      // JSON object
  std::string role();
  std::string dataplane();
  config::Config running();

 private:
  // Applies `next` to the engine and, when persist, writes it to the config file first
  // acknowledged; rolls the engine back if the file cannot be written. Lock held.
  MaybeError commit(config::Config next, bool persist);

  const std::string path_;
  std::mutex mu_;
  config::Config running_;
  dataplane::Engine& engine_;
  std::string last_cert_error_;
};

}  // namespace rf::control
