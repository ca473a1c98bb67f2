#include "ringfwd/bpf/sockmap.hpp"

#include <arpa/inet.h>
#include <linux/sockios.h>
#include <linux/tcp.h>  // struct tcp_info with tcpi_bytes_acked (glibc's is older)
#include <netinet/in.h>
#include <poll.h>
#include <sys/ioctl.h>
#include <sys/socket.h>
#include <unistd.h>

#include <cerrno>
#include <cstring>

#include "ringfwd/base/unique_fd.hpp"
#include "ringfwd_build_config.h"

#if RINGFWD_HAVE_BPF
#include <bpf/bpf.h>
#include <bpf/libbpf.h>

#include "bpf/redirect.skel.h"
#endif

namespace rf::bpf {

uint64_t Sockmap::cookie(int fd) {
  uint64_t c = 0;
  socklen_t len = sizeof c;
  if (getsockopt(fd, SOL_SOCKET, SO_COOKIE, &c, &len) < 0) return 0;
  return c;
}

namespace {
bool get_tcp_info(int fd, tcp_info* ti) {
  socklen_t len = sizeof *ti;
  if (getsockopt(fd, IPPROTO_TCP, TCP_INFO, ti, &len) < 0) return false;
  return len >= offsetof(tcp_info, tcpi_bytes_received) + sizeof ti->tcpi_bytes_received;
}
}  // namespace

std::optional<uint64_t> Sockmap::received(int fd) {
  tcp_info ti{};
  if (!get_tcp_info(fd, &ti)) return std::nullopt;
  return ti.tcpi_bytes_received;
}

std::optional<uint64_t> Sockmap::consumed(int fd) {
  // received - still queued = read; bytes landing between the calls are caught as before.
  for (int attempt = 0; attempt < 16; ++attempt) {
    auto r1 = received(fd);
    int inq = 0;
    if (!r1 || ioctl(fd, SIOCINQ, &inq) < 0) return std::nullopt;
    auto r2 = received(fd);
    if (r2 && *r1 == *r2) return *r1 - uint64_t(inq);
  }
  return std::nullopt;
}

std::optional<uint64_t> Sockmap::written(int fd) {
  // acked (TCP_INFO) + not yet acked (SIOCOUTQ) = write_seq - initial seq, but an ACK landing
  // between the two calls would skew the sum: read acked on both sides and retry until equal.
  auto acked = [fd](uint64_t* out) {
    tcp_info ti{};
    if (!get_tcp_info(fd, &ti)) return false;
    *out = ti.tcpi_bytes_acked;
    return true;
  };
  for (int attempt = 0; attempt < 16; ++attempt) {
    uint64_t a1 = 0, a2 = 0;
    int outq = 0;
    if (!acked(&a1) || ioctl(fd, SIOCOUTQ, &outq) < 0 || !acked(&a2)) return std::nullopt;
    if (a1 == a2) return a1 + uint64_t(outq);
  }
  return std::nullopt;
}

#if RINGFWD_HAVE_BPF

struct Sockmap::Impl {
  rf_redirect* skel = nullptr;
  int peers = -1, verdict = -1, flows = -1, stats = -1;
  bool attached = false;
  ~Impl() {
    if (attached) bpf_prog_detach2(bpf_program__fd(skel->progs.rf_redirect), verdict,
                                   BPF_SK_SKB_STREAM_VERDICT);
    if (skel) rf_redirect::destroy(skel);
  }
};

// Keep in step with bpf/redirect.bpf.c.
namespace {
struct KFlow {
  uint64_t redirected, last_ns;
};
struct KCounters {
  uint64_t skbs, bytes, drops;
};

int silent_print(enum libbpf_print_level level, const char*, va_list) {
  (void)level;
  return 0;  // open() reports the one error that matters, in the daemon's own log
}

Error bpf_error(const std::string& what, int err) {
  std::string hint;
  if (err == EPERM || err == EACCES)
    hint = " (needs CAP_BPF and CAP_NET_ADMIN, or root)";
  return Error::from_errno("sockmap: " + what + hint, err);
}

UniqueFd loopback_listener(uint16_t* port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  socklen_t len = sizeof a;
  if (bind(fd.get(), reinterpret_cast<sockaddr*>(&a), len) < 0 || listen(fd.get(), 4) < 0 ||
      getsockname(fd.get(), reinterpret_cast<sockaddr*>(&a), &len) < 0)
    return UniqueFd();
  *port = ntohs(a.sin_port);
  return fd;
}

UniqueFd loopback_connect(uint16_t port) {
  UniqueFd fd(socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0));
  if (!fd) return fd;
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(port);
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (connect(fd.get(), reinterpret_cast<sockaddr*>(&a), sizeof a) < 0) return UniqueFd();
  return fd;
}

bool read_within(int fd, const char* want, size_t n, int ms) {
  pollfd p{fd, POLLIN, 0};
  if (poll(&p, 1, ms) != 1) return false;
  char buf[16];
  return recv(fd, buf, sizeof buf, MSG_DONTWAIT) == ssize_t(n) && std::memcmp(buf, want, n) == 0;
}
}  // namespace

