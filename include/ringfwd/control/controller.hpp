#pragma once
// The control plane's one door into the engine: every change (D-Bus call, SIGHUP, later sync)
// is validated with the config file's rules, applied all or nothing through Engine::apply, and
// persisted atomically before it is acknowledged (SPEC §4, §5, §7). Thread-safe: the bus
// thread and the main thread may call it at once; the data path never waits on it.
#include <functional>
#include <memory>
#include <mutex>
#include <optional>
#include <string>
#include <string_view>

#include "ringfwd/config/config.hpp"
#include "ringfwd/dataplane/engine.hpp"
#include "ringfwd/routing/gateway_link.hpp"

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
inline constexpr const char* kErrInUse = "io.ringfwd1.Error.InUse";
inline constexpr const char* kErrManaged = "io.ringfwd1.Error.Managed";
inline constexpr const char* kErrFailed = "org.freedesktop.DBus.Error.Failed";

class Controller {
 public:
  // `links`: an edge's gateway state, shared with the sync server and every route table.
  Controller(std::string config_path, config::Config running, dataplane::Engine& engine,
             std::shared_ptr<routing::GatewayLinks> links = nullptr);

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

  // ---- edge: gateways (SPEC §6) ----
  std::string list_gateways();  // JSON array (ListGateways)
  // AddGateway: {"id", optional "tunnel_ip", "token_file"}; *created gets the answer.
  MaybeError add_gateway(std::string_view gateway_json, std::string* created);
  MaybeError remove_gateway(std::string_view id);
  const std::shared_ptr<routing::GatewayLinks>& links() const { return links_; }
  // Called (lock held, so it must only signal) after every applied change.
  void set_on_change(std::function<void()> f);

  // ---- gateway with sync: routes come from the edge ----
  bool sync_gateway() const { return sync_gateway_; }
  // Applies a route set received from the edge (named by hash) through the same plan as any
  // change, then stores it atomically in state_dir/synced-routes.json; refused whole (and
  // nothing changes) when it does not validate or cannot be stored. *listening gets the
  // addresses the set's routes accept on.
  MaybeError apply_synced(std::string_view routes_json, const std::string& hash,
                          std::vector<std::string>* listening);
  // The set running now ("" when none was applied or stored).
  std::string synced_hash();
  // GetStats "sync": a JSON object text from the sync client.
  void set_sync_status(std::function<std::string()> f);
  // Start-up: the stored set was validated and is what `running` holds.
  void init_synced(std::string hash, std::string routes_json);

 private:
  enum class Persist { No, ConfigFile, SyncedRoutes };
  // Applies `next` to the engine and persists it (the config file, or the synced set) before
  // it is acknowledged; rolls the engine back if the file cannot be written. Lock held.
  MaybeError commit(config::Config next, Persist persist, const std::string& synced_text = {});
  MaybeError refuse_if_synced(const char* what);

  const std::string path_;
  std::mutex mu_;
  config::Config running_;
  dataplane::Engine& engine_;
  std::string last_cert_error_;
  std::shared_ptr<routing::GatewayLinks> links_;
  std::function<void()> on_change_;
  std::function<std::string()> sync_status_;
  const bool sync_gateway_;
  std::string synced_hash_;
  std::string synced_routes_ = "[]";
};

}  // namespace rf::control
