#include "ringfwd/base/log.hpp"

#include <unistd.h>

#include <atomic>
#include <cstdio>
#include <cstdlib>
#include <cstring>

namespace rf::log {
namespace {
std::atomic<Level> g_level{[] {
  const char* v = std::getenv("RINGFWD_LOG");
  if (v && std::strcmp(v, "debug") == 0) return Level::Debug;
  if (v && std::strcmp(v, "warn") == 0) return Level::Warn;
  if (v && std::strcmp(v, "error") == 0) return Level::Error;
  return Level::Info;
}()};
const char* tag(Level l) {
  switch (l) {
    case Level::Debug: return "debug";
    case Level::Info: return "info";
    case Level::Warn: return "warn";
    case Level::Error: return "error";
  }
  return "?";
}
}  // namespace

void set_level(Level l) { g_level.store(l, std::memory_order_relaxed); }
Level level() { return g_level.load(std::memory_order_relaxed); }

void write(Level l, const char* fmt, ...) {
  char buf[1024];
  int n = std::snprintf(buf, sizeof buf, "ringfwd[%s]: ", tag(l));
  va_list ap;
  va_start(ap, fmt);
  int m = std::vsnprintf(buf + n, sizeof buf - n - 1, fmt, ap);
  va_end(ap);
  size_t len = static_cast<size_t>(n) + (m < 0 ? 0 : std::min<size_t>(m, sizeof buf - n - 2));
  buf[len++] = '\n';
  // A single write() keeps lines from different workers whole.
  ssize_t w = ::write(STDERR_FILENO, buf, len);
  (void)w;
}

}  // namespace rf::log
