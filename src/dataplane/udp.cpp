// UDP flows for one worker (SPEC §1, §3).
//
// Readiness, not io_uring reads: each listening socket and each flow's upstream socket has one
// multishot POLLIN in the ring, and a readiness completion is drained synchronously with
// recvmmsg(MSG_DONTWAIT) and forwarded with sendmmsg, 64 datagrams per system call. Datagrams
// are small and many; two batched syscalls per 64 of them beat one SQE + CQE per datagram, and
// the multishot poll costs no SQE per event.
//
// A flow is (listener, client address and port). It owns a socket connect()ed to the route's
// target, so the kernel demultiplexes the replies and the flow table is only consulted in the
// client -> target direction. Flows are never evicted to make room: a flood of new source
// addresses is refused at the caps (global, route, per client IP), so it cannot push out live
// flows, and memory stays bounded by those caps.
#include "udp.hpp"

#include <netinet/in.h>
#include <netinet/udp.h>
#include <poll.h>
#include <sys/mman.h>
#include <sys/socket.h>

#include <array>
#include <cerrno>
#include <cstring>
#include <deque>
#include <mutex>
#include <span>
#include <unordered_map>
#include <vector>

#include "ringfwd/base/net.hpp"
#include "wol.hpp"
#include "ringfwd/proto/proxy_header.hpp"

namespace rf::dataplane {

namespace {

enum UdpOp : uint8_t {
  kListenPoll = kUdpOpFirst,  // multishot POLLIN on a listening socket
  kListenKick,                // one-shot POLLIN: resumes a drain that used up its budget
  kFlowPoll,                  // multishot POLLIN on a flow's upstream socket
  kFlowKick,
  kCancelDone,  // a cancel's own completion: nobody waits for it
};
static_assert(kCancelDone <= kUdpOpLast);

constexpr unsigned kBatch = 64;
// Every slot holds the largest UDP datagram, so nothing is ever truncated: a forwarder that
// publishes arbitrary protocols cannot assume an MTU (DNS over EDNS, NFS, game state dumps).
// The slots are one anonymous mapping, so only the pages that datagrams really reach become
// resident: 64 small datagrams touch 64 pages (256 KiB), not 4 MiB.
constexpr size_t kSlotBytes = 65536;
// A few cache lines more than the slot: starts 64 KiB apart would all fall into the same L1/L2
// sets and evict each other while a batch is copied in and out.
constexpr size_t kSlotStride = kSlotBytes + 256;
// recvmmsg calls per readiness event before the rest of the ring gets its turn; a one-shot
// poll (kick) then resumes the drain after the completions already queued.
constexpr unsigned kDrainBatches = 8;
// A v2 header with IPv6 addresses is 16 + 36 bytes.
constexpr size_t kMaxProxyHeader = 64;
// Largest UDP payload over IPv4 (65535 - 20 - 8).
constexpr size_t kMaxUdpPayload = 65507;
constexpr uint32_t kNone = 0xffffffffu;

// A client address reduced to what identifies it: IPv4-mapped IPv6 (a dual-stack listener)
// folds into IPv4 so that one client is one key whatever socket it came through.
struct Addr {
  uint8_t family = 0;
  uint8_t pad = 0;
  uint16_t port = 0;  // network order; 0 in per-IP keys
  uint8_t ip[16] = {};
};

Addr addr_of(const sockaddr_storage& ss, bool with_port) {
  Addr a;
  if (ss.ss_family == AF_INET) {
    const auto& sin = reinterpret_cast<const sockaddr_in&>(ss);
    a.family = AF_INET;
    std::memcpy(a.ip, &sin.sin_addr, 4);
    if (with_port) a.port = sin.sin_port;
  } else if (ss.ss_family == AF_INET6) {
    const auto& sin6 = reinterpret_cast<const sockaddr_in6&>(ss);
    if (IN6_IS_ADDR_V4MAPPED(&sin6.sin6_addr)) {
      a.family = AF_INET;
      std::memcpy(a.ip, sin6.sin6_addr.s6_addr + 12, 4);
    } else {
      a.family = AF_INET6;
      std::memcpy(a.ip, sin6.sin6_addr.s6_addr, 16);
    }
    if (with_port) a.port = sin6.sin6_port;
  }
  return a;
}

// The destination of a datagram read from a wildcard listener (its IP_PKTINFO), with the
// listener's port. False when the kernel attached none.
bool local_address(const msghdr& h, uint16_t port, sockaddr_storage& out) {
  for (cmsghdr* c = CMSG_FIRSTHDR(&h); c; c = CMSG_NXTHDR(const_cast<msghdr*>(&h), c)) {
    if (c->cmsg_level == IPPROTO_IP && c->cmsg_type == IP_PKTINFO) {
      in_pktinfo pi;
      std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
      out = {};
      auto& sin = reinterpret_cast<sockaddr_in&>(out);
      sin.sin_family = AF_INET;
      sin.sin_addr = pi.ipi_addr;
      sin.sin_port = htons(port);
      return true;
    }
    if (c->cmsg_level == IPPROTO_IPV6 && c->cmsg_type == IPV6_PKTINFO) {
      in6_pktinfo pi;
      std::memcpy(&pi, CMSG_DATA(c), sizeof pi);
      out = {};
      auto& sin6 = reinterpret_cast<sockaddr_in6&>(out);
      sin6.sin6_family = AF_INET6;
      sin6.sin6_addr = pi.ipi6_addr;
      sin6.sin6_port = htons(port);
      return true;
    }
  }
  return false;
}

// Writes a control message that makes a reply leave from `local`; returns its length.
size_t source_cmsg(const sockaddr_storage& local, uint8_t* buf) {
  msghdr h{};
  h.msg_control = buf;
  if (local.ss_family == AF_INET) {
    h.msg_controllen = CMSG_SPACE(sizeof(in_pktinfo));
    cmsghdr* c = CMSG_FIRSTHDR(&h);
    c->cmsg_level = IPPROTO_IP;
    c->cmsg_type = IP_PKTINFO;
    c->cmsg_len = CMSG_LEN(sizeof(in_pktinfo));
    in_pktinfo pi{};
    pi.ipi_spec_dst = reinterpret_cast<const sockaddr_in&>(local).sin_addr;
    std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
    return CMSG_SPACE(sizeof(in_pktinfo));
  }
  h.msg_controllen = CMSG_SPACE(sizeof(in6_pktinfo));
  cmsghdr* c = CMSG_FIRSTHDR(&h);
  c->cmsg_level = IPPROTO_IPV6;
  c->cmsg_type = IPV6_PKTINFO;
  c->cmsg_len = CMSG_LEN(sizeof(in6_pktinfo));
  in6_pktinfo pi{};
  pi.ipi6_addr = reinterpret_cast<const sockaddr_in6&>(local).sin6_addr;
  std::memcpy(CMSG_DATA(c), &pi, sizeof pi);
  return CMSG_SPACE(sizeof(in6_pktinfo));
}

struct FlowKey {
  uint32_t li = 0;
  Addr addr;
  bool operator==(const FlowKey& o) const { return std::memcmp(this, &o, sizeof *this) == 0; }
};
static_assert(sizeof(FlowKey) == 24);

struct ClientKey {
  const void* owner = nullptr;  // the engine: counts of two engines in one process never mix
  Addr addr;
  uint32_t zero = 0;  // no padding: the key is compared and hashed as bytes
  bool operator==(const ClientKey& o) const { return std::memcmp(this, &o, sizeof *this) == 0; }
};
static_assert(sizeof(ClientKey) == 32);

// Keys are plain bytes without padding holes: hash them as 64-bit words.
template <typename K>
struct WordHash {
  size_t operator()(const K& k) const {
    static_assert(sizeof(K) % 8 == 0);
    uint64_t h = 0x9e3779b97f4a7c15ull;
    const auto* p = reinterpret_cast<const unsigned char*>(&k);
    for (size_t i = 0; i < sizeof(K); i += 8) {
      uint64_t w;
      std::memcpy(&w, p + i, 8);
      h = (h ^ w) * 0xbf58476d1ce4e5b9ull;
      h ^= h >> 31;
    }
    return size_t(h);
  }
};

// Flows per client IP across all workers: SO_REUSEPORT hashes the 4-tuple, so one address's
// flows (different source ports) land on different workers, and a per-worker count would let
// a client hold workers x udp_flows_per_client. Touched only when a flow is created or closed,
// never per datagram; striped so that workers rarely meet on one lock.
class ClientFlows {
 public:
  bool acquire(const ClientKey& k, uint32_t cap) {
    Stripe& s = stripe(k);
    std::lock_guard<std::mutex> lock(s.mu);
    uint32_t& n = s.counts[k];
    if (n >= cap) {
      if (n == 0) s.counts.erase(k);
      return false;
    }
    ++n;
    return true;
  }
  void release(const ClientKey& k) {
    Stripe& s = stripe(k);
    std::lock_guard<std::mutex> lock(s.mu);
    auto it = s.counts.find(k);
    if (it != s.counts.end() && --it->second == 0) s.counts.erase(it);
  }

