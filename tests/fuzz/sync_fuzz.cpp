// libFuzzer target: bytes from a sync peer (the edge, seen from a gateway, or the reverse) go
// through the frame reader, and every "routes" message through the gateway's validation of a
// received set. Never a crash, a hang or an exception; a refused set always says why.
#include <cstddef>
#include <cstdint>
#include <string>

#include "ringfwd/config/config.hpp"
#include "ringfwd/sync/protocol.hpp"

namespace {
const rf::config::Config& gateway() {
  static const rf::config::Config cfg = [] {
    rf::config::ParseOptions opts;
    opts.check_files = false;
    auto r = rf::config::parse(R"({"role":"gateway","gateway_id":"home","tunnel_ip":"10.8.0.2",
      "blocked_ports":[22],"sync":{"edge":"10.8.0.1:7946","token_file":"/etc/ringfwd/token"}})",
                               opts);
    if (!r.ok()) __builtin_trap();
    return *r.config;
  }();
  return cfg;
}
}  // namespace

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rf::sync::FrameReader reader(rf::sync::kMaxFrame);
  // Fed in two pieces: a frame split anywhere must read the same.
  const size_t cut = size ? data[0] % (size + 1) : 0;
  reader.feed(reinterpret_cast<const char*>(data), cut);
  int frames = 0;
  auto drain = [&] {
    while (auto m = reader.next()) {
      ++frames;
      if (rf::sync::type_of(*m) != "routes") continue;
      const boost::json::value* routes = m->if_contains("routes");
      if (!routes) continue;
      auto r = rf::sync::combine(gateway(), *routes);
      if (!r && r.error().str().empty()) __builtin_trap();
      if (r && !routes->is_array()) __builtin_trap();
    }
  };
  drain();
  reader.feed(reinterpret_cast<const char*>(data) + cut, size - cut);
  drain();
  if (!reader.error().empty() && reader.next()) __builtin_trap();  // an error is final
  (void)frames;
  return 0;
}
