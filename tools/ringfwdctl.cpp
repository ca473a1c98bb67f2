// ringfwdctl: the operator's CLI over ringfwd's D-Bus API (io.ringfwd1 /io/ringfwd1
// io.ringfwd1.Manager), plus `check`, the offline config validator (same code as ringfwd --check).
//
// Exit codes, for scripts:
//   0 ok
//   1 the daemon refused (prints "ringfwdctl: io.ringfwd1.Error.X: message"), or `check` found
//     problems
//   2 usage error
//   3 cannot reach the bus or the daemon
//   4 not found (io.ringfwd1.Error.NotFound)
// --json prints the daemon's JSON unchanged (routes, route, stats, gateways, gateway add).
#include <fcntl.h>
#include <signal.h>
#include <sys/stat.h>
#include <sys/wait.h>
#include <unistd.h>

#include <algorithm>
#include <cctype>
#include <cerrno>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <ctime>
#include <exception>
#include <fstream>
#include <iostream>
#include <iterator>
#include <memory>
#include <optional>
#include <sstream>
#include <stdexcept>
#include <string>
#include <string_view>
#include <vector>

#include <boost/json.hpp>
#include <sdbus-c++/sdbus-c++.h>

#include "gateway_setup.hpp"
#include "ringfwd/tls/check.hpp"
#include "ringfwd/config/config.hpp"
#include "ringfwd1_proxy.h"

namespace {

namespace json = boost::json;

constexpr int kOk = 0;
constexpr int kRefused = 1;
constexpr int kUsage = 2;
constexpr int kUnreachable = 3;
constexpr int kNotFound = 4;

constexpr const char* kBusName = "io.ringfwd1";
constexpr const char* kObjectPath = "/io/ringfwd1";

void usage(std::FILE* out) {
  std::fprintf(out,
      "usage: ringfwdctl [--bus system|session|ADDRESS] [--json] COMMAND [ARGS]\n"
      "\n"
      "Commands (through the io.ringfwd1 D-Bus API):\n"
      "  routes                      every route with its state (a table; --json: the daemon's JSON)\n"
      "  route ID                    one route\n"
      "  add ID [--tcp|--udp|--tcp-udp] --listen PORT|A-B [--bind IP]\n"
      "         (--to HOST:PORT | --gateway NAME --lan HOST:PORT)\n"
      "  add --file FILE|-           add a route given as JSON (a config file's route object)\n"
      "  update ID [same flags]      change the given fields of a route (others are kept)\n"
      "  update --file FILE|-        replace a route with the JSON given\n"
      "  rm ID                       remove a route (established connections drain)\n"
      "  apply FILE|-                replace the whole configuration, all or nothing\n"
      "  stats                       counters per route and in total\n"
      "  reload                      make the daemon re-read its config file and certificates\n"
      "  gateways                    every gateway of the edge: online, address, in sync, routes\n"
      "  gateway add NAME [--tunnel-ip IP] [--token-file FILE] [--endpoint HOST[:PORT]]\n"
      "              [--wg-port N] [--wg-interface IFACE] [--out DIR]\n"
      "                              add a gateway (edge with a \"sync\" section) and print, or\n"
      "                              write into DIR, its token, its ringfwd.json and a WireGuard\n"
      "                              config for both sides (keys from `wg genkey`); --endpoint is\n"
      "                              the edge's public address (WireGuard port --wg-port, default\n"
      "                              51820), --wg-interface the edge's interface (default wg0)\n"
      "  gateway rm NAME             remove a gateway that no route targets\n"
      "Offline:\n"
      "  check FILE                  validate a config file (same as ringfwd --check)\n"
      "\n"
      "Options:\n"
      "  --bus BUS    system (default), session, or a D-Bus address (unix:path=...)\n"
      "  --json       machine output: the daemon's JSON unchanged\n"
      "  -h, --help   this text\n"
      "\n"
      "Exit status: 0 ok, 1 refused by the daemon (or check found problems), 2 usage error,\n"
      "3 cannot reach the bus or the daemon, 4 not found.\n");
}

// A usage error: what is wrong, then a hint. Thrown inside, turned into exit 2 at the edge.
struct UsageError {
  std::string message;
};

// Could not read an input file: exit 2 as well (the command line named something unusable).
[[noreturn]] void usage_error(std::string message) { throw UsageError{std::move(message)}; }

class Client final : public sdbus::ProxyInterfaces<io::ringfwd1::Manager_proxy> {
 public:
  explicit Client(sdbus::IConnection& connection)
      : ProxyInterfaces(connection, kBusName, kObjectPath) {}

