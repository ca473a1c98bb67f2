#pragma once
// The only layer that includes liburing. The data path talks to the ring through these
// small verbs; every request carries one 64-bit user_data (see UserData).
#include <netinet/in.h>
#include <sys/socket.h>

#include <cstdint>
#include <memory>
#include <string>

#include "ringfwd/base/result.hpp"

struct io_uring;
struct io_uring_cqe;
struct io_uring_buf_ring;
struct io_uring_sqe;

namespace rf::uring {

// user_data layout: [ gen:24 | index:32 | op:8 ]. gen lets a handler reject a completion for a
// slot that was reused (it never should: slots are freed only when nothing is in flight).
struct UserData {
  uint8_t op = 0;
  uint32_t index = 0;
  uint32_t gen = 0;
  uint64_t pack() const {
    return uint64_t(op) | (uint64_t(index) << 8) | (uint64_t(gen & 0xffffff) << 40);
  }
  static UserData unpack(uint64_t v) {
    return UserData{uint8_t(v & 0xff), uint32_t((v >> 8) & 0xffffffffu), uint32_t(v >> 40)};
  }
};

struct Features {
  bool single_issuer = false;
  bool defer_taskrun = false;
  bool coop_taskrun = false;
  bool buf_ring = false;
  std::string describe() const;
};

struct Completion {
  uint64_t user_data;
  int32_t res;
  uint32_t flags;
  bool more() const;        // a multishot request stays armed
  int buffer_id() const;    // -1 if no provided buffer was picked
};

class BufferRing;

class Ring {
 public:
  // Creates a ring for the calling thread (SINGLE_ISSUER/DEFER_TASKRUN when the kernel has them).
  static Result<std::unique_ptr<Ring>> create(unsigned sq_entries, unsigned cq_entries);
  ~Ring();
  Ring(const Ring&) = delete;
  Ring& operator=(const Ring&) = delete;

  const Features& features() const { return features_; }

  void accept_multishot(int listen_fd, uint64_t ud);
  // connect with a linked timeout; the timeout's completion carries timeout_ud.
  void connect(int fd, const sockaddr* addr, socklen_t len, uint64_t ud, uint32_t timeout_ms,
               uint64_t timeout_ud);
  void poll(int fd, uint32_t mask, uint64_t ud);
  void recv_select(int fd, uint16_t group, uint32_t max_len, uint64_t ud);
  void recv(int fd, void* buf, uint32_t len, uint64_t ud);  // into the caller's buffer
  void send(int fd, const void* buf, uint32_t len, uint64_t ud);
  void read(int fd, void* buf, uint32_t len, uint64_t ud);
  void timeout_ms(uint32_t ms, uint64_t ud);
  // Cancels every request on fd; the cancel's own completion carries ud.
  void cancel_fd(int fd, uint64_t ud);
  void cancel(uint64_t target_ud, uint64_t ud);

  // Submits and waits for at least one completion, then calls fn(Completion) for each in one
  // batch (one CQ advance). Returns the number handled or a negative errno.
  template <typename Fn>
  int run_once(Fn&& fn);

  // UDP
  // Multishot poll: one completion per readiness event (IORING_CQE_F_MORE while armed), so a
  // socket read with recvmmsg on readiness costs no SQE per event.
  void poll_multishot(int fd, uint32_t mask, uint64_t ud);

 private:
  Ring() = default;
  ::io_uring_sqe* get_sqe();
  int wait();
  unsigned peek_batch(io_uring_cqe** cqes, unsigned max);
  void advance(unsigned n);

  std::unique_ptr<io_uring> ring_;
  Features features_;
  friend class BufferRing;
};

// Provided-buffer ring: the kernel picks a buffer when data arrives, so an idle connection
// holds none.
class BufferRing {
 public:
  static Result<std::unique_ptr<BufferRing>> create(Ring& ring, uint16_t group, uint32_t count,
                                                    uint32_t size);
  ~BufferRing();
  uint8_t* data(int bid) const { return base_ + size_t(bid) * size_; }
  uint32_t size() const { return size_; }
  uint16_t group() const { return group_; }
  void recycle(int bid);

 private:
  BufferRing() = default;
  Ring* ring_ = nullptr;
  io_uring_buf_ring* br_ = nullptr;
  size_t br_bytes_ = 0;
  uint8_t* base_ = nullptr;
  size_t base_bytes_ = 0;
  uint32_t count_ = 0;
  uint32_t size_ = 0;
  uint16_t group_ = 0;
};

template <typename Fn>
int Ring::run_once(Fn&& fn) {
  int w = wait();
  if (w < 0) return w;
  io_uring_cqe* cqes[256];
  int total = 0;
  for (;;) {
    unsigned n = peek_batch(cqes, 256);
    if (n == 0) break;
    for (unsigned i = 0; i < n; ++i) fn(*reinterpret_cast<const Completion*>(cqes[i]));
    advance(n);
    total += int(n);
    if (n < 256) break;
  }
  return total;
}

}  // namespace rf::uring