Result<std::unique_ptr<Sockmap>> Sockmap::open(const Options& opts) {
  libbpf_set_print(silent_print);
  std::unique_ptr<Sockmap> sm(new Sockmap());
  sm->opts_ = opts;
  sm->impl_ = std::make_unique<Impl>();
  Impl& im = *sm->impl_;
  im.skel = rf_redirect::open();
  if (!im.skel) return bpf_error("open BPF object", errno);
  const uint32_t n = opts.max_sockets < 64 ? 64 : opts.max_sockets;
  bpf_map__set_max_entries(im.skel->maps.rf_peers, n);
  bpf_map__set_max_entries(im.skel->maps.rf_verdict, n);
  bpf_map__set_max_entries(im.skel->maps.rf_flows, n);
  if (int err = rf_redirect::load(im.skel); err)
    return bpf_error("load the verdict program", -err);
  im.peers = bpf_map__fd(im.skel->maps.rf_peers);
  im.verdict = bpf_map__fd(im.skel->maps.rf_verdict);
  im.flows = bpf_map__fd(im.skel->maps.rf_flows);
  im.stats = bpf_map__fd(im.skel->maps.rf_stats);
  // libbpf 1.1 cannot attach a stream verdict through a link: attach it to the map directly.
  if (bpf_prog_attach(bpf_program__fd(im.skel->progs.rf_redirect), im.verdict,
                      BPF_SK_SKB_STREAM_VERDICT, 0) < 0)
    return bpf_error("attach the stream verdict", errno);
  im.attached = true;

  // Self-test on loopback: a kernel can accept all of the above and still not redirect.
  uint16_t p1 = 0, p2 = 0;
  UniqueFd l1 = loopback_listener(&p1), l2 = loopback_listener(&p2);
  if (!l1 || !l2) return bpf_error("self-test: listen on 127.0.0.1", errno);
  UniqueFd client = loopback_connect(p1);
  UniqueFd c(client ? accept4(l1.get(), nullptr, nullptr, SOCK_CLOEXEC) : -1);
  UniqueFd t = loopback_connect(p2);
  UniqueFd server(t ? accept4(l2.get(), nullptr, nullptr, SOCK_CLOEXEC) : -1);
  if (!c || !server) return bpf_error("self-test: connect on 127.0.0.1", errno);
  // Bytes queued before insertion must come through too.
  if (send(client.get(), "ping", 4, MSG_NOSIGNAL) != 4 || send(server.get(), "pong", 4, MSG_NOSIGNAL) != 4)
    return bpf_error("self-test: send", errno);
  const uint64_t kc = cookie(c.get()), kt = cookie(t.get());
  if (!kc || !kt) return bpf_error("self-test: SO_COOKIE", errno);
  struct Cleanup {
    Sockmap* s;
    uint64_t a, b;
    ~Cleanup() {
      s->forget(a);
      s->forget(b);
    }
  } cleanup{sm.get(), kc, kt};
  if (auto r = sm->link(c.get(), kc, t.get(), kt); !r) return r.error();
  else if (*r != 3) return Error::msg("sockmap: self-test: a socket could not be inserted");
  if (!read_within(server.get(), "ping", 4, 1000) || !read_within(client.get(), "pong", 4, 1000))
    return Error::msg("sockmap: self-test: bytes were not redirected by this kernel");
  shutdown(client.get(), SHUT_WR);
  pollfd pf{c.get(), POLLRDHUP, 0};
  if (poll(&pf, 1, 1000) != 1 || !(pf.revents & POLLRDHUP))
    return Error::msg("sockmap: self-test: a FIN on a redirected socket was not reported");
  // The counters start from here: the self-test's bytes are not traffic.
  const int ncpu = libbpf_num_possible_cpus();
  if (ncpu > 0) {
    auto zero = std::make_unique<KCounters[]>(size_t(ncpu));
    uint32_t key = 0;
    bpf_map_update_elem(im.stats, &key, zero.get(), BPF_ANY);
  }
  return sm;
}

