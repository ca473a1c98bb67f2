// JSON text -> validated Config (SPEC §3). The walk reports every problem it finds, each
// with the JSON path of the value at fault, in document order, and never throws: an operator
// fixes a whole file in one round, and a bad file never replaces a running configuration.
#include <arpa/inet.h>
#include <fcntl.h>
#include <unistd.h>

#include <algorithm>
#include <array>
#include <atomic>
#include <boost/json.hpp>
#include <cerrno>
#include <climits>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <span>
// basic_parser is a template whose member definitions live here (DuplicateKeyFinder).
#include <boost/json/basic_parser_impl.hpp>

#include "ringfwd/base/unique_fd.hpp"
#include "ringfwd/config/config.hpp"
#include "ringfwd/routing/conflicts.hpp"

namespace rf::config {

namespace {
std::atomic<CertificateCheck> g_cert_check_fn{nullptr};
}  // namespace

void set_certificate_check(CertificateCheck fn) { g_cert_check_fn.store(fn); }

namespace {

std::string g_cert_check(const std::string& cert, const std::string& key) {
  CertificateCheck fn = g_cert_check_fn.load();
  return fn ? fn(cert, key) : std::string();
}

namespace json = boost::json;
using Keys = std::span<const std::string_view>;

// ---- text helpers ---------------------------------------------------------------------

bool is_digit(char c) { return c >= '0' && c <= '9'; }
bool is_lower_alnum(char c) { return is_digit(c) || (c >= 'a' && c <= 'z'); }
bool is_alnum(char c) { return is_lower_alnum(c) || (c >= 'A' && c <= 'Z'); }
char lower(char c) { return c >= 'A' && c <= 'Z' ? char(c + 32) : c; }

std::string to_lower(std::string_view s) {
  std::string out(s);
  for (char& c : out) c = lower(c);
  return out;
}

// User text inside a message, JSON-quoted so control characters cannot garble the output.
std::string quoted(std::string_view s) { return json::serialize(json::string(s)); }

std::string member(const std::string& base, std::string_view key) {
  bool plain = !key.empty() && std::all_of(key.begin(), key.end(), [](char c) {
    return is_alnum(c) || c == '_' || c == '-';
  });
  if (!plain) return base + "[" + quoted(key) + "]";
  return base.empty() ? std::string(key) : base + "." + std::string(key);
}

std::string element(const std::string& base, size_t i) {
  return base + "[" + std::to_string(i) + "]";
}

// Optimal string alignment distance (Levenshtein plus adjacent swaps: "prot" -> "port" is 1).
size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::vector<size_t>> d(a.size() + 1, std::vector<size_t>(b.size() + 1));
  for (size_t i = 0; i <= a.size(); ++i) d[i][0] = i;
  for (size_t j = 0; j <= b.size(); ++j) d[0][j] = j;
  for (size_t i = 1; i <= a.size(); ++i)
    for (size_t j = 1; j <= b.size(); ++j) {
      size_t cost = a[i - 1] == b[j - 1] ? 0 : 1;
      d[i][j] = std::min({d[i - 1][j] + 1, d[i][j - 1] + 1, d[i - 1][j - 1] + cost});
      if (i > 1 && j > 1 && a[i - 1] == b[j - 2] && a[i - 2] == b[j - 1])
        d[i][j] = std::min(d[i][j], d[i - 2][j - 2] + 1);
    }
  return d[a.size()][b.size()];
}

std::string unknown_key(std::string_view key, Keys known) {
  std::string low = to_lower(key);
  std::string_view best;
  size_t best_d = SIZE_MAX;
  for (auto k : known) {
    size_t d = edit_distance(low, k);
    if (d < best_d) best_d = d, best = k;
  }
  size_t limit = std::clamp<size_t>(key.size() / 3, 1, 3);
  if (best_d <= limit) return "unknown key (did you mean \"" + std::string(best) + "\"?)";
  std::string all;
  for (auto k : known) all += (all.empty() ? "" : ", ") + std::string(k);
  return "unknown key (known keys: " + all + ")";
}

// ---- syntax of values ----------------------------------------------------------------

bool parse_ip(std::string_view s, uint8_t out[16], bool* v6) {
  std::string z(s);
  if (inet_pton(AF_INET, z.c_str(), out) == 1) return *v6 = false, true;
  if (inet_pton(AF_INET6, z.c_str(), out) == 1) return *v6 = true, true;
  return false;
}

bool is_ip(std::string_view s) {
  uint8_t b[16];
  bool v6;
  return parse_ip(s, b, &v6);
}

bool is_ipv4(std::string_view s) {
  uint8_t b[16];
  bool v6;
  return parse_ip(s, b, &v6) && !v6;
}

// A DNS host name (RFC 1123 labels; one trailing dot allowed).
bool is_host_name(std::string_view s) {
  if (!s.empty() && s.back() == '.') s.remove_suffix(1);
  if (s.empty() || s.size() > 253) return false;
  std::string_view last;
  for (size_t start = 0;;) {
    size_t dot = s.find('.', start);
    std::string_view label = s.substr(start, dot == s.npos ? s.npos : dot - start);
    if (label.empty() || label.size() > 63 || label.front() == '-' || label.back() == '-')
      return false;
    for (char c : label)
      if (!is_alnum(c) && c != '-') return false;
    last = label;
    if (dot == s.npos) break;
    start = dot + 1;
  }
  // An all-numeric last label is a mistyped IPv4 address ("192.168.1.300"), not a name.
  return !std::all_of(last.begin(), last.end(), is_digit);
}

bool is_id(std::string_view s) {
  if (s.empty() || s.size() > 63 || !is_lower_alnum(s[0])) return false;
  return std::all_of(s.begin(), s.end(),
                     [](char c) { return is_lower_alnum(c) || c == '_' || c == '-'; });
}

std::string bad_id(std::string_view s) {
  return "invalid id " + quoted(s) +
         ": use 1 to 63 characters a-z, 0-9, '_' or '-', starting with a letter or digit";
}

// A TLS server name as matched against SNI: lower-cased, wildcard only as a whole first label.
std::optional<std::string> sni_name(std::string_view s, std::string* why) {
  std::string name = to_lower(s);
  if (is_ip(name)) {
    *why = quoted(s) + " is an IP address; SNI carries host names only";
    return std::nullopt;
  }
  std::string_view rest = name;
  if (rest.substr(0, 2) == "*.") rest.remove_prefix(2);
  if (rest.find('*') != rest.npos) {
    *why = quoted(s) + ": a wildcard may only be the whole first label, as in \"*.example.com\"";
    return std::nullopt;
  }
  if (!rest.empty() && rest.back() == '.') {
    *why = quoted(s) + " must not end with a dot (SNI names never do)";
    return std::nullopt;
  }
  if (!is_host_name(rest)) {
    *why = quoted(s) + " is not a valid DNS name";
    return std::nullopt;
  }
  return name;
}

std::optional<Cidr> parse_cidr(std::string_view text, std::string* why) {
  Cidr c;
  c.text = std::string(text);
  size_t slash = text.find('/');
  std::string_view addr = text.substr(0, slash);
  if (!parse_ip(addr, c.addr, &c.v6)) {
    *why = quoted(text) + " is not an address or CIDR (like \"192.0.2.0/24\" or \"2001:db8::/32\")";
    return std::nullopt;
  }
  unsigned max = c.v6 ? 128 : 32;
  unsigned prefix = max;
  if (slash != text.npos) {
    std::string_view p = text.substr(slash + 1);
    if (p.empty() || p.size() > 3 || !std::all_of(p.begin(), p.end(), is_digit)) {
      *why = quoted(text) + " has an invalid prefix length";
      return std::nullopt;
    }
    prefix = unsigned(std::atoi(std::string(p).c_str()));
    if (prefix > max) {
      *why = quoted(text) + ": the prefix may be at most /" + std::to_string(max) + " for an " +
             (c.v6 ? "IPv6" : "IPv4") + " address";
      return std::nullopt;
    }
  }
  c.prefix = uint8_t(prefix);
  // Host bits past the prefix are refused rather than masked: "10.0.0.1/8" may mean a single
  // host or a whole /8, and an allow list must not guess.
  uint8_t masked[16];
  std::memcpy(masked, c.addr, 16);
  for (unsigned bit = prefix; bit < max; ++bit) masked[bit / 8] &= uint8_t(~(0x80u >> (bit % 8)));
  if (std::memcmp(masked, c.addr, 16) != 0) {
    char buf[INET6_ADDRSTRLEN];
    inet_ntop(c.v6 ? AF_INET6 : AF_INET, masked, buf, sizeof buf);
    *why = quoted(text) + " has bits set past the prefix (did you mean \"" + buf + "/" +
           std::to_string(prefix) + "\"?)";
    return std::nullopt;
  }
  return c;
}

// "IP:port" or "[IPv6]:port".
bool parse_endpoint(std::string_view s, uint16_t* port, std::string* why) {
  const std::string form =
      quoted(s) + " is not \"IP:port\" (like \"10.8.0.1:7946\" or \"[fd00::1]:7946\")";
  size_t colon = s.rfind(':');
  if (colon == s.npos) return *why = form, false;
  std::string_view host = s.substr(0, colon), p = s.substr(colon + 1);
  if (host.size() >= 2 && host.front() == '[' && host.back() == ']') {
    host = host.substr(1, host.size() - 2);
    if (is_ipv4(host)) return *why = form, false;
  } else if (host.find(':') != host.npos) {
    return *why = form, false;
  }
  if (!is_ip(host) || p.empty() || p.size() > 5 || !std::all_of(p.begin(), p.end(), is_digit))
    return *why = form, false;
  int n = std::atoi(std::string(p).c_str());
  if (n < 1 || n > 65535)
    return *why = "port " + std::string(p) + " is out of range (1-65535)", false;
  *port = uint16_t(n);
  return true;
}

// "aa:bb:cc:dd:ee:ff" (also with '-' or upper case, as Windows prints it) -> lower-case ':' form.
std::optional<std::string> parse_mac(std::string_view s) {
  if (s.size() != 17) return std::nullopt;
  std::string out;
  for (size_t i = 0; i < 17; ++i) {
    char c = lower(s[i]);
    if (i % 3 == 2) {
      if (c != s[2] || (c != ':' && c != '-')) return std::nullopt;
      out += ':';
    } else {
      if (!is_digit(c) && !(c >= 'a' && c <= 'f')) return std::nullopt;
      out += c;
    }
  }
  return out;
}

// Reads at most `max` bytes of a file; returns 0 or the errno of the failure.
int read_file(const std::string& path, size_t max, std::string* out) {
  UniqueFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  if (!fd) return errno;
  char buf[16384];
  while (out->size() < max) {
    ssize_t n = ::read(fd.get(), buf, sizeof buf);
    if (n < 0 && errno == EINTR) continue;
    if (n < 0) return errno;
    if (n == 0) break;
    out->append(buf, size_t(n));
  }
  return 0;
}

// ---- duplicate keys -------------------------------------------------------------------

// Boost.JSON keeps the last of duplicate keys silently; a second "listen_port" in a route
// is almost always a mistake, so a separate SAX pass finds them with their paths.
class DuplicateKeyFinder {
 public:
  static constexpr std::size_t max_array_size = std::size_t(-1);
  static constexpr std::size_t max_object_size = std::size_t(-1);
  static constexpr std::size_t max_string_size = std::size_t(-1);
  static constexpr std::size_t max_key_size = std::size_t(-1);

