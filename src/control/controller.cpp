#include "ringfwd/control/controller.hpp"

#include <arpa/inet.h>
#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <boost/json.hpp>
#include <cerrno>
#include <cstring>
#include <ctime>

#include "ringfwd/base/atomic_file.hpp"
#include "ringfwd/base/log.hpp"
#include "ringfwd/routing/conflicts.hpp"
#include "ringfwd/routing/route_table.hpp"
#include "ringfwd/sync/protocol.hpp"
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

json::value gateways_json(const config::Config& cfg, routing::GatewayLinks* links) {
  json::array out;
  for (const config::Gateway& g : cfg.gateways) {
    json::array routes;
    for (const config::Route& r : cfg.routes)
      if (r.target.gateway == g.id) routes.emplace_back(r.id);
    routing::GatewayStatus st;
    if (links)
      if (auto l = links->find(g.id)) st = l->status();
    out.push_back(json::object{
        {"id", g.id},
        {"tunnel_ip", g.tunnel_ip},
        {"token_file", g.token_file},
        {"routes", std::move(routes)},
        {"online", st.online},
        {"address", st.address},
        {"since", st.since},
        {"last_seen", st.last_seen},
        {"hash_sent", st.hash_sent},
        {"hash_applied", st.hash_applied},
        {"in_sync", st.online && !st.hash_sent.empty() && st.hash_sent == st.hash_applied},
        {"last_error", st.last_error},
        {"listening", strings(st.listening)},
        {"listener_failures", strings(st.failures)}});
  }
  return out;
}

bool valid_id(std::string_view s) {
  if (s.empty() || s.size() > 63) return false;
  for (size_t i = 0; i < s.size(); ++i) {
    const char c = s[i];
    const bool alnum = (c >= 'a' && c <= 'z') || (c >= '0' && c <= '9');
    if (!alnum && (i == 0 || (c != '-' && c != '_'))) return false;
  }
  return true;
}

// The sync listen address's host part ("10.8.0.1:7946" -> "10.8.0.1", "[fd00::1]:7946").
std::string endpoint_host(const std::string& ep) {
  std::string h = ep.substr(0, ep.rfind(':'));
  if (h.size() > 2 && h.front() == '[') h = h.substr(1, h.size() - 2);
  return h;
}

// A new token file (mode 0600, never replacing one): 32 random bytes as hex.
Result<std::string> write_new_token(const std::string& dir, const std::string& path) {
  if (::mkdir(dir.c_str(), 0700) != 0 && errno != EEXIST) return Error::from_errno("mkdir " + dir);
  const std::string token = sync::random_hex(32);
  if (token.empty()) return Error::from_errno("getrandom");
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, 0600);
  if (fd < 0) return Error::from_errno("create " + path);
  const std::string text = token + "\n";
  bool ok = ::write(fd, text.data(), text.size()) == ssize_t(text.size()) && ::fsync(fd) == 0;
  const int e = errno;
  ::close(fd);
  if (!ok) {
    ::unlink(path.c_str());
    return Error::from_errno("write " + path, e);
  }
  return token;
}

}  // namespace

Controller::Controller(std::string config_path, config::Config running, dataplane::Engine& engine,
                       std::shared_ptr<routing::GatewayLinks> links)
    : path_(std::move(config_path)),
      running_(std::move(running)),
      engine_(engine),
      links_(std::move(links)),
      sync_gateway_(running_.role == config::Role::Gateway && running_.sync.has_value()) {}

MaybeError Controller::commit(config::Config next, Persist persist, const std::string& synced_text) {
  auto conflicts = routing::find_conflicts(next);
  if (!conflicts.empty()) return from_problems(conflicts, kErrInvalidRoute);
  auto table = routing::RouteTable::build(next, engine_.table().get(), links_.get());
  if (!table) return ControlError{kErrInvalidRoute, table.error().str()};
  auto old_table = engine_.table();
  auto applied = engine_.apply(*table, next.limits.overlap_ms);
  if (!applied) return ControlError{kErrPortConflict, applied.error().str()};
  if (persist != Persist::No) {
    auto written = persist == Persist::ConfigFile
                       ? write_file_atomic(path_, config::to_json(next))
                       : write_file_atomic(sync::stored_path(next), synced_text);
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
  if (on_change_) on_change_();
  return std::nullopt;
}

MaybeError Controller::refuse_if_synced(const char* what) {
  if (!sync_gateway_) return std::nullopt;
  return ControlError{kErrManaged, std::string(what) +
                                       ": this gateway's routes come from its edge (sync); "
                                       "change them on the edge"};
}

MaybeError Controller::add_route(std::string_view route_json) {
  MaybeError err;
  if (auto e = refuse_if_synced("AddRoute")) return e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto parsed = config::parse_route(route_json, running_);
    if (!parsed.ok()) return from_problems(parsed.problems, kErrInvalidRoute);
    if (running_.find_route(parsed.route->id))
      return ControlError{kErrExists, "route \"" + parsed.route->id + "\" exists already"};
    config::Config next = running_;
    next.routes.push_back(*parsed.route);
    err = commit(std::move(next), Persist::ConfigFile);
    if (!err) RF_INFO("route=%s: added", parsed.route->id.c_str());
  }
  return err;
}

