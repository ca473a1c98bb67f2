#include "ringfwd/control/controller.hpp"

#include <boost/json.hpp>

#include "ringfwd/base/atomic_file.hpp"
#include "ringfwd/base/log.hpp"
#include "ringfwd/routing/conflicts.hpp"
#include "ringfwd/routing/route_table.hpp"
#include "ringfwd/tls/terminator.hpp"

namespace rf::control {

namespace json = boost::json;

namespace {

// One error for a list of problems: the most specific name any of them carries, and every
// problem in the message, so that a caller sees all of them at once.
ControlError from_problems(const std::vector<config::Problem>& problems, const char* fallback) {
  const char* name = fallback;
  std::string msg;
  for (const config::Problem& p : problems) {
    if (p.kind == config::ProblemKind::PortConflict) name = kErrPortConflict;
    if (p.kind == config::ProblemKind::BlockedPort && name == fallback) name = kErrBlockedPort;
    if (!msg.empty()) msg += "; ";
    msg += p.str();
  }
  return ControlError{name, msg};
}

json::value counters_json(const routing::RouteCounters& c) {
  return json::object{{"total", c.conns_total.load()},     {"active", c.conns_active.load()},
                      {"refused", c.conns_refused.load()}, {"failed", c.conns_failed.load()},
                      {"bytes_up", c.bytes_up.load()},     {"bytes_down", c.bytes_down.load()},
                      {"wol_packets", c.wol_packets.load()}};
}

json::array strings(const std::vector<std::string>& v) {
  json::array a;
  for (const auto& s : v) a.emplace_back(s);
  return a;
}

}  // namespace

Controller::Controller(std::string config_path, config::Config running, dataplane::Engine& engine)
    : path_(std::move(config_path)), running_(std::move(running)), engine_(engine) {}

MaybeError Controller::commit(config::Config next, bool persist) {
  auto conflicts = routing::find_conflicts(next);
  if (!conflicts.empty()) return from_problems(conflicts, kErrInvalidRoute);
  auto table = routing::RouteTable::build(next, engine_.table().get());
  if (!table) return ControlError{kErrInvalidRoute, table.error().str()};
  auto old_table = engine_.table();
  auto applied = engine_.apply(*table, next.limits.overlap_ms);
  if (!applied) return ControlError{kErrPortConflict, applied.error().str()};
  if (persist) {
    auto written = write_file_atomic(path_, config::to_json(next));
    if (!written) {
      // Not acknowledged, so not served: the engine goes back to what the file says.
      auto back = engine_.apply(old_table, 0);
      if (!back) RF_ERROR("rolling back after a failed write: %s", back.error().str().c_str());
      return ControlError{kErrFailed, "the change was not saved, nothing changed: " +
                                          written.error().str()};
    }
  }
  engine_.set_max_connections(next.limits.max_connections);
  running_ = std::move(next);
  return std::nullopt;
}

MaybeError Controller::add_route(std::string_view route_json) {
  MaybeError err;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto parsed = config::parse_route(route_json, running_);
    if (!parsed.ok()) return from_problems(parsed.problems, kErrInvalidRoute);
    if (running_.find_route(parsed.route->id))
      return ControlError{kErrExists, "route \"" + parsed.route->id + "\" exists already"};
    config::Config next = running_;
    next.routes.push_back(*parsed.route);
    err = commit(std::move(next), true);
    if (!err) RF_INFO("route=%s: added", parsed.route->id.c_str());
  }
  return err;
}

MaybeError Controller::update_route(std::string_view route_json) {
  MaybeError err;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto parsed = config::parse_route(route_json, running_);
    if (!parsed.ok()) return from_problems(parsed.problems, kErrInvalidRoute);
    config::Config next = running_;
    auto it = std::find_if(next.routes.begin(), next.routes.end(),
                           [&](const config::Route& r) { return r.id == parsed.route->id; });
    if (it == next.routes.end())
      return ControlError{kErrNotFound, "no route \"" + parsed.route->id + "\""};
    *it = *parsed.route;
    err = commit(std::move(next), true);
    if (!err) RF_INFO("route=%s: updated", parsed.route->id.c_str());
  }
  return err;
}

MaybeError Controller::remove_route(std::string_view id) {
  MaybeError err;
  {
    std::lock_guard<std::mutex> lock(mu_);
    config::Config next = running_;
    auto n = std::erase_if(next.routes, [&](const config::Route& r) { return r.id == id; });
    if (n == 0) return ControlError{kErrNotFound, "no route \"" + std::string(id) + "\""};
    err = commit(std::move(next), true);
    if (!err) RF_INFO("route=%.*s: removed; its connections drain", int(id.size()), id.data());
  }
  return err;
}

MaybeError Controller::apply_config(std::string_view config_json) {
  MaybeError err;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto parsed = config::parse(config_json);
    if (!parsed.ok()) return from_problems(parsed.problems, kErrInvalidConfig);
    if (parsed.config->role != running_.role)
      return ControlError{kErrInvalidConfig, "role: the role cannot change while running"};
    err = commit(std::move(*parsed.config), true);
    if (!err) RF_INFO("configuration applied: %zu routes", running_.routes.size());
  }
  return err;
}