  std::vector<std::pair<std::string, std::string>> found;  // path, key
  std::string root;  // path of the document itself: "" for a config, "route" for one route

  bool on_document_begin(json::error_code&) { return true; }
  bool on_document_end(json::error_code&) { return true; }
  bool on_array_begin(json::error_code&) { return push(true); }
  bool on_array_end(std::size_t, json::error_code&) { return pop(); }
  bool on_object_begin(json::error_code&) { return push(false); }
  bool on_object_end(std::size_t, json::error_code&) { return pop(); }
  bool on_string_part(json::string_view, std::size_t, json::error_code&) { return true; }
  bool on_string(json::string_view, std::size_t, json::error_code&) { return done(); }
  bool on_key_part(json::string_view s, std::size_t, json::error_code&) {
    key_.append(s.data(), s.size());
    return true;
  }
  bool on_key(json::string_view s, std::size_t, json::error_code&) {
    key_.append(s.data(), s.size());
    Frame& f = stack_.back();
    if (!f.keys.insert(key_).second) found.emplace_back(member(f.path, key_), key_);
    f.key = std::move(key_);
    key_.clear();
    return true;
  }
  bool on_number_part(json::string_view, json::error_code&) { return true; }
  bool on_int64(int64_t, json::string_view, json::error_code&) { return done(); }
  bool on_uint64(uint64_t, json::string_view, json::error_code&) { return done(); }
  bool on_double(double, json::string_view, json::error_code&) { return done(); }
  bool on_bool(bool, json::error_code&) { return done(); }
  bool on_null(json::error_code&) { return done(); }
  bool on_comment_part(json::string_view, json::error_code&) { return true; }
  bool on_comment(json::string_view, json::error_code&) { return true; }

 private:
  struct Frame {
    bool array;
    size_t index = 0;
    std::string path;
    std::string key;
    std::set<std::string> keys;
  };
  std::vector<Frame> stack_;
  std::string key_;