 private:
  struct Stripe {
    std::mutex mu;
    std::unordered_map<ClientKey, uint32_t, WordHash<ClientKey>> counts;
  };
  Stripe& stripe(const ClientKey& k) {
    return stripes_[WordHash<ClientKey>{}(k) % stripes_.size()];
  }
  std::array<Stripe, 16> stripes_;
};

ClientFlows& client_flows() {
  // Never destroyed: a worker may still release a count while the process exits.
  static ClientFlows* flows = new ClientFlows;
  return *flows;
}

struct ListenerSlot {
  UniqueFd fd;
  const routing::ResolvedRoute* route = nullptr;
  std::shared_ptr<const routing::RouteTable> table;  // keeps `route` alive
  sockaddr_storage local{};                          // the PROXY header's destination
  std::string key;
  uint64_t close_at = 0;  // dual-bind overlap end; 0 = none
  uint32_t gen = 0;
  uint32_t inflight = 0;  // polls whose last completion is still due
  uint16_t port = 0;
  // Bound to 0.0.0.0 / "::": each datagram says which local address it was sent to
  // (IP_PKTINFO), and replies leave from that address.
  bool wildcard = false;
  bool in_use = false;
  bool armed = false;   // multishot poll in the ring
  bool kicked = false;  // one-shot poll in the ring
  bool closing = false;
};

struct FlowSlot {
  UniqueFd fd;  // connected to the target
  const routing::ResolvedRoute* route = nullptr;
  std::shared_ptr<const routing::RouteTable> table;
  sockaddr_storage client{};
  socklen_t client_len = 0;
  // The address the client sent to: the PROXY header's destination and, on a wildcard
  // listener, the source of every reply (a multi-homed host would otherwise answer from the
  // address its routing table prefers, and the client would drop that reply).
  sockaddr_storage local{};
  bool local_from_pktinfo = false;
  FlowKey key;
  uint64_t last_active = 0;
  uint32_t li = 0;
  uint32_t gen = 0;
  uint32_t inflight = 0;
  uint8_t pp_len = 0;  // PROXY v2 header in front of every datagram sent up
  uint8_t pp[kMaxProxyHeader];
  bool in_use = false;
  bool armed = false;
  bool kicked = false;
  bool closing = false;
  bool failed_counted = false;  // conns_failed counts a flow once
  bool ip_counted = false;      // holds one unit of its client's udp_flows_per_client
};

}  // namespace

struct UdpPath::Impl {
  Impl(unsigned worker_id, uring::Ring& r, EngineShared& s) : id(worker_id), ring(r), shared(s) {}
  ~Impl();

