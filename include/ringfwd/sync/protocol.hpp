#pragma once
// The edge <-> gateway sync protocol, version 1 (README "The sync protocol"): frames of a
// 4-byte big-endian length and one JSON object with a "type"; mutual HMAC-SHA256 proof of the
// gateway's token; route sets named by the SHA-256 of their compact JSON. Pure functions and
// a byte-stream frame reader: the sockets live in server.cpp (edge) and client.cpp (gateway).
#include <boost/json.hpp>

#include <cstddef>
#include <cstdint>
#include <optional>
#include <string>
#include <string_view>
#include <vector>

#include "ringfwd/base/result.hpp"
#include "ringfwd/config/config.hpp"

namespace rf::sync {

namespace json = boost::json;

inline constexpr int kVersion = 1;
inline constexpr size_t kMaxFrame = 1 << 20;         // after authentication
inline constexpr size_t kMaxFrameUnauthed = 64 << 10;  // challenge, hello, welcome
inline constexpr int kPingMs = 2000;
inline constexpr int kDeadMs = 6000;

// One frame: length prefix + the object's compact JSON.
std::string encode(const json::object& msg);

// Splits a byte stream into messages. feed() appends bytes; next() gives the next complete
// message, nullopt when more bytes are needed; error() is set (and stays) on a bad frame: too
// long, not JSON, not an object, no string "type".
class FrameReader {
 public:
  explicit FrameReader(size_t max_frame) : max_(max_frame) {}
  void set_max(size_t max_frame) { max_ = max_frame; }
  void feed(const char* data, size_t n) { buf_.append(data, n); }
  std::optional<json::object> next();
  const std::string& error() const { return error_; }
  size_t buffered() const { return buf_.size() - off_; }

 private:
  size_t max_;
  std::string buf_;
  size_t off_ = 0;
  std::string error_;
};

// A message's "type" (the reader guarantees it is a string).
std::string_view type_of(const json::object& msg);
// A string member, "" when absent or not a string.
std::string string_member(const json::object& msg, std::string_view key);

std::string random_hex(size_t bytes);  // getrandom(); "" if the kernel refuses
std::string sha256_hex(std::string_view data);
std::string hmac_hex(std::string_view key, std::string_view data);
bool equal_constant_time(std::string_view a, std::string_view b);

// The proofs of the handshake (README): the gateway's over the edge's nonce and its id, the
// edge's over the gateway's nonce.
std::string gateway_proof(std::string_view token, std::string_view edge_nonce,
                          std::string_view gateway_id);
std::string edge_proof(std::string_view token, std::string_view gateway_nonce);

// A token file's token: its content without surrounding white space; an error names the file
// (unreadable, empty, shorter than 16 characters).
Result<std::string> read_token(const std::string& path);

// Edge: the gateway-form routes of every route of `edge` that targets `gateway_id`, as the
// compact JSON array text that is sent and hashed.
std::string gateway_routes(const config::Config& edge, std::string_view gateway_id);

// Gateway: validates a received route set against the gateway's own config (file): every
// route must be a hop route, and the whole (config + routes) must pass the config file's
// rules (conflicts, blocked ports; certificate files are not checked). Returns the combined
// config, or every problem in one message.
Result<config::Config> combine(const config::Config& file, const json::value& routes);

// The gateway's stored set: state_dir/synced-routes.json = {"version":1,"hash","routes"}.
std::string stored_path(const config::Config& gateway);
std::string stored_text(std::string_view hash, const json::value& routes);
struct Stored {
  std::string hash;
  json::value routes;
};
Result<Stored> read_stored(const std::string& path);  // Error with errno ENOENT: none yet

}  // namespace rf::sync