  std::string value_path() const {
    if (stack_.empty()) return root;
    const Frame& f = stack_.back();
    return f.array ? element(f.path, f.index) : member(f.path, f.key);
  }
  bool push(bool array) {
    stack_.push_back(Frame{array, 0, value_path(), {}, {}});
    return true;
  }
  bool pop() {
    stack_.pop_back();
    return done();
  }
  bool done() {
    if (!stack_.empty() && stack_.back().array) ++stack_.back().index;
    return true;
  }
};

// ---- the walk -------------------------------------------------------------------------

template <class E>
struct Name {
  std::string_view text;
  E value;
  bool advertised = true;  // listed in "expected one of ..." messages
};

constexpr std::array<Name<Role>, 2> kRoles{{{"edge", Role::Edge}, {"gateway", Role::Gateway}}};
constexpr std::array<Name<Dataplane>, 4> kDataplanes{{{"auto", Dataplane::Auto},
                                                      {"sockmap", Dataplane::Sockmap},
                                                      {"splice", Dataplane::Splice},
                                                      {"copy", Dataplane::Copy}}};
constexpr std::array<Name<Protocol>, 3> kProtocols{
    {{"tcp", Protocol::Tcp}, {"udp", Protocol::Udp}, {"tcp+udp", Protocol::TcpUdp}}};
constexpr std::array<Name<TlsMode>, 3> kTlsModes{{{"none", TlsMode::None},
                                                  {"passthrough", TlsMode::Passthrough},
                                                  {"terminate", TlsMode::Terminate}}};
// "none" is accepted so that a route written back with to_string() reads in again.
constexpr std::array<Name<ProxyProtocol>, 3> kProxyProtocols{
    {{"v1", ProxyProtocol::V1}, {"v2", ProxyProtocol::V2}, {"none", ProxyProtocol::None, false}}};

constexpr std::string_view kTopKeys[]{"role",          "dataplane",  "workers",  "state_dir",
                                      "blocked_ports", "limits",     "gateways", "sync",
                                      "routes",        "gateway_id", "tunnel_ip"};
constexpr std::string_view kLimitKeys[]{"max_connections", "connect_timeout_ms",
                                        "idle_timeout_s",  "udp_idle_timeout_s",
                                        "overlap_ms",      "drain_timeout_s",
                                        "udp_flows_per_client"};
constexpr std::string_view kGatewayKeys[]{"id", "tunnel_ip", "token_file"};
constexpr std::string_view kSyncKeys[]{"listen", "edge", "token_file"};
constexpr std::string_view kRouteKeys[]{"id",
                                        "protocol",
                                        "listen",
                                        "listen_port",
                                        "target",
                                        "tls",
                                        "timeouts",
                                        "max_connections",
                                        "allow",
                                        "proxy_protocol",
                                        "accept_proxy_protocol",
                                        "wol",
                                        "hop"};
constexpr std::string_view kTargetKeys[]{"host", "port", "gateway", "lan_host", "lan_port"};
constexpr std::string_view kTlsKeys[]{"mode", "domains", "default", "cert", "key", "alpn",
                                      "hello_timeout_ms"};
constexpr std::string_view kTimeoutKeys[]{"connect_timeout_ms", "idle_timeout_s",
                                          "udp_idle_timeout_s", "drain_timeout_s"};
constexpr std::string_view kWolKeys[]{"mac", "broadcast", "wait_s"};

constexpr uint64_t kNoMax = uint64_t(INT64_MAX);

// A number as the operator wrote it, near enough ("1.5", not Boost's "1.5E0").
std::string number_text(const json::value& v) {
  if (!v.is_double()) return json::serialize(v);
  char buf[32];
  std::snprintf(buf, sizeof buf, "%.15g", v.get_double());
  return buf;
}

std::string what_is(const json::value& v) {
  switch (v.kind()) {
    case json::kind::null:
      return "null";
    case json::kind::bool_:
      return "a boolean";
    case json::kind::int64:
    case json::kind::uint64:
    case json::kind::double_:
      return "a number";
    case json::kind::string:
      return "a string";
    case json::kind::array:
      return "an array";
    case json::kind::object:
      return "an object";
  }
  return "?";
}

class Parser {
 public:
  explicit Parser(const ParseOptions& opts) : opts_(opts) {}

  ParseResult run(std::string_view text) {
    ParseResult out;
    json::value doc;
    if (parse_json(text, &doc)) {
      find_duplicate_keys(text);
      std::optional<std::vector<uint16_t>> env;
      if (opts_.blocked_ports_env) env = env_blocked_ports(*opts_.blocked_ports_env);
      if (const json::object* top = doc.if_object()) {
        walk_top(*top);
        for (auto& [path, key] : duplicates_)  // in values the walk did not enter
          problem(path, "duplicate key " + quoted(key) + " (the last one would win)");
        std::vector<uint16_t> blocked = env ? *env : file_blocked_;
        if (sync_port_) blocked.push_back(*sync_port_);
        std::sort(blocked.begin(), blocked.end());
        blocked.erase(std::unique(blocked.begin(), blocked.end()), blocked.end());
        cfg_.blocked_ports = std::move(blocked);
        cfg_.file_blocked_ports = file_blocked_;
        add_conflicts();
      } else {
        problem("", "the configuration must be a JSON object {...}, not " + what_is(doc));
      }
    }
    if (problems_.empty()) out.config = std::move(cfg_);
    out.problems = std::move(problems_);
    return out;
  }

  // One route, walked by walk_route exactly as inside "routes", against what `base` knows.
  RouteParse run_route(std::string_view text, const Config& base) {
    static const std::string kRoot = "route";
    RouteParse out;
    role_ = base.role;
    has_sync_ = base.sync.has_value();
    for (const Gateway& g : base.gateways) gateway_ids_.insert(g.id);
    if (!base.gateway_id.empty()) own_gateway_id_ = base.gateway_id;
    // What find_conflicts reads besides the route: the blocked-port rule below.
    cfg_.role = base.role;
    cfg_.tunnel_ip = base.tunnel_ip;
    cfg_.blocked_ports = base.blocked_ports;

    json::value doc;
    if (!parse_json(text, &doc, kRoot)) {
      out.problems = std::move(problems_);
      return out;
    }
    find_duplicate_keys(text, kRoot);
    Route r = walk_route(doc, kRoot, 0);
    for (auto& [path, key] : duplicates_)  // in values the walk did not enter
      problem(path, "duplicate key " + quoted(key) + " (the last one would win)");
    if (problems_.empty()) {
      // The blocked-port rule lives with the conflict rules; alone in a set, a route can
      // only meet that one.
      cfg_.routes.push_back(std::move(r));
      for (Problem& c : routing::find_conflicts(cfg_)) {
        const std::string prefix = "routes[0]";
        if (c.path.compare(0, prefix.size(), prefix) == 0)
          c.path = kRoot + c.path.substr(prefix.size());
        problems_.push_back(std::move(c));
      }
      if (problems_.empty()) out.route = std::move(cfg_.routes.back());
    }
    out.problems = std::move(problems_);
    return out;
  }

