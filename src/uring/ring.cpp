#include "ringfwd/uring/ring.hpp"

#include <liburing.h>
#include <sys/mman.h>

#include <cerrno>
#include <cstring>

namespace rf::uring {

static_assert(sizeof(Completion) == sizeof(io_uring_cqe), "Completion mirrors io_uring_cqe");
static_assert(offsetof(Completion, res) == offsetof(io_uring_cqe, res));
static_assert(offsetof(Completion, flags) == offsetof(io_uring_cqe, flags));

bool Completion::more() const { return flags & IORING_CQE_F_MORE; }
int Completion::buffer_id() const {
  return (flags & IORING_CQE_F_BUFFER) ? int(flags >> IORING_CQE_BUFFER_SHIFT) : -1;
}

std::string Features::describe() const {
  std::string s;
  s += single_issuer ? "single_issuer " : "";
  s += defer_taskrun ? "defer_taskrun " : "";
  s += coop_taskrun ? "coop_taskrun " : "";
  s += buf_ring ? "buf_ring" : "no-buf_ring";
  return s;
}

Result<std::unique_ptr<Ring>> Ring::create(unsigned sq_entries, unsigned cq_entries) {
  std::unique_ptr<Ring> r(new Ring());
  r->ring_ = std::make_unique<io_uring>();
  // Try the cheapest task-work modes first; older kernels refuse the flags with EINVAL.
  const unsigned tries[] = {
      IORING_SETUP_SINGLE_ISSUER | IORING_SETUP_DEFER_TASKRUN,
      IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER,
      IORING_SETUP_COOP_TASKRUN,
      0,
  };
  int ret = -EINVAL;
  for (unsigned flags : tries) {
    io_uring_params p{};
    p.flags = flags | IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
    p.cq_entries = cq_entries;
    ret = io_uring_queue_init_params(sq_entries, r->ring_.get(), &p);
    if (ret == 0) {
      r->features_.single_issuer = flags & IORING_SETUP_SINGLE_ISSUER;
      r->features_.defer_taskrun = flags & IORING_SETUP_DEFER_TASKRUN;
      r->features_.coop_taskrun = flags & IORING_SETUP_COOP_TASKRUN;
      break;
    }
    if (ret != -EINVAL) break;
  }
  if (ret < 0) return Error::from_errno("io_uring_queue_init", -ret);
  return r;
}

Ring::~Ring() {
  if (ring_) io_uring_queue_exit(ring_.get());
}

io_uring_sqe* Ring::get_sqe() {
  io_uring_sqe* sqe = io_uring_get_sqe(ring_.get());
  while (!sqe) {
    // The SQ is full: hand what we have to the kernel and take a fresh slot.
    io_uring_submit(ring_.get());
    sqe = io_uring_get_sqe(ring_.get());
  }
  return sqe;
}

void Ring::accept_multishot(int listen_fd, uint64_t ud) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_multishot_accept(sqe, listen_fd, nullptr, nullptr, SOCK_NONBLOCK | SOCK_CLOEXEC);
  io_uring_sqe_set_data64(sqe, ud);
}

void Ring::connect(int fd, const sockaddr* addr, socklen_t len, uint64_t ud, uint32_t timeout_ms,
                   uint64_t timeout_ud) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_connect(sqe, fd, addr, len);
  io_uring_sqe_set_data64(sqe, ud);
  if (timeout_ms == 0) return;
  sqe->flags |= IOSQE_IO_LINK;
  // The kernel copies the timespec when the SQE is submitted. A full SQ (<= 4096 entries, two
  // per connect) is always submitted before this rotating pool of 4096 slots wraps.
  static thread_local __kernel_timespec ts_pool[4096];
  static thread_local unsigned ts_next = 0;
  __kernel_timespec* ts = &ts_pool[ts_next++ % 4096];
  ts->tv_sec = timeout_ms / 1000;
  ts->tv_nsec = long(timeout_ms % 1000) * 1000000L;
  io_uring_sqe* t = get_sqe();
  io_uring_prep_link_timeout(t, ts, 0);
  io_uring_sqe_set_data64(t, timeout_ud);
}

void Ring::poll(int fd, uint32_t mask, uint64_t ud) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_poll_add(sqe, fd, mask);
  io_uring_sqe_set_data64(sqe, ud);
}