Sockmap::~Sockmap() = default;

Result<unsigned> Sockmap::link(int a, uint64_t ka, int b, uint64_t kb) {
  Impl& im = *impl_;
  // Until b is in the verdict map nothing runs for these sockets: any step may be undone.
  auto undo = [&](const char* what, int err) {
    bpf_map_delete_elem(im.peers, &ka);
    bpf_map_delete_elem(im.peers, &kb);
    forget(ka);
    forget(kb);
    return bpf_error(what, err);
  };
  KFlow f{};
  if (bpf_map_update_elem(im.flows, &ka, &f, BPF_ANY) < 0 ||
      bpf_map_update_elem(im.flows, &kb, &f, BPF_ANY) < 0)
    return undo("add flow entries", errno);
  uint64_t va = uint64_t(a), vb = uint64_t(b);
  if (bpf_map_update_elem(im.peers, &ka, &vb, BPF_ANY) < 0 ||
      bpf_map_update_elem(im.peers, &kb, &va, BPF_ANY) < 0)
    return undo("pair the sockets", errno);
  // Both peers are known: from here on each verdict has somewhere to send its bytes. b (the
  // target, the side that may close at once) goes first: if it fails nothing is handed over.
  // A socket stays in the verdict map until it is closed: taking it out while a buffer is
  // being judged can drop that buffer.
  if (bpf_map_update_elem(im.verdict, &kb, &vb, BPF_ANY) < 0)
    return undo("insert into the verdict map", errno);
  unsigned on = 2;
  if (bpf_map_update_elem(im.verdict, &ka, &va, BPF_ANY) == 0) on |= 1;
  // Bytes that arrived before the insertion wait in the receive queue until the next packet
  // wakes the verdict; setting SO_RCVLOWAT makes TCP signal data_ready (the verdict) right now.
  int one = 1;
  if (on & 1) setsockopt(a, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
  setsockopt(b, SOL_SOCKET, SO_RCVLOWAT, &one, sizeof one);
  return on;
}

void Sockmap::forget(uint64_t k) { bpf_map_delete_elem(impl_->flows, &k); }

std::optional<Sockmap::Flow> Sockmap::flow(uint64_t k) const {
  KFlow f{};
  if (bpf_map_lookup_elem(impl_->flows, &k, &f) < 0) return std::nullopt;
  return Flow{f.redirected, f.last_ns};
}

Sockmap::Counters Sockmap::counters() const {
  Counters out;
  const int ncpu = libbpf_num_possible_cpus();
  if (ncpu <= 0) return out;
  auto per = std::make_unique<KCounters[]>(size_t(ncpu));
  uint32_t key = 0;
  if (bpf_map_lookup_elem(impl_->stats, &key, per.get()) < 0) return out;
  for (int i = 0; i < ncpu; ++i) {
    out.skbs += per[i].skbs;
    out.bytes += per[i].bytes;
    out.drops += per[i].drops;
  }
  return out;
}

namespace {
size_t count_keys(int map_fd) {
  size_t n = 0;
  uint64_t key = 0;
  void* prev = nullptr;
  while (bpf_map_get_next_key(map_fd, prev, &key) == 0) {
    ++n;
    prev = &key;
  }
  return n;
}
}  // namespace

size_t Sockmap::flows() const { return count_keys(impl_->flows); }
size_t Sockmap::verdict_sockets() const { return count_keys(impl_->verdict); }

#else  // !RINGFWD_HAVE_BPF

struct Sockmap::Impl {};

Result<std::unique_ptr<Sockmap>> Sockmap::open(const Options&) {
  return Error::msg("sockmap: not in this build (configure with libbpf, clang and bpftool: -Dbpf=enabled)");
}
Sockmap::~Sockmap() = default;
Result<unsigned> Sockmap::link(int, uint64_t, int, uint64_t) { return Error::msg("sockmap: not built"); }
void Sockmap::forget(uint64_t) {}
std::optional<Sockmap::Flow> Sockmap::flow(uint64_t) const { return std::nullopt; }
Sockmap::Counters Sockmap::counters() const { return {}; }
size_t Sockmap::flows() const { return 0; }
size_t Sockmap::verdict_sockets() const { return 0; }

#endif

}  // namespace rf::bpf
