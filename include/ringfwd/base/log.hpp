#pragma once
// One line per event on stderr (journald adds the timestamp under systemd).
#include <cstdarg>

namespace rf::log {

enum class Level { Debug = 0, Info = 1, Warn = 2, Error = 3 };

void set_level(Level l);
Level level();
// printf-style; never throws, never allocates beyond a stack buffer.
void write(Level l, const char* fmt, ...) __attribute__((format(printf, 2, 3)));

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