  bool init_buffers();
  uint64_t ud(uint8_t op, uint32_t idx, uint32_t gen) const {
    return uring::UserData{op, idx, gen}.pack();
  }
  uint64_t cancel_ud() const { return uring::UserData{kCancelDone, 0, 0}.pack(); }
  unsigned now_s() const { return unsigned(now / 1000); }

  void arm_listener(uint32_t li);
  void arm_flow(uint32_t fi);
  void on_listener(uint32_t li, uint8_t op, const uring::Completion& c);
  void on_flow(uint32_t fi, uint8_t op, const uring::Completion& c);
  void drain_listener(uint32_t li);
  void drain_flow(uint32_t fi);
  void forward_up(uint32_t li, unsigned n);
  void flush_up(uint32_t fi, unsigned first, unsigned count);
  unsigned gso_run(unsigned i, unsigned n) const;
  int send_gso(int fd, unsigned first, unsigned count);
  // Sends out[first, first+count) on fd (one destination: a flow's socket, or one client):
  // GSO runs where they pay, sendmmsg for the rest. A datagram the kernel refuses is skipped
  // after on_error(errno); a full socket buffer drops the rest (UDP). Returns payload bytes
  // sent (each datagram's last iovec: without a PROXY header).
  template <typename OnError>
  uint64_t send_out(int fd, unsigned first, unsigned count, OnError&& on_error);
  uint32_t create_flow(uint32_t li, unsigned i, const FlowKey& key);
  void refuse(const routing::ResolvedRoute* route, const sockaddr_storage& client, const char* why);
  void flow_failed(FlowSlot& f, int err, const char* what);
  void close_flow(uint32_t fi, const char* why);
  void close_listener(uint32_t li);
  void maybe_free_flow(uint32_t fi);
  void maybe_free_listener(uint32_t li);
  void forget_draining(const routing::RouteTable& table);

  unsigned id;
  uring::Ring& ring;
  EngineShared& shared;
  std::deque<ListenerSlot> listeners;  // deque: references stay valid while slots are added
  std::vector<uint32_t> free_listeners;
  std::unordered_map<std::string, uint32_t> by_key;  // open listeners only
  std::deque<FlowSlot> flows;
  std::vector<uint32_t> free_flows;
  std::unordered_map<FlowKey, uint32_t, WordHash<FlowKey>> by_client;
  struct Draining {
    std::string route_id;
    uint64_t until_ms;
  };
  std::vector<Draining> draining;
  size_t live = 0;  // slots not yet freed: open sockets and closed ones with a poll in the ring

  // Per-worker batch state, shared by both directions (a batch is forwarded before the next
  // is read).
  uint8_t* slots = nullptr;
  size_t slots_bytes = 0;
  std::array<mmsghdr, kBatch> in{};
  std::array<iovec, kBatch> in_iov{};
  std::array<sockaddr_storage, kBatch> names{};
  // IP_PKTINFO / IPV6_PKTINFO: in from a wildcard listener, out on its replies.
  static constexpr size_t kCtlBytes = CMSG_SPACE(sizeof(in6_pktinfo));
  alignas(cmsghdr) std::array<std::array<uint8_t, kCtlBytes>, kBatch> in_ctl{};
  alignas(cmsghdr) std::array<std::array<uint8_t, kCtlBytes>, kBatch> out_ctl{};
  std::array<mmsghdr, kBatch> out{};
  std::array<std::array<iovec, 2>, kBatch> out_iov{};
  // UDP GSO: one send for a run of equal-size datagrams (probed: off after the first refusal).
  std::array<iovec, 2 * kBatch> gso_iov{};
  alignas(cmsghdr) std::array<uint8_t, kCtlBytes + CMSG_SPACE(sizeof(uint16_t))> gso_ctl{};
  bool gso = true;

