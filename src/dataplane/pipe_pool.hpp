#pragma once
// Per-worker pool of pipes for splice. A connection takes a pipe only while bytes are in
// flight and gives it back empty, so idle connections hold none.
#include <cstdint>
#include <vector>

#include "ringfwd/base/unique_fd.hpp"

namespace rf::dataplane {

struct Pipe {
  UniqueFd r;
  UniqueFd w;
  explicit operator bool() const { return r.valid(); }
};

class PipePool {
 public:
  PipePool(uint32_t pipe_size, uint32_t max_idle) : want_size_(pipe_size), max_idle_(max_idle) {}
  // Returns an empty pipe (from the pool or new); an invalid Pipe if the system is out of fds.
  Pipe acquire();
  // Takes back an EMPTY pipe; pipes with bytes left in them must be dropped instead.
  void release(Pipe&& p);
  uint32_t capacity() const { return size_; }
  size_t idle() const { return free_.size(); }

 private:
  uint32_t want_size_;
  uint32_t max_idle_;
  uint32_t size_ = 65536;  // what F_SETPIPE_SZ actually gave us
  bool size_checked_ = false;
  std::vector<Pipe> free_;
};

}  // namespace rf::dataplane
