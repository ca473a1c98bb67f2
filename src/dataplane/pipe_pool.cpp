#include "pipe_pool.hpp"

#include <fcntl.h>
#include <unistd.h>

#include "ringfwd/base/log.hpp"

namespace rf::dataplane {

Pipe PipePool::acquire() {
  if (!free_.empty()) {
    Pipe p = std::move(free_.back());
    free_.pop_back();
    return p;
  }
  int fds[2];
  if (pipe2(fds, O_NONBLOCK | O_CLOEXEC) < 0) return {};
  Pipe p{UniqueFd(fds[0]), UniqueFd(fds[1])};
  // Big pipes mean fewer splice calls per megabyte; the per-user pipe quota may refuse the
  // size, so fall back step by step and remember what we got.
  for (uint32_t sz = want_size_; sz >= 65536; sz /= 2) {
    int got = fcntl(p.w.get(), F_SETPIPE_SZ, int(sz));
    if (got > 0) {
      if (!size_checked_ || uint32_t(got) < size_) size_ = uint32_t(got);
      if (!size_checked_ && uint32_t(got) < want_size_)
        RF_WARN("pipe size %u refused, using %d bytes per pipe", want_size_, got);
      size_checked_ = true;
      break;
    }
  }
  return p;
}

void PipePool::release(Pipe&& p) {
  if (!p) return;
  if (free_.size() < max_idle_) free_.push_back(std::move(p));
  // else: the Pipe's destructor closes both ends
}

}  // namespace rf::dataplane
