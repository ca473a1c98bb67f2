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
// --json prints the daemon's JSON unchanged (routes, route, stats).
#include <unistd.h>

#include <algorithm>
#include <cstdint>
#include <cstdio>
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
    for (const auto& kv : g->as_object())
      std::printf("  %s: %s\n", std::string(kv.key()).c_str(),
                  scalar(member(kv.value(), "online")) == "true" ? "online" : "offline");
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
                                "stats", "reload", "check"};
  if (std::find(std::begin(known), std::end(known), cmd) == std::end(known))
    usage_error("unknown command '" + cmd + "'");

  if (cmd == "check") {
    want_args(cmd, args, 1, "a FILE");
    return check(args[0]);
  }

  // Everything the command line says is checked before the bus is touched.
  std::optional<RouteArgs> ra;
  std::string payload;
  if (cmd == "add" || cmd == "update") {
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