  log::RateLimit warn{20};
  uint64_t now = 0;
  WolSender* waker = nullptr;
  void wake(const routing::ResolvedRoute& r) {
    if (r.wol_here && waker && waker->wake(r, now))
      r.counters->wol_packets.fetch_add(1, std::memory_order_relaxed);
  }
  bool accepting = true;
  bool stopping = false;
  bool pp_missing_logged = false;
};

UdpPath::Impl::~Impl() {
  if (slots) munmap(slots, slots_bytes);
}

bool UdpPath::Impl::init_buffers() {
  slots_bytes = kSlotStride * kBatch;
  void* m = mmap(nullptr, slots_bytes, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0);
  if (m == MAP_FAILED) {
    RF_ERROR("worker %u: udp buffers: mmap: %s", id, std::strerror(errno));
    slots = nullptr;
    return false;
  }
  slots = static_cast<uint8_t*>(m);
  for (unsigned i = 0; i < kBatch; ++i) {
    in_iov[i] = iovec{slots + size_t(i) * kSlotStride, kSlotBytes};
    in[i].msg_hdr.msg_iov = &in_iov[i];
    in[i].msg_hdr.msg_iovlen = 1;
    in[i].msg_hdr.msg_name = &names[i];
    out[i].msg_hdr.msg_iov = out_iov[i].data();
  }
  return true;
}

// ---------------------------------------------------------------------------------- polls

void UdpPath::Impl::arm_listener(uint32_t li) {
  ListenerSlot& l = listeners[li];
  if (l.armed || l.closing || !l.fd) return;
  ring.poll_multishot(l.fd.get(), POLLIN, ud(kListenPoll, li, l.gen));
  l.armed = true;
  l.inflight++;
}

void UdpPath::Impl::arm_flow(uint32_t fi) {
  FlowSlot& f = flows[fi];
  if (f.armed || f.closing || !f.fd) return;
  ring.poll_multishot(f.fd.get(), POLLIN, ud(kFlowPoll, fi, f.gen));
  f.armed = true;
  f.inflight++;
}

void UdpPath::Impl::on_listener(uint32_t li, uint8_t op, const uring::Completion& c) {
  ListenerSlot& l = listeners[li];
  if (op == kListenPoll) {
    if (!c.more()) {
      l.armed = false;
      l.inflight--;
    }
  } else {
    l.kicked = false;
    l.inflight--;
  }
  if (l.closing) return maybe_free_listener(li);
  if (c.res < 0) {
    // Left unarmed: tick() re-arms, so a persistent error cannot spin the worker.
    if (c.res != -ECANCELED && warn.allow(now_s()))
      RF_WARN("route=%s port %s: udp poll: %s", l.route->route.id.c_str(), l.key.c_str(),
              std::strerror(-c.res));
    return;
  }
  drain_listener(li);
  // The kernel ends a multishot poll on its own at times (CQ overflow): take it up again.
  if (!l.armed && !l.closing) arm_listener(li);
}

void UdpPath::Impl::on_flow(uint32_t fi, uint8_t op, const uring::Completion& c) {
  FlowSlot& f = flows[fi];
  if (op == kFlowPoll) {
    if (!c.more()) {
      f.armed = false;
      f.inflight--;
    }
  } else {
    f.kicked = false;
    f.inflight--;
  }
  if (f.closing) return maybe_free_flow(fi);
  if (c.res < 0) return;  // tick() re-arms
  drain_flow(fi);
  if (!f.armed && !f.closing) arm_flow(fi);
}

// ------------------------------------------------------------------- client -> target

void UdpPath::Impl::drain_listener(uint32_t li) {
  const int fd = listeners[li].fd.get();
  const bool pktinfo = listeners[li].wildcard;
  for (unsigned b = 0; b < kDrainBatches; ++b) {
    for (unsigned i = 0; i < kBatch; ++i) {
      in[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      in[i].msg_hdr.msg_flags = 0;
      in[i].msg_hdr.msg_control = pktinfo ? in_ctl[i].data() : nullptr;
      in[i].msg_hdr.msg_controllen = pktinfo ? kCtlBytes : 0;
    }
    const int n = ::recvmmsg(fd, in.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno != EAGAIN && errno != EWOULDBLOCK && warn.allow(now_s()))
        RF_WARN("route=%s port %s: udp recvmmsg: %s", listeners[li].route->route.id.c_str(),
                listeners[li].key.c_str(), std::strerror(errno));
      return;
    }
    forward_up(li, unsigned(n));
    // Fewer than asked: the queue was empty a moment ago, and any datagram that came since
    // has woken the multishot poll again.
    if (unsigned(n) < kBatch) return;
  }
  ListenerSlot& l = listeners[li];
  if (!l.kicked) {
    ring.poll(l.fd.get(), POLLIN, ud(kListenKick, li, l.gen));
    l.kicked = true;
    l.inflight++;
  }
}

// Datagrams in[0..n) came from clients of listener li: find each one's flow (creating it when
// admitted) and send runs of consecutive datagrams of one flow with one sendmmsg.
void UdpPath::Impl::forward_up(uint32_t li, unsigned n) {
  uint32_t run_flow = kNone;
  unsigned run_start = 0, m = 0;
  FlowKey prev;
  uint32_t prev_flow = kNone;
  for (unsigned i = 0; i < n; ++i) {
    const msghdr& h = in[i].msg_hdr;
    // Cannot happen with 64 KiB slots; should it, a cut datagram is never forwarded.
    if (h.msg_flags & MSG_TRUNC) continue;
    FlowKey key;
    key.li = li;
    key.addr = addr_of(names[i], true);
    uint32_t fi;
    if (prev_flow != kNone && key == prev) {
      fi = prev_flow;  // bursts from one client: no hash lookup
    } else {
      auto it = by_client.find(key);
      fi = it != by_client.end() ? it->second : create_flow(li, i, key);
      prev = key;
      prev_flow = fi;
    }
    if (fi == kNone) continue;  // refused: dropped
    if (fi != run_flow && m > run_start) {
      flush_up(run_flow, run_start, m - run_start);
      run_start = m;
    }
    run_flow = fi;
    const FlowSlot& f = flows[fi];
    auto& iov = out_iov[m];
    msghdr& o = out[m].msg_hdr;
    o.msg_name = nullptr;
    o.msg_namelen = 0;
    o.msg_control = nullptr;
    o.msg_controllen = 0;
    o.msg_flags = 0;
    // PROXY v2 rides in front of EVERY datagram: UDP may lose or reorder any of them, so the
    // target cannot rely on having seen the first one; each datagram names its client itself.
    if (f.pp_len) {
      iov[0] = iovec{const_cast<uint8_t*>(f.pp), f.pp_len};
      iov[1] = iovec{in_iov[i].iov_base, in[i].msg_len};
      o.msg_iovlen = 2;
    } else {
      iov[0] = iovec{in_iov[i].iov_base, in[i].msg_len};
      o.msg_iovlen = 1;
    }
    ++m;
  }
  if (m > run_start) flush_up(run_flow, run_start, m - run_start);
}

// UDP GSO (UDP_SEGMENT): a run of datagrams of one size to one flow leaves in one send and
// the kernel cuts it into datagrams again, so the run crosses the send path of the stack once
// instead of once per datagram. Worth it from a few datagrams on; sizes must match (the last
// may be shorter) and the whole run fits one IP packet's worth of payload.
namespace {
constexpr unsigned kGsoMinRun = 4;
constexpr unsigned kGsoMaxSegments = 64;
constexpr size_t kGsoMaxBytes = 65000;
size_t wire_len(const msghdr& o) {
  size_t t = 0;
  for (size_t j = 0; j < o.msg_iovlen; ++j) t += o.msg_iov[j].iov_len;
  return t;
}
}  // namespace

// How many datagrams from out[i] (of n) one GSO send can carry.
unsigned UdpPath::Impl::gso_run(unsigned i, unsigned n) const {
  const size_t seg = wire_len(out[i].msg_hdr);
  if (seg == 0) return 1;
  unsigned k = 1;
  size_t total = seg;
  while (k < n && k < kGsoMaxSegments) {
    const size_t len = wire_len(out[i + k].msg_hdr);
    if (len == 0 || len > seg || total + len > kGsoMaxBytes) break;
    total += len;
    ++k;
    if (len < seg) break;  // a shorter datagram can only be the last segment
  }
  return k;
}

// Sends out[first, first+count) as one GSO datagram train; 0 or an errno.
int UdpPath::Impl::send_gso(int fd, unsigned first, unsigned count) {
  size_t iovs = 0;
  for (unsigned k = 0; k < count; ++k) {
    const msghdr& o = out[first + k].msg_hdr;
    for (size_t j = 0; j < o.msg_iovlen; ++j) gso_iov[iovs++] = o.msg_iov[j];
  }
  const msghdr& head = out[first].msg_hdr;  // every datagram of the run shares it
  const uint16_t seg = uint16_t(wire_len(head));
  msghdr m{};
  m.msg_name = head.msg_name;
  m.msg_namelen = head.msg_namelen;
  m.msg_iov = gso_iov.data();
  m.msg_iovlen = iovs;
  // The datagrams' own control data (IP_PKTINFO: the source address), then UDP_SEGMENT.
  const size_t own = head.msg_control ? head.msg_controllen : 0;
  if (own) std::memcpy(gso_ctl.data(), head.msg_control, own);
  cmsghdr* c = reinterpret_cast<cmsghdr*>(gso_ctl.data() + own);
  c->cmsg_level = SOL_UDP;
  c->cmsg_type = UDP_SEGMENT;
  c->cmsg_len = CMSG_LEN(sizeof seg);
  std::memcpy(CMSG_DATA(c), &seg, sizeof seg);
  m.msg_control = gso_ctl.data();
  m.msg_controllen = own + CMSG_SPACE(sizeof seg);
  for (;;) {
    if (::sendmsg(fd, &m, MSG_DONTWAIT | MSG_NOSIGNAL) >= 0) return 0;
    if (errno != EINTR) return errno;
  }
}

template <typename OnError>
uint64_t UdpPath::Impl::send_out(int fd, unsigned first, unsigned count, OnError&& on_error) {
  uint64_t bytes = 0;
  auto payload = [&](unsigned from, unsigned n) {
    for (unsigned k = 0; k < n; ++k) {
      const msghdr& o = out[first + from + k].msg_hdr;
      bytes += o.msg_iov[o.msg_iovlen - 1].iov_len;
    }
  };
  unsigned done = 0;
  while (done < count) {
    unsigned limit = count;
    if (gso) {
      const unsigned k = gso_run(first + done, count - done);
      if (k >= kGsoMinRun) {
        const int err = send_gso(fd, first + done, k);
        if (err == 0) {
          payload(done, k);
          done += k;
          continue;
        }
        if (err == EAGAIN || err == EWOULDBLOCK || err == ENOBUFS) break;  // UDP: dropped
        if (err == EINVAL || err == EIO || err == EOPNOTSUPP || err == ENOPROTOOPT) {
          // This kernel or device cannot segment: plain batches from now on.
          gso = false;
          RF_INFO("worker %u: udp: GSO unavailable (%s); sending datagram by datagram", id,
                  std::strerror(err));
          continue;
        }
        on_error(err);
        done += k;
        continue;
      }
      // Datagrams of mixed sizes: a plain batch up to where a GSO run starts.
      limit = done + 1;
      while (limit < count && gso_run(first + limit, count - limit) < kGsoMinRun) ++limit;
    }
    const int r = ::sendmmsg(fd, &out[first + done], limit - done, MSG_DONTWAIT | MSG_NOSIGNAL);
    if (r < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK || errno == ENOBUFS) break;  // UDP: dropped
      // The datagram at `done` is not sent (ICMP error from an earlier one, too big): skip it.
      on_error(errno);
      ++done;
      continue;
    }
    payload(done, unsigned(r));
    done += unsigned(r);
  }
  return bytes;
}