 private:
  const ParseOptions& opts_;
  std::vector<Problem> problems_;
  Config cfg_;
  std::vector<std::pair<std::string, std::string>> duplicates_;

  // Learned before the walk: checks refer to sections that may come later in the file.
  std::optional<Role> role_;
  bool has_sync_ = false;
  std::set<std::string, std::less<>> gateway_ids_;
  std::optional<std::string> own_gateway_id_;

  std::vector<uint16_t> file_blocked_;
  std::optional<uint16_t> sync_port_;
  std::vector<size_t> route_origin_;  // cfg_.routes[k] is routes[route_origin_[k]]
  std::map<std::string, size_t, std::less<>> route_ids_;

  void problem(std::string path, std::string message) {
    problems_.push_back({std::move(path), std::move(message)});
  }

  bool edge() const { return role_ != Role::Gateway; }  // an unknown role reads like an edge

  // ---- JSON text ----

  bool parse_json(std::string_view text, json::value* out, const std::string& path = "") {
    json::stream_parser p;
    json::error_code ec;
    size_t n = p.write(text.data(), text.size(), ec);
    if (!ec) {
      p.finish(ec);
      n = text.size();
    }
    if (ec) {
      size_t line = 1, col = 1;
      for (size_t i = 0; i < n && i < text.size(); ++i) {
        if (text[i] == '\n')
          ++line, col = 1;
        else
          ++col;
      }
      problem(path, "invalid JSON at line " + std::to_string(line) + ", column " +
                        std::to_string(col) + ": " + ec.message());
      return false;
    }
    *out = p.release();
    return true;
  }

  void find_duplicate_keys(std::string_view text, const std::string& root = "") {
    json::basic_parser<DuplicateKeyFinder> p{json::parse_options{}};
    p.handler().root = root;
    json::error_code ec;
    p.write_some(false, text.data(), text.size(), ec);
    duplicates_ = std::move(p.handler().found);
  }

  // ---- typed access: each reports its own problem and returns nullopt/nullptr ----

  // Visits the members of an object in document order, reporting unknown and duplicate keys.
  template <class F>
  void members(const json::object& o, const std::string& path, Keys known, F&& visit) {
    for (const auto& kv : o) {
      std::string_view key(kv.key().data(), kv.key().size());
      std::string p = member(path, key);
      auto dup = std::find_if(duplicates_.begin(), duplicates_.end(),
                              [&](const auto& d) { return d.first == p; });
      if (dup != duplicates_.end()) {
        problem(p, "duplicate key " + quoted(key) + " (the last one would win)");
        duplicates_.erase(dup);
      }
      if (std::find(known.begin(), known.end(), key) == known.end()) {
        problem(p, unknown_key(key, known));
        continue;
      }
      visit(key, kv.value(), p);
    }
  }

  void require(const json::object& o, const std::string& path, std::string_view key,
               std::string_view why = {}) {
    if (o.contains(json::string_view(key.data(), key.size()))) return;
    problem(member(path, key), why.empty() ? "required" : "required " + std::string(why));
  }

  const json::object* object_of(const json::value& v, const std::string& p) {
    if (const json::object* o = v.if_object()) return o;
    problem(p, "expected an object {...}, got " + what_is(v));
    return nullptr;
  }

  const json::array* array_of(const json::value& v, const std::string& p) {
    if (const json::array* a = v.if_array()) return a;
    problem(p, "expected an array [...], got " + what_is(v));
    return nullptr;
  }

  std::optional<std::string> string_of(const json::value& v, const std::string& p) {
    if (const json::string* s = v.if_string()) {
      if (!s->empty()) return std::string(s->data(), s->size());
      problem(p, "must not be empty");
      return std::nullopt;
    }
    problem(p, "expected a string, got " + what_is(v));
    return std::nullopt;
  }

  std::optional<bool> bool_of(const json::value& v, const std::string& p) {
    if (const bool* b = v.if_bool()) return *b;
    problem(p, "expected true or false, got " + what_is(v));
    return std::nullopt;
  }

  std::optional<uint64_t> uint_of(const json::value& v, const std::string& p, uint64_t min,
                                  uint64_t max) {
    std::optional<int64_t> n;  // the JSON number, when it is an integer a config could mean
    bool huge = false;
    if (const int64_t* i = v.if_int64())
      n = *i;
    else if (v.is_uint64())
      huge = true;  // above INT64_MAX: out of every range here
    else if (const double* d = v.if_double()) {
      // JSON has only "numbers": 30.0 or 3e1 are integers to an operator.
      if (std::isfinite(*d) && *d == std::trunc(*d)) {
        if (std::fabs(*d) < 9.2e18)
          n = int64_t(*d);
        else
          huge = true;
      }
    }
    if (!n && !huge) {
      problem(p, "expected an integer, got " + (v.is_double() ? number_text(v) : what_is(v)));
      return std::nullopt;
    }
    if (huge || *n < int64_t(min) || uint64_t(*n) > max) {
      // Below a minimum whose maximum is only the type's limit, the minimum is what matters.
      const bool type_max = max == kNoMax || max == UINT32_MAX;
      const bool below = !huge && *n < int64_t(min);
      problem(p, (below && type_max
                      ? "must be at least " + std::to_string(min)
                      : "must be between " + std::to_string(min) + " and " + std::to_string(max)) +
                     " (got " + number_text(v) + ")");
      return std::nullopt;
    }
    return uint64_t(*n);
  }

  std::optional<uint16_t> port_of(const json::value& v, const std::string& p) {
    auto n = uint_of(v, p, 1, 65535);
    return n ? std::optional<uint16_t>(uint16_t(*n)) : std::nullopt;
  }

  std::optional<uint32_t> u32_of(const json::value& v, const std::string& p) {
    auto n = uint_of(v, p, 1, UINT32_MAX);
    return n ? std::optional<uint32_t>(uint32_t(*n)) : std::nullopt;
  }

  template <class E, size_t N>
  std::optional<E> enum_of(const json::value& v, const std::string& p,
                           const std::array<Name<E>, N>& names) {
    auto s = string_of(v, p);
    if (!s) return std::nullopt;
    std::string list;
    for (size_t i = 0; i < N; ++i) {
      if (names[i].text == *s) return names[i].value;
      if (names[i].advertised)
        list += std::string(list.empty() ? "" : ", ") + "\"" + std::string(names[i].text) + "\"";
    }
    problem(p, "expected one of " + list + " (got " + quoted(*s) + ")");
    return std::nullopt;
  }

  std::optional<std::string> ip_of(const json::value& v, const std::string& p) {
    auto s = string_of(v, p);
    if (!s) return std::nullopt;
    if (is_ip(*s)) return s;
    problem(
        p, "expected an IP address like \"192.0.2.1\" or \"2001:db8::1\" (got " + quoted(*s) + ")");
    return std::nullopt;
  }