void Ring::recv_select(int fd, uint16_t group, uint32_t max_len, uint64_t ud) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_recv(sqe, fd, nullptr, max_len, 0);
  sqe->flags |= IOSQE_BUFFER_SELECT;
  sqe->buf_group = group;
  io_uring_sqe_set_data64(sqe, ud);
}

void Ring::recv(int fd, void* buf, uint32_t len, uint64_t ud) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_recv(sqe, fd, buf, len, 0);
  io_uring_sqe_set_data64(sqe, ud);
}

void Ring::send(int fd, const void* buf, uint32_t len, uint64_t ud) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
  io_uring_sqe_set_data64(sqe, ud);
}

void Ring::read(int fd, void* buf, uint32_t len, uint64_t ud) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_read(sqe, fd, buf, len, 0);
  io_uring_sqe_set_data64(sqe, ud);
}

void Ring::timeout_ms(uint32_t ms, uint64_t ud) {
  static thread_local __kernel_timespec ts;
  ts.tv_sec = ms / 1000;
  ts.tv_nsec = long(ms % 1000) * 1000000L;
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_timeout(sqe, &ts, 0, 0);
  io_uring_sqe_set_data64(sqe, ud);
  // Timeouts read the timespec at submission; submit now so the shared slot can be reused.
  io_uring_submit(ring_.get());
}

void Ring::cancel_fd(int fd, uint64_t ud) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_cancel_fd(sqe, fd, IORING_ASYNC_CANCEL_ALL);
  io_uring_sqe_set_data64(sqe, ud);
}

void Ring::cancel(uint64_t target_ud, uint64_t ud) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_cancel64(sqe, target_ud, 0);
  io_uring_sqe_set_data64(sqe, ud);
}

// UDP
void Ring::poll_multishot(int fd, uint32_t mask, uint64_t ud) {
  io_uring_sqe* sqe = get_sqe();
  io_uring_prep_poll_multishot(sqe, fd, mask);
  io_uring_sqe_set_data64(sqe, ud);
}

int Ring::wait() {
  int ret;
  do {
    ret = io_uring_submit_and_wait(ring_.get(), 1);
  } while (ret == -EINTR);
  return ret < 0 ? ret : 0;
}

unsigned Ring::peek_batch(io_uring_cqe** cqes, unsigned max) {
  return io_uring_peek_batch_cqe(ring_.get(), cqes, max);
}

void Ring::advance(unsigned n) { io_uring_cq_advance(ring_.get(), n); }

Result<std::unique_ptr<BufferRing>> BufferRing::create(Ring& ring, uint16_t group, uint32_t count,
                                                       uint32_t size) {
  std::unique_ptr<BufferRing> b(new BufferRing());
  b->ring_ = &ring;
  b->count_ = count;
  b->size_ = size;
  b->group_ = group;
  b->br_bytes_ = count * sizeof(io_uring_buf);
  void* mem = mmap(nullptr, b->br_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) return Error::from_errno("mmap buffer ring");
  b->br_ = static_cast<io_uring_buf_ring*>(mem);
  b->base_bytes_ = size_t(count) * size;
  mem = mmap(nullptr, b->base_bytes_, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
  if (mem == MAP_FAILED) return Error::from_errno("mmap buffers");
  b->base_ = static_cast<uint8_t*>(mem);

  io_uring_buf_reg reg{};
  reg.ring_addr = reinterpret_cast<uint64_t>(b->br_);
  reg.ring_entries = count;
  reg.bgid = group;
  int ret = io_uring_register_buf_ring(ring.ring_.get(), &reg, 0);
  if (ret < 0) return Error::from_errno("io_uring_register_buf_ring", -ret);
  io_uring_buf_ring_init(b->br_);
  const int mask = io_uring_buf_ring_mask(count);
  for (uint32_t i = 0; i < count; ++i)
    io_uring_buf_ring_add(b->br_, b->data(int(i)), size, uint16_t(i), mask, int(i));
  io_uring_buf_ring_advance(b->br_, int(count));
  ring.features_.buf_ring = true;
  return b;
}

BufferRing::~BufferRing() {
  if (ring_ && br_) io_uring_unregister_buf_ring(ring_->ring_.get(), group_);
  if (br_) munmap(br_, br_bytes_);
  if (base_) munmap(base_, base_bytes_);
}

void BufferRing::recycle(int bid) {
  io_uring_buf_ring_add(br_, data(bid), size_, uint16_t(bid), io_uring_buf_ring_mask(count_), 0);
  io_uring_buf_ring_advance(br_, 1);
}

}  // namespace rf::uring