void UdpPath::Impl::flush_up(uint32_t fi, unsigned first, unsigned count) {
  FlowSlot& f = flows[fi];
  f.last_active = now;
  const uint64_t bytes =
      send_out(f.fd.get(), first, count, [&](int err) { flow_failed(f, err, "send to"); });
  if (bytes) f.route->counters->bytes_up.fetch_add(bytes, std::memory_order_relaxed);
}

// ------------------------------------------------------------------- target -> client

void UdpPath::Impl::drain_flow(uint32_t fi) {
  FlowSlot& f = flows[fi];
  const ListenerSlot& l = listeners[f.li];
  for (unsigned b = 0; b < kDrainBatches; ++b) {
    for (unsigned i = 0; i < kBatch; ++i) {
      in[i].msg_hdr.msg_namelen = sizeof(sockaddr_storage);
      in[i].msg_hdr.msg_flags = 0;
      in[i].msg_hdr.msg_control = nullptr;
      in[i].msg_hdr.msg_controllen = 0;
    }
    const int n = ::recvmmsg(f.fd.get(), in.data(), kBatch, MSG_DONTWAIT, nullptr);
    if (n < 0) {
      if (errno == EINTR) continue;
      if (errno == EAGAIN || errno == EWOULDBLOCK) return;
      // ECONNREFUSED: an ICMP port unreachable reported once; datagrams may still follow.
      const int err = errno;
      flow_failed(f, err, "recv from");
      if (err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH) continue;
      return;
    }
    unsigned m = 0;
    for (unsigned i = 0; i < unsigned(n); ++i) {
      if (in[i].msg_hdr.msg_flags & MSG_TRUNC) continue;
      msghdr& o = out[m].msg_hdr;
      o.msg_name = &f.client;
      o.msg_namelen = f.client_len;
      o.msg_controllen = f.local_from_pktinfo ? source_cmsg(f.local, out_ctl[m].data()) : 0;
      o.msg_control = o.msg_controllen ? out_ctl[m].data() : nullptr;
      o.msg_flags = 0;
      out_iov[m][0] = iovec{in_iov[i].iov_base, in[i].msg_len};
      o.msg_iovlen = 1;
      ++m;
    }
    f.last_active = now;
    // Replies to one client: a run of equal-size ones leaves as one GSO send from the
    // listening socket. A client address the kernel will not send to loses that datagram.
    const uint64_t bytes = send_out(l.fd.get(), 0, m, [](int) {});
    if (bytes) f.route->counters->bytes_down.fetch_add(bytes, std::memory_order_relaxed);
    if (unsigned(n) < kBatch) return;
  }
  if (!f.kicked) {
    ring.poll(f.fd.get(), POLLIN, ud(kFlowKick, fi, f.gen));
    f.kicked = true;
    f.inflight++;
  }
}

