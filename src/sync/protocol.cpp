#include "ringfwd/sync/protocol.hpp"

#include <sys/random.h>

#include <wolfssl/options.h>
#include <wolfssl/wolfcrypt/hmac.h>
#include <wolfssl/wolfcrypt/sha256.h>

#include <cerrno>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <sstream>

namespace rf::sync {

namespace {

Error plain(std::string what) { return Error{std::error_code(), std::move(what)}; }

std::string hex(const uint8_t* p, size_t n) {
  static const char* d = "0123456789abcdef";
  std::string out(n * 2, '0');
  for (size_t i = 0; i < n; ++i) {
    out[2 * i] = d[p[i] >> 4];
    out[2 * i + 1] = d[p[i] & 15];
  }
  return out;
}

}  // namespace

std::string encode(const json::object& msg) {
  const std::string body = json::serialize(msg);
  const uint32_t n = uint32_t(body.size());
  std::string out;
  out.reserve(4 + body.size());
  out.push_back(char(n >> 24));
  out.push_back(char(n >> 16));
  out.push_back(char(n >> 8));
  out.push_back(char(n));
  out += body;
  return out;
}

std::optional<json::object> FrameReader::next() {
  if (!error_.empty() || buf_.size() - off_ < 4) return std::nullopt;
  const auto* p = reinterpret_cast<const uint8_t*>(buf_.data() + off_);
  const uint32_t n = uint32_t(p[0]) << 24 | uint32_t(p[1]) << 16 | uint32_t(p[2]) << 8 | p[3];
  if (n > max_) {
    error_ = "frame of " + std::to_string(n) + " bytes (at most " + std::to_string(max_) + ")";
    return std::nullopt;
  }
  if (buf_.size() - off_ - 4 < n) return std::nullopt;
  std::string_view body(buf_.data() + off_ + 4, n);
  off_ += 4 + n;
  if (off_ == buf_.size()) {
    buf_.clear();
    off_ = 0;
  } else if (off_ > (64 << 10)) {
    buf_.erase(0, off_);
    off_ = 0;
  }
  boost::system::error_code ec;
  json::value v = json::parse(body, ec);
  if (ec) {
    error_ = "frame is not JSON (" + ec.message() + ")";
    return std::nullopt;
  }
  if (!v.is_object()) {
    error_ = "frame is not a JSON object";
    return std::nullopt;
  }
  const json::value* t = v.as_object().if_contains("type");
  if (!t || !t->is_string() || t->as_string().empty()) {
    error_ = "frame without a \"type\"";
    return std::nullopt;
  }
  return std::move(v.as_object());
}

std::string_view type_of(const json::object& msg) {
  const json::string& s = msg.at("type").as_string();
  return {s.data(), s.size()};
}

std::string string_member(const json::object& msg, std::string_view key) {
  const json::value* v = msg.if_contains(key);
  if (!v || !v->is_string()) return {};
  return std::string(v->as_string());
}

std::string random_hex(size_t bytes) {
  uint8_t buf[64];
  if (bytes > sizeof buf) bytes = sizeof buf;
  size_t got = 0;
  while (got < bytes) {
    ssize_t n = ::getrandom(buf + got, bytes - got, 0);
    if (n < 0 && errno == EINTR) continue;
    if (n <= 0) return {};
    got += size_t(n);
  }
  return hex(buf, bytes);
}

std::string sha256_hex(std::string_view data) {
  wc_Sha256 sha;
  uint8_t out[WC_SHA256_DIGEST_SIZE];
  if (wc_InitSha256(&sha) != 0) return {};
  wc_Sha256Update(&sha, reinterpret_cast<const uint8_t*>(data.data()), word32(data.size()));
  wc_Sha256Final(&sha, out);
  wc_Sha256Free(&sha);
  return hex(out, sizeof out);
}

std::string hmac_hex(std::string_view key, std::string_view data) {
  Hmac h;
  uint8_t out[WC_SHA256_DIGEST_SIZE];
  if (wc_HmacInit(&h, nullptr, INVALID_DEVID) != 0) return {};
  std::string result;
  if (wc_HmacSetKey(&h, WC_SHA256, reinterpret_cast<const uint8_t*>(key.data()),
                    word32(key.size())) == 0 &&
      wc_HmacUpdate(&h, reinterpret_cast<const uint8_t*>(data.data()), word32(data.size())) == 0 &&
      wc_HmacFinal(&h, out) == 0)
    result = hex(out, sizeof out);
  wc_HmacFree(&h);
  return result;
}

bool equal_constant_time(std::string_view a, std::string_view b) {
  // The length is not secret (a proof is always 64 hex digits); the content is.
  if (a.size() != b.size()) return false;
  volatile uint8_t diff = 0;
  for (size_t i = 0; i < a.size(); ++i) diff = diff | uint8_t(a[i] ^ b[i]);
  return diff == 0;
}

std::string gateway_proof(std::string_view token, std::string_view edge_nonce,
                          std::string_view gateway_id) {
  std::string msg = "ringfwd-sync-v1 gateway ";
  msg.append(edge_nonce).append(" ").append(gateway_id);
  return hmac_hex(token, msg);
}

std::string edge_proof(std::string_view token, std::string_view gateway_nonce) {
  std::string msg = "ringfwd-sync-v1 edge ";
  msg.append(gateway_nonce);
  return hmac_hex(token, msg);
}

Result<std::string> read_token(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::from_errno("token file " + path);
  std::ostringstream ss;
  ss << in.rdbuf();
  std::string t = ss.str();
  const char* ws = " \t\r\n";
  const size_t b = t.find_first_not_of(ws);
  if (b == std::string::npos) return plain("token file " + path + " is empty");
  t = t.substr(b, t.find_last_not_of(ws) - b + 1);
  if (t.size() < 16)
    return plain("token file " + path + ": the token is shorter than 16 characters");
  return t;
}

std::string gateway_routes(const config::Config& edge, std::string_view gateway_id) {
  std::string out = "[";
  for (const config::Route& r : edge.routes) {
    if (r.target.gateway != gateway_id) continue;
    config::Route g;
    g.id = r.id;
    g.protocol = r.protocol;
    g.listen_port = r.listen_port;
    g.target.lan_host = r.target.lan_host;
    g.target.lan_port = r.target.lan_port;
    g.timeouts = r.timeouts;
    g.max_connections = r.max_connections;
    g.allow = r.allow;
    g.proxy_protocol = r.proxy_protocol;
    g.wol = r.wol;
    g.hop = true;
    if (out.size() > 1) out += ',';
    out += config::to_json(g);
  }
  out += ']';
  return out;
}

Result<config::Config> combine(const config::Config& file, const json::value& routes) {
  if (!routes.is_array()) return plain("routes: expected an array");
  const json::array& a = routes.as_array();
  for (size_t i = 0; i < a.size(); ++i) {
    const json::object* o = a[i].if_object();
    const json::value* hop = o ? o->if_contains("hop") : nullptr;
    if (o && (!hop || !hop->is_bool() || !hop->as_bool()))
      return plain("routes[" + std::to_string(i) + "]: a route from the edge must be a hop route");
  }
  boost::system::error_code ec;
  json::value doc = json::parse(config::to_json(file), ec);
  if (ec || !doc.is_object()) return plain("the gateway's own config does not serialize");
  doc.as_object()["routes"] = routes;
  config::ParseOptions opts;
  if (const char* env = std::getenv("RINGFWD_BLOCKED_PORTS"); env && *env)
    opts.blocked_ports_env = env;
  opts.check_files = false;
  config::ParseResult pr = config::parse(json::serialize(doc), opts);
  if (!pr.ok()) {
    std::string msg;
    for (const config::Problem& p : pr.problems) msg += (msg.empty() ? "" : "; ") + p.str();
    return plain(msg.empty() ? "invalid route set" : msg);
  }
  return std::move(*pr.config);
}

std::string stored_path(const config::Config& gateway) {
  return gateway.state_dir + "/synced-routes.json";
}

std::string stored_text(std::string_view hash, const json::value& routes) {
  json::object o{{"version", kVersion}, {"hash", json::string(hash)}, {"routes", routes}};
  return json::serialize(o) + "\n";
}

Result<Stored> read_stored(const std::string& path) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return Error::from_errno(path);
  std::ostringstream ss;
  ss << in.rdbuf();
  boost::system::error_code ec;
  json::value v = json::parse(ss.str(), ec);
  const json::object* o = ec ? nullptr : v.if_object();
  if (!o) return plain(path + ": not a JSON object");
  const json::value* ver = o->if_contains("version");
  if (!ver || !ver->is_int64() || ver->as_int64() != kVersion)
    return plain(path + ": not version " + std::to_string(kVersion));
  Stored s;
  s.hash = string_member(*o, "hash");
  const json::value* r = o->if_contains("routes");
  if (s.hash.empty() || !r || !r->is_array()) return plain(path + ": no hash or routes");
  s.routes = *r;
  return s;
}

}  // namespace rf::sync
