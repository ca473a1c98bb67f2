// libFuzzer target: any byte string given to the config parser yields a config or a list of
// problems, never a crash, a hang or an exception (the daemon parses files and D-Bus input).
#include <cstddef>
#include <cstdint>
#include <string_view>

#include "ringfwd/config/config.hpp"

extern "C" int LLVMFuzzerTestOneInput(const uint8_t* data, size_t size) {
  rf::config::ParseOptions opts;
  opts.check_files = false;  // no file-system dependence: the same input, the same result
  auto res = rf::config::parse(
      std::string_view(reinterpret_cast<const char*>(data), size), opts);
  // A valid result has no problems; an invalid one has at least one.
  if (res.config.has_value() != res.problems.empty()) __builtin_trap();
  for (const auto& p : res.problems) (void)p.str();
  return 0;
}
