#pragma once
// Owner of the sockmap dataplane's BPF object (bpf/redirect.bpf.c): the verdict program, its
// two sockhashes, the per-direction flow entries and the counters. One per process, shared by
// all workers: every operation is a bpf() syscall on a map, which the kernel serializes; nothing
// here takes a lock.
#include <cstddef>
#include <cstdint>
#include <memory>
#include <optional>
#include <string>

#include "ringfwd/base/result.hpp"

namespace rf::bpf {

class Sockmap {
 public:
  struct Options {
    uint32_t max_sockets = 65536;           // sockets at once (two per connection)
    uint32_t inflight_limit = 64u << 20;   // queued for a slow receiver: throttle the sender
    uint32_t sndbuf = 8u << 20;            // SO_SNDBUF of linked sockets (the kernel doubles it)
  };
  // Loads and attaches the program, then proves it on a loopback connection pair (bytes queued
  // before insertion, a redirect both ways, a FIN seen by poll). The error says what is
  // missing: "not built", privileges (CAP_BPF + CAP_NET_ADMIN), or what the kernel refused.
  static Result<std::unique_ptr<Sockmap>> open(const Options& opts);
  ~Sockmap();
  Sockmap(const Sockmap&) = delete;
  Sockmap& operator=(const Sockmap&) = delete;

  static uint64_t cookie(int fd);  // SO_COOKIE, 0 on failure

  // Pairs two established TCP sockets, each one's bytes going to the other, and hands the
  // directions to the kernel: flow entries first, then the verdict map (b before a), then the
  // verdict runs over what is already queued (an SO_RCVLOWAT kick). Read what userspace needs
  // before this (consumed()): afterwards the sockets' ioctls answer for the sockmap's queue.
  // Returns the directions handed over: bit 0 = a's bytes, bit 1 = b's. A socket that stopped
  // being ESTABLISHED meanwhile (its peer closed) stays with userspace; an error means none.
  Result<unsigned> link(int a, uint64_t cookie_a, int b, uint64_t cookie_b);
  // Drops a direction's entries, at close (sockets leave the sockhashes when they close).
  void forget(uint64_t cookie);

  struct Flow {
    uint64_t redirected = 0;  // bytes sent on since link()
    uint64_t last_ns = 0;     // CLOCK_MONOTONIC of the last buffer, 0 if none yet
  };
  std::optional<Flow> flow(uint64_t cookie) const;

  // Bytes of fd's stream the application has read (copied_seq), read consistently; only
  // before link().
  static std::optional<uint64_t> consumed(int fd);
  // Bytes fd has received in order (TCP_INFO bytes_received).
  static std::optional<uint64_t> received(int fd);
  // Bytes the kernel has taken into fd's send queue since the connection started (acked +
  // queued), read consistently; nullopt if it kept changing under us or fd is not TCP.
  static std::optional<uint64_t> written(int fd);

  struct Counters {
    uint64_t skbs = 0, bytes = 0, drops = 0;
  };
  Counters counters() const;  // summed over CPUs
  size_t flows() const;       // flow entries (a leak check: 0 once every connection closed)
  size_t verdict_sockets() const;  // sockets in the verdict map
  uint32_t inflight_limit() const { return opts_.inflight_limit; }
  uint32_t sndbuf() const { return opts_.sndbuf; }

 private:
  Sockmap() = default;
  struct Impl;
  std::unique_ptr<Impl> impl_;
  Options opts_;
};

}  // namespace rf::bpf