// The flow stays open when its target refuses: a target that restarts (a game server, a DNS
// resolver) comes back on the same address, the client keeps its path and source port, and
// closing would only create the same flow again with the client's next datagram. Idle expiry
// ends it if nothing comes back.
void UdpPath::Impl::flow_failed(FlowSlot& f, int err, const char* what) {
  if (err == EMSGSIZE) {
    if (warn.allow(now_s())) {
      char cb[64];
      RF_WARN("route=%s client=%s: datagram too large to forward%s, dropped",
              f.route->route.id.c_str(), net::format(f.client, cb, sizeof cb),
              f.pp_len ? " with its PROXY header" : "");
    }
    return;
  }
  if (err == ECONNREFUSED || err == EHOSTUNREACH || err == ENETUNREACH) wake(*f.route);
  if (f.failed_counted) return;
  f.failed_counted = true;
  f.route->counters->conns_failed.fetch_add(1, std::memory_order_relaxed);
  if (warn.allow(now_s())) {
    char cb[64];
    RF_WARN("route=%s client=%s: udp %s target: %s", f.route->route.id.c_str(),
            net::format(f.client, cb, sizeof cb), what, std::strerror(err));
  }
}

// ------------------------------------------------------------------------------ flows

void UdpPath::Impl::refuse(const routing::ResolvedRoute* route, const sockaddr_storage& client,
                           const char* why) {
  route->counters->conns_refused.fetch_add(1, std::memory_order_relaxed);
  if (warn.allow(now_s())) {
    char cb[64];
    RF_INFO("route=%s client=%s: refused a new udp flow: %s", route->route.id.c_str(),
            net::format(client, cb, sizeof cb), why);
  }
}

// Datagram i of the batch comes from a client without a flow on listener li.
uint32_t UdpPath::Impl::create_flow(uint32_t li, unsigned i, const FlowKey& key) {
  const ListenerSlot& l = listeners[li];
  const sockaddr_storage& client = names[i];
  const routing::ResolvedRoute* route = l.route;
  routing::RouteCounters& ctr = *route->counters;
  if (!accepting) {
    refuse(route, client, "shutting down");
    return kNone;
  }
  if (route->gateway_offline()) {
    refuse(route, client, "the gateway is offline");
    return kNone;
  }
  // A hop route's datagrams come from the edge, which checked the client and its limits.
  if (!route->route.hop && !route->allows(client)) {
    refuse(route, client, "not in the allow list");
    return kNone;
  }
  wake(*route);
  const uint64_t active = shared.active.fetch_add(1, std::memory_order_relaxed);
  if (active >= shared.max_connections.load(std::memory_order_relaxed)) {
    shared.active.fetch_sub(1, std::memory_order_relaxed);
    refuse(route, client, "limits.max_connections reached");
    return kNone;
  }
  const uint64_t route_active = ctr.conns_active.fetch_add(1, std::memory_order_relaxed);
  auto undo = [&] {
    shared.active.fetch_sub(1, std::memory_order_relaxed);
    ctr.conns_active.fetch_sub(1, std::memory_order_relaxed);
  };
  if (route->max_connections && route_active >= route->max_connections) {
    undo();
    refuse(route, client, "route max_connections reached");
    return kNone;
  }
  ClientKey ck{&shared, addr_of(client, false)};
  const uint32_t per_client = route->route.hop ? 0 : route->udp_flows_per_client;
  if (per_client && !client_flows().acquire(ck, per_client)) {
    undo();
    refuse(route, client, "limits.udp_flows_per_client reached for this address");
    return kNone;
  }
  auto fail = [&](const char* what) {
    const int e = errno;
    undo();
    if (per_client) client_flows().release(ck);
    ctr.conns_failed.fetch_add(1, std::memory_order_relaxed);
    if (warn.allow(now_s())) {
      char cb[64];
      RF_WARN("route=%s client=%s: udp %s: %s", route->route.id.c_str(),
              net::format(client, cb, sizeof cb), what, std::strerror(e));
    }
    return kNone;
  };
  sockaddr_storage target;
  socklen_t target_len;
  route->target_for(l.port, target, target_len);
  UniqueFd up(::socket(target.ss_family, SOCK_DGRAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0));
  if (!up) return fail("socket");
  // connect() on UDP only fixes the peer: no packet, no wait.
  if (::connect(up.get(), reinterpret_cast<const sockaddr*>(&target), target_len) < 0)
    return fail("connect");

  uint32_t fi;
  if (!free_flows.empty()) {
    fi = free_flows.back();
    free_flows.pop_back();
  } else {
    fi = uint32_t(flows.size());
    flows.emplace_back();
  }
  FlowSlot& f = flows[fi];
  const uint32_t gen = (f.gen + 1) & 0xffffff;
  f = FlowSlot{};
  f.gen = gen;
  f.in_use = true;
  f.fd = std::move(up);
  f.route = route;
  f.table = l.table;
  f.client = client;
  f.client_len = in[i].msg_hdr.msg_namelen;
  f.local = l.local;
  if (l.wildcard) f.local_from_pktinfo = local_address(in[i].msg_hdr, l.port, f.local);
  f.key = key;
  f.li = li;
  f.last_active = now;
  f.ip_counted = per_client != 0;
  // On a hop route the edge already put the client's header in front of each datagram.
  if (route->route.proxy_protocol == config::ProxyProtocol::V2 && !route->route.hop) {
    // Written once per flow: client and listener address do not change during its life.
    f.pp_len = uint8_t(
        proto::write_proxy_v2(client, f.local, true, {}, std::span<uint8_t>(f.pp, sizeof f.pp)));
    if (f.pp_len == 0 && !pp_missing_logged) {
      pp_missing_logged = true;
      RF_WARN("route=%s: could not write a PROXY v2 header; udp datagrams go without it",
              route->route.id.c_str());
    }
  }
  ++live;
  by_client.emplace(key, fi);
  ctr.conns_total.fetch_add(1, std::memory_order_relaxed);
  arm_flow(fi);
  char cb[64];
  RF_DEBUG("route=%s client=%s: new udp flow", route->route.id.c_str(),
           net::format(client, cb, sizeof cb));
  return fi;
}