MaybeError Controller::reload() {
  MaybeError err;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto loaded = config::load_file(path_);
    if (!loaded.ok()) {
      err = from_problems(loaded.problems, kErrInvalidConfig);
    } else if (loaded.config->role != running_.role) {
      err = ControlError{kErrInvalidConfig, "role: the role cannot change while running"};
    } else {
      if (loaded.config->dataplane != running_.dataplane ||
          loaded.config->workers != running_.workers)
        RF_WARN("reload: dataplane and workers take effect at the next start");
      err = commit(std::move(*loaded.config), false);
    }
    if (err)
      RF_ERROR("reload refused (%s): %s; the running configuration stays", err->name.c_str(),
               err->message.c_str());
    else
      RF_INFO("reloaded %s: %zu routes, %zu listeners", path_.c_str(), running_.routes.size(),
              engine_.listener_count());
  }
  return err;
}

void Controller::reload_changed_certificates() {
  std::lock_guard<std::mutex> lock(mu_);
  auto table = engine_.table();
  std::vector<std::string> changed;
  for (const routing::ResolvedRoute& r : table->routes())
    if (r.tls_ctx && r.tls_ctx->files_changed()) changed.push_back(r.route.id);
  if (changed.empty()) return;
  auto next = routing::RouteTable::build(running_, table.get());
  if (!next) {
    std::string why = next.error().str();
    if (why != last_cert_error_)
      RF_WARN("certificate change not applied yet (%s); connections keep the current one",
              why.c_str());
    last_cert_error_ = why;
    return;
  }
  last_cert_error_.clear();
  auto applied = engine_.apply(*next, running_.limits.overlap_ms);
  if (!applied) {
    RF_WARN("certificate reload: %s", applied.error().str().c_str());
    return;
  }
  for (const std::string& id : changed)
    if (const routing::ResolvedRoute* r = (*next)->find(id); r && r->tls_ctx)
      RF_INFO("route=%s: certificate reloaded from %s (%s)", id.c_str(),
              r->tls_ctx->cert_file().c_str(), r->tls_ctx->subject().c_str());
}

std::string Controller::list_routes() {
  std::lock_guard<std::mutex> lock(mu_);
  json::value cfg = json::parse(config::to_json(running_));
  json::array out;
  auto table = engine_.table();
  for (json::value& r : cfg.as_object()["routes"].as_array()) {
    json::object o = r.as_object();
    const std::string id(o["id"].as_string());
    json::object state;
    state["listening"] = strings(engine_.listening(id));
    state["overlap"] = strings(engine_.overlapping(id));
    if (const routing::ResolvedRoute* rr = table->find(id)) {
      state["counters"] = counters_json(*rr->counters);
    }
    o["state"] = std::move(state);
    out.push_back(std::move(o));
  }
  // Removed routes whose connections still drain (until their drain_timeout_s).
  for (const auto& d : engine_.draining()) {
    if (table->find(d.route_id)) continue;
    out.push_back(json::object{
        {"id", d.route_id},
        {"state", json::object{{"removed", true},
                               {"draining", d.counters->conns_active.load()},
                               {"counters", counters_json(*d.counters)}}}});
  }
  return json::serialize(out);
}

std::optional<std::string> Controller::get_route(std::string_view id) {
  json::value all = json::parse(list_routes());
  for (json::value& r : all.as_array())
    if (r.as_object()["id"].as_string() == id) return json::serialize(r);
  return std::nullopt;
}

std::string Controller::get_stats() {
  std::lock_guard<std::mutex> lock(mu_);
  json::object routes;
  uint64_t total[6] = {};
  for (const routing::ResolvedRoute& r : engine_.table()->routes()) {
    routes[r.route.id] = counters_json(*r.counters);
    const auto& c = *r.counters;
    const uint64_t v[6] = {c.conns_total.load(),  c.conns_active.load(), c.conns_refused.load(),
                           c.conns_failed.load(), c.bytes_up.load(),     c.bytes_down.load()};
    for (int i = 0; i < 6; ++i) total[i] += v[i];
  }
  json::array draining;
  for (const auto& d : engine_.draining())
    draining.push_back(json::object{{"route", d.route_id}, {"active", d.counters->conns_active.load()}});
  return json::serialize(json::object{
      {"dataplane", std::string(dataplane::to_string(engine_.mode()))},
      {"workers", engine_.worker_count()},
      {"active", engine_.active_connections()},
      // Closed before a route was chosen: bad PROXY header or ClientHello, unknown name.
      {"rejected", engine_.rejected_connections()},
      {"total", json::object{{"total", total[0]}, {"active", total[1]}, {"refused", total[2]},
                             {"failed", total[3]}, {"bytes_up", total[4]}, {"bytes_down", total[5]}}},
      {"routes", std::move(routes)},
      {"draining", std::move(draining)}});
}

std::string Controller::role() {
  std::lock_guard<std::mutex> lock(mu_);
  return std::string(config::to_string(running_.role));
}

std::string Controller::dataplane() { return std::string(dataplane::to_string(engine_.mode())); }

config::Config Controller::running() {
  std::lock_guard<std::mutex> lock(mu_);
  return running_;
}

}  // namespace rf::control