  std::optional<std::string> abs_path_of(const json::value& v, const std::string& p) {
    auto s = string_of(v, p);
    if (!s) return std::nullopt;
    if ((*s)[0] == '/') return s;
    // The daemon runs from "/" under systemd; a relative path would point somewhere unexpected.
    problem(p, "must be an absolute path (got " + quoted(*s) + ")");
    return std::nullopt;
  }

  std::optional<std::string> host_of(const json::value& v, const std::string& p) {
    auto s = string_of(v, p);
    if (!s) return std::nullopt;
    if (is_ip(*s) || is_host_name(*s)) return s;
    problem(p, quoted(*s) + " is neither an IP address nor a valid host name");
    return std::nullopt;
  }

  void only_for(const std::string& p, Role role) {
    problem(p, "only valid for role " + std::string(to_string(role)) + " (this file has role " +
                   std::string(to_string(role == Role::Edge ? Role::Gateway : Role::Edge)) + ")");
  }

  // ---- sections ----

  void prescan(const json::object& o) {
    if (auto* r = o.if_contains("role"); r && r->is_string())
      for (auto& n : kRoles)
        if (r->get_string() == json::string_view(n.text.data(), n.text.size())) role_ = n.value;
    has_sync_ = o.contains("sync");
    if (auto* g = o.if_contains("gateways"); g && g->is_array())
      for (const auto& e : g->get_array())
        if (auto* id = e.is_object() ? e.get_object().if_contains("id") : nullptr;
            id && id->is_string())
          gateway_ids_.insert(std::string(id->get_string()));
    if (auto* id = o.if_contains("gateway_id"); id && id->is_string())
      own_gateway_id_ = std::string(id->get_string());
  }

  void walk_top(const json::object& o) {
    prescan(o);
    members(o, "", kTopKeys, [&](std::string_view key, const json::value& v, const std::string& p) {
      if (key == "role") {
        if (auto r = enum_of(v, p, kRoles)) cfg_.role = *r;
      } else if (key == "dataplane") {
        if (auto d = enum_of(v, p, kDataplanes)) cfg_.dataplane = *d;
      } else if (key == "workers") {
        if (auto n = uint_of(v, p, 0, 1024)) cfg_.workers = unsigned(*n);
      } else if (key == "state_dir") {
        if (auto s = abs_path_of(v, p)) cfg_.state_dir = *s;
      } else if (key == "blocked_ports") {
        walk_blocked_ports(v, p);
      } else if (key == "limits") {
        walk_limits(v, p);
      } else if (key == "gateways") {
        if (role_ == Role::Gateway)
          only_for(p, Role::Edge);
        else
          walk_gateways(v, p);
      } else if (key == "sync") {
        walk_sync(v, p);
      } else if (key == "routes") {
        walk_routes(v, p);
      } else if (key == "gateway_id") {
        if (role_ == Role::Edge) return only_for(p, Role::Gateway);
        if (auto s = string_of(v, p)) {
          if (is_id(*s))
            cfg_.gateway_id = *s;
          else
            problem(p, bad_id(*s));
        }
      } else if (key == "tunnel_ip") {
        if (role_ == Role::Edge) return only_for(p, Role::Gateway);
        if (auto s = ip_of(v, p)) cfg_.tunnel_ip = *s;
      }
    });
    require(o, "", "role", "(\"edge\" or \"gateway\")");
    if (role_ == Role::Gateway) {
      require(o, "", "gateway_id", "for role gateway (the id the edge knows it by)");
      require(o, "", "tunnel_ip", "for role gateway (its address in the WireGuard tunnel)");
    }
  }

  void walk_blocked_ports(const json::value& v, const std::string& p) {
    const json::array* a = array_of(v, p);
    if (!a) return;
    for (size_t i = 0; i < a->size(); ++i)
      if (auto port = port_of((*a)[i], element(p, i))) file_blocked_.push_back(*port);
  }

  // "22,53,51820"; spaces and empty items are tolerated, anything else is a problem.
  std::optional<std::vector<uint16_t>> env_blocked_ports(std::string_view text) {
    std::vector<uint16_t> out;
    bool ok = true;
    for (size_t start = 0; start <= text.size();) {
      size_t comma = std::min(text.find(',', start), text.size());
      std::string_view item = text.substr(start, comma - start);
      start = comma + 1;
      while (!item.empty() && (item.front() == ' ' || item.front() == '\t')) item.remove_prefix(1);
      while (!item.empty() && (item.back() == ' ' || item.back() == '\t')) item.remove_suffix(1);
      if (item.empty()) continue;
      bool digits = item.size() <= 5 && std::all_of(item.begin(), item.end(), is_digit);
      int n = digits ? std::atoi(std::string(item).c_str()) : 0;
      if (n >= 1 && n <= 65535) {
        out.push_back(uint16_t(n));
        continue;
      }
      problem("RINGFWD_BLOCKED_PORTS", quoted(item) +
                                           " is not a port 1-65535 (expected a "
                                           "comma-separated list like \"22,53,51820\")");
      ok = false;
    }
    return ok ? std::optional(out) : std::nullopt;
  }

  void walk_limits(const json::value& v, const std::string& p) {
    const json::object* o = object_of(v, p);
    if (!o) return;
    Limits& l = cfg_.limits;
    members(*o, p, kLimitKeys,
            [&](std::string_view key, const json::value& val, const std::string& kp) {
              if (key == "max_connections") {
                if (auto n = uint_of(val, kp, 1, kNoMax)) l.max_connections = *n;
                return;
              }
              auto n = u32_of(val, kp);
              if (!n) return;
              if (key == "connect_timeout_ms")
                l.connect_timeout_ms = *n;
              else if (key == "idle_timeout_s")
                l.idle_timeout_s = *n;
              else if (key == "udp_idle_timeout_s")
                l.udp_idle_timeout_s = *n;
              else if (key == "overlap_ms")
                l.overlap_ms = *n;
              else if (key == "drain_timeout_s")
                l.drain_timeout_s = *n;
              else if (key == "udp_flows_per_client") {
                if (*n == 0)
                  problem(kp, "must be at least 1");
                else
                  l.udp_flows_per_client = *n;
              }
            });
  }