 private:
  void onRoutesChanged() override {}
};

std::string read_input(const std::string& path) {
  if (path == "-") {
    std::ostringstream ss;
    ss << std::cin.rdbuf();
    return ss.str();
  }
  std::ifstream in(path, std::ios::binary);
  if (!in) usage_error("cannot read '" + path + "'");
  return std::string(std::istreambuf_iterator<char>(in), std::istreambuf_iterator<char>());
}

// ---- reading the daemon's JSON leniently (a missing member shows as "-") ----

const json::value* member(const json::value& v, std::string_view key) {
  if (!v.is_object()) return nullptr;
  return v.as_object().if_contains(key);
}

std::string scalar(const json::value* v) {
  if (!v || v->is_null()) return "";
  if (v->is_string()) return std::string(v->as_string());
  if (v->is_int64()) return std::to_string(v->as_int64());
  if (v->is_uint64()) return std::to_string(v->as_uint64());
  if (v->is_bool()) return v->as_bool() ? "true" : "false";
  return json::serialize(*v);
}

uint64_t number(const json::value* v) {
  if (!v) return 0;
  if (v->is_uint64()) return v->as_uint64();
  if (v->is_int64()) return v->as_int64() < 0 ? 0 : static_cast<uint64_t>(v->as_int64());
  if (v->is_double()) return static_cast<uint64_t>(v->as_double());
  return 0;
}

bool is_true(const json::value* v) { return v && v->is_bool() && v->as_bool(); }

// A counter under either of its spellings ("total" or "connections_total", ...).
uint64_t counter(const json::value* counters, std::string_view a, std::string_view b) {
  if (!counters) return 0;
  if (const json::value* v = member(*counters, a)) return number(v);
  return number(member(*counters, b));
}

std::string join(const json::value* arr) {
  if (!arr || !arr->is_array() || arr->as_array().empty()) return "-";
  std::string out;
  for (const json::value& v : arr->as_array()) {
    if (!out.empty()) out += ",";
    out += scalar(&v);
  }
  return out;
}

std::string human_bytes(uint64_t n) {
  static const char* units[] = {"B", "KiB", "MiB", "GiB", "TiB", "PiB"};
  if (n < 1024) return std::to_string(n) + " B";
  double v = static_cast<double>(n);
  int u = 0;
  while (v >= 1024 && u < 5) {
    v /= 1024;
    ++u;
  }
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.1f %s", v, units[u]);
  return buf;
}

std::string listen_of(const json::value& r) {
  std::string addr = scalar(member(r, "listen"));
  std::string port = scalar(member(r, "listen_port"));
  if (addr.empty()) return port.empty() ? "-" : "*:" + port;
  if (addr.find(':') != std::string::npos) addr = "[" + addr + "]";
  return addr + ":" + port;
}

std::string hostport(std::string host, const std::string& port) {
  if (host.find(':') != std::string::npos) host = "[" + host + "]";
  return host + ":" + port;
}

std::string target_of(const json::value& r) {
  const json::value* t = member(r, "target");
  if (!t) return "-";
  if (const json::value* gw = member(*t, "gateway"))
    return scalar(gw) + "/" + hostport(scalar(member(*t, "lan_host")), scalar(member(*t, "lan_port")));
  if (member(*t, "lan_host"))  // a gateway's route: the LAN device
    return hostport(scalar(member(*t, "lan_host")), scalar(member(*t, "lan_port")));
  return hostport(scalar(member(*t, "host")), scalar(member(*t, "port")));
}

const json::value* state_of(const json::value& r) { return member(r, "state"); }

std::string listening_of(const json::value& r) {
  const json::value* st = state_of(r);
  if (!st) return "-";
  const json::value* l = member(*st, "listening");
  if (!l || !l->is_array()) l = member(*st, "bound");
  std::string out = join(l);
  const json::value* ov = member(*st, "overlap");
  if (ov && ov->is_array() && !ov->as_array().empty()) out += " (overlap: " + join(ov) + ")";
  return out;
}

void print_table(const std::vector<std::vector<std::string>>& rows) {
  std::vector<size_t> width;
  for (const auto& row : rows)
    for (size_t i = 0; i < row.size(); ++i) {
      if (width.size() <= i) width.push_back(0);
      width[i] = std::max(width[i], row[i].size());
    }
  for (const auto& row : rows) {
    std::string line;
    for (size_t i = 0; i < row.size(); ++i) {
      line += row[i];
      if (i + 1 < row.size()) line += std::string(width[i] - row[i].size() + 2, ' ');
    }
    std::printf("%s\n", line.c_str());
  }
}

json::value parse_daemon_json(const std::string& text) {
  boost::system::error_code ec;
  json::value v = json::parse(text, ec);
  if (ec) throw std::runtime_error("the daemon sent JSON that does not parse: " + ec.message());
  return v;
}

void print_routes(const std::string& text) {
  json::value all = parse_daemon_json(text);
  std::vector<std::vector<std::string>> rows{
      {"ID", "PROTO", "LISTEN", "TARGET", "LISTENING", "ACTIVE", "TOTAL", "BYTES"}};
  if (all.is_array())
    for (const json::value& r : all.as_array()) {
      const json::value* st = state_of(r);
      const json::value* c = st ? member(*st, "counters") : nullptr;
      uint64_t bytes = counter(c, "bytes_up", "bytes_up") + counter(c, "bytes_down", "bytes_down");
      std::string proto = scalar(member(r, "protocol"));
      rows.push_back({scalar(member(r, "id")), proto.empty() ? "tcp" : proto, listen_of(r),
                      target_of(r), listening_of(r),
                      c ? std::to_string(counter(c, "active", "connections_active")) : "-",
                      c ? std::to_string(counter(c, "total", "connections_total")) : "-",
                      c ? human_bytes(bytes) : "-"});
    }
  if (rows.size() == 1) {
    std::printf("no routes\n");
    return;
  }
  print_table(rows);
}

// 2-space indented JSON, for the human view of one route.
void pretty(std::string& out, const json::value& v, int indent) {
  const std::string pad(indent, ' ');
  if (v.is_object()) {
    const auto& o = v.as_object();
    if (o.empty()) { out += "{}"; return; }
    out += "{\n";
    size_t i = 0;
    for (const auto& kv : o) {
      out += pad + "  " + json::serialize(json::value(kv.key())) + ": ";
      pretty(out, kv.value(), indent + 2);
      out += ++i < o.size() ? ",\n" : "\n";
    }
    out += pad + "}";
  } else if (v.is_array()) {
    const auto& a = v.as_array();
    bool flat = true;
    for (const auto& e : a) flat = flat && !e.is_object() && !e.is_array();
    if (flat) { out += json::serialize(v); return; }
    out += "[\n";
    for (size_t i = 0; i < a.size(); ++i) {
      out += pad + "  ";
      pretty(out, a[i], indent + 2);
      out += i + 1 < a.size() ? ",\n" : "\n";
    }
    out += pad + "]";
  } else {
    out += json::serialize(v);
  }
}

void print_route(const std::string& text) {
  json::value r = parse_daemon_json(text);
  const json::value* st = state_of(r);
  const json::value* c = st ? member(*st, "counters") : nullptr;
  std::string proto = scalar(member(r, "protocol"));
  std::printf("id:          %s\n", scalar(member(r, "id")).c_str());
  std::printf("protocol:    %s\n", proto.empty() ? "tcp" : proto.c_str());
  std::printf("listen:      %s\n", listen_of(r).c_str());
  std::printf("target:      %s\n", target_of(r).c_str());
  std::printf("listening:   %s\n", listening_of(r).c_str());
  if (st)
    if (const json::value* ns = member(*st, "not_served"))
      std::printf("not served:  %s\n", scalar(ns).c_str());
  if (c) {
    std::printf("connections: %llu active, %llu total, %llu refused, %llu failed\n",
                static_cast<unsigned long long>(counter(c, "active", "connections_active")),
                static_cast<unsigned long long>(counter(c, "total", "connections_total")),
                static_cast<unsigned long long>(counter(c, "refused", "connections_refused")),
                static_cast<unsigned long long>(counter(c, "failed", "connect_failed")));
    std::printf("bytes:       %s up, %s down\n", human_bytes(counter(c, "bytes_up", "bytes_up")).c_str(),
                human_bytes(counter(c, "bytes_down", "bytes_down")).c_str());
  }
  if (r.is_object()) {
    json::object cfg = r.as_object();
    cfg.erase("state");
    std::string out;
    pretty(out, cfg, 0);
    std::printf("config:\n%s\n", out.c_str());
  }
}

std::string ago(uint64_t when);
std::string problems_of(const json::value& gw);

void print_stats(const std::string& text) {
  json::value s = parse_daemon_json(text);
  for (const char* key : {"role", "dataplane", "workers", "uptime_s", "active", "rejected"})
    if (const json::value* v = member(s, key)) std::printf("%-10s %s\n", (std::string(key) + ":").c_str(), scalar(v).c_str());
  std::vector<std::vector<std::string>> rows{
      {"ROUTE", "ACTIVE", "TOTAL", "REFUSED", "FAILED", "BYTES UP", "BYTES DOWN"}};
  auto add = [&](const std::string& name, const json::value* c) {
    rows.push_back({name, std::to_string(counter(c, "active", "connections_active")),
                    std::to_string(counter(c, "total", "connections_total")),
                    std::to_string(counter(c, "refused", "connections_refused")),
                    std::to_string(counter(c, "failed", "connect_failed")),
                    human_bytes(counter(c, "bytes_up", "bytes_up")),
                    human_bytes(counter(c, "bytes_down", "bytes_down"))});
  };
  if (const json::value* routes = member(s, "routes"); routes && routes->is_object())
    for (const auto& kv : routes->as_object()) add(std::string(kv.key()), &kv.value());
  if (const json::value* total = member(s, "total")) add("(total)", total);
  std::printf("\n");
  print_table(rows);
  if (const json::value* d = member(s, "draining"); d && d->is_array() && !d->as_array().empty()) {
    std::printf("\ndraining:\n");
    for (const json::value& e : d->as_array())
      std::printf("  %s: %s active\n", scalar(member(e, "route")).c_str(), scalar(member(e, "active")).c_str());
  }
  if (const json::value* g = member(s, "gateways"); g && g->is_object() && !g->as_object().empty()) {
    std::printf("\ngateways:\n");
    for (const auto& kv : g->as_object()) {
      const json::value& gw = kv.value();
      bool online = is_true(member(gw, "online"));
      std::string line = "  " + std::string(kv.key()) + ": " + (online ? "online" : "offline");
      if (online) {
        line += " from " + scalar(member(gw, "address"));
        line += is_true(member(gw, "in_sync")) ? ", in sync" : ", not in sync";
      }
      if (std::string e = problems_of(gw); !e.empty()) line += "; " + e;
      std::printf("%s\n", line.c_str());
    }
  }
  if (const json::value* sy = member(s, "sync"); sy && sy->is_object()) {
    // A sync gateway: its session to the edge.
    bool up = is_true(member(*sy, "connected"));
    std::printf("\nsync:      %s %s", up ? "connected to" : "not connected to",
                scalar(member(*sy, "edge")).c_str());
    if (uint64_t since = number(member(*sy, "since"))) std::printf(" (since %s)", ago(since).c_str());
    std::printf("\n");
    uint64_t applied = number(member(*sy, "applied_at"));
    std::string hash = scalar(member(*sy, "hash"));
    std::printf("applied:   %s\n", applied ? (ago(applied) + ", set " + hash.substr(0, 12)).c_str()
                                            : "nothing yet");
    if (std::string e = scalar(member(*sy, "last_error")); !e.empty())
      std::printf("error:     %s\n", e.c_str());
  }
}

// ---- gateways ----

// "3s ago", "5m ago", "2h ago", "4d ago" for a unix time; "never" for 0.
std::string ago(uint64_t when) {
  if (when == 0) return "never";
  const uint64_t now = static_cast<uint64_t>(std::time(nullptr));
  const uint64_t d = now > when ? now - when : 0;
  if (d < 120) return std::to_string(d) + "s ago";
  if (d < 7200) return std::to_string(d / 60) + "m ago";
  if (d < 172800) return std::to_string(d / 3600) + "h ago";
  return std::to_string(d / 86400) + "d ago";
}

// The gateway's last error and its listener failures, in one line ("" when none).
std::string problems_of(const json::value& gw) {
  std::string out = scalar(member(gw, "last_error"));
  const json::value* lf = member(gw, "listener_failures");
  if (lf && lf->is_array() && !lf->as_array().empty()) {
    const auto& a = lf->as_array();
    if (!out.empty()) out += "; ";
    out += std::to_string(a.size()) + (a.size() == 1 ? " listener failed: " : " listeners failed: ") +
           join(lf);
  }
  return out;
}

std::string shorten(const std::string& s, size_t n) {
  return s.size() <= n ? s : s.substr(0, n - 3) + "...";
}

void print_gateways(const std::string& text, const std::string& role) {
  json::value all = parse_daemon_json(text);
  std::vector<std::vector<std::string>> rows{
      {"ID", "TUNNEL_IP", "ONLINE", "ADDRESS", "IN_SYNC", "ROUTES", "LAST_SEEN", "PROBLEMS"}};
  std::vector<std::string> details;
  if (all.is_array())
    for (const json::value& g : all.as_array()) {
      const std::string id = scalar(member(g, "id"));
      const json::value* routes = member(g, "routes");
      std::string r = join(routes);
      if (r.size() > 30) r = std::to_string(routes->as_array().size()) + " routes";
      std::string address = scalar(member(g, "address"));
      std::string problems = problems_of(g);
      if (problems.size() > 50) details.push_back(id + ": " + problems);
      rows.push_back({id, scalar(member(g, "tunnel_ip")),
                      is_true(member(g, "online")) ? "yes" : "no", address.empty() ? "-" : address,
                      is_true(member(g, "in_sync")) ? "yes" : "no", r,
                      ago(number(member(g, "last_seen"))),
                      problems.empty() ? "-" : shorten(problems, 50)});
    }
  if (rows.size() == 1) {
    if (role == "gateway")
      std::printf("no gateways (this daemon is a gateway; `ringfwdctl stats` shows its sync session)\n");
    else
      std::printf("no gateways\n");
    return;
  }
  print_table(rows);
  if (!details.empty()) {
    std::printf("\n");
    for (const std::string& d : details) std::printf("%s\n", d.c_str());
  }
}

// ---- building a route from flags ----

struct RouteFlags {
  std::optional<std::string> protocol, listen, bind, to, gateway, lan, file;
};

// "HOST:PORT" or "[V6]:PORT"; the port a decimal 1..65535.
std::pair<std::string, uint64_t> split_hostport(const std::string& flag, const std::string& s) {
  std::string host, port;
  if (!s.empty() && s[0] == '[') {
    auto close = s.find(']');
    if (close == std::string::npos || close + 1 >= s.size() || s[close + 1] != ':')
      usage_error(flag + " wants HOST:PORT, got '" + s + "'");
    host = s.substr(1, close - 1);
    port = s.substr(close + 2);
  } else {
    auto colon = s.rfind(':');
    if (colon == std::string::npos) usage_error(flag + " wants HOST:PORT, got '" + s + "'");
    host = s.substr(0, colon);
    port = s.substr(colon + 1);
  }
  if (host.empty() || port.empty() || port.size() > 5 ||
      port.find_first_not_of("0123456789") != std::string::npos || std::stoul(port) > 65535)
    usage_error(flag + " wants HOST:PORT, got '" + s + "'");
  return {host, std::stoul(port)};
}

// A single port goes as a number, a range "A-B" as a string; the daemon validates both.
json::value listen_port_value(const std::string& s) {
  if (!s.empty() && s.size() <= 5 && s.find_first_not_of("0123456789") == std::string::npos)
    return json::value(static_cast<uint64_t>(std::stoul(s)));
  return json::value(s);
}

void apply_flags(json::object& route, const RouteFlags& f) {
  if (f.protocol) route["protocol"] = *f.protocol;
  if (f.listen) route["listen_port"] = listen_port_value(*f.listen);
  if (f.bind) route["listen"] = *f.bind;
  if (f.to) {
    auto [host, port] = split_hostport("--to", *f.to);
    route["target"] = json::object{{"host", host}, {"port", port}};
  } else if (f.gateway) {
    auto [host, port] = split_hostport("--lan", *f.lan);
    route["target"] = json::object{{"gateway", *f.gateway}, {"lan_host", host}, {"lan_port", port}};
  }
}

// Parses the flags of add/update: ID and the route flags, or --file.
struct RouteArgs {
  std::optional<std::string> id;
  RouteFlags flags;
  bool any_flag = false;
};

RouteArgs parse_route_args(const std::string& cmd, const std::vector<std::string>& args) {
  RouteArgs ra;
  auto set_protocol = [&](const char* p) {
    if (ra.flags.protocol && *ra.flags.protocol != p)
      usage_error("give one of --tcp, --udp, --tcp-udp");
    ra.flags.protocol = p;
  };
  for (size_t i = 0; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto value = [&](std::optional<std::string>& slot) {
      std::string name = a, v;
      if (auto eq = a.find('='); eq != std::string::npos) {
        name = a.substr(0, eq);
        v = a.substr(eq + 1);
      } else {
        if (i + 1 >= args.size()) usage_error(name + " needs a value");
        v = args[++i];
      }
      if (slot) usage_error(name + " given twice");
      slot = v;
      ra.any_flag = true;
    };
    auto is = [&](const char* name) {
      return a == name || a.rfind(std::string(name) + "=", 0) == 0;
    };
    if (a == "--tcp") { set_protocol("tcp"); ra.any_flag = true; }
    else if (a == "--udp") { set_protocol("udp"); ra.any_flag = true; }
    else if (a == "--tcp-udp" || a == "--tcp+udp") { set_protocol("tcp+udp"); ra.any_flag = true; }
    else if (is("--listen")) value(ra.flags.listen);
    else if (is("--bind")) value(ra.flags.bind);
    else if (is("--to")) value(ra.flags.to);
    else if (is("--gateway")) value(ra.flags.gateway);
    else if (is("--lan")) value(ra.flags.lan);
    else if (is("--file")) {
      if (ra.flags.file) usage_error("--file given twice");
      if (a.find('=') != std::string::npos) ra.flags.file = a.substr(a.find('=') + 1);
      else if (i + 1 < args.size()) ra.flags.file = args[++i];
      else usage_error("--file needs a value");
    }
    else if (a == "-") usage_error("'-' goes after --file");
    else if (a.size() > 1 && a[0] == '-') usage_error(cmd + ": unknown option '" + a + "'");
    else if (!ra.id) ra.id = a;
    else usage_error(cmd + ": unexpected argument '" + a + "'");
  }
  if (ra.flags.file) {
    if (ra.id || ra.any_flag) usage_error(cmd + " --file takes no ID and no route flags");
    return ra;
  }
  if (!ra.id) usage_error(cmd + " needs a route ID (or --file FILE)");
  if (ra.flags.to && (ra.flags.gateway || ra.flags.lan))
    usage_error("give either --to HOST:PORT or --gateway NAME --lan HOST:PORT");
  if (ra.flags.gateway.has_value() != ra.flags.lan.has_value())
    usage_error("--gateway and --lan go together");
  return ra;
}

// ---- gateway add / rm ----

struct GatewayArgs {
  std::string sub;  // "add" or "rm"
  std::string name;
  std::optional<std::string> tunnel_ip, token_file, endpoint, out;
  uint16_t wg_port = 51820;
  std::string wg_interface = "wg0";
};

// A Linux interface name wg accepts: 1-15 characters, no '/', no space.
bool is_interface_name(const std::string& s) {
  if (s.empty() || s.size() > 15) return false;
  return std::all_of(s.begin(), s.end(), [](unsigned char c) {
    return std::isalnum(c) || c == '_' || c == '-' || c == '.' || c == '=' || c == '+';
  });
}

GatewayArgs parse_gateway_args(const std::vector<std::string>& args) {
  if (args.empty()) usage_error("gateway needs add NAME or rm NAME");
  GatewayArgs ga;
  ga.sub = args[0] == "remove" ? "rm" : args[0];
  if (ga.sub != "add" && ga.sub != "rm")
    usage_error("gateway: unknown subcommand '" + args[0] + "' (add, rm)");
  const std::string cmd = "gateway " + ga.sub;
  std::optional<std::string> wg_port, wg_interface;
  for (size_t i = 1; i < args.size(); ++i) {
    const std::string& a = args[i];
    auto is = [&](const char* name) {
      return a == name || a.rfind(std::string(name) + "=", 0) == 0;
    };
    auto value = [&](std::optional<std::string>& slot) {
      std::string name = a, v;
      if (auto eq = a.find('='); eq != std::string::npos) {
        name = a.substr(0, eq);
        v = a.substr(eq + 1);
      } else {
        if (i + 1 >= args.size()) usage_error(name + " needs a value");
        v = args[++i];
      }
      if (slot) usage_error(name + " given twice");
      if (v.empty()) usage_error(name + " needs a value");
      slot = v;
    };
    if (a.size() > 1 && a[0] == '-' && ga.sub == "rm") usage_error(cmd + ": unknown option '" + a + "'");
    else if (is("--tunnel-ip")) value(ga.tunnel_ip);
    else if (is("--token-file")) value(ga.token_file);
    else if (is("--endpoint")) value(ga.endpoint);
    else if (is("--out")) value(ga.out);
    else if (is("--wg-port")) value(wg_port);
    else if (is("--wg-interface")) value(wg_interface);
    else if (a.size() > 1 && a[0] == '-') usage_error(cmd + ": unknown option '" + a + "'");
    else if (ga.name.empty()) ga.name = a;
    else usage_error(cmd + ": unexpected argument '" + a + "'");
  }
  if (ga.name.empty()) usage_error(cmd + " needs a gateway NAME");
  if (wg_port) {
    const std::string& p = *wg_port;
    if (p.size() > 5 || p.find_first_not_of("0123456789") != std::string::npos ||
        std::stoul(p) == 0 || std::stoul(p) > 65535)
      usage_error("--wg-port wants a port 1-65535, got '" + p + "'");
    ga.wg_port = static_cast<uint16_t>(std::stoul(p));
  }
  if (wg_interface) {
    if (!is_interface_name(*wg_interface))
      usage_error("--wg-interface wants an interface name (1-15 characters), got '" +
                  *wg_interface + "'");
    ga.wg_interface = *wg_interface;
  }
  if (ga.endpoint) {
    std::string why;
    auto ep = rf::ctl::endpoint_of(*ga.endpoint, ga.wg_port, &why);
    if (!ep) usage_error("--endpoint " + why);
    ga.endpoint = *ep;
  }
  if (ga.token_file && (*ga.token_file)[0] != '/')
    usage_error("--token-file wants an absolute path (the daemon reads it), got '" + *ga.token_file + "'");
  return ga;
}

// What a child process printed, or why it did not run.
struct ProcessResult {
  int exec_errno = 0;  // execvp failed with this (ENOENT: not installed)
  int status = -1;     // the exit status, -1 if it did not exit normally
  std::string out;     // its standard output
};

// Runs argv[0] from PATH (no shell) with `input` on its standard input; its standard error goes
// to ours, or to /dev/null with quiet_stderr.
ProcessResult run_process(const std::vector<std::string>& argv, const std::string& input,
                          bool quiet_stderr) {
  ProcessResult r;
  int in[2], out[2], err[2];
  if (::pipe2(in, O_CLOEXEC) != 0) throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  if (::pipe2(out, O_CLOEXEC) != 0 || ::pipe2(err, O_CLOEXEC) != 0)
    throw std::runtime_error(std::string("pipe: ") + std::strerror(errno));
  std::vector<char*> cargv;
  for (const std::string& a : argv) cargv.push_back(const_cast<char*>(a.c_str()));
  cargv.push_back(nullptr);
  std::fflush(nullptr);
  pid_t pid = ::fork();
  if (pid < 0) throw std::runtime_error(std::string("fork: ") + std::strerror(errno));
  if (pid == 0) {
    ::dup2(in[0], 0);
    ::dup2(out[1], 1);
    if (quiet_stderr) {
      int null = ::open("/dev/null", O_WRONLY | O_CLOEXEC);
      if (null >= 0) ::dup2(null, 2);
    }
    ::execvp(cargv[0], cargv.data());
    int e = errno;
    ssize_t ignored = ::write(err[1], &e, sizeof e);
    (void)ignored;
    ::_exit(127);
  }
  ::close(in[0]);
  ::close(out[1]);
  ::close(err[1]);
  // The child may exit without reading (exec failed): no SIGPIPE for us, just EPIPE.
  struct sigaction ign{}, old{};
  ign.sa_handler = SIG_IGN;
  ::sigaction(SIGPIPE, &ign, &old);
  size_t off = 0;
  while (off < input.size()) {
    ssize_t n = ::write(in[1], input.data() + off, input.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    off += static_cast<size_t>(n);
  }
  ::close(in[1]);
  ::sigaction(SIGPIPE, &old, nullptr);
  char buf[4096];
  for (;;) {
    ssize_t n = ::read(out[0], buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) break;
    r.out.append(buf, static_cast<size_t>(n));
  }
  ::close(out[0]);
  int e = 0;
  ssize_t got;
  do got = ::read(err[0], &e, sizeof e); while (got < 0 && errno == EINTR);
  ::close(err[0]);
  if (got == static_cast<ssize_t>(sizeof e)) r.exec_errno = e;
  int status = 0;
  while (::waitpid(pid, &status, 0) < 0 && errno == EINTR) {
  }
  if (WIFEXITED(status)) r.status = WEXITSTATUS(status);
  return r;
}

std::string trimmed(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ')) s.pop_back();
  return s;
}

// `wg` could not be used; the message says why.
struct WgMissing {
  std::string message;
};

// A fresh WireGuard key pair from `wg genkey` and `wg pubkey`.
std::pair<std::string, std::string> wg_keypair() {
  ProcessResult gen = run_process({"wg", "genkey"}, "", false);
  if (gen.exec_errno == ENOENT) throw WgMissing{"`wg` is not installed (apt install wireguard-tools)"};
  if (gen.exec_errno) throw WgMissing{"cannot run `wg`: " + std::string(std::strerror(gen.exec_errno))};
  std::string priv = trimmed(gen.out);
  if (gen.status != 0 || !rf::ctl::is_wg_key(priv))
    throw WgMissing{"`wg genkey` failed (exit " + std::to_string(gen.status) + ")"};
  ProcessResult pub = run_process({"wg", "pubkey"}, priv + "\n", false);
  std::string pk = trimmed(pub.out);
  if (pub.exec_errno || pub.status != 0 || !rf::ctl::is_wg_key(pk))
    throw WgMissing{"`wg pubkey` failed (exit " + std::to_string(pub.status) + ")"};
  return {priv, pk};
}

// The public key of a running interface (`wg show IFACE public-key`), or "" if it has none or
// cannot be read (no such interface, not root).
std::string wg_interface_public_key(const std::string& iface) {
  ProcessResult r = run_process({"wg", "show", iface, "public-key"}, "", true);
  std::string k = trimmed(r.out);
  return r.exec_errno == 0 && r.status == 0 && rf::ctl::is_wg_key(k) ? k : "";
}

// The files --out DIR receives.
struct OutFiles {
  std::string dir, token, config, gateway_wg, edge_wg, edge_peer;
};

OutFiles out_files(const GatewayArgs& ga) {
  OutFiles f;
  f.dir = *ga.out;
  if (f.dir.front() != '/') {  // absolute, so that the printed scp lines work from anywhere
    char cwd[4096];
    if (::getcwd(cwd, sizeof cwd)) f.dir = std::string(cwd) + "/" + f.dir;
  }
  while (f.dir.size() > 1 && f.dir.back() == '/') f.dir.pop_back();
  const std::string d = f.dir + "/";
  f.token = d + ga.name + ".token";
  f.config = d + ga.name + "-ringfwd.json";
  f.gateway_wg = d + ga.name + "-" + ga.wg_interface + ".conf";
  f.edge_wg = d + "edge-" + ga.wg_interface + ".conf";
  f.edge_peer = d + "edge-" + ga.name + "-peer.conf";
  return f;
}

// --out DIR is made (0700) if missing and must not hold the files already: checked before the
// daemon is asked, so a refusal here changes nothing.
void prepare_out_dir(const OutFiles& f) {
  if (::mkdir(f.dir.c_str(), 0700) != 0 && errno != EEXIST)
    usage_error("--out: cannot create '" + f.dir + "': " + std::strerror(errno));
  struct stat st{};
  if (::stat(f.dir.c_str(), &st) != 0 || !S_ISDIR(st.st_mode))
    usage_error("--out: '" + f.dir + "' is not a directory");
  for (const std::string* p : {&f.token, &f.config, &f.gateway_wg, &f.edge_wg, &f.edge_peer})
    if (::access(p->c_str(), F_OK) == 0)
      usage_error("--out: '" + *p + "' exists already (move it away or use another DIR)");
}

// Creates `path` with exactly `mode` (never over an existing file).
void write_new_file(const std::string& path, const std::string& text, mode_t mode) {
  int fd = ::open(path.c_str(), O_WRONLY | O_CREAT | O_EXCL | O_CLOEXEC, mode);
  if (fd < 0) throw std::runtime_error("cannot create " + path + ": " + std::strerror(errno));
  bool ok = ::fchmod(fd, mode) == 0;
  size_t off = 0;
  while (ok && off < text.size()) {
    ssize_t n = ::write(fd, text.data() + off, text.size() - off);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) ok = false;
    else off += static_cast<size_t>(n);
  }
  const int e = errno;
  ::close(fd);
  if (!ok) throw std::runtime_error("cannot write " + path + ": " + std::strerror(e));
}

void section(const std::string& title, const std::string& body) {
  std::printf("\n--- %s ---\n%s", title.c_str(), body.c_str());
  if (!body.empty() && body.back() != '\n') std::printf("\n");
}

// After AddGateway: the token, the gateway's config and the WireGuard pair, printed or written
// into --out; then what to do with them. Returns the exit code (0: the gateway was added, even
// when `wg` is missing and the WireGuard part is skipped).
int hand_out_gateway(const GatewayArgs& ga, const std::string& reply, bool as_json) {
  json::value v = parse_daemon_json(reply);
  rf::ctl::GatewaySetup s;
  s.id = scalar(member(v, "id"));
  if (s.id.empty()) s.id = ga.name;
  s.tunnel_ip = scalar(member(v, "tunnel_ip"));
  s.edge_tunnel_ip = scalar(member(v, "edge_tunnel_ip"));
  s.sync = scalar(member(v, "sync"));
  s.endpoint = ga.endpoint.value_or("");
  s.wg_port = ga.wg_port;
  s.wg_interface = ga.wg_interface;
  const std::string token = scalar(member(v, "token"));
  const std::string token_file = scalar(member(v, "token_file"));
  const std::string config = rf::ctl::gateway_config_json(s);
  const std::string wg = s.wg_interface;

  // WireGuard: keys for the gateway; the edge's own key if its interface runs, else a new pair.
  std::string wg_error, gateway_conf, edge_conf, edge_peer, wg_set;
  try {
    auto [gw_priv, gw_pub] = wg_keypair();
    std::string edge_pub = wg_interface_public_key(wg);
    if (!edge_pub.empty()) {
      edge_peer = rf::ctl::edge_peer_block(s, gw_pub);
      wg_set = rf::ctl::edge_wg_set_command(s, gw_pub);
    } else {
      auto [edge_priv, pub] = wg_keypair();
      edge_pub = pub;
      edge_conf = rf::ctl::edge_wg_conf(s, edge_priv, gw_pub);
    }
    gateway_conf = rf::ctl::gateway_wg_conf(s, gw_priv, edge_pub);
  } catch (const WgMissing& e) {
    wg_error = e.message;
  } catch (const std::exception& e) {
    wg_error = e.what();
  }

  std::optional<OutFiles> files;
  std::string written;
  if (ga.out) {
    files = out_files(ga);
    auto put = [&](const std::string& path, const std::string& text, mode_t mode,
                   const std::string& what) {
      write_new_file(path, text, mode);
      written += "  " + path + "  " + what + "\n";
    };
    try {
      put(files->token, token + "\n", 0600,
          "-> gateway: " + std::string(rf::ctl::kGatewayTokenPath) + " (mode 0600, owner ringfwd)");
      put(files->config, config, 0644, "-> gateway: /etc/ringfwd/ringfwd.json");
      if (!gateway_conf.empty())
        put(files->gateway_wg, gateway_conf, 0600, "-> gateway: /etc/wireguard/" + wg + ".conf");
      if (!edge_conf.empty())
        put(files->edge_wg, edge_conf, 0600, "-> this edge: /etc/wireguard/" + wg + ".conf");
      if (!edge_peer.empty())
        put(files->edge_peer, edge_peer, 0600,
            "-> this edge: append to /etc/wireguard/" + wg + ".conf");
    } catch (const std::exception& e) {
      std::fprintf(stderr, "ringfwdctl: gateway %s was added, but %s\n", s.id.c_str(), e.what());
      if (!written.empty()) std::fprintf(stderr, "written so far:\n%s", written.c_str());
      return kRefused;
    }
  }

  if (as_json) {
    std::printf("%s\n", reply.c_str());
    if (!wg_error.empty())
      std::fprintf(stderr, "ringfwdctl: %s; no WireGuard configuration made\n", wg_error.c_str());
    return kOk;
  }

  std::printf("added gateway %s: tunnel IP %s, sync %s, token in %s (on this edge)\n",
              s.id.c_str(), s.tunnel_ip.c_str(), s.sync.c_str(), token_file.c_str());
  if (files) {
    std::printf("\nwrote:\n%s", written.c_str());
  } else {
    section("on the gateway: " + std::string(rf::ctl::kGatewayTokenPath) +
                " (the token; mode 0600, owner ringfwd)", token);
    section("on the gateway: /etc/ringfwd/ringfwd.json", config);
    if (!gateway_conf.empty())
      section("on the gateway: /etc/wireguard/" + wg + ".conf (mode 0600)", gateway_conf);
    if (!edge_conf.empty())
      section("on this edge: /etc/wireguard/" + wg + ".conf (mode 0600)", edge_conf);
    if (!edge_peer.empty())
      section("on this edge: append to /etc/wireguard/" + wg + ".conf", edge_peer);
  }
  if (!wg_error.empty())
    std::printf("\nWireGuard part skipped: %s. The gateway was added; set up the tunnel yourself\n"
                "(gateway %s <-> edge %s) or install wireguard-tools and run\n"
                "`ringfwdctl gateway rm %s` and `gateway add` again.\n",
                wg_error.c_str(), s.tunnel_ip.c_str(), s.edge_tunnel_ip.c_str(), s.id.c_str());
  if (!gateway_conf.empty() && s.endpoint.empty())
    std::printf("\nNo --endpoint given: replace %s in the gateway's %s.conf with the edge's public\n"
                "address.\n", rf::ctl::kEndpointPlaceholder, wg.c_str());
  if (!edge_conf.empty())
    std::printf("\n`wg show %s public-key` gave no key (no such interface, or not root), so the\n"
                "edge gets a new key pair and a whole %s.conf. If this edge already has %s, run\n"
                "`ringfwdctl gateway rm %s` and `gateway add` again as root for a [Peer] block.\n",
                wg.c_str(), wg.c_str(), wg.c_str(), s.id.c_str());

  // With --out the files are installed from the copies; printed, the operator saves each
  // section as the file it names and fixes owner and mode.
  const std::string token_path = rf::ctl::kGatewayTokenPath;
  const std::string wg_path = "/etc/wireguard/" + wg + ".conf";
  std::printf("\nNext steps:\n");
  int n = 0;
  if (!edge_conf.empty())
    std::printf("%d. On this edge: %s\n"
                "   systemctl enable --now wg-quick@%s   (and let UDP %u in through the firewall)\n",
                ++n,
                files ? ("install -m 0600 " + files->edge_wg + " " + wg_path).c_str()
                      : ("save the edge's section above as " + wg_path + ", chmod 0600 " + wg_path).c_str(),
                wg.c_str(), s.wg_port);
  if (!edge_peer.empty())
    std::printf("%d. On this edge: %s\n"
                "   and append %s to %s so that it survives a restart\n",
                ++n, wg_set.c_str(), files ? files->edge_peer.c_str() : "the [Peer] block above",
                wg_path.c_str());
  if (files) {
    // Pulled from the gateway (it is the one behind NAT); only its own files: the edge's
    // wg-quick file holds the edge's private key.
    std::string list = "root@EDGE:" + files->token + " root@EDGE:" + files->config;
    if (!gateway_conf.empty()) list += " root@EDGE:" + files->gateway_wg;
    if (!edge_conf.empty())
      std::printf("%d. Copy the gateway's files (only those: %s holds this edge's private key),\n"
                  "   e.g. on the gateway: scp %s .\n",
                  ++n, files->edge_wg.c_str(), list.c_str());
    else
      std::printf("%d. Copy the gateway's files, e.g. on the gateway: scp %s .\n", ++n, list.c_str());
  } else {
    std::printf("%d. On the gateway: save each \"on the gateway\" section above as the file it names\n", ++n);
  }
  if (!gateway_conf.empty())
    std::printf("%d. On the gateway: %s\n"
                "   systemctl enable --now wg-quick@%s && ping -c1 %s\n",
                ++n,
                files ? ("install -m 0600 " + s.id + "-" + wg + ".conf " + wg_path).c_str()
                      : ("chmod 0600 " + wg_path).c_str(),
                wg.c_str(), s.edge_tunnel_ip.c_str());
  if (files)
    std::printf("%d. On the gateway (ringfwd installed, so the ringfwd user exists):\n"
                "   install -d -m 0770 -o root -g ringfwd /etc/ringfwd\n"
                "   install -m 0600 -o ringfwd -g ringfwd %s.token %s\n"
                "   install -m 0660 -o root -g ringfwd %s-ringfwd.json /etc/ringfwd/ringfwd.json\n"
                "   systemctl enable --now ringfwd\n",
                ++n, s.id.c_str(), token_path.c_str(), s.id.c_str());
  else
    std::printf("%d. On the gateway (ringfwd installed, so the ringfwd user exists):\n"
                "   chown ringfwd:ringfwd %s && chmod 0600 %s\n"
                "   chown root:ringfwd /etc/ringfwd/ringfwd.json && chmod 0660 /etc/ringfwd/ringfwd.json\n"
                "   systemctl enable --now ringfwd\n",
                ++n, token_path.c_str(), token_path.c_str());
  std::printf("%d. On this edge: ringfwdctl gateways   (%s: online yes, in_sync yes)\n"
              "   then route to it: ringfwdctl add ID --tcp --listen PORT --gateway %s --lan HOST:PORT\n",
              ++n, s.id.c_str(), s.id.c_str());
  return kOk;
}

// ---- talking to the daemon ----

std::unique_ptr<sdbus::IConnection> connect(const std::string& bus) {
  if (bus == "system") return sdbus::createSystemBusConnection();
  if (bus == "session") return sdbus::createSessionBusConnection();
  return sdbus::createSessionBusConnectionWithAddress(bus);
}

// A D-Bus error at the edge: print it as sent, map it to an exit code.
int report(const sdbus::Error& e, const std::string& bus) {
  const std::string& name = e.getName();
  const std::string msg = e.getMessage();
  if (name.rfind("io.ringfwd1.Error.", 0) == 0) {
    std::fprintf(stderr, "ringfwdctl: %s: %s\n", name.c_str(), msg.c_str());
    return name == "io.ringfwd1.Error.NotFound" ? kNotFound : kRefused;
  }
  if (name == "org.freedesktop.DBus.Error.AccessDenied") {
    std::fprintf(stderr, "ringfwdctl: %s: %s\n(changes are open to root and the ringfwd group)\n",
                 name.c_str(), msg.c_str());
    return kRefused;
  }
  if (name == "org.freedesktop.DBus.Error.UnknownMethod" ||
      name == "org.freedesktop.DBus.Error.UnknownInterface" ||
      name == "org.freedesktop.DBus.Error.UnknownObject" ||
      name == "org.freedesktop.DBus.Error.UnknownProperty" ||
      name == "org.freedesktop.DBus.Error.InvalidArgs") {
    std::fprintf(stderr, "ringfwdctl: %s: %s (is the daemon a different version?)\n", name.c_str(),
                 msg.c_str());
    return kRefused;
  }
  if (name == "org.freedesktop.DBus.Error.ServiceUnknown" ||
      name == "org.freedesktop.DBus.Error.NameHasNoOwner") {
    std::fprintf(stderr, "ringfwdctl: cannot reach ringfwd: nobody owns %s on the %s bus (is the "
                 "daemon running?): %s: %s\n", kBusName, bus.c_str(), name.c_str(), msg.c_str());
    return kUnreachable;
  }
  std::fprintf(stderr, "ringfwdctl: cannot reach ringfwd on the %s bus: %s: %s\n", bus.c_str(),
               name.c_str(), msg.c_str());
  return kUnreachable;
}

int check(const std::string& path) {
  return rf::config::check_file(path) ? kOk : kRefused;
}

void want_args(const std::string& cmd, const std::vector<std::string>& args, size_t n,
               const char* what) {
  for (const auto& a : args)
    if (a.size() > 1 && a[0] == '-') usage_error(cmd + ": unknown option '" + a + "'");
  if (args.size() != n) usage_error(n == 0 ? cmd + " takes no arguments" : cmd + " needs " + what);
}

int run(int argc, char** argv) {
  std::string bus = "system";
  bool as_json = false;
  std::vector<std::string> words;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "-h" || a == "--help") {
      usage(stdout);
      return kOk;
    } else if (a == "--json") {
      as_json = true;
    } else if (a == "--bus") {
      if (i + 1 >= argc) usage_error("--bus needs a value");
      bus = argv[++i];
    } else if (a.rfind("--bus=", 0) == 0) {
      bus = a.substr(6);
    } else {
      words.push_back(a);
    }
  }
  if (bus.empty()) usage_error("--bus needs a value");
  if (words.empty()) usage_error("no command given");
  const std::string cmd = words.front();
  std::vector<std::string> args(words.begin() + 1, words.end());

  static const char* known[] = {"routes", "route", "add", "update", "rm", "remove", "apply",
                                "stats", "reload", "check", "gateways", "gateway"};
  if (std::find(std::begin(known), std::end(known), cmd) == std::end(known))
    usage_error("unknown command '" + cmd + "'");

  if (cmd == "check") {
    want_args(cmd, args, 1, "a FILE");
    return check(args[0]);
  }

  // Everything the command line says is checked before the bus is touched.
  std::optional<RouteArgs> ra;
  std::optional<GatewayArgs> ga;
  std::string payload;
  if (cmd == "gateway") {
    ga = parse_gateway_args(args);
    if (ga->sub == "add") {
      json::object g{{"id", ga->name}};
      if (ga->tunnel_ip) g["tunnel_ip"] = *ga->tunnel_ip;
      if (ga->token_file) g["token_file"] = *ga->token_file;
      payload = json::serialize(g);
      if (ga->out) prepare_out_dir(out_files(*ga));
    }
  } else if (cmd == "add" || cmd == "update") {
    ra = parse_route_args(cmd, args);
    if (ra->flags.file) {
      payload = read_input(*ra->flags.file);
    } else if (cmd == "add") {
      if (!ra->flags.listen) usage_error("add needs --listen PORT|A-B");
      if (!ra->flags.to && !ra->flags.gateway)
        usage_error("add needs --to HOST:PORT or --gateway NAME --lan HOST:PORT");
      json::object route{{"id", *ra->id}, {"protocol", "tcp"}};
      apply_flags(route, ra->flags);
      payload = json::serialize(route);
    } else if (!ra->any_flag) {
      usage_error("update needs something to change (flags) or --file FILE");
    } else {
      // Validate the flags now (HOST:PORT), merge into the running route below.
      json::object probe;
      apply_flags(probe, ra->flags);
    }
  } else if (cmd == "route" || cmd == "rm" || cmd == "remove") {
    want_args(cmd, args, 1, "a route ID");
  } else if (cmd == "apply") {
    if (args.size() == 1 && args[0] == "-") payload = read_input("-");
    else {
      want_args(cmd, args, 1, "a FILE (or - for stdin)");
      payload = read_input(args[0]);
    }
  } else {
    want_args(cmd, args, 0, "");
  }

  std::unique_ptr<sdbus::IConnection> connection;
  try {
    connection = connect(bus);
  } catch (const sdbus::Error& e) {
    std::fprintf(stderr, "ringfwdctl: cannot connect to the %s bus: %s: %s\n", bus.c_str(),
                 e.getName().c_str(), e.getMessage().c_str());
    return kUnreachable;
  }
  try {
    Client client(*connection);
    if (cmd == "routes") {
      std::string out = client.ListRoutes();
      if (as_json) std::printf("%s\n", out.c_str());
      else print_routes(out);
    } else if (cmd == "route") {
      std::string out = client.GetRoute(args[0]);
      if (as_json) std::printf("%s\n", out.c_str());
      else print_route(out);
    } else if (cmd == "stats") {
      std::string out = client.GetStats();
      if (as_json) std::printf("%s\n", out.c_str());
      else print_stats(out);
    } else if (cmd == "add") {
      client.AddRoute(payload);
      if (!as_json) std::printf("added route %s\n", ra->id ? ra->id->c_str() : "from file");
    } else if (cmd == "update") {
      if (!ra->flags.file) {
        json::value cur = parse_daemon_json(client.GetRoute(*ra->id));
        if (!cur.is_object()) throw std::runtime_error("the daemon sent a route that is not an object");
        json::object route = cur.as_object();
        route.erase("state");
        apply_flags(route, ra->flags);
        payload = json::serialize(route);
      }
      client.UpdateRoute(payload);
      if (!as_json) std::printf("updated route %s\n", ra->id ? ra->id->c_str() : "from file");
    } else if (cmd == "rm" || cmd == "remove") {
      client.RemoveRoute(args[0]);
      if (!as_json) std::printf("removed route %s\n", args[0].c_str());
    } else if (cmd == "apply") {
      client.ApplyConfig(payload);
      if (!as_json) std::printf("applied %s\n", args[0] == "-" ? "stdin" : args[0].c_str());
    } else if (cmd == "reload") {
      client.Reload();
      if (!as_json) std::printf("reloaded\n");
    } else if (cmd == "gateways") {
      std::string out = client.ListGateways();
      if (as_json) std::printf("%s\n", out.c_str());
      else print_gateways(out, out == "[]" ? client.Role() : "edge");
    } else if (cmd == "gateway" && ga->sub == "add") {
      std::string created = client.AddGateway(payload);
      int rc = hand_out_gateway(*ga, created, as_json);
      std::fflush(stdout);
      return rc;
    } else if (cmd == "gateway") {
      client.RemoveGateway(ga->name);
      if (!as_json) std::printf("removed gateway %s\n", ga->name.c_str());
    }
    std::fflush(stdout);
    return kOk;
  } catch (const sdbus::Error& e) {
    return report(e, bus);
  }
}

}  // namespace

int main(int argc, char** argv) {
  rf::tls::install_certificate_check();
  try {
    return run(argc, argv);
  } catch (const UsageError& e) {
    std::fprintf(stderr, "ringfwdctl: %s\nTry 'ringfwdctl --help'.\n", e.message.c_str());
    return kUsage;
  } catch (const sdbus::Error& e) {
    std::fprintf(stderr, "ringfwdctl: %s: %s\n", e.getName().c_str(), e.getMessage().c_str());
    return kUnreachable;
  } catch (const std::exception& e) {
    std::fprintf(stderr, "ringfwdctl: %s\n", e.what());
    return kRefused;
  } catch (...) {
    std::fprintf(stderr, "ringfwdctl: unexpected error\n");
    return kRefused;
  }
}