void UdpPath::Impl::close_flow(uint32_t fi, const char* why) {
  FlowSlot& f = flows[fi];
  if (!f.in_use || f.closing) return;
  f.closing = true;
  char cb[64];
  RF_DEBUG("route=%s client=%s: udp flow closed: %s", f.route->route.id.c_str(),
           net::format(f.client, cb, sizeof cb), why);
  auto it = by_client.find(f.key);
  if (it != by_client.end() && it->second == fi) by_client.erase(it);
  if (f.ip_counted) client_flows().release(ClientKey{&shared, addr_of(f.client, false)});
  f.route->counters->conns_active.fetch_sub(1, std::memory_order_relaxed);
  shared.active.fetch_sub(1, std::memory_order_relaxed);
  // Cancel by user_data, not by fd: the fd closes now (the ring's own reference keeps the
  // socket until the cancel lands), and a cancel by fd would only be looked up at submission.
  if (f.armed) ring.cancel(ud(kFlowPoll, fi, f.gen), cancel_ud());
  if (f.kicked) ring.cancel(ud(kFlowKick, fi, f.gen), cancel_ud());
  f.fd.reset();
  maybe_free_flow(fi);
}

void UdpPath::Impl::maybe_free_flow(uint32_t fi) {
  FlowSlot& f = flows[fi];
  if (!f.in_use || !f.closing || f.inflight > 0) return;
  f.in_use = false;
  f.route = nullptr;
  f.table.reset();
  free_flows.push_back(fi);
  --live;
}

void UdpPath::Impl::close_listener(uint32_t li) {
  ListenerSlot& l = listeners[li];
  if (!l.in_use || l.closing) return;
  l.closing = true;
  auto it = by_key.find(l.key);
  if (it != by_key.end() && it->second == li) by_key.erase(it);
  for (uint32_t fi = 0; fi < flows.size(); ++fi)
    if (flows[fi].in_use && !flows[fi].closing && flows[fi].li == li)
      close_flow(fi, "listener closed");
  if (l.armed) ring.cancel(ud(kListenPoll, li, l.gen), cancel_ud());
  if (l.kicked) ring.cancel(ud(kListenKick, li, l.gen), cancel_ud());
  l.fd.reset();
  maybe_free_listener(li);
}

void UdpPath::Impl::maybe_free_listener(uint32_t li) {
  ListenerSlot& l = listeners[li];
  if (!l.in_use || !l.closing || l.inflight > 0) return;
  l.in_use = false;
  l.route = nullptr;
  l.table.reset();
  l.key.clear();
  free_listeners.push_back(li);
  --live;
}

// A route that comes back (same id) is no longer draining.
void UdpPath::Impl::forget_draining(const routing::RouteTable& table) {
  std::erase_if(draining, [&](const Draining& d) { return table.find(d.route_id) != nullptr; });
}

// --------------------------------------------------------------------------- UdpPath

UdpPath::UdpPath(unsigned worker_id, uring::Ring& ring, EngineShared& shared, const EngineOptions&)
    : impl_(std::make_unique<Impl>(worker_id, ring, shared)) {
  impl_->init_buffers();
  impl_->by_client.reserve(1024);
}

UdpPath::~UdpPath() {
  // Whatever is left (a worker that gave up waiting at shutdown) still gives its counts back.
  for (auto& f : impl_->flows)
    if (f.in_use && !f.closing && f.ip_counted)
      client_flows().release(ClientKey{&impl_->shared, addr_of(f.client, false)});
}