  void walk_gateways(const json::value& v, const std::string& p) {
    const json::array* a = array_of(v, p);
    if (!a) return;
    std::map<std::string, size_t> ids, ips;
    for (size_t i = 0; i < a->size(); ++i) {
      std::string gp = element(p, i);
      const json::object* o = object_of((*a)[i], gp);
      if (!o) continue;
      Gateway g;
      members(
          *o, gp, kGatewayKeys,
          [&](std::string_view key, const json::value& val, const std::string& kp) {
            if (key == "id") {
              auto s = string_of(val, kp);
              if (!s) return;
              if (!is_id(*s)) return problem(kp, bad_id(*s));
              if (auto [it, fresh] = ids.emplace(*s, i); !fresh)
                return problem(
                    kp, "duplicate id " + quoted(*s) + " (also " + element(p, it->second) + ")");
              g.id = *s;
            } else if (key == "tunnel_ip") {
              auto s = ip_of(val, kp);
              if (!s) return;
              if (auto [it, fresh] = ips.emplace(*s, i); !fresh)
                return problem(kp, *s + " is already the tunnel_ip of " + element(p, it->second));
              g.tunnel_ip = *s;
            } else if (key == "token_file") {
              if (auto s = abs_path_of(val, kp)) g.token_file = *s;
            }
          });
      require(*o, gp, "id");
      require(*o, gp, "tunnel_ip");
      if (has_sync_)
        require(*o, gp, "token_file",
                "when the edge has a \"sync\" section (the gateway proves itself with it)");
      cfg_.gateways.push_back(std::move(g));
    }
  }

  void walk_sync(const json::value& v, const std::string& p) {
    const json::object* o = object_of(v, p);
    if (!o) return;
    Sync s;
    std::string why;
    uint16_t port = 0;
    members(
        *o, p, kSyncKeys, [&](std::string_view key, const json::value& val, const std::string& kp) {
          if (key == "listen" || key == "edge") {
            Role for_role = key == "listen" ? Role::Edge : Role::Gateway;
            if (role_ && *role_ != for_role) return only_for(kp, for_role);
            auto text = string_of(val, kp);
            if (!text) return;
            if (!parse_endpoint(*text, &port, &why)) return problem(kp, why);
            (key == "listen" ? s.listen : s.edge) = *text;
            sync_port_ = port;
          } else if (key == "token_file") {
            if (role_ == Role::Edge) {
              problem(kp, "only valid for role gateway (an edge reads each gateways[].token_file)");
              return;
            }
            if (auto f = abs_path_of(val, kp)) s.token_file = *f;
          }
        });
    if (role_ == Role::Edge)
      require(*o, p, "listen", "on an edge (\"IP:port\" to accept gateways on)");
    if (role_ == Role::Gateway) {
      require(*o, p, "edge", "on a gateway (the edge's sync \"IP:port\")");
      require(*o, p, "token_file", "on a gateway");
    }
    cfg_.sync = std::move(s);
  }

  void walk_routes(const json::value& v, const std::string& p) {
    const json::array* a = array_of(v, p);
    if (!a) return;
    for (size_t i = 0; i < a->size(); ++i) {
      size_t before = problems_.size();
      Route r = walk_route((*a)[i], element(p, i), i);
      // Only a route without problems takes part in the conflict rules: a half-read route
      // would report conflicts that are not there.
      if (problems_.size() == before) {
        cfg_.routes.push_back(std::move(r));
        route_origin_.push_back(i);
      }
    }
  }

  Route walk_route(const json::value& v, const std::string& p, size_t index) {
    Route r;
    const json::object* o = object_of(v, p);
    if (!o) return r;
    bool port_ok = false, target_ok = false, proto_ok = true, tls_ok = false;
    members(*o, p, kRouteKeys,
            [&](std::string_view key, const json::value& val, const std::string& kp) {
              size_t before = problems_.size();
              if (key == "id") {
                auto s = string_of(val, kp);
                if (!s) return;
                if (!is_id(*s)) return problem(kp, bad_id(*s));
                if (auto [it, fresh] = route_ids_.emplace(*s, index); !fresh)
                  return problem(kp, "duplicate id " + quoted(*s) + " (also " +
                                         element("routes", it->second) + ")");
                r.id = *s;
              } else if (key == "protocol") {
                auto e = enum_of(val, kp, kProtocols);
                proto_ok = e.has_value();
                if (e) r.protocol = *e;
              } else if (key == "listen") {
                if (auto s = ip_of(val, kp)) r.listen = *s;
              } else if (key == "listen_port") {
                if (auto range = listen_port_of(val, kp)) r.listen_port = *range, port_ok = true;
              } else if (key == "target") {
                walk_target(val, kp, r.target);
                target_ok = problems_.size() == before;
              } else if (key == "tls") {
                walk_tls(val, kp, r.tls);
                tls_ok = problems_.size() == before;
              } else if (key == "timeouts") {
                walk_timeouts(val, kp, r.timeouts);
              } else if (key == "max_connections") {
                if (auto n = uint_of(val, kp, 1, kNoMax)) r.max_connections = *n;
              } else if (key == "allow") {
                walk_allow(val, kp, r.allow);
              } else if (key == "proxy_protocol") {
                if (auto e = enum_of(val, kp, kProxyProtocols)) r.proxy_protocol = *e;
              } else if (key == "accept_proxy_protocol") {
                if (auto b = bool_of(val, kp)) r.accept_proxy_protocol = *b;
              } else if (key == "wol") {
                r.wol = walk_wol(val, kp);
              } else if (key == "hop") {
                if (role_ != Role::Gateway) return only_for(kp, Role::Gateway);
                if (auto b = bool_of(val, kp)) r.hop = *b;
              }
            });
    require(*o, p, "id");
    require(*o, p, "listen_port");
    require(*o, p, "target");

    // Rules between fields, once each field is known to be well-formed.
    if (tls_ok && proto_ok && r.tls.mode != TlsMode::None && r.protocol != Protocol::Tcp)
      problem(member(p, "tls"), "TLS needs protocol \"tcp\" (this route is \"" +
                                    std::string(to_string(r.protocol)) + "\")");
    if (port_ok && target_ok && r.listen_port.size() > 1) {
      const bool lan = r.target.is_lan();
      uint32_t base = lan ? r.target.lan_port : r.target.port;
      uint32_t end = base + r.listen_port.size() - 1;
      if (end > 65535)
        problem(member(member(p, "target"), lan ? "lan_port" : "port"),
                "the range " + std::to_string(r.listen_port.first) + "-" +
                    std::to_string(r.listen_port.last) + " maps to " + std::to_string(base) + "-" +
                    std::to_string(end) + ", past port 65535");
    }
    if (proto_ok && r.proxy_protocol == ProxyProtocol::V1 && r.has_udp())
      problem(member(p, "proxy_protocol"),
              "PROXY protocol v1 describes TCP only; use \"v2\" for a route with udp");
    if (r.hop) {
      // The edge did TLS and reads the client's PROXY header; the gateway reads the edge's.
      if (tls_ok && r.tls.mode != TlsMode::None)
        problem(member(p, "tls"), "a hop route carries no TLS (the edge passes it on or ends it)");
      if (r.accept_proxy_protocol)
        problem(member(p, "accept_proxy_protocol"),
                "a hop route always reads the edge's PROXY header; leave this out");
      if (!has_sync_)
        problem(member(p, "hop"), "needs a \"sync\" section (the edge's address: only it may "
                                  "send the hop header)");
    }
    if (r.wol && target_ok && role_ == Role::Edge && !r.target.via_gateway())
      problem(member(p, "wol"),
              "only valid for a route to a LAN device behind a gateway "
              "(target {\"gateway\", \"lan_host\", \"lan_port\"})");
    return r;
  }

