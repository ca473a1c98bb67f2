// The sockmap dataplane's kernel half: bytes that arrive on a forwarded socket leave through its
// peer without a trip through userspace.
//
// Maps, all keyed by socket cookie:
//  - rf_peers[cookie(A)] = B: where A's bytes go. No program is attached to it, so putting a
//    socket here changes nothing about how that socket receives.
//  - rf_verdict[cookie(A)] = A: the sockets whose receive path the verdict takes over (the
//    program is attached to this map). Userspace fills rf_peers and rf_flows for both
//    sockets of a connection first, then puts them here: every byte a verdict sees has a peer
//    to go to. A socket stays in rf_verdict until it is closed (it then leaves by itself):
//    taking a socket out while bytes arrive can drop the buffer being judged.
//  - rf_flows[cookie(A)]: the direction A -> B: bytes redirected, last activity. Userspace
//    creates and deletes these entries and reads them; only the verdict writes them.
//
// The verdict only ever redirects. Passing bytes up to userspace (SK_PASS) or taking a live
// socket out of rf_verdict were both tried here and both lose or repeat bytes under load on
// this kernel, so a connection stays in the kernel until it closes. The redirect has no
// backpressure of its own (a redirected buffer waits in B's queue, uncharged to A, until B's
// send buffer takes it); userspace watches that queue and narrows A's TCP window when it grows
// (src/dataplane/kernel.cpp).
#include "vmlinux.h"

#include <bpf/bpf_helpers.h>

struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, 65536);  // userspace sizes the maps from limits.max_connections
  __type(key, __u64);
  __type(value, __u64);
} rf_peers SEC(".maps");

struct {
  __uint(type, BPF_MAP_TYPE_SOCKHASH);
  __uint(max_entries, 65536);
  __type(key, __u64);
  __type(value, __u64);
} rf_verdict SEC(".maps");

// Keep in step with src/bpf/sockmap.cpp (KFlow).
struct rf_flow {
  __u64 redirected;  // bytes sent on to the peer since the entry was created
  __u64 last_ns;     // CLOCK_MONOTONIC of the last buffer
};

struct {
  __uint(type, BPF_MAP_TYPE_HASH);
  __uint(max_entries, 65536);
  // Entries come and go with connections: allocate them then, not max_entries at load time
  // (limits.max_connections 100000 would mean 200000 entries held from the start).
  __uint(map_flags, BPF_F_NO_PREALLOC);
  __type(key, __u64);
  __type(value, struct rf_flow);
} rf_flows SEC(".maps");

// Keep in step with src/bpf/sockmap.cpp (KCounters).
struct rf_counters {
  __u64 skbs;   // buffers redirected
  __u64 bytes;  // bytes redirected
  __u64 drops;  // buffers whose peer had closed meanwhile
};

struct {
  __uint(type, BPF_MAP_TYPE_PERCPU_ARRAY);
  __uint(max_entries, 1);
  __type(key, __u32);
  __type(value, struct rf_counters);
} rf_stats SEC(".maps");

SEC("sk_skb/stream_verdict")
int rf_redirect(struct __sk_buff *skb) {
  __u64 cookie = bpf_get_socket_cookie(skb);
  __u32 len = skb->len;
  __u32 zero = 0;
  // A bare FIN reaches the verdict as an empty buffer. Sent on, it would make the peer's queue
  // report EPIPE (a zero-byte send counts as a broken pipe) and stop redirecting to it. TCP has
  // already recorded the FIN on this socket; userspace sees it with poll and half-closes.
  if (len == 0) return SK_DROP;
  struct rf_flow *f = bpf_map_lookup_elem(&rf_flows, &cookie);
  if (f) {
    f->redirected += len;  // one verdict at a time per socket (under its lock)
    f->last_ns = bpf_ktime_get_ns();
  }
  // Egress redirect: the bytes leave through the peer's send queue, as a write() would.
  long verdict = bpf_sk_redirect_hash(skb, &rf_peers, &cookie, 0);
  struct rf_counters *c = bpf_map_lookup_elem(&rf_stats, &zero);
  if (c) {
    if (verdict == SK_PASS) {
      c->skbs++;
      c->bytes += len;
    } else {
      c->drops++;
    }
  }
  return verdict;
}

char _license[] SEC("license") = "Dual MIT/GPL";