void UdpPath::add_listener(UniqueFd fd, const routing::ResolvedRoute* route, uint16_t port,
                           std::string key, std::shared_ptr<const routing::RouteTable> table) {
  Impl& m = *impl_;
  if (m.stopping || !m.slots) return;  // closing fd refuses the port
  uint32_t li;
  if (!m.free_listeners.empty()) {
    li = m.free_listeners.back();
    m.free_listeners.pop_back();
  } else {
    li = uint32_t(m.listeners.size());
    m.listeners.emplace_back();
  }
  ListenerSlot& l = m.listeners[li];
  const uint32_t gen = (l.gen + 1) & 0xffffff;
  l = ListenerSlot{};
  l.gen = gen;
  l.in_use = true;
  l.fd = std::move(fd);
  l.route = route;
  l.table = std::move(table);
  l.port = port;
  l.key = std::move(key);
  socklen_t ll = sizeof l.local;
  if (getsockname(l.fd.get(), reinterpret_cast<sockaddr*>(&l.local), &ll) < 0) l.local = {};
  // A wildcard bind reports 0.0.0.0 / "::": ask for each datagram's destination instead.
  int one = 1;
  if (l.local.ss_family == AF_INET &&
      reinterpret_cast<const sockaddr_in&>(l.local).sin_addr.s_addr == htonl(INADDR_ANY))
    l.wildcard = setsockopt(l.fd.get(), IPPROTO_IP, IP_PKTINFO, &one, sizeof one) == 0;
  else if (l.local.ss_family == AF_INET6 &&
           IN6_IS_ADDR_UNSPECIFIED(&reinterpret_cast<const sockaddr_in6&>(l.local).sin6_addr))
    l.wildcard = setsockopt(l.fd.get(), IPPROTO_IPV6, IPV6_RECVPKTINFO, &one, sizeof one) == 0;
  m.forget_draining(*l.table);
  m.by_key[l.key] = li;
  ++m.live;
  m.arm_listener(li);
}

bool UdpPath::remap(const std::string& key, const routing::ResolvedRoute* route,
                    std::shared_ptr<const routing::RouteTable> table) {
  Impl& m = *impl_;
  auto it = m.by_key.find(key);
  if (it == m.by_key.end()) return false;
  ListenerSlot& l = m.listeners[it->second];
  m.forget_draining(*table);
  // New flows take the new route at once; existing ones keep theirs (and its table) until
  // they end.
  l.route = route;
  l.table = std::move(table);
  return true;
}

bool UdpPath::close_now(const std::string& key) {
  Impl& m = *impl_;
  auto it = m.by_key.find(key);
  if (it == m.by_key.end()) return false;
  m.close_listener(it->second);
  return true;
}

bool UdpPath::close_at(const std::string& key, uint64_t at_ms) {
  Impl& m = *impl_;
  auto it = m.by_key.find(key);
  if (it == m.by_key.end()) return false;
  m.listeners[it->second].close_at = at_ms ? at_ms : 1;
  m.by_key.erase(it);  // the key is free for a new listener at once
  return true;
}

void UdpPath::drain(const std::string& route_id, uint64_t until_ms) {
  impl_->draining.push_back({route_id, until_ms});
}

void UdpPath::set_waker(WolSender* w) { impl_->waker = w; }

void UdpPath::stop_accepting() { impl_->accepting = false; }

void UdpPath::stop() {
  Impl& m = *impl_;
  m.accepting = false;
  m.stopping = true;
  for (uint32_t fi = 0; fi < m.flows.size(); ++fi) m.close_flow(fi, "shutting down");
  for (uint32_t li = 0; li < m.listeners.size(); ++li) m.close_listener(li);
}

size_t UdpPath::open() const { return impl_->live; }

void UdpPath::dispatch(const uring::Completion& c, uint64_t now_ms) {
  Impl& m = *impl_;
  m.now = now_ms;
  const uring::UserData u = uring::UserData::unpack(c.user_data);
  switch (u.op) {
    case kListenPoll:
    case kListenKick:
      if (u.index < m.listeners.size() && m.listeners[u.index].in_use &&
          m.listeners[u.index].gen == u.gen)
        m.on_listener(u.index, u.op, c);
      return;
    case kFlowPoll:
    case kFlowKick:
      if (u.index < m.flows.size() && m.flows[u.index].in_use && m.flows[u.index].gen == u.gen)
        m.on_flow(u.index, u.op, c);
      return;
    default:
      return;  // kCancelDone
  }
}

namespace {
constexpr uint64_t kStopQuietMs = 2000;
}  // namespace

void UdpPath::tick(uint64_t now_ms) {
  Impl& m = *impl_;
  m.now = now_ms;
  for (uint32_t li = 0; li < m.listeners.size(); ++li) {
    ListenerSlot& l = m.listeners[li];
    if (!l.in_use || l.closing) continue;
    if (l.close_at && now_ms >= l.close_at) {
      m.close_listener(li);
      continue;
    }
    m.arm_listener(li);  // after a poll error
  }
  bool due = false;
  for (const auto& d : m.draining) due |= now_ms >= d.until_ms;
  // A coarse scan: the hot path only stamps last_active.
  for (uint32_t fi = 0; fi < m.flows.size(); ++fi) {
    FlowSlot& f = m.flows[fi];
    if (!f.in_use || f.closing) continue;
    if (due) {
      bool gone = false;
      for (const auto& d : m.draining)
        if (now_ms >= d.until_ms && f.route->route.id == d.route_id) gone = true;
      if (gone) {
        char cb[64];
        RF_INFO("route=%s client=%s: route removed and drain_timeout_s over, closing udp flow",
                f.route->route.id.c_str(), net::format(f.client, cb, sizeof cb));
        m.close_flow(fi, "drain timeout");
        continue;
      }
    }
    // Stopping (SIGTERM): a datagram flow has no end of its own to wait for, so a flow that
    // has been quiet for a couple of seconds is done; busy ones go on within the drain.
    uint64_t limit_ms = uint64_t(f.route->udp_idle_timeout_s) * 1000;
    if (!m.accepting && (limit_ms == 0 || limit_ms > kStopQuietMs)) limit_ms = kStopQuietMs;
    if (limit_ms && now_ms - f.last_active >= limit_ms) {
      m.close_flow(fi, "idle");
      continue;
    }
    m.arm_flow(fi);
  }
  if (due) std::erase_if(m.draining, [&](const auto& d) { return now_ms >= d.until_ms; });
}

}  // namespace rf::dataplane