MaybeError Controller::update_route(std::string_view route_json) {
  MaybeError err;
  if (auto e = refuse_if_synced("UpdateRoute")) return e;
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
    err = commit(std::move(next), Persist::ConfigFile);
    if (!err) RF_INFO("route=%s: updated", parsed.route->id.c_str());
  }
  return err;
}

MaybeError Controller::remove_route(std::string_view id) {
  MaybeError err;
  if (auto e = refuse_if_synced("RemoveRoute")) return e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    config::Config next = running_;
    auto n = std::erase_if(next.routes, [&](const config::Route& r) { return r.id == id; });
    if (n == 0) return ControlError{kErrNotFound, "no route \"" + std::string(id) + "\""};
    err = commit(std::move(next), Persist::ConfigFile);
    if (!err) RF_INFO("route=%.*s: removed; its connections drain", int(id.size()), id.data());
  }
  return err;
}

MaybeError Controller::apply_config(std::string_view config_json) {
  MaybeError err;
  if (auto e = refuse_if_synced("ApplyConfig")) return e;
  {
    std::lock_guard<std::mutex> lock(mu_);
    auto parsed = config::parse(config_json);
    if (!parsed.ok()) return from_problems(parsed.problems, kErrInvalidConfig);
    if (parsed.config->role != running_.role)
      return ControlError{kErrInvalidConfig, "role: the role cannot change while running"};
    if (parsed.config->sync != running_.sync)
      return ControlError{kErrInvalidConfig,
                          "sync: the sync section cannot change while running (edit the file "
                          "and restart ringfwd)"};
    err = commit(std::move(*parsed.config), Persist::ConfigFile);
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
      if (loaded.config->sync != running_.sync) {
        // The sync listener or session starts with the daemon; a half-applied change would
        // make the edge refuse its gateways' connections or point at a listener not running.
        err = ControlError{kErrInvalidConfig,
                           "sync: the sync section changed; restart ringfwd to apply it "
                           "(systemctl restart ringfwd)"};
      } else if (sync_gateway_) {
        // The file says who this gateway is; the routes stay those the edge sent.
        if (!loaded.config->routes.empty()) {
          err = ControlError{kErrInvalidConfig,
                             "routes: a gateway with a sync section gets its routes from the "
                             "edge; remove them from " + path_};
        } else {
          auto combined = sync::combine(*loaded.config, json::parse(synced_routes_));
          if (!combined)
            err = ControlError{kErrInvalidConfig, "the routes from the edge do not fit the "
                                                  "new file: " + combined.error().str()};
          else
            err = commit(std::move(*combined), Persist::No);
        }
      } else {
        err = commit(std::move(*loaded.config), Persist::No);
      }
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
  auto next = routing::RouteTable::build(running_, table.get(), links_.get());
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
      if (rr->route.target.via_gateway() && running_.role == config::Role::Edge) {
        json::object g{{"id", rr->route.target.gateway}};
        if (rr->link) g["online"] = rr->link->online();
        state["gateway"] = std::move(g);
      }
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
  json::object extra;
  if (running_.role == config::Role::Edge && !running_.gateways.empty()) {
    json::object gws;
    json::value all = gateways_json(running_, links_.get());
    for (json::value& g : all.as_array()) {
      json::object o = std::move(g.as_object());
      const std::string id(o["id"].as_string());
      o.erase("id");
      gws[id] = std::move(o);
    }
    extra["gateways"] = std::move(gws);
  }
  if (sync_status_) {
    boost::system::error_code ec;
    json::value v = json::parse(sync_status_(), ec);
    if (!ec) extra["sync"] = std::move(v);
  }
  json::object out{
      {"dataplane", std::string(dataplane::to_string(engine_.mode()))},
      {"workers", engine_.worker_count()},
      {"active", engine_.active_connections()},
      // Closed before a route was chosen: bad PROXY header or ClientHello, unknown name.
      {"rejected", engine_.rejected_connections()},
      {"total", json::object{{"total", total[0]}, {"active", total[1]}, {"refused", total[2]},
                             {"failed", total[3]}, {"bytes_up", total[4]}, {"bytes_down", total[5]}}},
      {"routes", std::move(routes)},
      {"draining", std::move(draining)}};
  if (const bpf::Sockmap* sm = engine_.sockmap()) {
    const auto c = sm->counters();
    // flows/sockets: entries in the BPF maps now; the rest counts since start.
    out["sockmap"] = json::object{{"flows", sm->flows()},
                                  {"sockets", sm->verdict_sockets()},
                                  {"redirected_skbs", c.skbs},
                                  {"redirected_bytes", c.bytes},
                                  {"drops", c.drops},
                                  {"inflight_limit", sm->inflight_limit()}};
  }
  for (auto& kv : extra) out[kv.key()] = std::move(kv.value());
  return json::serialize(out);
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

void Controller::set_on_change(std::function<void()> f) {
  std::lock_guard<std::mutex> lock(mu_);
  on_change_ = std::move(f);
}

void Controller::set_sync_status(std::function<std::string()> f) {
  std::lock_guard<std::mutex> lock(mu_);
  sync_status_ = std::move(f);
}

std::string Controller::list_gateways() {
  std::lock_guard<std::mutex> lock(mu_);
  return json::serialize(gateways_json(running_, links_.get()));
}

MaybeError Controller::add_gateway(std::string_view gateway_json, std::string* created) {
  std::lock_guard<std::mutex> lock(mu_);
  if (running_.role != config::Role::Edge || !running_.sync)
    return ControlError{kErrInvalidConfig,
                        running_.role != config::Role::Edge
                            ? "AddGateway: only an edge has gateways"
                            : "AddGateway: the edge has no \"sync\" section (add "
                              "\"sync\": {\"listen\": \"TUNNEL_IP:7946\"} to " + path_ + ")"};
  boost::system::error_code ec;
  json::value v = json::parse(gateway_json, ec);
  const json::object* o = ec ? nullptr : v.if_object();
  if (!o) return ControlError{kErrInvalidConfig, "gateway: expected a JSON object {\"id\": ...}"};
  for (const auto& kv : *o)
    if (kv.key() != "id" && kv.key() != "tunnel_ip" && kv.key() != "token_file")
      return ControlError{kErrInvalidConfig, "gateway." + std::string(kv.key()) +
                                                 ": unknown key (id, tunnel_ip, token_file)"};
  config::Gateway g;
  g.id = sync::string_member(*o, "id");
  if (!valid_id(g.id))
    return ControlError{kErrInvalidConfig,
                        "gateway.id: expected [a-z0-9][a-z0-9_-]{0,62}, got \"" + g.id + "\""};
  if (running_.find_gateway(g.id))
    return ControlError{kErrExists, "gateway \"" + g.id + "\" exists already"};
  const std::string edge_ip = endpoint_host(running_.sync->listen);
  auto taken = [&](const std::string& ip) {
    if (ip == edge_ip) return true;
    for (const config::Gateway& x : running_.gateways)
      if (x.tunnel_ip == ip) return true;
    return false;
  };
  g.tunnel_ip = sync::string_member(*o, "tunnel_ip");
  if (!g.tunnel_ip.empty()) {
    uint8_t b[16];
    if (inet_pton(AF_INET, g.tunnel_ip.c_str(), b) != 1 &&
        inet_pton(AF_INET6, g.tunnel_ip.c_str(), b) != 1)
      return ControlError{kErrInvalidConfig, "gateway.tunnel_ip: \"" + g.tunnel_ip +
                                                 "\" is not an IP address"};
    if (taken(g.tunnel_ip))
      return ControlError{kErrExists, "gateway.tunnel_ip: " + g.tunnel_ip + " is taken"};
  } else {
    // The next free host of the sync address's /24 (the tunnel's usual size).
    in_addr a{};
    if (inet_pton(AF_INET, edge_ip.c_str(), &a) != 1)
      return ControlError{kErrInvalidConfig,
                          "gateway.tunnel_ip: required (the sync address is not IPv4)"};
    const uint32_t net = ntohl(a.s_addr) & 0xffffff00u;
    for (uint32_t h = 2; h < 255 && g.tunnel_ip.empty(); ++h) {
      in_addr c{htonl(net | h)};
      char buf[INET_ADDRSTRLEN];
      inet_ntop(AF_INET, &c, buf, sizeof buf);
      if (!taken(buf)) g.tunnel_ip = buf;
    }
    if (g.tunnel_ip.empty())
      return ControlError{kErrInvalidConfig, "gateway.tunnel_ip: no free address in the /24 of " +
                                                 edge_ip + "; give one"};
  }
  std::string token;
  bool created_token = false;
  g.token_file = sync::string_member(*o, "token_file");
  if (!g.token_file.empty()) {
    if (g.token_file.front() != '/')
      return ControlError{kErrInvalidConfig, "gateway.token_file: expected an absolute path"};
    auto t = sync::read_token(g.token_file);
    if (!t) return ControlError{kErrInvalidConfig, "gateway.token_file: " + t.error().str()};
    token = *t;
  } else {
    const std::string dir = running_.state_dir + "/gateways";
    g.token_file = dir + "/" + g.id + ".token";
    auto t = write_new_token(dir, g.token_file);
    if (!t) return ControlError{kErrFailed, "the token was not written: " + t.error().str()};
    token = *t;
    created_token = true;
  }
  config::Config next = running_;
  next.gateways.push_back(g);
  MaybeError err = commit(std::move(next), Persist::ConfigFile);
  if (err) {
    if (created_token) ::unlink(g.token_file.c_str());
    return err;
  }
  RF_INFO("gateway \"%s\": added (tunnel_ip %s, token in %s)", g.id.c_str(), g.tunnel_ip.c_str(),
          g.token_file.c_str());
  if (created)
    *created = json::serialize(json::object{{"id", g.id},
                                            {"tunnel_ip", g.tunnel_ip},
                                            {"token", token},
                                            {"token_file", g.token_file},
                                            {"sync", running_.sync->listen},
                                            {"edge_tunnel_ip", edge_ip}});
  return std::nullopt;
}

MaybeError Controller::remove_gateway(std::string_view id) {
  std::lock_guard<std::mutex> lock(mu_);
  const config::Gateway* g = running_.find_gateway(id);
  if (!g) return ControlError{kErrNotFound, "no gateway \"" + std::string(id) + "\""};
  std::string users;
  for (const config::Route& r : running_.routes)
    if (r.target.gateway == id) users += (users.empty() ? "\"" : ", \"") + r.id + "\"";
  if (!users.empty())
    return ControlError{kErrInUse, "gateway \"" + std::string(id) +
                                       "\" still has routes: " + users + " (remove them first)"};
  const std::string token_file = g->token_file;
  config::Config next = running_;
  std::erase_if(next.gateways, [&](const config::Gateway& x) { return x.id == id; });
  if (MaybeError err = commit(std::move(next), Persist::ConfigFile)) return err;
  const std::string own = running_.state_dir + "/gateways/";
  if (token_file.compare(0, own.size(), own) == 0) ::unlink(token_file.c_str());
  if (links_) links_->erase(std::string(id));
  RF_INFO("gateway \"%.*s\": removed", int(id.size()), id.data());
  return std::nullopt;
}

MaybeError Controller::apply_synced(std::string_view routes_json, const std::string& hash,
                                    std::vector<std::string>* listening) {
  std::lock_guard<std::mutex> lock(mu_);
  if (!sync_gateway_) return ControlError{kErrInvalidConfig, "not a sync gateway"};
  boost::system::error_code ec;
  json::value routes = json::parse(routes_json, ec);
  if (ec) return ControlError{kErrInvalidConfig, "routes: not JSON (" + ec.message() + ")"};
  // The file part of the running config: what the file says, without the edge's routes.
  config::Config file = running_;
  file.routes.clear();
  auto combined = sync::combine(file, routes);
  if (!combined) return ControlError{kErrInvalidConfig, combined.error().str()};
  const size_t n = combined->routes.size();
  MaybeError err = commit(std::move(*combined), Persist::SyncedRoutes,
                          sync::stored_text(hash, routes));
  if (err) return err;
  synced_hash_ = hash;
  synced_routes_ = json::serialize(routes);
  if (listening) {
    listening->clear();
    for (const config::Route& r : running_.routes)
      for (const std::string& a : engine_.listening(r.id)) listening->push_back(a);
  }
  RF_INFO("sync: applied route set %.12s (%zu route%s)", hash.c_str(), n, n == 1 ? "" : "s");
  return std::nullopt;
}

std::string Controller::synced_hash() {
  std::lock_guard<std::mutex> lock(mu_);
  return synced_hash_;
}

void Controller::init_synced(std::string hash, std::string routes_json) {
  std::lock_guard<std::mutex> lock(mu_);
  synced_hash_ = std::move(hash);
  synced_routes_ = std::move(routes_json);
}

}  // namespace rf::control
