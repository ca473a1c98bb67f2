#pragma once
// One line per event on stderr (journald adds the timestamp under systemd).
#include <cstdarg>

namespace rf::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3 };

void set_level(Level l);
Level level();
// printf-style; never throws, never allocates beyond a stack buffer.
void write(Level l, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

// Per-call-site budget of lines per second for events a client can trigger at will (failed
// connects, refusals). Not thread-safe: keep one per worker.
class RateLimit {
 public:
  explicit RateLimit(unsigned per_second = 10) : per_second_(per_second) {}
  // True if a line may be written now; counts the ones that may not.
  bool allow(unsigned now_s) {
    if (now_s != second_) {
      second_ = now_s;
      if (suppressed_) write(Level::Warn, "(%u similar messages suppressed)", suppressed_);
      suppressed_ = 0;
      used_ = 0;
    }
    if (used_ < per_second_) {
      ++used_;
      return true;
    }
    ++suppressed_;
    return false;
  }

 private:
  unsigned per_second_;
  unsigned second_ = 0;
  unsigned used_ = 0;
  unsigned suppressed_ = 0;
};

}  // namespace rf::log

#define RF_LOG(lvl, ...)                                                            \
  do {                                                                              \
    if (static_cast<int>(lvl) >= static_cast<int>(::rf::log::level()))              \
      ::rf::log::write(lvl, __VA_ARGS__);                                           \
  } while (0)
#define RF_DEBUG(...) RF_LOG(::rf::log::Level::Debug, __VA_ARGS__)
#define RF_INFO(...) RF_LOG(::rf::log::Level::Info, __VA_ARGS__)
#define RF_WARN(...) RF_LOG(::rf::log::Level::Warn, __VA_ARGS__)
#define RF_ERROR(...) RF_LOG(::rf::log::Level::Error, __VA_ARGS__)
