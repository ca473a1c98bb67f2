// ringfwd: arguments, signals, wiring, sd_notify — nothing else.
#include <signal.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <string>

#include "ringfwd/base/log.hpp"
#include "ringfwd/config/config.hpp"
#include "ringfwd/control/controller.hpp"
#include "ringfwd/dataplane/engine.hpp"
#include "ringfwd/routing/route_table.hpp"
#include "ringfwd/sync/protocol.hpp"
#include "ringfwd/sync/sync.hpp"
#include "ringfwd/tls/check.hpp"
#include "control/dbus_service.hpp"
#include "ringfwd_build_config.h"

#if RINGFWD_HAVE_SYSTEMD
#include <systemd/sd-daemon.h>
#else
static int sd_notify(int, const char*) { return 0; }
static int sd_notifyf(int, const char*, ...) { return 0; }
static int sd_watchdog_enabled(int, uint64_t*) { return 0; }
#endif

namespace {

constexpr int kExitOk = 0;
constexpr int kExitConfig = 1;
constexpr int kExitUsage = 2;
constexpr int kExitStart = 3;

void usage(FILE* out) {
  std::fprintf(out,
               "usage: ringfwd [--config FILE] [--bus system|session|none|ADDRESS]\n"
               "       ringfwd --check FILE\n"
               "       ringfwd --version\n"
               "Layer-4 TCP/UDP forwarder (edge and gateway roles). Default config: "
               "/etc/ringfwd/ringfwd.json\n");
}

int check(const std::string& path) {
  return rf::config::check_file(path) ? kExitOk : kExitConfig;
}

// Each connection needs two fds (more with splice pipes): take what the system allows.
void raise_fd_limit() {
  rlimit rl{};
  if (getrlimit(RLIMIT_NOFILE, &rl) != 0) return;
  rlimit want = rl;
  want.rlim_cur = rl.rlim_max;
  if (want.rlim_max < 1048576) {
    rlimit big{1048576, 1048576};
    if (setrlimit(RLIMIT_NOFILE, &big) == 0) return;  // root may raise the hard limit
  }
  setrlimit(RLIMIT_NOFILE, &want);
}

void log_stats(const rf::dataplane::Engine& engine) {
  for (const auto& r : engine.table()->routes()) {
    const auto& c = *r.counters;
    RF_INFO("stats route=%s total=%llu active=%llu refused=%llu failed=%llu bytes_up=%llu "
            "bytes_down=%llu",
            r.route.id.c_str(), (unsigned long long)c.conns_total.load(),
            (unsigned long long)c.conns_active.load(), (unsigned long long)c.conns_refused.load(),
            (unsigned long long)c.conns_failed.load(), (unsigned long long)c.bytes_up.load(),
            (unsigned long long)c.bytes_down.load());
  }
  // Connections closed before a route was chosen (bad PROXY header or ClientHello, unknown
  // server name): no route to count them on.
  RF_INFO("stats unrouted rejected=%llu", (unsigned long long)engine.rejected_connections());
  if (const rf::bpf::Sockmap* sm = engine.sockmap()) {
    // flows/sockets: entries in the BPF maps (0 once every connection closed).
    const auto c = sm->counters();
    RF_INFO("stats sockmap flows=%zu sockets=%zu redirected_skbs=%llu redirected_bytes=%llu "
            "drops=%llu",
            sm->flows(), sm->verdict_sockets(), (unsigned long long)c.skbs,
            (unsigned long long)c.bytes, (unsigned long long)c.drops);
  }
}

uint64_t now_us() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return uint64_t(ts.tv_sec) * 1000000 + uint64_t(ts.tv_nsec) / 1000;
}

double now_s() {
  timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return double(ts.tv_sec) + double(ts.tv_nsec) * 1e-9;
}

}  // namespace