  std::optional<PortRange> listen_port_of(const json::value& v, const std::string& p) {
    if (v.is_string()) {
      std::string why;
      const json::string& s = v.get_string();
      auto r = parse_port_range(std::string_view(s.data(), s.size()), &why);
      if (!r) problem(p, why);
      return r;
    }
    if (v.is_number()) {
      auto port = port_of(v, p);
      return port ? std::optional(PortRange{*port, *port}) : std::nullopt;
    }
    problem(p, "expected a port number or a range \"A-B\", got " + what_is(v));
    return std::nullopt;
  }

  void walk_target(const json::value& v, const std::string& p, Target& t) {
    const json::object* o = object_of(v, p);
    if (!o) return;
    members(*o, p, kTargetKeys,
            [&](std::string_view key, const json::value& val, const std::string& kp) {
              if (key == "host") {
                if (auto s = host_of(val, kp)) t.host = *s;
              } else if (key == "lan_host") {
                if (auto s = host_of(val, kp)) t.lan_host = *s;
              } else if (key == "port") {
                if (auto n = port_of(val, kp)) t.port = *n;
              } else if (key == "lan_port") {
                if (auto n = port_of(val, kp)) t.lan_port = *n;
              } else if (key == "gateway") {
                auto s = string_of(val, kp);
                if (!s) return;
                if (role_ == Role::Gateway) {
                  if (own_gateway_id_ && *s != *own_gateway_id_)
                    problem(kp, quoted(*s) + " is not this gateway (gateway_id " +
                                    quoted(*own_gateway_id_) + ")");
                  // Not kept: on a gateway the route is not "via a gateway", its target is the LAN.
                } else if (role_ == Role::Edge && !gateway_ids_.contains(*s)) {
                  std::string known;
                  for (auto& id : gateway_ids_) known += (known.empty() ? "" : ", ") + quoted(id);
                  problem(kp, "unknown gateway " + quoted(*s) +
                                  (known.empty() ? " (no gateways are configured)"
                                                 : " (known: " + known + ")"));
                } else {
                  t.gateway = *s;
                }
              }
            });
    const bool direct = o->contains("host") || o->contains("port");
    const bool lan = o->contains("gateway") || o->contains("lan_host") || o->contains("lan_port");
    const std::string forms =
        edge() ? "use {\"host\", \"port\"} for a direct target or {\"gateway\", \"lan_host\", "
                 "\"lan_port\"} for a device behind a gateway"
               : "use {\"lan_host\", \"lan_port\"} for a LAN device or {\"host\", \"port\"} for a "
                 "direct target";
    if (direct && lan) return problem(p, "mixes the two target forms: " + forms);
    if (!direct && !lan) return problem(p, "no target given: " + forms);
    if (direct) {
      require(*o, p, "host", "(a direct target is {\"host\", \"port\"})");
      require(*o, p, "port", "(a direct target is {\"host\", \"port\"})");
      return;
    }
    const char* why = edge() ? "(a LAN target is {\"gateway\", \"lan_host\", \"lan_port\"})"
                             : "(a LAN target is {\"lan_host\", \"lan_port\"})";
    if (edge()) require(*o, p, "gateway", why);
    require(*o, p, "lan_host", why);
    require(*o, p, "lan_port", why);
  }

  void walk_tls(const json::value& v, const std::string& p, Tls& t) {
    const json::object* o = object_of(v, p);
    if (!o) return;
    bool mode_ok = false, default_ok = true;
    std::optional<size_t> listed;  // names written in "domains", valid or not; unset: not an array
    bool cert_ok = false, key_ok = false;
    members(*o, p, kTlsKeys,
            [&](std::string_view key, const json::value& val, const std::string& kp) {
              if (key == "mode") {
                auto m = enum_of(val, kp, kTlsModes);
                mode_ok = m.has_value();
                if (m) t.mode = *m;
              } else if (key == "domains") {
                const json::array* a = array_of(val, kp);
                if (!a) return;
                listed = a->size();
                for (size_t i = 0; i < a->size(); ++i) {
                  std::string ep = element(kp, i), why;
                  auto s = string_of((*a)[i], ep);
                  if (!s) continue;
                  auto name = sni_name(*s, &why);
                  if (!name) {
                    problem(ep, why);
                    continue;
                  }
                  auto seen = std::find(t.domains.begin(), t.domains.end(), *name);
                  if (seen != t.domains.end()) {
                    problem(ep, "duplicate name " + quoted(*name));
                    continue;
                  }
                  t.domains.push_back(*name);
                }
              } else if (key == "default") {
                auto b = bool_of(val, kp);
                default_ok = b.has_value();
                if (b) t.is_default = *b;
              } else if (key == "cert") {
                if (auto s = abs_path_of(val, kp)) t.cert = *s, cert_ok = true;
              } else if (key == "key") {
                if (auto s = abs_path_of(val, kp)) t.key = *s, key_ok = true;
              } else if (key == "alpn") {
                const json::array* a = array_of(val, kp);
                if (!a) return;
                for (size_t i = 0; i < a->size(); ++i) {
                  std::string ep = element(kp, i);
                  auto s = string_of((*a)[i], ep);
                  if (!s) continue;
                  if (s->empty() || s->size() > 255)
                    problem(ep, "an ALPN protocol name is 1-255 bytes (like \"h2\" or \"http/1.1\")");
                  else if (std::find(t.alpn.begin(), t.alpn.end(), *s) != t.alpn.end())
                    problem(ep, "duplicate protocol " + quoted(*s));
                  else
                    t.alpn.emplace_back(*s);
                }
              } else if (key == "hello_timeout_ms") {
                if (auto n = u32_of(val, kp)) {
                  if (*n < 100 || *n > 600000)
                    problem(kp, "must be 100-600000 (milliseconds)");
                  else
                    t.hello_timeout_ms = *n;
                }
              }
            });
    if (!o->contains("mode"))
      return problem(member(p, "mode"), "required (\"none\", \"passthrough\" or \"terminate\")");
    if (!mode_ok) return;
    const std::string sni_only = "only valid with mode \"passthrough\" or \"terminate\"";
    const std::string term_only = "only valid with mode \"terminate\"";
    if (t.mode == TlsMode::None) {
      if (o->contains("domains")) problem(member(p, "domains"), sni_only);
      if (o->contains("default")) problem(member(p, "default"), sni_only);
    }
    if (t.mode != TlsMode::Terminate) {
      if (o->contains("cert")) problem(member(p, "cert"), term_only);
      if (o->contains("key")) problem(member(p, "key"), term_only);
      if (o->contains("alpn")) problem(member(p, "alpn"), term_only);
    }
    if (t.mode == TlsMode::None && o->contains("hello_timeout_ms"))
      problem(member(p, "hello_timeout_ms"), sni_only);
    if (t.mode == TlsMode::None) return;
    // Only when "domains" and "default" are themselves well-formed, to report one thing once.
    if (default_ok && !t.is_default) {
      if (!o->contains("domains"))
        problem(member(p, "domains"), "required unless \"default\": true");
      else if (listed == size_t(0))
        problem(member(p, "domains"), "must list at least one name unless \"default\": true");
    }
    if (t.mode != TlsMode::Terminate) return;
    require(*o, p, "cert", "for mode \"terminate\" (a PEM certificate chain)");
    require(*o, p, "key", "for mode \"terminate\" (a PEM private key)");
    if (!opts_.check_files) return;
    const size_t before = problems_.size();
    if (cert_ok) check_pem(member(p, "cert"), t.cert, "CERTIFICATE-----", "a PEM certificate");
    if (key_ok) check_pem(member(p, "key"), t.key, "PRIVATE KEY-----", "a PEM private key");
    if (cert_ok && key_ok && problems_.size() == before) {
      std::string why = g_cert_check(t.cert, t.key);
      if (!why.empty()) problem(member(p, "cert"), why);
    }
  }