int main(int argc, char** argv) {
  rf::tls::install_certificate_check();
  std::string config_path = "/etc/ringfwd/ringfwd.json";
  std::string bus = "system";
  std::string check_path;
  bool do_check = false;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    auto value = [&](const char* name) -> const char* {
      if (i + 1 >= argc) {
        std::fprintf(stderr, "ringfwd: %s needs a value\n", name);
        std::exit(kExitUsage);
      }
      return argv[++i];
    };
    if (a == "--config" || a == "-c") {
      config_path = value("--config");
    } else if (a.rfind("--config=", 0) == 0) {
      config_path = a.substr(9);
    } else if (a == "--bus") {
      bus = value("--bus");
    } else if (a.rfind("--bus=", 0) == 0) {
      bus = a.substr(6);
    } else if (a == "--check") {
      do_check = true;
      check_path = value("--check");
    } else if (a == "--version") {
      std::printf("ringfwd %s\n", RINGFWD_VERSION);
      return kExitOk;
    } else if (a == "--help" || a == "-h") {
      usage(stdout);
      return kExitOk;
    } else {
      std::fprintf(stderr, "ringfwd: unknown argument '%s'\n", a.c_str());
      usage(stderr);
      return kExitUsage;
    }
  }
  if (do_check) return check(check_path);

  auto loaded = rf::config::load_file(config_path);
  if (!loaded.ok()) {
    for (const auto& p : loaded.problems) RF_ERROR("%s: %s", config_path.c_str(), p.str().c_str());
    RF_ERROR("%s: %zu problem%s, not starting", config_path.c_str(), loaded.problems.size(),
             loaded.problems.size() == 1 ? "" : "s");
    return kExitConfig;
  }
  rf::config::Config cfg = *loaded.config;
  const rf::config::Config file_cfg = cfg;
  const bool sync_gateway = cfg.role == rf::config::Role::Gateway && cfg.sync.has_value();
  std::string synced_hash, synced_routes = "[]";
  if (sync_gateway) {
    if (!cfg.routes.empty()) {
      RF_ERROR("%s: routes: a gateway with a sync section gets its routes from the edge; "
               "remove them from the file (or remove the sync section), not starting",
               config_path.c_str());
      return kExitConfig;
    }
    // The last set the edge sent: served at once, even while the edge is unreachable.
    const std::string stored = rf::sync::stored_path(cfg);
    auto s = rf::sync::read_stored(stored);
    if (!s) {
      if (s.error().code == std::errc::no_such_file_or_directory)
        RF_INFO("sync: no stored routes yet (%s); waiting for the edge", stored.c_str());
      else
        RF_WARN("sync: stored routes not used: %s; waiting for the edge", s.error().str().c_str());
    } else if (auto combined = rf::sync::combine(cfg, s->routes); !combined) {
      RF_WARN("sync: stored routes %s not used: %s; waiting for the edge", stored.c_str(),
              combined.error().str().c_str());
    } else {
      cfg = std::move(*combined);
      synced_hash = s->hash;
      synced_routes = boost::json::serialize(s->routes);
      RF_INFO("sync: serving the stored route set %.12s (%zu routes) until the edge answers",
              synced_hash.c_str(), cfg.routes.size());
    }
  }
  std::shared_ptr<rf::routing::GatewayLinks> links;
  if (cfg.role == rf::config::Role::Edge) links = std::make_shared<rf::routing::GatewayLinks>();

  raise_fd_limit();
  // Writes to a peer that vanished must fail with EPIPE, not kill the process.
  signal(SIGPIPE, SIG_IGN);
  sigset_t sigs;
  sigemptyset(&sigs);
  for (int s : {SIGTERM, SIGINT, SIGUSR1, SIGHUP}) sigaddset(&sigs, s);
  pthread_sigmask(SIG_BLOCK, &sigs, nullptr);  // workers inherit the mask

  auto mode = rf::dataplane::choose_mode(cfg.dataplane, cfg.limits.max_connections);
  if (!mode) {
    RF_ERROR("%s", mode.error().str().c_str());
    return kExitStart;
  }
  const std::string why = mode->why;
  auto table = rf::routing::RouteTable::build(cfg, nullptr, links.get());
  if (!table) {
    RF_ERROR("%s", table.error().str().c_str());
    return kExitStart;
  }
  rf::dataplane::EngineOptions opts;
  opts.mode = mode->mode;
  opts.sockmap = mode->sockmap;
  opts.workers = cfg.workers;
  opts.max_connections = cfg.limits.max_connections;
  auto engine_r = rf::dataplane::Engine::start(*table, opts);
  if (!engine_r) {
    RF_ERROR("cannot start: %s", engine_r.error().str().c_str());
    return kExitStart;
  }
  auto& engine = *engine_r.value();
  rf::control::Controller controller(config_path, cfg, engine, links);
  if (sync_gateway) controller.init_synced(synced_hash, synced_routes);
  std::unique_ptr<rf::sync::Server> sync_server;
  if (cfg.role == rf::config::Role::Edge && cfg.sync) {
    auto started = rf::sync::Server::start(controller, links, cfg.sync->listen);
    if (!started) {
      RF_ERROR("cannot start: %s", started.error().str().c_str());
      return kExitStart;
    }
    sync_server = std::move(started.value());
    rf::sync::Server* srv = sync_server.get();
    controller.set_on_change([srv] { srv->notify(); });
  }
  std::unique_ptr<rf::control::DbusService> dbus;
  if (bus != "none") {
    auto started = rf::control::DbusService::start(bus, controller);
    if (!started) {
      RF_ERROR("cannot start: %s (use --bus none to run without D-Bus control)",
               started.error().str().c_str());
      return kExitStart;
    }
    dbus = std::move(started.value());
  }
  std::unique_ptr<rf::sync::Client> sync_client;
  if (sync_gateway) {
    auto started = rf::sync::Client::start(controller, file_cfg, [&dbus] {
      if (dbus) dbus->routes_changed();
    });
    if (!started) {
      RF_ERROR("cannot start: %s", started.error().str().c_str());
      return kExitStart;
    }
    sync_client = std::move(started.value());
    rf::sync::Client* cl = sync_client.get();
    controller.set_sync_status([cl] { return cl->status_json(); });
  }
  RF_INFO("dataplane: %s", why.c_str());
  RF_INFO("ready: role=%s dataplane=%s workers=%u listeners=%zu",
          std::string(rf::config::to_string(cfg.role)).c_str(),
          std::string(rf::dataplane::to_string(engine.mode())).c_str(), engine.worker_count(),
          engine.listener_count());
  sd_notify(0, "READY=1");

  // Under systemd's WatchdogSec, ping at a third of the interval from this loop, which also
  // proves the control thread is alive.
  uint64_t watchdog_us = 0;
  if (sd_watchdog_enabled(0, &watchdog_us) <= 0) watchdog_us = 0;
  double next_ping = 0;
  const double stats_every = 60;
  double next_stats = now_s() + stats_every;
  double next_cert_check = now_s() + 2;  // certificate files renewed on disk
  for (;;) {
    timespec wait{0, 250 * 1000 * 1000};
    int sig = sigtimedwait(&sigs, nullptr, &wait);
    if (sig == SIGUSR1) log_stats(engine);
    if (sig == SIGHUP) {
      sd_notifyf(0, "RELOADING=1\nMONOTONIC_USEC=%llu", (unsigned long long)now_us());
      if (!controller.reload() && dbus) dbus->routes_changed();
      sd_notify(0, "READY=1");
    }
    if (sig == SIGTERM || sig == SIGINT) break;
    if (watchdog_us && now_s() >= next_ping) {
      sd_notify(0, "WATCHDOG=1");
      next_ping = now_s() + double(watchdog_us) / 3e6;
    }
    if (now_s() >= next_stats) {
      log_stats(engine);
      next_stats = now_s() + stats_every;
    }
    if (now_s() >= next_cert_check) {
      controller.reload_changed_certificates();
      next_cert_check = now_s() + 2;
    }
  }

  sd_notify(0, "STOPPING=1");
  // No route set arrives or leaves while stopping (the gateways see the edge go).
  controller.set_sync_status(nullptr);
  controller.set_on_change(nullptr);
  sync_client.reset();
  sync_server.reset();
  engine.stop_accepting();
  cfg = controller.running();
  const double deadline = now_s() + cfg.limits.drain_timeout_s;
  uint64_t active = engine.active_connections();
  RF_INFO("stopping: listeners closed, draining %llu connection%s (up to %u s)",
          (unsigned long long)active, active == 1 ? "" : "s", cfg.limits.drain_timeout_s);
  while (engine.active_connections() > 0 && now_s() < deadline) {
    timespec wait{0, 50 * 1000 * 1000};
    int sig = sigtimedwait(&sigs, nullptr, &wait);
    if (sig == SIGUSR1) log_stats(engine);
    if (sig == SIGTERM || sig == SIGINT) {
      RF_INFO("second stop signal: closing remaining connections now");
      break;
    }
  }
  active = engine.active_connections();
  if (active) RF_INFO("drain over: closing %llu connection%s", (unsigned long long)active,
                      active == 1 ? "" : "s");
  dbus.reset();  // no more changes while the engine stops
  engine.stop();
  log_stats(engine);
  RF_INFO("exit");
  return kExitOk;
}