  // Certificates are loaded when routes start; finding a missing or wrong file now keeps a
  // bad change from replacing a working configuration.
  void check_pem(const std::string& p, const std::string& file, std::string_view marker,
                 const char* what) {
    std::string text;
    if (int err = read_file(file, 1 << 20, &text))
      return problem(p, "cannot read " + file + ": " + std::strerror(err));
    size_t begin = text.find("-----BEGIN ");
    if (begin == text.npos || text.find(marker, begin) == text.npos)
      problem(p, file + " does not hold " + what + " (no \"-----BEGIN ..." + std::string(marker) +
                     "\" line)");
  }

  void walk_timeouts(const json::value& v, const std::string& p, RouteTimeouts& t) {
    const json::object* o = object_of(v, p);
    if (!o) return;
    members(*o, p, kTimeoutKeys,
            [&](std::string_view key, const json::value& val, const std::string& kp) {
              auto n = u32_of(val, kp);
              if (!n) return;
              if (key == "connect_timeout_ms")
                t.connect_timeout_ms = *n;
              else if (key == "idle_timeout_s")
                t.idle_timeout_s = *n;
              else if (key == "udp_idle_timeout_s")
                t.udp_idle_timeout_s = *n;
              else if (key == "drain_timeout_s")
                t.drain_timeout_s = *n;
            });
  }

  void walk_allow(const json::value& v, const std::string& p, std::vector<Cidr>& out) {
    const json::array* a = array_of(v, p);
    if (!a) return;
    if (a->empty())
      return problem(p,
                     "is empty; an empty list would read as \"everyone\": leave \"allow\" out "
                     "to allow everyone");
    for (size_t i = 0; i < a->size(); ++i) {
      std::string ep = element(p, i), why;
      auto s = string_of((*a)[i], ep);
      if (!s) continue;
      if (auto c = parse_cidr(*s, &why))
        out.push_back(*c);
      else
        problem(ep, why);
    }
  }

  std::optional<Wol> walk_wol(const json::value& v, const std::string& p) {
    const json::object* o = object_of(v, p);
    if (!o) return std::nullopt;
    Wol w;
    members(
        *o, p, kWolKeys, [&](std::string_view key, const json::value& val, const std::string& kp) {
          if (key == "mac") {
            auto s = string_of(val, kp);
            if (!s) return;
            if (auto mac = parse_mac(*s))
              w.mac = *mac;
            else
              problem(kp,
                      "expected a MAC address like \"aa:bb:cc:dd:ee:ff\" (got " + quoted(*s) + ")");
          } else if (key == "broadcast") {
            auto s = string_of(val, kp);
            if (!s) return;
            if (is_ipv4(*s))
              w.broadcast = *s;
            else
              problem(kp, "expected an IPv4 broadcast address like \"192.168.2.255\" (got " +
                              quoted(*s) + ")");
          } else if (key == "wait_s") {
            if (auto n = uint_of(val, kp, 1, 600)) w.wait_s = uint32_t(*n);
          }
        });
    require(*o, p, "mac", "(the LAN device's MAC address)");
    return w;
  }

  // ---- conflicts ----

  void add_conflicts() {
    for (Problem& c : routing::find_conflicts(cfg_)) {
      // find_conflicts numbers the routes it was given; map back to the file's numbering.
      const std::string prefix = "routes[";
      if (c.path.compare(0, prefix.size(), prefix) == 0) {
        size_t close = c.path.find(']');
        size_t k = size_t(std::atol(c.path.c_str() + prefix.size()));
        if (close != c.path.npos && k < route_origin_.size())
          c.path = element("routes", route_origin_[k]) + c.path.substr(close + 1);
      }
      problems_.push_back(std::move(c));
    }
  }
};

}  // namespace

ParseResult parse(std::string_view json, const ParseOptions& opts) {
  try {
    return Parser(opts).run(json);
  } catch (const std::exception& e) {
    ParseResult r;
    r.problems.push_back({"", std::string("cannot parse the configuration: ") + e.what()});
    return r;
  } catch (...) {
    ParseResult r;
    r.problems.push_back({"", "cannot parse the configuration: unknown error"});
    return r;
  }
}

RouteParse parse_route(std::string_view route_json, const Config& base, const ParseOptions& opts) {
  try {
    return Parser(opts).run_route(route_json, base);
  } catch (const std::exception& e) {
    RouteParse r;
    r.problems.push_back({"route", std::string("cannot parse the route: ") + e.what()});
    return r;
  } catch (...) {
    RouteParse r;
    r.problems.push_back({"route", "cannot parse the route: unknown error"});
    return r;
  }
}

ParseResult load_file(const std::string& path) {
  ParseOptions opts;
  // An empty variable (as in "Environment=RINGFWD_BLOCKED_PORTS=") counts as unset, so that
  // clearing it never silently unblocks the ports the file protects.
  if (const char* env = std::getenv("RINGFWD_BLOCKED_PORTS"); env && *env)
    opts.blocked_ports_env = env;
  std::string text;
  if (int err = read_file(path, SIZE_MAX, &text)) {
    ParseResult r;
    r.problems.push_back({"", "cannot read " + path + ": " + std::strerror(err)});
    return r;
  }
  return parse(text, opts);
}

}  // namespace rf::config
